//! Transport: frames over any byte channel (`Read + Write`).
//!
//! The channel today is a virtio-serial port (virtio-console, "multiport" mode): in the guest a
//! character device, `/dev/vportNpM` (named through `/sys/class/virtio-ports/vportNpM/name`); on
//! the host the Unix socket of QEMU's `-chardev socket,server=on,wait=off` behind
//! `-device virtserialport,name=isola.agent`. A vsock stream would fit the same way.
//!
//! The host must never hang on a guest: [`Transport::recv_deadline`] gives up at a deadline
//! (the stream needs [`ReadTimeout`]). A timeout, an I/O error or a bad frame header can leave the
//! byte stream in the middle of a frame, so after any of them the transport is *poisoned*: every
//! later call fails with [`TransportError::Poisoned`] and the channel must be dropped. A whole
//! frame whose payload is not a valid message ([`FrameError::BadPayload`]) does not poison: the
//! next frame can still be read.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::frame::{self, FrameError, Header, HEADER_LEN};
use crate::message::Message;

/// Why a message could not be sent or received.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The peer closed the channel at a frame boundary.
    #[error("channel closed by the peer")]
    Closed,
    /// No complete frame arrived before the deadline.
    #[error("no message within {0:?}")]
    Timeout(Duration),
    /// The bytes received are not a valid frame or message.
    #[error("bad frame from the peer")]
    Frame(#[from] FrameError),
    /// Reading or writing the channel failed.
    #[error("channel {op} failed")]
    Io {
        /// `read`, `write` or `set timeout`.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An earlier timeout or framing error left the stream unusable.
    #[error("channel unusable after an earlier error")]
    Poisoned,
}

/// A stream whose blocking reads can be bounded in time (like [`UnixStream::set_read_timeout`]).
pub trait ReadTimeout {
    /// Sets (`Some`, never zero) or clears (`None`) the timeout of each following `read`.
    ///
    /// # Errors
    /// The OS error of the underlying call.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl ReadTimeout for UnixStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
}

impl<T: ReadTimeout> ReadTimeout for &T {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }
}

/// Sends and receives whole [`Message`]s, one per frame, over `T`.
#[derive(Debug)]
pub struct Transport<T> {
    io: T,
    poisoned: bool,
}

impl<T: Read + Write> Transport<T> {
    /// Wraps a connected byte channel.
    pub fn new(io: T) -> Transport<T> {
        Transport {
            io,
            poisoned: false,
        }
    }

    /// The underlying channel.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Encodes `msg` as one frame and writes it whole (then flushes).
    ///
    /// # Errors
    /// [`TransportError::Frame`] (message too large), [`TransportError::Io`],
    /// [`TransportError::Poisoned`]. A failed write poisons the transport.
    pub fn send(&mut self, msg: &Message) -> Result<(), TransportError> {
        if self.poisoned {
            return Err(TransportError::Poisoned);
        }
        let bytes = frame::encode(msg)?;
        let r = self.io.write_all(&bytes).and_then(|()| self.io.flush());
        r.map_err(|source| {
            self.poisoned = true;
            TransportError::Io {
                op: "write",
                source,
            }
        })
    }

    /// Blocks until one whole message has arrived.
    ///
    /// # Errors
    /// [`TransportError::Closed`] on EOF between frames; [`TransportError::Frame`] on a bad
    /// header, payload, or EOF inside a frame ([`FrameError::Truncated`]); [`TransportError::Io`].
    pub fn recv(&mut self) -> Result<Message, TransportError> {
        self.recv_with(|_| Ok(()))
    }

    fn recv_with(
        &mut self,
        mut before_read: impl FnMut(&T) -> Result<(), TransportError>,
    ) -> Result<Message, TransportError> {
        if self.poisoned {
            return Err(TransportError::Poisoned);
        }
        let r = self.read_message(&mut before_read);
        // A whole frame with a bad payload leaves the stream in step; anything else may not.
        if matches!(
            r,
            Err(TransportError::Timeout(_) | TransportError::Frame(_) | TransportError::Io { .. })
        ) && !matches!(r, Err(TransportError::Frame(FrameError::BadPayload(_))))
        {
            self.poisoned = true;
        }
        r
    }

    fn read_message(
        &mut self,
        before_read: &mut impl FnMut(&T) -> Result<(), TransportError>,
    ) -> Result<Message, TransportError> {
        let mut hdr = [0u8; HEADER_LEN];
        let got = self.read_full(&mut hdr, before_read)?;
        if got == 0 {
            return Err(TransportError::Closed);
        }
        if got < HEADER_LEN {
            return Err(FrameError::Truncated {
                need: HEADER_LEN,
                have: got,
            }
            .into());
        }
        let h = Header::parse(&hdr)?;
        let mut payload = vec![0u8; h.len as usize];
        let got = self.read_full(&mut payload, before_read)?;
        if got < payload.len() {
            return Err(FrameError::Truncated {
                need: HEADER_LEN + payload.len(),
                have: HEADER_LEN + got,
            }
            .into());
        }
        Ok(frame::decode_payload(&payload)?)
    }

    /// Fills `buf` unless EOF comes first; returns the bytes read.
    fn read_full(
        &mut self,
        buf: &mut [u8],
        before_read: &mut impl FnMut(&T) -> Result<(), TransportError>,
    ) -> Result<usize, TransportError> {
        let mut n = 0;
        while n < buf.len() {
            before_read(&self.io)?;
            match self.io.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A read timeout: `before_read` decides whether the deadline has passed.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(source) => return Err(TransportError::Io { op: "read", source }),
            }
        }
        Ok(n)
    }
}

impl<T: Read + Write + ReadTimeout> Transport<T> {
    /// Like [`Transport::recv`], but fails with [`TransportError::Timeout`] when no whole
    /// message has arrived by `deadline` (a silent or trickling peer cannot hold the caller).
    ///
    /// # Errors
    /// As [`Transport::recv`], plus [`TransportError::Timeout`].
    pub fn recv_deadline(&mut self, deadline: Instant) -> Result<Message, TransportError> {
        let start = Instant::now();
        let r = self.recv_with(|io| {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TransportError::Timeout(start.elapsed()));
            }
            io.set_read_timeout(Some(left))
                .map_err(|source| TransportError::Io {
                    op: "set timeout",
                    source,
                })
        });
        if !self.poisoned {
            // Leave the stream as we found it: blocking without a timeout.
            let _ = self.io.set_read_timeout(None);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode, MAX_PAYLOAD};
    use crate::message::Request;
    use std::io::Cursor;

    /// An in-memory duplex: reads from `input`, writes to `output`.
    struct Duplex {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }
    impl Read for Duplex {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.input.read(b)
        }
    }
    impl Write for Duplex {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.output.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    fn duplex(input: Vec<u8>) -> Transport<Duplex> {
        Transport::new(Duplex {
            input: Cursor::new(input),
            output: Vec::new(),
        })
    }

    const PING: Message = Message::Request {
        id: 1,
        body: Request::Ping,
    };

    #[test]
    fn send_then_recv() {
        let mut a = duplex(Vec::new());
        a.send(&PING).unwrap();
        let mut b = duplex(a.get_ref().output.clone());
        assert_eq!(b.recv().unwrap(), PING);
        assert!(matches!(b.recv(), Err(TransportError::Closed)));
    }

    #[test]
    fn truncated_stream_is_an_error_not_a_close() {
        let bytes = encode(&PING).unwrap();
        let mut t = duplex(bytes[..bytes.len() - 1].to_vec());
        let err = t.recv().unwrap_err();
        assert!(
            matches!(err, TransportError::Frame(FrameError::Truncated { .. })),
            "{err}"
        );
        assert!(matches!(t.recv(), Err(TransportError::Poisoned)));
    }

    #[test]
    fn oversized_is_refused_before_allocation() {
        let mut bytes = encode(&PING).unwrap();
        bytes[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = duplex(bytes).recv().unwrap_err();
        assert!(matches!(
            err,
            TransportError::Frame(FrameError::TooLarge {
                max: MAX_PAYLOAD,
                ..
            })
        ));
    }

    #[test]
    fn garbage_poisons() {
        let mut t = duplex(b"\x00\x01garbage garbage".to_vec());
        assert!(matches!(
            t.recv(),
            Err(TransportError::Frame(FrameError::BadMagic(_)))
        ));
        assert!(matches!(t.send(&PING), Err(TransportError::Poisoned)));
    }

    #[test]
    fn bad_payload_keeps_the_stream_in_step() {
        let mut bytes = vec![b'I', b'S', 1, 0, 0, 0, 0, 2, b'{', b'}'];
        bytes.extend(encode(&PING).unwrap());
        let mut t = duplex(bytes);
        assert!(matches!(
            t.recv(),
            Err(TransportError::Frame(FrameError::BadPayload(_)))
        ));
        assert_eq!(t.recv().unwrap(), PING);
    }

    #[test]
    fn silent_peer_times_out() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut t = Transport::new(a);
        let start = Instant::now();
        let err = t
            .recv_deadline(Instant::now() + Duration::from_millis(100))
            .unwrap_err();
        assert!(matches!(err, TransportError::Timeout(_)), "{err}");
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn trickling_peer_times_out() {
        // A peer that sends a valid header, then one byte at a time, too slowly.
        let (a, mut b) = UnixStream::pair().unwrap();
        let bytes = encode(&PING).unwrap();
        let writer = std::thread::spawn(move || {
            for byte in bytes {
                if b.write_all(&[byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(30));
            }
        });
        let mut t = Transport::new(a);
        let err = t
            .recv_deadline(Instant::now() + Duration::from_millis(150))
            .unwrap_err();
        assert!(matches!(err, TransportError::Timeout(_)), "{err}");
        drop(t);
        writer.join().unwrap();
    }

    #[test]
    fn deadline_recv_over_socket() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut tx = Transport::new(b);
        let mut rx = Transport::new(a);
        tx.send(&PING).unwrap();
        let got = rx
            .recv_deadline(Instant::now() + Duration::from_secs(5))
            .unwrap();
        assert_eq!(got, PING);
    }
}
