//! Bounds on the tar headers that the `tar` crate reads whole into memory.
//!
//! The `tar` crate reads the data of GNU long-name (`L`) and long-link (`K`) entries and of PAX
//! extended headers (`x`; `g` when an unpacker asks for its records) into a `Vec`, whatever their
//! size, and collects the sparse map of a GNU sparse (`S`) entry from extension blocks without
//! bound. A few kilobytes of compressed input can therefore demand gigabytes of memory. This
//! module walks the tar headers alongside the `tar` crate and refuses any such header whose data
//! is more than [`MAX_EXTENSION_SIZE`] bytes (for `S`: whose sparse extension blocks together are),
//! before the `tar` crate gets to read it:
//!
//! - [`TarGuard`] is a [`Read`] adapter for streams: it follows the block boundaries as the bytes
//!   pass through it and fails the read that carries the first offending header;
//! - [`check_tar_file`] walks the headers of a seekable tar file with positioned reads.
//!
//! Both use the same walker, which mirrors how `tar` 0.4 finds the next header: a header every 512
//! bytes; the next one at `header + 512 + round_up(size, 512)`, with `size` from the octal or GNU
//! base-256 size field, or from the `size` record of a preceding PAX `x` header (which applies to
//! the next header that is not itself `L`, `K`, `x` or `g`); GNU sparse extension blocks between
//! an `S` header and its data; and the end of the archive at the first all-zero block, after which
//! the `tar` crate reads no more headers and the guard passes the bytes through unexamined.
//! Truncation and corrupt headers are left for the `tar` crate to report, except a size field that
//! cannot be decoded, which both refuse.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// The most bytes of data a GNU long-name (`L`), long-link (`K`), PAX (`x`, `g`) header may have,
/// and the most bytes of sparse extension blocks a GNU sparse (`S`) header may have: 64 KiB.
pub const MAX_EXTENSION_SIZE: u64 = 64 * 1024;

/// Size of a tar block.
const BLOCK: u64 = 512;

/// A tar header refused for being too large, reported as the source of an
/// [`io::ErrorKind::InvalidData`] error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OversizedHeader {
    /// The name in the header (for `L` headers usually `././@LongLink`), raw bytes.
    pub name: Vec<u8>,
    /// The entry type byte: `L`, `K`, `x`, `g` or `S`.
    pub kind: u8,
    /// The size of its data in bytes; for `S`, the bytes of sparse extension blocks read so far.
    pub size: u64,
}

impl OversizedHeader {
    /// The entry type, quoted for a message: `'L'`, or `0x..` when not printable.
    pub fn kind_str(&self) -> String {
        if self.kind.is_ascii_graphic() {
            format!("'{}'", self.kind as char)
        } else {
            format!("{:#04x}", self.kind)
        }
    }

    /// What is too large, without the header name: `of type 'L' is N bytes` or
    /// `of type 'S' has N bytes of sparse extension blocks`.
    pub fn what(&self) -> String {
        if self.kind == b'S' {
            format!(
                "of type 'S' has {} bytes of sparse extension blocks",
                self.size
            )
        } else {
            format!("of type {} is {} bytes", self.kind_str(), self.size)
        }
    }

    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

impl fmt::Display for OversizedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tar header \"{}\" {}; at most {MAX_EXTENSION_SIZE} are allowed",
            String::from_utf8_lossy(&self.name).escape_debug(),
            self.what(),
        )
    }
}

impl std::error::Error for OversizedHeader {}

/// Finds the [`OversizedHeader`] inside an error returned by [`TarGuard`] or [`check_tar_file`].
pub fn oversized(err: &io::Error) -> Option<&OversizedHeader> {
    err.get_ref()?.downcast_ref::<OversizedHeader>()
}

/// What the walker needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// One whole 512-byte block (a header or a GNU sparse extension block).
    Block,
    /// This many bytes of PAX records, whole (at most [`MAX_EXTENSION_SIZE`]).
    Records(usize),
    /// Pass over this many bytes (entry data and padding), at least one.
    Skip(u64),
    /// The end of the archive was seen: nothing more is examined.
    End,
}

#[derive(Debug)]
enum State {
    /// The next block is a header.
    Header,
    /// The next block is a GNU sparse extension block of the header `name`; `data` bytes of entry
    /// data follow the last one; `seen` bytes of extension blocks have been read.
    SparseExt { name: Vec<u8>, data: u64, seen: u64 },
    /// The records of a PAX `x` header come next, `len` bytes, then `pad` bytes of padding.
    Records { len: usize, pad: u64 },
    /// Bytes to pass over.
    Skip(u64),
    /// After the end-of-archive block.
    End,
}

/// Follows the headers of a tar archive, one piece at a time.
#[derive(Debug)]
struct Walker {
    state: State,
    /// The records of a PAX `x` header waiting for the entry they describe: `Some(size)` with the
    /// `size` record as the `tar` crate reads it (`None` when there is none).
    pax: Option<Option<u64>>,
}

impl Walker {
    fn new() -> Walker {
        Walker {
            state: State::Header,
            pax: None,
        }
    }

    fn need(&self) -> Need {
        match self.state {
            State::Header | State::SparseExt { .. } => Need::Block,
            State::Records { len, .. } => Need::Records(len),
            State::Skip(n) => Need::Skip(n),
            State::End => Need::End,
        }
    }

    /// Pass over `len` bytes of entry data and its padding to the next block boundary.
    fn skip_data(&mut self, len: u64) -> io::Result<()> {
        let padded = len
            .checked_add(BLOCK - 1)
            .ok_or_else(|| invalid("tar entry size overflows"))?
            & !(BLOCK - 1);
        self.state = if padded == 0 {
            State::Header
        } else {
            State::Skip(padded)
        };
        Ok(())
    }

    /// Take the block asked for by [`Need::Block`].
    fn block(&mut self, block: &[u8; 512]) -> io::Result<()> {
        match std::mem::replace(&mut self.state, State::Header) {
            State::Header => self.header(block),
            State::SparseExt { name, data, seen } => {
                let seen = seen + BLOCK;
                if seen > MAX_EXTENSION_SIZE {
                    let (kind, size) = (b'S', seen);
                    return Err(OversizedHeader { name, kind, size }.into_io());
                }
                // `isextended` of a GNU sparse extension block.
                if block[504] == 1 {
                    self.state = State::SparseExt { name, data, seen };
                    Ok(())
                } else {
                    self.skip_data(data)
                }
            }
            _ => unreachable!("a block was not asked for"),
        }
    }

    fn header(&mut self, h: &[u8; 512]) -> io::Result<()> {
        if h.iter().all(|b| *b == 0) {
            self.state = State::End;
            return Ok(());
        }
        let kind = h[156];
        let extension = matches!(kind, b'L' | b'K' | b'x' | b'g');
        let ustar = &h[257..263] == b"ustar\0" && &h[263..265] == b"00";
        let gnu = &h[257..263] == b"ustar " && &h[263..265] == b" \0";
        let mut size = size_field(&h[124..136]).ok_or_else(|| {
            invalid(format!(
                "tar header \"{}\" has an invalid size field",
                String::from_utf8_lossy(&header_name(h, ustar)).escape_debug()
            ))
        })?;
        if extension && size > MAX_EXTENSION_SIZE {
            let name = header_name(h, ustar);
            return Err(OversizedHeader { name, kind, size }.into_io());
        }
        if !extension {
            if let Some(Some(pax_size)) = self.pax {
                size = pax_size;
            }
        }
        let recognized = ustar || gnu;
        match kind {
            // Read by the `tar` crate as part of the next entry.
            b'L' | b'K' if recognized => self.skip_data(size),
            b'x' if recognized => {
                // A second `x` for the same entry is an error for the `tar` crate; the walker
                // keeps the latest.
                let pad = size.next_multiple_of(BLOCK) - size;
                self.state = State::Records {
                    len: size as usize,
                    pad,
                };
                Ok(())
            }
            _ => {
                // The `tar` crate hands out this entry, with the PAX records collected so far.
                self.pax = None;
                if kind == b'S' && gnu && h[482] == 1 {
                    let name = header_name(h, false);
                    self.state = State::SparseExt {
                        name,
                        data: size,
                        seen: 0,
                    };
                    Ok(())
                } else {
                    self.skip_data(size)
                }
            }
        }
    }

    /// Take the PAX records asked for by [`Need::Records`].
    fn records(&mut self, data: &[u8]) {
        let State::Records { pad, .. } = self.state else {
            unreachable!("records were not asked for");
        };
        self.pax = Some(pax_size(data));
        self.state = if pad == 0 {
            State::Header
        } else {
            State::Skip(pad)
        };
    }

    /// Record that `n` bytes asked for by [`Need::Skip`] went by.
    fn skipped(&mut self, n: u64) {
        let State::Skip(left) = self.state else {
            unreachable!("a skip was not asked for");
        };
        self.state = if left == n {
            State::Header
        } else {
            State::Skip(left - n)
        };
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// The name in a header: `name`, with the ustar `prefix` before it when `ustar`.
fn header_name(h: &[u8; 512], ustar: bool) -> Vec<u8> {
    let name = until_nul(&h[..100]);
    if ustar {
        let prefix = until_nul(&h[345..500]);
        if !prefix.is_empty() {
            return [prefix, b"/", name].concat();
        }
    }
    name.to_vec()
}

fn until_nul(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    &field[..end]
}

/// Decodes a numeric header field as the `tar` crate does: GNU base-256 when the high bit of the
/// first byte is set (the last 8 bytes, big-endian), else octal text up to the first NUL, with
/// surrounding whitespace trimmed.
fn size_field(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let tail = &field[field.len() - 8..];
        return Some(tail.iter().fold(0, |n, b| (n << 8) | u64::from(*b)));
    }
    let text = std::str::from_utf8(until_nul(field)).ok()?;
    u64::from_str_radix(text.trim(), 8).ok()
}

/// The `size` record of PAX extended header data, as the `tar` crate reads it: records are split
/// at newlines and read in order until an empty line; a malformed record, or a `size` record whose
/// value is not a number, ends the search with nothing; the first `size` record wins.
fn pax_size(data: &[u8]) -> Option<u64> {
    for line in data.split(|b| *b == b'\n') {
        if line.is_empty() {
            return None;
        }
        let space = line.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&line[..space]).ok()?.parse().ok()?;
        if line.len() + 1 != len {
            return None;
        }
        let record = &line[space + 1..];
        let equals = record.iter().position(|b| *b == b'=')?;
        if &record[..equals] != b"size" {
            continue;
        }
        return std::str::from_utf8(&record[equals + 1..])
            .ok()?
            .parse()
            .ok();
    }
    None
}

/// A [`Read`] adapter that follows the tar headers in the bytes read through it and fails, with an
/// [`io::ErrorKind::InvalidData`] error whose source is an [`OversizedHeader`], the read that
/// brings in a header refused by this module. Errors are sticky: every later read fails the same
/// way. Past the end-of-archive block the bytes pass through unexamined.
#[derive(Debug)]
pub struct TarGuard<R> {
    inner: R,
    walker: Walker,
    /// The part of the block or PAX records being collected.
    buf: Vec<u8>,
    /// The first error, repeated by later reads.
    failed: Option<(io::ErrorKind, String)>,
    /// The refused header, if that was the error.
    oversized: Option<OversizedHeader>,
}

impl<R> TarGuard<R> {
    /// Guard the tar stream `inner`, which must be read from its start.
    pub fn new(inner: R) -> TarGuard<R> {
        TarGuard {
            inner,
            walker: Walker::new(),
            buf: Vec::new(),
            failed: None,
            oversized: None,
        }
    }

    /// The header refused, once a read has failed because of it.
    pub fn oversized(&self) -> Option<&OversizedHeader> {
        self.oversized.as_ref()
    }

    /// Whether the end-of-archive block has gone by.
    pub fn at_end(&self) -> bool {
        self.walker.need() == Need::End
    }

    /// The wrapped reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Unwrap the reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Follow the headers through `data`, which was just read.
    fn follow(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.walker.need() {
                Need::End => return Ok(()),
                Need::Skip(left) => {
                    let n = data.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.walker.skipped(n as u64);
                    data = &data[n..];
                }
                Need::Block => {
                    let n = data.len().min(BLOCK as usize - self.buf.len());
                    self.buf.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if self.buf.len() == BLOCK as usize {
                        let block: [u8; 512] = self.buf[..].try_into().expect("one block");
                        self.buf.clear();
                        self.walker.block(&block)?;
                    }
                }
                Need::Records(len) => {
                    if len == 0 {
                        self.walker.records(&[]);
                        continue;
                    }
                    let n = data.len().min(len - self.buf.len());
                    self.buf.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if self.buf.len() == len {
                        self.walker.records(&self.buf);
                        self.buf.clear();
                    }
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, msg)) = &self.failed {
            return Err(io::Error::new(*kind, msg.clone()));
        }
        let n = self.inner.read(buf)?;
        if let Err(e) = self.follow(&buf[..n]) {
            self.failed = Some((e.kind(), e.to_string()));
            self.oversized = oversized(&e).cloned();
            return Err(e);
        }
        Ok(n)
    }
}

/// Walks the headers of the uncompressed tar file `file` from its start with positioned reads
/// (the file offset is not used) and fails, with an [`io::ErrorKind::InvalidData`] error whose
/// source is an [`OversizedHeader`], on the first header refused by this module, or on a size field
/// that cannot be decoded. Stops without error at the end-of-archive block or where the file ends
/// (truncation is left for the tar reader to report).
pub fn check_tar_file(file: &File) -> io::Result<()> {
    let mut walker = Walker::new();
    let mut pos: u64 = 0;
    let mut records = Vec::new();
    loop {
        match walker.need() {
            Need::End => return Ok(()),
            Need::Skip(n) => {
                let Some(next) = pos.checked_add(n) else {
                    return Ok(());
                };
                walker.skipped(n);
                pos = next;
            }
            Need::Block => {
                let mut block = [0u8; 512];
                if !read_full_at(file, &mut block, pos)? {
                    return Ok(());
                }
                pos += BLOCK;
                walker.block(&block)?;
            }
            Need::Records(len) => {
                records.resize(len, 0);
                if !read_full_at(file, &mut records, pos)? {
                    return Ok(());
                }
                pos += len as u64;
                walker.records(&records);
            }
        }
    }
}

/// Fills `buf` from `pos`; `false` when the file ends first.
fn read_full_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<bool> {
    match file.read_exact_at(buf, pos) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
