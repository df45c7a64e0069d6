//! The request loop: decode → check → `do_*` → map the error to a wire code in one place.

use std::io::{Read, Write};

use isola_proto::{
    Event, FrameError, Message, Request, Response, Transport, TransportError, WireError,
    WireErrorCode, PROTOCOL_VERSION,
};

/// A request the agent could not carry out (mapped to a [`WireError`] by [`to_wire`]).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// This agent version does not implement the request.
    #[error("{0} is not implemented by this agent")]
    Unsupported(&'static str),
}

/// Why the loop ended normally.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The host asked for a shutdown (and got its answer).
    Shutdown,
    /// The host closed the channel.
    Closed,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            End::Shutdown => "shutdown requested by the host",
            End::Closed => "host closed the channel",
        })
    }
}

fn to_wire(e: &AgentError) -> WireError {
    let code = match e {
        AgentError::Unsupported(_) => WireErrorCode::Unsupported,
    };
    WireError::new(code, e.to_string())
}

fn name(r: &Request) -> &'static str {
    match r {
        Request::Ping => "Ping",
        Request::CreateContainer { .. } => "CreateContainer",
        Request::Start { .. } => "Start",
        Request::Signal { .. } => "Signal",
        Request::Exec { .. } => "Exec",
        Request::ResizeTty { .. } => "ResizeTty",
        Request::Top { .. } => "Top",
        Request::Wait { .. } => "Wait",
        Request::Stats { .. } => "Stats",
        Request::Pause { .. } => "Pause",
        Request::Resume { .. } => "Resume",
        Request::Shutdown => "Shutdown",
    }
}

fn do_ping() -> Result<Response, AgentError> {
    Ok(Response::Pong)
}

fn do_shutdown() -> Result<Response, AgentError> {
    // The power-off itself happens in main, after this answer has been written.
    Ok(Response::ShuttingDown)
}

fn handle(req: Request) -> Result<Response, AgentError> {
    match req {
        Request::Ping => do_ping(),
        Request::Shutdown => do_shutdown(),
        other => Err(AgentError::Unsupported(name(&other))),
    }
}

/// Sends Hello, then answers requests until Shutdown or until the host closes the channel.
///
/// # Errors
/// A broken channel (I/O error, a frame that breaks the framing): the caller powers off.
pub fn serve<T: Read + Write>(t: &mut Transport<T>) -> Result<End, TransportError> {
    t.send(&Message::Hello {
        version: PROTOCOL_VERSION.into(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        init_ms: crate::INIT_MS.load(std::sync::atomic::Ordering::Relaxed),
        hello_ms: uptime_ms(),
    })?;
    loop {
        let msg = match t.recv() {
            Ok(m) => m,
            Err(TransportError::Closed) => return Ok(End::Closed),
            Err(TransportError::Frame(e @ FrameError::BadPayload(_))) => {
                let message = format!(
                    "{e}: {}",
                    std::error::Error::source(&e).map_or(String::new(), |s| s.to_string())
                );
                t.send(&Message::Event(Event::ProtocolError { message }))?;
                continue;
            }
            Err(e) => return Err(e),
        };
        match msg {
            Message::Request { id, body } => {
                let shutdown = body == Request::Shutdown;
                let result = handle(body).map_err(|e| to_wire(&e));
                let ok = result.is_ok();
                t.send(&Message::Response { id, result })?;
                if shutdown && ok {
                    return Ok(End::Shutdown);
                }
            }
            other => {
                let message = format!("unexpected message from the host: {other:?}");
                let message: String = message.chars().take(200).collect();
                t.send(&Message::Event(Event::ProtocolError { message }))?;
            }
        }
    }
}

/// Guest uptime from /proc/uptime, in milliseconds (0 when unreadable).
pub fn uptime_ms() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |secs| (secs * 1000.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    #[test]
    fn hello_ping_unsupported_shutdown() {
        let (host, guest) = UnixStream::pair().unwrap();
        let agent = std::thread::spawn(move || serve(&mut Transport::new(guest)));
        let mut c = isola_proto::Client::new(host);
        let t = Duration::from_secs(5);
        c.wait_hello(t).unwrap();
        c.ping(t).unwrap();
        let err = c.request(Request::Top { id: "c".into() }, t).unwrap_err();
        assert!(err.to_string().contains("Top"), "{err}");
        c.shutdown(t).unwrap();
        assert_eq!(agent.join().unwrap().unwrap(), End::Shutdown);
    }

    #[test]
    fn close_ends_the_loop_and_bad_payload_is_reported() {
        let (host, guest) = UnixStream::pair().unwrap();
        let agent = std::thread::spawn(move || serve(&mut Transport::new(guest)));
        let mut h = Transport::new(host);
        assert!(matches!(h.recv().unwrap(), Message::Hello { .. }));
        h.get_ref()
            .write_all(&[b'I', b'S', 1, 0, 0, 0, 0, 3, b'"', b'x', b'"'])
            .unwrap();
        assert!(matches!(
            h.recv().unwrap(),
            Message::Event(Event::ProtocolError { .. })
        ));
        drop(h);
        assert_eq!(agent.join().unwrap().unwrap(), End::Closed);
    }
}
