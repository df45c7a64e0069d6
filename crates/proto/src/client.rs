//! Host side of the protocol: a request/response client with per-request timeouts.
//!
//! The client owns a [`Transport`] whose stream supports read timeouts (the QEMU chardev socket
//! is a [`UnixStream`](std::os::unix::net::UnixStream)). Every call takes a timeout; a guest that
//! stays silent, sends garbage, closes the channel or panics yields a [`ClientError`], never a
//! hang. Messages that arrive while a call waits for its answer (stream data, events) are kept,
//! up to [`MAX_BACKLOG`], for [`Client::take_backlog`].

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::frame::PROTOCOL_VERSION;
use crate::message::{Event, Message, Request, Response, WireError};
use crate::transport::{ReadTimeout, Transport, TransportError};

/// Most unsolicited messages kept while waiting for an answer; one more is an error
/// ([`ClientError::Backlog`]), so a flooding guest cannot grow the host's memory.
pub const MAX_BACKLOG: usize = 1024;

/// Why a call to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The channel failed (closed, timed out, garbage).
    #[error("agent channel: {what}")]
    Transport {
        /// What the client was doing: `waiting for hello`, `Ping`, ...
        what: String,
        /// The transport failure.
        #[source]
        source: TransportError,
    },
    /// The agent speaks another protocol version.
    #[error("agent speaks protocol version {got}, the host speaks {want}")]
    VersionMismatch {
        /// Version in the agent's Hello.
        got: u32,
        /// [`PROTOCOL_VERSION`].
        want: u32,
    },
    /// The agent answered the request with an error.
    #[error("agent refused {request}")]
    Agent {
        /// The request's name.
        request: String,
        /// The agent's error.
        #[source]
        source: WireError,
    },
    /// The agent answered something that makes no sense at this point.
    #[error("unexpected message from the agent while {what}: {got}")]
    Unexpected {
        /// What the client was doing.
        what: String,
        /// The message, abbreviated.
        got: String,
    },
    /// The agent reported a panic (it powers the VM off next).
    #[error("agent panicked: {0}")]
    AgentPanic(String),
    /// More than [`MAX_BACKLOG`] unsolicited messages arrived during one call.
    #[error("agent flooded the channel with more than {MAX_BACKLOG} unsolicited messages")]
    Backlog,
}

/// The agent's greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    /// Protocol version (equal to [`PROTOCOL_VERSION`] once accepted).
    pub version: u32,
    /// The agent's crate version.
    pub agent_version: String,
    /// Guest uptime when the agent started, in milliseconds (the kernel's share of the boot).
    pub init_ms: u64,
    /// Guest uptime when the agent greeted, in milliseconds.
    pub hello_ms: u64,
}

/// A host-side client of one agent.
#[derive(Debug)]
pub struct Client<T> {
    transport: Transport<T>,
    next_id: u64,
    backlog: VecDeque<Message>,
}

fn short(m: &Message) -> String {
    let mut s = format!("{m:?}");
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

impl<T: Read + Write + ReadTimeout> Client<T> {
    /// A client over a connected channel.
    pub fn new(io: T) -> Client<T> {
        Client {
            transport: Transport::new(io),
            next_id: 1,
            backlog: VecDeque::new(),
        }
    }

    /// Waits up to `timeout` for the agent's [`Message::Hello`] and checks its version.
    ///
    /// # Errors
    /// [`ClientError::Transport`] (timeout, close, garbage), [`ClientError::VersionMismatch`],
    /// [`ClientError::Unexpected`] if the first message is not a Hello.
    pub fn wait_hello(&mut self, timeout: Duration) -> Result<AgentInfo, ClientError> {
        let what = "waiting for hello";
        let m = self
            .transport
            .recv_deadline(Instant::now() + timeout)
            .map_err(|source| ClientError::Transport {
                what: what.into(),
                source,
            })?;
        match m {
            Message::Hello {
                version,
                agent_version,
                init_ms,
                hello_ms,
            } if version == u32::from(PROTOCOL_VERSION) => Ok(AgentInfo {
                version,
                init_ms,
                hello_ms,
                agent_version,
            }),
            Message::Hello { version, .. } => Err(ClientError::VersionMismatch {
                got: version,
                want: PROTOCOL_VERSION.into(),
            }),
            Message::Event(Event::AgentPanic { message }) => Err(ClientError::AgentPanic(message)),
            other => Err(ClientError::Unexpected {
                what: what.into(),
                got: short(&other),
            }),
        }
    }

    /// Sends `body` and waits up to `timeout` for its answer.
    ///
    /// # Errors
    /// [`ClientError::Agent`] when the agent answers with an error, and every failure of the
    /// channel or the agent (see [`ClientError`]).
    pub fn request(&mut self, body: Request, timeout: Duration) -> Result<Response, ClientError> {
        let deadline = Instant::now() + timeout;
        let what = format!("{body:?}")
            .split([' ', '{', '('])
            .next()
            .unwrap_or_default()
            .to_owned();
        let id = self.next_id;
        self.next_id += 1;
        let tr = |source| ClientError::Transport {
            what: what.clone(),
            source,
        };
        self.transport
            .send(&Message::Request { id, body })
            .map_err(tr)?;
        loop {
            match self.transport.recv_deadline(deadline).map_err(tr)? {
                Message::Response { id: rid, result } if rid == id => {
                    return result.map_err(|source| ClientError::Agent {
                        request: what.clone(),
                        source,
                    });
                }
                Message::Event(Event::AgentPanic { message }) => {
                    return Err(ClientError::AgentPanic(message));
                }
                m @ (Message::Stream { .. }
                | Message::StreamClose { .. }
                | Message::StreamCredit { .. }
                | Message::Event(_)) => {
                    if self.backlog.len() >= MAX_BACKLOG {
                        return Err(ClientError::Backlog);
                    }
                    self.backlog.push_back(m);
                }
                other => {
                    return Err(ClientError::Unexpected {
                        what: what.clone(),
                        got: short(&other),
                    })
                }
            }
        }
    }

    /// [`Request::Ping`]; `Ok` when the agent answers [`Response::Pong`] in time.
    ///
    /// # Errors
    /// As [`Client::request`]; [`ClientError::Unexpected`] for another answer.
    pub fn ping(&mut self, timeout: Duration) -> Result<(), ClientError> {
        match self.request(Request::Ping, timeout)? {
            Response::Pong => Ok(()),
            other => Err(ClientError::Unexpected {
                what: "Ping".into(),
                got: format!("{other:?}"),
            }),
        }
    }

    /// [`Request::Shutdown`]; `Ok` when the agent acknowledges. The VM ends shortly after;
    /// the caller should still wait for the VMM to exit (and kill it past a deadline).
    ///
    /// # Errors
    /// As [`Client::request`]; [`ClientError::Unexpected`] for another answer.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<(), ClientError> {
        match self.request(Request::Shutdown, timeout)? {
            Response::ShuttingDown => Ok(()),
            other => Err(ClientError::Unexpected {
                what: "Shutdown".into(),
                got: format!("{other:?}"),
            }),
        }
    }

    /// Unsolicited messages received while waiting for answers, oldest first.
    pub fn take_backlog(&mut self) -> Vec<Message> {
        self.backlog.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::WireErrorCode;
    use std::os::unix::net::UnixStream;

    /// A scripted fake agent on the other end of a socket pair.
    fn fake_agent(
        script: impl FnOnce(Transport<UnixStream>) + Send + 'static,
    ) -> Client<UnixStream> {
        let (host, guest) = UnixStream::pair().unwrap();
        std::thread::spawn(move || script(Transport::new(guest)));
        Client::new(host)
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn hello_ping_shutdown() {
        let mut c = fake_agent(|mut t| {
            t.send(&Message::Hello {
                version: PROTOCOL_VERSION.into(),
                agent_version: "test".into(),
                init_ms: 0,
                hello_ms: 0,
            })
            .unwrap();
            while let Ok(Message::Request { id, body }) = t.recv() {
                let result = match body {
                    Request::Ping => Ok(Response::Pong),
                    Request::Shutdown => Ok(Response::ShuttingDown),
                    _ => Err(WireError::new(WireErrorCode::Unsupported, "no")),
                };
                t.send(&Message::Event(Event::ProtocolError {
                    message: "noise".into(),
                }))
                .unwrap();
                t.send(&Message::Response { id, result }).unwrap();
            }
        });
        assert_eq!(c.wait_hello(T).unwrap().agent_version, "test");
        c.ping(T).unwrap();
        let err = c.request(Request::Top { id: "x".into() }, T).unwrap_err();
        assert!(
            matches!(err, ClientError::Agent { ref request, .. } if request == "Top"),
            "{err}"
        );
        c.shutdown(T).unwrap();
        assert_eq!(c.take_backlog().len(), 3);
    }

    #[test]
    fn version_mismatch() {
        let mut c = fake_agent(|mut t| {
            t.send(&Message::Hello {
                version: 99,
                agent_version: "future".into(),
                init_ms: 0,
                hello_ms: 0,
            })
            .unwrap();
        });
        let err = c.wait_hello(T).unwrap_err();
        assert!(
            matches!(err, ClientError::VersionMismatch { got: 99, want: 1 }),
            "{err}"
        );
    }

    #[test]
    fn silent_agent_times_out() {
        let (host, _guest) = UnixStream::pair().unwrap();
        let mut c = Client::new(host);
        let err = c.ping(Duration::from_millis(100)).unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Transport {
                    source: TransportError::Timeout(_),
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn garbage_agent_is_a_clear_error() {
        let (host, mut guest) = UnixStream::pair().unwrap();
        guest.write_all(b"Kernel panic - not syncing\n").unwrap();
        let mut c = Client::new(host);
        let err = c.wait_hello(T).unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Transport {
                    source: TransportError::Frame(_),
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn panic_event_is_reported() {
        let mut c = fake_agent(|mut t| {
            t.send(&Message::Event(Event::AgentPanic {
                message: "boom".into(),
            }))
            .unwrap();
        });
        assert!(matches!(c.wait_hello(T), Err(ClientError::AgentPanic(m)) if m == "boom"));
    }
}
