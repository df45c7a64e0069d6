//! A writer of `newc` cpio archives (the format the Linux kernel unpacks as an initramfs).
//!
//! Only what an initramfs needs: directories, regular files and device nodes, written in the
//! order given, with inode numbers counted from 1, owner 0:0, mtime 0 and one link each, so the
//! same entries always give the same bytes. Layout of one entry (the kernel's
//! `Documentation/driver-api/early-userspace/buffer-format.rst`): the magic `070701`, 13 fields
//! of 8 hexadecimal digits, the NUL-terminated name padded to a multiple of 4 bytes (counted from
//! the start of the header), then the data, padded the same way; the archive ends with the entry
//! `TRAILER!!!`.

use std::io::{self, Read, Write};

/// Size of an entry's header in bytes.
const HEADER_LEN: usize = 110;

/// The name of the last entry.
const TRAILER: &str = "TRAILER!!!";

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// Writes a `newc` archive to `W`; [`Writer::finish`] adds the trailer.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
}

/// What one entry's header says besides its name.
struct Meta {
    mode: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
}

impl<W: Write> Writer<W> {
    /// A writer that starts an archive on `out`.
    pub fn new(out: W) -> Self {
        Writer {
            out,
            next_ino: 1,
            written: 0,
        }
    }

    /// A directory `name` (relative, no leading `/`) with permission bits `perm` (e.g. `0o755`,
    /// `0o1777`).
    ///
    /// # Errors
    /// A write error of the underlying writer; `InvalidInput` for a bad name.
    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.header(
            name,
            &Meta {
                mode: S_IFDIR | (perm & 0o7777),
                nlink: 2,
                size: 0,
                rdev: (0, 0),
            },
        )
    }

    /// A character device `name` with permission bits `perm` and device number `major:minor`.
    ///
    /// # Errors
    /// As [`Writer::dir`].
    pub fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.header(
            name,
            &Meta {
                mode: S_IFCHR | (perm & 0o7777),
                nlink: 1,
                size: 0,
                rdev: (major, minor),
            },
        )
    }

    /// A regular file `name` with permission bits `perm` and the `size` bytes read from `data`.
    ///
    /// # Errors
    /// As [`Writer::dir`]; `InvalidInput` when `size` does not fit newc's 32-bit field,
    /// `UnexpectedEof` when `data` holds fewer than `size` bytes.
    pub fn file(&mut self, name: &str, perm: u32, size: u64, data: impl Read) -> io::Result<()> {
        let size32 = u32::try_from(size).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name}: {size} bytes is too large for a newc archive (4 GiB at most)"),
            )
        })?;
        self.header(
            name,
            &Meta {
                mode: S_IFREG | (perm & 0o7777),
                nlink: 1,
                size: size32,
                rdev: (0, 0),
            },
        )?;
        let copied = io::copy(&mut data.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name}: expected {size} bytes, read {copied}"),
            ));
        }
        self.written += copied;
        self.pad()
    }

    /// Writes the trailer and returns the underlying writer.
    ///
    /// # Errors
    /// A write error of the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.next_ino = 0;
        self.header(
            TRAILER,
            &Meta {
                mode: 0,
                nlink: 1,
                size: 0,
                rdev: (0, 0),
            },
        )?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn header(&mut self, name: &str, m: &Meta) -> io::Result<()> {
        if name.is_empty() || name.starts_with('/') || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cpio entry name {name:?}: must be relative and non-empty"),
            ));
        }
        let ino = self.next_ino;
        if ino != 0 {
            self.next_ino += 1;
        }
        let name_size = name.len() + 1;
        let fields: [u32; 13] = [
            ino,
            m.mode,
            0, // uid
            0, // gid
            m.nlink,
            0, // mtime
            m.size,
            0, // devmajor of the file system (unused)
            0, // devminor
            m.rdev.0,
            m.rdev.1,
            name_size as u32,
            0, // check (only for the 070702 "crc" format)
        ];
        let mut h = String::with_capacity(HEADER_LEN);
        h.push_str("070701");
        for f in fields {
            h.push_str(&format!("{f:08X}"));
        }
        debug_assert_eq!(h.len(), HEADER_LEN);
        self.out.write_all(h.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.written += (HEADER_LEN + name_size) as u64;
        self.pad()
    }

    /// Pads with NULs to the next multiple of 4 bytes.
    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.out.write_all(&[0u8; 3][..n])?;
        self.written += n as u64;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One parsed entry: name, mode, rdev, data.
    pub(crate) type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// A strict newc reader, for the tests: checks magic, padding and the trailer.
    pub(crate) fn parse(mut b: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let start_len = b.len();
        loop {
            assert_eq!((start_len - b.len()) % 4, 0, "entry not 4-byte aligned");
            assert!(b.len() >= HEADER_LEN, "truncated header");
            assert_eq!(&b[..6], b"070701");
            let field = |i: usize| {
                let s = std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap();
                u32::from_str_radix(s, 16).unwrap()
            };
            let (mode, size, rmaj, rmin, nsize) =
                (field(1), field(6), field(9), field(10), field(11));
            assert_eq!(field(2), 0, "uid");
            assert_eq!(field(5), 0, "mtime");
            let name_end = HEADER_LEN + nsize as usize;
            let name = std::str::from_utf8(&b[HEADER_LEN..name_end - 1])
                .unwrap()
                .to_owned();
            assert_eq!(b[name_end - 1], 0);
            let data_start = name_end.next_multiple_of(4);
            assert!(b[name_end..data_start].iter().all(|&c| c == 0));
            let data_end = data_start + size as usize;
            let data = b[data_start..data_end].to_vec();
            let next = data_end.next_multiple_of(4);
            b = &b[next.min(b.len())..];
            if name == TRAILER {
                assert!(b.is_empty(), "bytes after the trailer");
                return out;
            }
            out.push((name, mode, (rmaj, rmin), data));
        }
    }

    #[test]
    fn round_trip_and_alignment() {
        let mut w = Writer::new(Vec::new());
        w.dir("dev", 0o755).unwrap();
        w.char_device("dev/console", 0o600, 5, 1).unwrap();
        w.file("init", 0o755, 5, &b"hello"[..]).unwrap();
        w.dir("tmp", 0o1777).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let e = parse(&bytes);
        let names: Vec<_> = e.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["dev", "dev/console", "init", "tmp"]);
        assert_eq!(e[0].1, 0o040755);
        assert_eq!(e[1].1, 0o020600);
        assert_eq!(e[1].2, (5, 1));
        assert_eq!(e[2].1, 0o100755);
        assert_eq!(e[2].3, b"hello");
        assert_eq!(e[3].1, 0o041777);
    }

    #[test]
    fn deterministic() {
        let build = || {
            let mut w = Writer::new(Vec::new());
            w.dir("proc", 0o755).unwrap();
            w.file("init", 0o755, 3, &b"abc"[..]).unwrap();
            w.finish().unwrap()
        };
        assert_eq!(build(), build());
    }

    #[test]
    fn refuses_bad_input() {
        let mut w = Writer::new(Vec::new());
        assert!(w.dir("/abs", 0o755).is_err());
        assert!(w.dir("", 0o755).is_err());
        let e = w.file("short", 0o644, 10, &b"abc"[..]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(w.file("big", 0o644, 1 << 33, io::empty()).is_err());
    }
}
