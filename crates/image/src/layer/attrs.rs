//! Ownership, mode, times and extended attributes of unpacked entries.
//!
//! Order per entry (as Docker does): owner, then xattrs, then mode (`chown` clears setuid and
//! setgid, and `security.capability`), then times.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStringExt;

use rustix::fs::{self as rfs, AtFlags, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};

use super::apply::io_error;
use super::entry::Meta;
use super::error::{EntryName, LayerError};
use super::path::os;

/// The xattr overlayfs reads to make a directory of a lower layer opaque.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Where to apply an attribute.
#[derive(Clone, Copy)]
pub(crate) enum XattrTarget<'a> {
    /// An open descriptor (not `O_PATH`) of a regular file or directory.
    Fd(BorrowedFd<'a>),
    /// Name in a directory, for symlinks, devices and FIFOs, which are never opened.
    At(BorrowedFd<'a>, &'a [u8]),
}

/// Mode and mtime of a directory entry, applied in the final pass.
#[derive(Debug, Clone)]
pub(crate) struct DirMeta {
    mode: u32,
    mtime: (i64, i64),
    /// The entry name, for errors.
    pub(crate) entry: Vec<u8>,
}

impl DirMeta {
    pub(crate) fn new(meta: &Meta) -> DirMeta {
        DirMeta {
            mode: meta.mode,
            mtime: meta.mtime,
            entry: meta.name.clone(),
        }
    }
}

/// Counts of xattrs skipped during one layer, so that a hostile layer cannot flood the log: the
/// first of each kind is logged with its entry, the rest only counted.
#[derive(Debug, Default)]
pub(crate) struct XattrLog {
    overlay_skipped: u64,
    security_failed: u64,
}

impl XattrLog {
    /// Log the totals at the end of the layer.
    pub(crate) fn summarize(&self) {
        if self.overlay_skipped > 1 {
            tracing::warn!(
                count = self.overlay_skipped,
                "skipped overlay xattrs in layer"
            );
        }
        if self.security_failed > 1 {
            tracing::warn!(
                count = self.security_failed,
                "could not set security xattrs in layer"
            );
        }
    }
}

/// Both timestamps of an entry: atime is set to the mtime.
pub(crate) fn timestamps(meta: &Meta) -> Timestamps {
    timestamps_of(meta.mtime)
}

fn timestamps_of((tv_sec, tv_nsec): (i64, i64)) -> Timestamps {
    let t = Timespec { tv_sec, tv_nsec };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Set the owner of `target` to the entry's uid and gid, not following symlinks.
pub(crate) fn set_owner(target: XattrTarget<'_>, meta: &Meta) -> Result<(), LayerError> {
    let (uid, gid) = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
    match target {
        XattrTarget::Fd(fd) => rfs::fchown(fd, uid, gid),
        XattrTarget::At(dir, name) => {
            rfs::chownat(dir, os(name), uid, gid, AtFlags::SYMLINK_NOFOLLOW)
        }
    }
    .map_err(|e| io_error(meta, "set owner", e.into()))
}

/// Set the mtime (and atime) of `name` in `dir`, not following a symlink.
pub(crate) fn set_mtime_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    meta: &Meta,
) -> Result<(), LayerError> {
    rfs::utimensat(dir, os(name), &timestamps(meta), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| io_error(meta, "set mtime", e.into()))
}

/// Set the entry's PAX `SCHILY.xattr.*` attributes on `target`.
///
/// `trusted.overlay.*` and `user.overlay.*` are skipped with a warning: they would change how
/// overlayfs reads this layer (opaque directories come only from `.wh..wh..opq` markers). A
/// `security.*` attribute that cannot be set is skipped with a warning; any other failure is an
/// error.
pub(crate) fn set_xattrs(
    target: XattrTarget<'_>,
    meta: &Meta,
    log: &mut XattrLog,
) -> Result<(), LayerError> {
    for (xname, value) in &meta.xattrs {
        if xname.starts_with("trusted.overlay.") || xname.starts_with("user.overlay.") {
            log.overlay_skipped += 1;
            if log.overlay_skipped == 1 {
                tracing::warn!(entry = %EntryName(meta.name.clone()), xattr = %xname, "skipping overlay xattr from image");
            }
            continue;
        }
        let result = match target {
            XattrTarget::Fd(fd) => rfs::fsetxattr(fd, xname.as_str(), value, XattrFlags::empty()),
            XattrTarget::At(dir, name) => rfs::lsetxattr(
                proc_path(dir, name),
                xname.as_str(),
                value,
                XattrFlags::empty(),
            ),
        };
        match result {
            Ok(()) => {}
            Err(e) if xname.starts_with("security.") => {
                log.security_failed += 1;
                if log.security_failed == 1 {
                    let entry = EntryName(meta.name.clone());
                    tracing::warn!(%entry, xattr = %xname, error = %e, "cannot set security xattr, skipping");
                }
            }
            Err(e) => {
                let entry = EntryName(meta.name.clone());
                return Err(LayerError::Xattr {
                    entry,
                    name: xname.clone(),
                    source: e.into(),
                });
            }
        }
    }
    Ok(())
}

/// `/proc/self/fd/DIR/NAME`: a path to `name` in the directory open as `dir`. Only the `/proc`
/// magic link is followed, to exactly that directory; `NAME` is one component, and `l*xattr` does
/// not follow it. Used because `*xattrat` calls are new (Linux 6.13) and `O_PATH` descriptors
/// cannot carry xattr calls.
fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> OsString {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    OsString::from_vec(path)
}

/// Mark the directory open as `dir` opaque for overlayfs (`trusted.overlay.opaque=y`).
pub(crate) fn set_opaque(dir: BorrowedFd<'_>, entry: &[u8]) -> Result<(), LayerError> {
    rfs::fsetxattr(dir, OPAQUE_XATTR, b"y", XattrFlags::empty()).map_err(|e| LayerError::Xattr {
        entry: EntryName(entry.to_vec()),
        name: OPAQUE_XATTR.to_owned(),
        source: io::Error::from(e),
    })
}

/// Set the mode and times of the directory open as `dir`.
pub(crate) fn set_dir_meta(dir: BorrowedFd<'_>, meta: &DirMeta) -> Result<(), LayerError> {
    let err = |op, e: rustix::io::Errno| LayerError::Io {
        entry: EntryName(meta.entry.clone()),
        op,
        source: e.into(),
    };
    rfs::fchmod(dir, Mode::from_raw_mode(meta.mode)).map_err(|e| err("set mode", e))?;
    rfs::futimens(dir, &timestamps_of(meta.mtime)).map_err(|e| err("set mtime", e))
}
