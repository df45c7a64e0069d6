//! Framing: how one [`Message`](crate::Message) travels as bytes.
//!
//! A frame is an 8-byte header followed by the payload:
//!
//! ```text
//! offset  size  field
//! 0       2     magic, the ASCII bytes "IS"
//! 2       1     protocol version (PROTOCOL_VERSION, currently 1)
//! 3       1     flags, reserved: must be 0
//! 4       4     payload length in bytes, u32 big-endian, at most MAX_PAYLOAD
//! 8       len   payload: one Message as UTF-8 JSON (serde_json)
//! ```
//!
//! The header is checked before the payload is allocated, so a peer cannot make the reader
//! allocate more than [`MAX_PAYLOAD`] bytes, and bytes that are not an isola frame (a guest
//! writing garbage, a serial console attached to the wrong port) fail on the first 2 bytes.
//! The version byte lets both sides refuse an incompatible peer before parsing anything.

use std::fmt;

use crate::message::Message;

/// The two magic bytes that start every frame (`"IS"`).
pub const MAGIC: [u8; 2] = *b"IS";

/// Protocol version carried in every frame header and in [`Message::Hello`].
pub const PROTOCOL_VERSION: u8 = 1;

/// Size of the frame header in bytes.
pub const HEADER_LEN: usize = 8;

/// Largest payload accepted or produced, in bytes (1 MiB). Stream data larger than this must be
/// split over several [`Message::Stream`] frames; see [`MAX_STREAM_CHUNK`](crate::MAX_STREAM_CHUNK).
pub const MAX_PAYLOAD: u32 = 1 << 20;

/// Why bytes could not be turned into a frame or a message (or a message into a frame).
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The first two bytes were not [`MAGIC`]: the peer does not speak this protocol.
    #[error("bad frame magic {0:02x?} (not an isola-proto frame)")]
    BadMagic([u8; 2]),
    /// The frame carries a protocol version this side does not speak.
    #[error("protocol version mismatch: peer sent {got}, this side speaks {want}")]
    VersionMismatch {
        /// The version byte in the frame.
        got: u8,
        /// [`PROTOCOL_VERSION`].
        want: u8,
    },
    /// The reserved flags byte was not 0.
    #[error("reserved frame flags set: {0:#04x}")]
    BadFlags(u8),
    /// The announced (or produced) payload is longer than [`MAX_PAYLOAD`].
    #[error("frame payload of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Payload length in bytes.
        len: u64,
        /// The limit, [`MAX_PAYLOAD`].
        max: u32,
    },
    /// The input ended inside a frame.
    #[error("truncated frame: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed to finish the frame (header + payload).
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The payload is not a valid JSON-encoded [`Message`].
    #[error("invalid message payload")]
    BadPayload(#[source] serde_json::Error),
}

/// A checked frame header.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload length in bytes (≤ [`MAX_PAYLOAD`]).
    pub len: u32,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Header {{ len: {} }}", self.len)
    }
}

impl Header {
    /// Checks the 8 header bytes: magic, version, flags, length bound.
    ///
    /// # Errors
    /// [`FrameError::BadMagic`], [`FrameError::VersionMismatch`], [`FrameError::BadFlags`],
    /// [`FrameError::TooLarge`].
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        if b[0..2] != MAGIC {
            return Err(FrameError::BadMagic([b[0], b[1]]));
        }
        if b[2] != PROTOCOL_VERSION {
            return Err(FrameError::VersionMismatch {
                got: b[2],
                want: PROTOCOL_VERSION,
            });
        }
        if b[3] != 0 {
            return Err(FrameError::BadFlags(b[3]));
        }
        let len = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge {
                len: len.into(),
                max: MAX_PAYLOAD,
            });
        }
        Ok(Header { len })
    }

    /// The 8 header bytes for a payload of `len` bytes (the caller checked the bound).
    fn encode(len: u32) -> [u8; HEADER_LEN] {
        let l = len.to_be_bytes();
        [
            MAGIC[0],
            MAGIC[1],
            PROTOCOL_VERSION,
            0,
            l[0],
            l[1],
            l[2],
            l[3],
        ]
    }
}

/// Encodes `msg` as one complete frame (header + JSON payload).
///
/// # Errors
/// [`FrameError::TooLarge`] when the JSON payload exceeds [`MAX_PAYLOAD`];
/// [`FrameError::BadPayload`] if serialisation fails (it does not for the types in this crate).
pub fn encode(msg: &Message) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; HEADER_LEN];
    serde_json::to_writer(&mut out, msg).map_err(FrameError::BadPayload)?;
    let len = out.len() - HEADER_LEN;
    let len32 = u32::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_PAYLOAD)
        .ok_or(FrameError::TooLarge {
            len: len as u64,
            max: MAX_PAYLOAD,
        })?;
    out[..HEADER_LEN].copy_from_slice(&Header::encode(len32));
    Ok(out)
}

/// Decodes the payload bytes of one frame into a [`Message`].
///
/// # Errors
/// [`FrameError::BadPayload`] when the bytes are not a JSON `Message`.
pub fn decode_payload(payload: &[u8]) -> Result<Message, FrameError> {
    serde_json::from_slice(payload).map_err(FrameError::BadPayload)
}

/// Decodes the first frame in `buf`; returns the message and the number of bytes it used.
///
/// # Errors
/// Every [`FrameError`]; [`FrameError::Truncated`] when `buf` ends before the frame does.
pub fn decode(buf: &[u8]) -> Result<(Message, usize), FrameError> {
    let Some(hdr) = buf.first_chunk::<HEADER_LEN>() else {
        return Err(FrameError::Truncated {
            need: HEADER_LEN,
            have: buf.len(),
        });
    };
    let hdr = Header::parse(hdr)?;
    let end = HEADER_LEN + hdr.len as usize;
    if buf.len() < end {
        return Err(FrameError::Truncated {
            need: end,
            have: buf.len(),
        });
    }
    Ok((decode_payload(&buf[HEADER_LEN..end])?, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Request, Response, WireError, WireErrorCode};

    fn samples() -> Vec<Message> {
        vec![
            Message::Hello {
                version: PROTOCOL_VERSION.into(),
                agent_version: "0.1.0".into(),
                init_ms: 420,
                hello_ms: 480,
            },
            Message::Request {
                id: 7,
                body: Request::Ping,
            },
            Message::Response {
                id: 7,
                result: Ok(Response::Pong),
            },
            Message::Response {
                id: u64::MAX,
                result: Err(WireError::new(WireErrorCode::Unsupported, "no exec yet")),
            },
            Message::Stream {
                stream: 3,
                data: vec![0, 1, 2, 255],
            },
            Message::StreamClose { stream: 3 },
            Message::StreamCredit {
                stream: 3,
                bytes: u32::MAX,
            },
        ]
    }

    #[test]
    fn round_trip() {
        for m in samples() {
            let bytes = encode(&m).unwrap();
            let (back, used) = decode(&bytes).unwrap();
            assert_eq!(back, m);
            assert_eq!(used, bytes.len());
        }
    }

    #[test]
    fn back_to_back_frames() {
        let mut buf = Vec::new();
        for m in samples() {
            buf.extend(encode(&m).unwrap());
        }
        let mut rest = &buf[..];
        let mut n = 0;
        while !rest.is_empty() {
            let (_, used) = decode(rest).unwrap();
            rest = &rest[used..];
            n += 1;
        }
        assert_eq!(n, samples().len());
    }

    #[test]
    fn garbage_is_bad_magic() {
        let err = decode(b"login: root\n").unwrap_err();
        assert!(matches!(err, FrameError::BadMagic([b'l', b'o'])), "{err}");
    }

    #[test]
    fn garbage_payload_is_bad_payload() {
        let mut f = Header::encode(5).to_vec();
        f.extend(b"{{{{{");
        assert!(matches!(decode(&f), Err(FrameError::BadPayload(_))));
    }

    #[test]
    fn oversized_is_refused_from_the_header() {
        let f = Header::encode(MAX_PAYLOAD + 1);
        let err = decode(&f).unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { len, .. } if len == u64::from(MAX_PAYLOAD) + 1)
        );
        let huge = Message::Stream {
            stream: 1,
            data: vec![200; MAX_PAYLOAD as usize],
        };
        assert!(matches!(encode(&huge), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn truncated() {
        let bytes = encode(&samples()[0]).unwrap();
        for cut in 0..bytes.len() {
            let err = decode(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, FrameError::Truncated { .. }),
                "cut {cut}: {err}"
            );
        }
    }

    #[test]
    fn version_mismatch_and_flags() {
        let mut bytes = encode(&samples()[1]).unwrap();
        bytes[2] = PROTOCOL_VERSION + 1;
        let err = decode(&bytes).unwrap_err();
        assert!(
            matches!(err, FrameError::VersionMismatch { got: 2, want: 1 }),
            "{err}"
        );
        bytes[2] = PROTOCOL_VERSION;
        bytes[3] = 0x80;
        assert!(matches!(decode(&bytes), Err(FrameError::BadFlags(0x80))));
    }
}
