//! Decoding of one tar entry's header and PAX records into what the unpacker needs.

use std::io::Read;

use tar::EntryType;

use super::error::{EntryName, LayerError};

/// What kind of filesystem object an entry creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Regular file (also contiguous files); `size` is the content length in bytes.
    File { size: u64 },
    /// Directory.
    Dir,
    /// Symbolic link with its target, verbatim.
    Symlink { target: Vec<u8> },
    /// Hard link to an earlier entry of this layer, as written in the archive.
    HardLink { target: Vec<u8> },
    /// Character device.
    Char { major: u32, minor: u32 },
    /// Block device.
    Block { major: u32, minor: u32 },
    /// Named pipe.
    Fifo,
}

/// The metadata of one entry, decoded from its header and PAX records.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    /// The raw entry name (GNU long name and PAX `path` applied).
    pub name: Vec<u8>,
    /// What to create.
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`0o7777` mask).
    pub mode: u32,
    /// Owner (PAX `uid` applied).
    pub uid: u32,
    /// Group (PAX `gid` applied).
    pub gid: u32,
    /// Modification time: seconds and nanoseconds since the epoch (PAX `mtime` if present).
    pub mtime: (i64, i64),
    /// Extended attributes from PAX `SCHILY.xattr.*` records: (name, value).
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// The result of decoding an entry.
pub(crate) enum Decoded {
    /// An entry to apply.
    Entry(Meta),
    /// A PAX global header, which carries nothing for the unpacker.
    Skip,
}

/// Decode the header and PAX records of `entry`.
pub(crate) fn decode<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Decoded, LayerError> {
    let name = entry.path_bytes().into_owned();
    let link = entry.link_name_bytes().map(|l| l.into_owned());
    let header = entry.header();
    let entry_type = header.entry_type();
    let bad = |field: &'static str| LayerError::BadHeader {
        entry: EntryName(name.clone()),
        field,
    };
    let need_link = || match &link {
        Some(l) if !l.is_empty() => Ok(l.clone()),
        _ => Err(LayerError::MissingLinkTarget {
            entry: EntryName(name.clone()),
        }),
    };
    let device = || -> Result<(u32, u32), LayerError> {
        let major = header.device_major().map_err(|_| bad("device number"))?;
        let minor = header.device_minor().map_err(|_| bad("device number"))?;
        Ok((major.unwrap_or(0), minor.unwrap_or(0)))
    };
    let kind = match entry_type {
        EntryType::XGlobalHeader => return Ok(Decoded::Skip),
        // A pre-POSIX regular entry with a trailing slash is a directory.
        EntryType::Regular if name.ends_with(b"/") => Kind::Dir,
        EntryType::Regular | EntryType::Continuous => Kind::File { size: entry.size() },
        // The tar reader fills the holes of a GNU sparse file with zeros that are not part of
        // the stream, so its content would escape the size limit: a few bytes of header can
        // describe terabytes.
        EntryType::GNUSparse => {
            return Err(LayerError::Unsupported {
                entry: EntryName(name),
                kind: "gnu sparse file".to_owned(),
            })
        }
        EntryType::Directory => Kind::Dir,
        EntryType::Symlink => Kind::Symlink {
            target: need_link()?,
        },
        EntryType::Link => Kind::HardLink {
            target: need_link()?,
        },
        EntryType::Char => {
            let (major, minor) = device()?;
            Kind::Char { major, minor }
        }
        EntryType::Block => {
            let (major, minor) = device()?;
            Kind::Block { major, minor }
        }
        EntryType::Fifo => Kind::Fifo,
        other => {
            let byte = other.as_byte();
            let kind = if byte.is_ascii_graphic() {
                format!("'{}'", byte as char)
            } else {
                format!("{byte:#04x}")
            };
            return Err(LayerError::Unsupported {
                entry: EntryName(name),
                kind,
            });
        }
    };
    let mode = header.mode().map_err(|_| bad("mode"))? & 0o7777;
    let uid = id(header.uid().map_err(|_| bad("uid"))?).ok_or_else(|| bad("uid"))?;
    let gid = id(header.gid().map_err(|_| bad("gid"))?).ok_or_else(|| bad("gid"))?;
    let header_mtime = header.mtime().map_err(|_| bad("mtime"))?;
    let mut mtime = (i64::try_from(header_mtime).map_err(|_| bad("mtime"))?, 0);

    let mut xattrs = Vec::new();
    let pax = entry.pax_extensions().map_err(LayerError::Corrupt)?;
    for ext in pax.into_iter().flatten() {
        let ext = ext.map_err(LayerError::Corrupt)?;
        let key = ext.key_bytes();
        if let Some(xname) = key.strip_prefix(b"SCHILY.xattr.") {
            let xname = String::from_utf8(xname.to_vec()).map_err(|_| bad("xattr name"))?;
            if xname.is_empty() || xname.contains('\0') {
                return Err(bad("xattr name"));
            }
            xattrs.push((xname, ext.value_bytes().to_vec()));
        } else if key == b"mtime" {
            mtime = parse_pax_time(ext.value_bytes()).ok_or_else(|| bad("mtime"))?;
        } else if key.starts_with(b"GNU.sparse.") {
            // PAX sparse formats (0.x/1.0) keep a sparse map in the data that the tar reader
            // does not expand; unpacking it as-is would produce wrong content.
            let kind = "pax sparse file".to_owned();
            return Err(LayerError::Unsupported {
                entry: EntryName(name),
                kind,
            });
        } else if key.starts_with(b"LIBARCHIVE.xattr.") {
            tracing::debug!(entry = %EntryName(name.clone()), "ignoring libarchive xattr record");
        }
    }
    Ok(Decoded::Entry(Meta {
        name,
        kind,
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    }))
}

/// A uid or gid as `u32`; `u32::MAX` is refused because it means "unchanged" to `chown`.
fn id(raw: u64) -> Option<u32> {
    u32::try_from(raw).ok().filter(|id| *id != u32::MAX)
}

/// Parse a PAX time value `[-]SECONDS[.FRACTION]` into (seconds, nanoseconds), with the
/// nanoseconds in `0..1e9` (so `-1.5` is `(-2, 500_000_000)`).
pub(crate) fn parse_pax_time(value: &[u8]) -> Option<(i64, i64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (secs, frac) = match text.split_once('.') {
        Some((s, f)) => (s, f),
        None => (text, ""),
    };
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, digit) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(digit - b'0') * 10_i64.pow(8 - i as u32);
    }
    if !negative {
        return Some((secs, nanos));
    }
    if nanos == 0 {
        Some((-secs, 0))
    } else {
        Some((-secs - 1, 1_000_000_000 - nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_pax_time;

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time(b"1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(
            parse_pax_time(b"1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_pax_time(b"1.1234567891"), Some((1, 123_456_789)));
        assert_eq!(parse_pax_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_pax_time(b"-3"), Some((-3, 0)));
        assert_eq!(parse_pax_time(b"x"), None);
        assert_eq!(parse_pax_time(b".5"), None);
        assert_eq!(parse_pax_time(b"1.5x"), None);
    }
}
