//! Unpacking of OCI layer changesets into directories stacked by overlayfs.
//!
//! Implements OCI image-spec v1.1 `layer.md`: a layer is a tar changeset of additions,
//! modifications and removals ("Changeset over existing files", "Whiteouts", "Opaque Whiteout").
//! Each layer is unpacked into its own empty directory, never on top of its parent; the
//! directories are later used as overlayfs lower directories, so removals are stored in overlayfs
//! form: `DIR/.wh.NAME` becomes a `0:0` character device `DIR/NAME`, and `DIR/.wh..wh..opq` becomes
//! the xattr `trusted.overlay.opaque=y` on `DIR`.
//!
//! Threat model: the tar stream is hostile. Names that are absolute or contain `..` are refused;
//! every path is resolved beneath the destination with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | ...)`, so no symlink is ever followed, not even one pointing inside the
//! layer; hard links may only point at earlier entries of the same layer; the uncompressed stream
//! is bounded by [`ApplyOptions::max_size`] (GNU sparse files, whose holes are not in the stream,
//! are refused), the number of entries by [`ApplyOptions::max_entries`], and the tar headers that
//! the tar reader holds in memory (long names, PAX records) by [`crate::targuard`];
//! `trusted.overlay.*` xattrs from the image are dropped.

mod apply;
mod attrs;
mod entry;
mod error;
mod path;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_limits;
#[cfg(test)]
mod tests_overlay;
#[cfg(test)]
mod tests_security;
#[cfg(test)]
mod tests_whiteout;

use std::io::{self, Read};
use std::path::Path;

use rustix::fs::{self as rfs, Mode, OFlags};

use crate::targuard::{TarGuard, MAX_EXTENSION_SIZE};

pub use error::{EntryName, LayerError, LinkProblem};

/// Default [`ApplyOptions::max_size`]: 32 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 32 << 30;

/// Default [`ApplyOptions::max_entries`]: one million.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;

/// Options of [`apply_layer`].
///
/// Build it from the defaults: `ApplyOptions { max_size, ..ApplyOptions::default() }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyOptions {
    /// The most bytes of uncompressed tar stream that may be read, including whatever follows
    /// the end-of-archive block; unpacking fails with [`LayerError::SizeLimit`] as soon as the
    /// stream goes past it. Default: 32 GiB.
    pub max_size: u64,
    /// The most tar entries the layer may have (every entry the tar reader yields, PAX global
    /// headers included; long-name and PAX records are part of their entry); unpacking fails with
    /// [`LayerError::TooManyEntries`] on the next one. Default: one million.
    pub max_entries: u64,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            max_size: DEFAULT_MAX_SIZE,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// What [`apply_layer`] unpacked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Bytes read from the tar stream, up to and including the (first) end-of-archive block.
    pub tar_bytes: u64,
    /// Bytes of the stream after the end-of-archive block (the second zero block and any
    /// padding), read and discarded.
    pub trailing_bytes: u64,
    /// Sum of the sizes of regular files written, in bytes (hard links not counted again).
    pub content_bytes: u64,
    /// Tar entries applied (PAX and GNU long-name records are part of their entry; PAX global
    /// headers are not counted; whiteouts and skipped aufs metadata are).
    pub entries: u64,
}

/// Unpack one layer changeset tar stream (OCI image-spec v1.1 `layer.md`) into `dest`, an
/// existing empty directory, in overlayfs lower-directory form.
///
/// `tar_stream` is the uncompressed tar (see [`crate::compression::Compression::decoder`]). After
/// the tar end-of-archive block, the rest of the stream is read and discarded, within
/// `opts.max_size`: on success the stream has been read to its end, so a caller hashing it has
/// nothing left to read. Directory modes and mtimes and opaque-directory xattrs are applied in a
/// final pass, so they do not depend on entry order.
///
/// # Errors
/// [`LayerError`]: an entry with an unsafe or invalid name, a write through a symlink, a bad hard
/// link, an unsupported entry type (including GNU and PAX sparse files), a long-name or PAX header
/// with more than [`MAX_EXTENSION_SIZE`] bytes, a filesystem failure (each naming the entry), a
/// corrupt or truncated stream (including one that ends without an end-of-archive block), a stream
/// longer than `opts.max_size`, or more than `opts.max_entries` entries. On error `dest` holds a
/// partial layer, which the caller deletes.
pub fn apply_layer<R: Read>(
    tar_stream: R,
    dest: &Path,
    opts: &ApplyOptions,
) -> Result<LayerStats, LayerError> {
    let root = rfs::open(
        dest,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::OpenDest {
        path: dest.to_path_buf(),
        source: e.into(),
    })?;
    // The guard refuses oversized long-name and PAX headers before the tar reader buffers them.
    let reader = TarGuard::new(LimitedReader::new(tar_stream, opts.max_size));
    let mut archive = tar::Archive::new(reader);
    let mut applier = apply::Applier::new(root);
    let mut content_bytes = 0;
    let result = unpack(&mut archive, &mut applier, &mut content_bytes, opts);
    let mut guard = archive.into_inner();
    let size_limit = LayerError::SizeLimit {
        limit: opts.max_size,
    };
    if guard.get_mut().exceeded {
        return Err(size_limit);
    }
    if let Some(header) = guard.oversized() {
        return Err(LayerError::HeaderTooLarge {
            entry: EntryName(header.name.clone()),
            what: header.what(),
            limit: MAX_EXTENSION_SIZE,
        });
    }
    result?;
    if guard.get_mut().eof {
        let msg = "stream ends without an end-of-archive block";
        return Err(LayerError::Corrupt(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            msg,
        )));
    }
    let tar_bytes = guard.get_mut().count;
    // Whatever follows the end-of-archive block is read here, within the size limit, rather
    // than by the caller without one.
    let trailing_bytes = match io::copy(&mut guard, &mut io::sink()) {
        Ok(n) => n,
        Err(_) if guard.get_mut().exceeded => return Err(size_limit),
        Err(e) => return Err(LayerError::Corrupt(e)),
    };
    let entries = applier.entries();
    applier.finish()?;
    Ok(LayerStats {
        tar_bytes,
        trailing_bytes,
        content_bytes,
        entries,
    })
}

fn unpack<R: Read>(
    archive: &mut tar::Archive<R>,
    applier: &mut apply::Applier,
    content_bytes: &mut u64,
    opts: &ApplyOptions,
) -> Result<(), LayerError> {
    let mut count: u64 = 0;
    for entry in archive.entries().map_err(LayerError::Corrupt)? {
        let mut entry = entry.map_err(LayerError::Corrupt)?;
        count += 1;
        if count > opts.max_entries {
            return Err(LayerError::TooManyEntries {
                limit: opts.max_entries,
            });
        }
        let meta = match entry::decode(&mut entry)? {
            entry::Decoded::Skip => continue,
            entry::Decoded::Entry(meta) => meta,
        };
        *content_bytes += applier.apply(&meta, &mut entry)?;
    }
    Ok(())
}

/// Counts the bytes read and fails once more than `limit` bytes have been read.
struct LimitedReader<R> {
    inner: R,
    limit: u64,
    count: u64,
    /// The limit was passed.
    exceeded: bool,
    /// The inner reader reported its end.
    eof: bool,
}

impl<R> LimitedReader<R> {
    fn new(inner: R, limit: u64) -> Self {
        LimitedReader {
            inner,
            limit,
            count: 0,
            exceeded: false,
            eof: false,
        }
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Allow one byte past the limit to tell "exactly at the limit" from "past it".
        let room = self.limit.saturating_sub(self.count).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            self.eof = true;
        }
        self.count += n as u64;
        if self.count > self.limit {
            self.exceeded = true;
            return Err(io::Error::other("layer size limit exceeded"));
        }
        Ok(n)
    }
}
