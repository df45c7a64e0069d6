//! The request loop: decode → check → `do_*` → map the error to a wire code in one place
//! ([`crate::error::to_wire`]).
//!
//! It only reads; everything the agent sends goes through the [`Outbox`]. Host stream data is
//! handed to the stream registry without blocking; `Wait` is answered later by the exit
//! notifier; every other request is answered before the next message is read.

use std::fs::File;
use std::sync::Arc;

use isola_proto::{
    Event, FrameError, Message, Request, Response, Transport, TransportError, PROTOCOL_VERSION,
};

use crate::containers::{Agent, Reply};
use crate::error::{to_wire, AgentError};
use crate::out::Outbox;

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

fn handle(agent: &Agent, req_id: u64, req: Request) -> Reply {
    let now = Reply::Now;
    match req {
        Request::Ping => now(Ok(Response::Pong)),
        // The power-off itself happens in main, after this answer has been written.
        Request::Shutdown => now(Ok(Response::ShuttingDown)),
        Request::CreateContainer {
            id,
            spec,
            mounts,
            stdio,
        } => now(agent.create(&id, &spec, &mounts, &stdio)),
        Request::Start { id } => now(agent.start(&id)),
        Request::Signal { id, signal, all } => now(agent.signal(&id, signal, all)),
        Request::Exec {
            id,
            exec_id,
            process,
            stdio,
        } => now(agent.exec(&id, &exec_id, &process, &stdio)),
        Request::ResizeTty { stream, rows, cols } => now(agent.resize(stream, rows, cols)),
        Request::Top { id } => now(agent.top(&id)),
        Request::Stats { id } => now(agent.stats(&id)),
        Request::Pause { id } => now(agent.freeze(&id, false)),
        Request::Resume { id } => now(agent.freeze(&id, true)),
        Request::Wait { id, exec_id } => agent.wait(req_id, &id, exec_id.as_deref()),
        Request::Restored {
            unix_time_ns,
            entropy,
        } => now(crate::restore::restored(unix_time_ns, &entropy)),
    }
}

fn answer(outbox: &Outbox, id: u64, r: Result<Response, AgentError>) -> bool {
    let result = r.map_err(|e| to_wire(&e));
    if let Err(e) = &result {
        crate::log!("request {id} failed: {}", e.message);
    }
    outbox.send(&Message::Response { id, result })
}

/// Sends Hello, then serves the host until Shutdown or until it closes the channel. `port` is
/// read here; `outbox` writes to the same channel.
///
/// # Errors
/// A broken channel (I/O error, a frame that breaks the framing): the caller powers off.
pub fn serve(port: File, outbox: &Outbox, agent: &Arc<Agent>) -> Result<End, TransportError> {
    let mut t = Transport::new(port);
    outbox.send(&Message::Hello {
        version: PROTOCOL_VERSION.into(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        init_ms: crate::INIT_MS.load(std::sync::atomic::Ordering::Relaxed),
        hello_ms: uptime_ms(),
    });
    loop {
        let msg = match t.recv() {
            Ok(m) => m,
            Err(TransportError::Closed) => return Ok(End::Closed),
            Err(TransportError::Frame(e @ FrameError::BadPayload(_))) => {
                let message = format!(
                    "{e}: {}",
                    std::error::Error::source(&e).map_or(String::new(), |s| s.to_string())
                );
                outbox.send(&Message::Event(Event::ProtocolError { message }));
                continue;
            }
            Err(e) => return Err(e),
        };
        match msg {
            Message::Request { id, body } => {
                let shutdown = body == Request::Shutdown;
                if let Reply::Now(r) = handle(agent, id, body) {
                    let ok = r.is_ok();
                    answer(outbox, id, r);
                    if shutdown && ok {
                        return Ok(End::Shutdown);
                    }
                }
            }
            Message::Stream { stream, data } => agent.streams().input(stream, data),
            Message::StreamClose { stream } => agent.streams().close_input(stream),
            other => {
                let message = format!("unexpected message from the host: {other:?}");
                let message: String = message.chars().take(200).collect();
                outbox.send(&Message::Event(Event::ProtocolError { message }));
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
    use crate::power::PowerTimer;
    use isola_proto::{Request, WireErrorCode};
    use std::io::Write;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    /// An agent serving one end of a socket pair; returns the host's end and the loop's thread.
    fn agent() -> (
        UnixStream,
        std::thread::JoinHandle<Result<End, TransportError>>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (host, guest) = UnixStream::pair().unwrap();
        let port = File::from(OwnedFd::from(guest));
        let outbox = Arc::new(Outbox::new(port.try_clone().unwrap()));
        let power = PowerTimer::start(|| panic!("power-off timer fired in a test")).unwrap();
        let root = dir.path().join("runtime");
        let a = Agent::new(root.to_str().unwrap(), Arc::clone(&outbox), power, false).unwrap();
        let t = std::thread::spawn(move || serve(port, &outbox, &a));
        (host, t, dir)
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn hello_ping_unknown_container_shutdown() {
        let (host, agent, _dir) = agent();
        let mut c = isola_proto::Client::new(host);
        c.wait_hello(T).unwrap();
        c.ping(T).unwrap();
        for body in [
            Request::Top { id: "c".into() },
            Request::Wait {
                id: "c".into(),
                exec_id: None,
            },
            Request::Start { id: "c".into() },
        ] {
            let err = c.request(body, T).unwrap_err();
            let isola_proto::ClientError::Agent { source, .. } = err else {
                panic!("{err}")
            };
            assert_eq!(source.code, WireErrorCode::NotFound, "{source}");
            assert!(source.message.contains("\"c\""), "{source}");
        }
        c.shutdown(T).unwrap();
        assert_eq!(agent.join().unwrap().unwrap(), End::Shutdown);
    }

    #[test]
    fn bad_requests_name_the_field() {
        let (host, agent, _dir) = agent();
        let mut c = isola_proto::Client::new(host);
        c.wait_hello(T).unwrap();
        let create = |id: &str, spec: serde_json::Value, target: &str, stdout: u32| {
            Request::CreateContainer {
                id: id.into(),
                spec,
                mounts: vec![isola_proto::GuestMount {
                    source: "rootfs".into(),
                    target: target.into(),
                    fstype: "9p".into(),
                    options: vec![],
                }],
                stdio: isola_proto::StdioStreams {
                    stdin: None,
                    stdout: Some(stdout),
                    stderr: Some(stdout),
                    terminal: false,
                },
            }
        };
        let spec =
            serde_json::json!({"ociVersion": "1.0.2", "root": {"path": "/run/isola/c/rootfs"}});
        let cases = [
            (create("../x", spec.clone(), "/run/isola/c", 1), "id: "),
            (
                create("c", spec.clone(), "/run/isola/c", 0),
                "stdio.stdout: stream id 0",
            ),
            (
                create("c", spec.clone(), "/run/isola/c", 1),
                "stdio.stderr: stream 1 is also stdio.stdout",
            ),
            (
                create("c", serde_json::json!({"ociVersion": 1}), "/run/isola/c", 1),
                "stdio.stderr",
            ),
        ];
        for (body, want) in cases {
            let err = c.request(body, T).unwrap_err();
            let isola_proto::ClientError::Agent { source, .. } = err else {
                panic!("{err}")
            };
            assert_eq!(source.code, WireErrorCode::InvalidRequest, "{source}");
            assert!(source.message.starts_with(want), "{source}");
        }
        let mut ok_ids = create("c", serde_json::json!({"ociVersion": 1}), "/run/isola/c", 1);
        if let Request::CreateContainer { stdio, .. } = &mut ok_ids {
            stdio.stderr = Some(2);
        }
        let isola_proto::ClientError::Agent { source, .. } = c.request(ok_ids, T).unwrap_err()
        else {
            panic!()
        };
        assert!(
            source.message.starts_with("spec.ociVersion: invalid type"),
            "{source}"
        );
        let mut guest_root = create(
            "c",
            serde_json::json!({"ociVersion": "1.0.2", "root": {"path": "/"}}),
            "/run/isola/c",
            1,
        );
        if let Request::CreateContainer { stdio, .. } = &mut guest_root {
            stdio.stderr = Some(2);
        }
        let isola_proto::ClientError::Agent { source, .. } = c.request(guest_root, T).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(
            source.message,
            "spec.root.path: \"/\" must be an absolute path below /run/isola/"
        );
        let mut bad_target = create("c", spec, "/etc", 1);
        if let Request::CreateContainer { stdio, .. } = &mut bad_target {
            stdio.stderr = Some(2);
        }
        let isola_proto::ClientError::Agent { source, .. } = c.request(bad_target, T).unwrap_err()
        else {
            panic!()
        };
        assert!(
            source.message.starts_with("mounts[0].target \"/etc\""),
            "{source}"
        );
        drop(c);
        assert_eq!(agent.join().unwrap().unwrap(), End::Closed);
    }

    #[test]
    fn stray_streams_and_bad_payloads_do_not_end_the_loop() {
        let (host, agent, _dir) = agent();
        let mut h = Transport::new(host.try_clone().unwrap());
        assert!(matches!(h.recv().unwrap(), Message::Hello { .. }));
        h.send(&Message::Stream {
            stream: 77,
            data: b"nobody reads this".to_vec(),
        })
        .unwrap();
        h.send(&Message::StreamClose { stream: 77 }).unwrap();
        h.get_ref()
            .write_all(&[b'I', b'S', 1, 0, 0, 0, 0, 3, b'"', b'x', b'"'])
            .unwrap();
        assert!(matches!(
            h.recv().unwrap(),
            Message::Event(Event::ProtocolError { .. })
        ));
        h.send(&Message::Request {
            id: 9,
            body: Request::Ping,
        })
        .unwrap();
        assert!(matches!(
            h.recv().unwrap(),
            Message::Response {
                id: 9,
                result: Ok(Response::Pong)
            }
        ));
        drop(h);
        drop(host);
        assert_eq!(agent.join().unwrap().unwrap(), End::Closed);
    }
}
