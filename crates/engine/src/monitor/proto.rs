//! The monitor's socket protocol, spoken by `isola attach`, `run` and `start -a`.
//!
//! The client first sends one line of JSON, a [`Hello`]. Then both sides send frames:
//! one byte of [`Kind`], a big-endian `u32` length, and that many bytes of payload. Frames are at most
//! [`MAX_FRAME`] bytes.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// Largest frame payload, in bytes.
pub const MAX_FRAME: usize = 1 << 20;
/// Bytes before a frame's payload: its kind and its length.
pub const HEADER_LEN: usize = 5;

/// What an attaching client wants.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Send stdin frames to the container.
    pub stdin: bool,
    /// Receive stdout frames.
    pub stdout: bool,
    /// Receive stderr frames.
    pub stderr: bool,
}

/// Frame kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Client → monitor: bytes for the container's stdin.
    Stdin = 0,
    /// Monitor → client: container stdout (or the terminal's output).
    Stdout = 1,
    /// Monitor → client: container stderr.
    Stderr = 2,
    /// Monitor → client: the container ended; payload is an [`Exit`] as JSON.
    Exit = 3,
    /// Client → monitor: end of stdin.
    StdinClose = 4,
    /// Client → monitor: terminal size, 2 × big-endian u16 (rows, columns).
    Resize = 5,
    /// Monitor → client: the container's program started.
    Started = 6,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Kind::Stdin,
            1 => Kind::Stdout,
            2 => Kind::Stderr,
            3 => Kind::Exit,
            4 => Kind::StdinClose,
            5 => Kind::Resize,
            6 => Kind::Started,
            _ => return None,
        })
    }
}

/// How a run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// Docker's exit code.
    pub code: i32,
    /// Why the container could not run, if it could not.
    pub error: String,
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, kind: Kind, payload: &[u8]) -> io::Result<()> {
    let mut head = [0u8; 5];
    head[0] = kind as u8;
    head[1..].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    w.write_all(&head)?;
    w.write_all(payload)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` at end of stream.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(Kind, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[1..])?;
    let kind = Kind::from_u8(head[0]).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown frame kind {}", head[0]),
        )
    })?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((kind, payload)))
}

/// Parses a frame from the front of `buf`, if complete: returns it and the bytes it used.
pub fn parse_frame(buf: &[u8]) -> io::Result<Option<(Kind, Vec<u8>, usize)>> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let kind = Kind::from_u8(buf[0]).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown frame kind {}", buf[0]),
        )
    })?;
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let end = HEADER_LEN + len;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((kind, buf[HEADER_LEN..end].to_vec(), end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, Kind::Stdout, b"hi").unwrap();
        write_frame(&mut buf, Kind::Resize, &[0, 24, 0, 80]).unwrap();
        let (k, p, used) = parse_frame(&buf).unwrap().unwrap();
        assert_eq!((k, p.as_slice()), (Kind::Stdout, &b"hi"[..]));
        let mut r = &buf[used..];
        let (k, p) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((k, p), (Kind::Resize, vec![0, 24, 0, 80]));
        assert!(read_frame(&mut r).unwrap().is_none());
        assert!(parse_frame(&[9, 0, 0, 0, 0]).is_err());
    }
}
