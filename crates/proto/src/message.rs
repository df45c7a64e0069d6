//! The typed messages of the protocol (the schema). Serialised as JSON inside a frame
//! ([`crate::frame`]); serde's default external tagging, e.g. `{"Request":{"id":1,"body":"Ping"}}`.
//!
//! Conversation: the agent sends [`Message::Hello`] once the channel is open; the host then sends
//! [`Message::Request`]s, each with a host-chosen `id`, and the agent answers each with exactly one
//! [`Message::Response`] carrying the same `id` (answers may come out of order). Byte streams
//! (stdio of the container and of each exec) flow both ways as [`Message::Stream`] chunks on
//! host-allocated stream ids, ended by [`Message::StreamClose`]. The agent reports things nobody
//! asked for (a process exited, the agent panicked) as [`Message::Event`]. A VM restored from a
//! template's snapshot sends no Hello (the template's went to whoever made the template): there
//! the host's first message is [`Request::Restored`].
//!
//! Ordering guarantees the host relies on:
//! - A process's output streams end with [`Message::StreamClose`] once its stdout/stderr (or
//!   terminal) reach EOF, and its [`Event::Exited`] comes after those closes, or at most 2 s after
//!   the process was reaped when a descendant still holds the streams open (then the agent closes
//!   them itself, right before the event).
//! - The agent powers the VM off on [`Request::Shutdown`], when the host closes the channel, and
//!   30 s after the container's init process exited if no `Shutdown` came by then.
//!
//! Flow control of host → guest streams (a process's stdin):
//! - Each such stream has a window of [`STREAM_WINDOW`] bytes (1 MiB) that opens when the agent
//!   answers the request naming the stream (`CreateContainer`, `Exec`) with success; the agent
//!   drops data that comes before. The host never has more `Stream` data on the stream that the
//!   agent has not credited than the window.
//! - The agent credits bytes with [`Message::StreamCredit`] once it has written them to the
//!   process: at least every [`CREDIT_BATCH`] bytes, and all it has not credited yet whenever it
//!   has nothing more queued for the stream. So a host waiting for credit gets it while the
//!   process reads, and a process that stops reading stalls its own input, nothing else.
//! - When the agent gives up a stdin stream before the host closed it (the process closed its
//!   stdin or exited), it sends [`Message::StreamClose`] on that stream id (agent → host) and no
//!   more credit; for a process that exited, before its [`Event::Exited`]. The host stops sending
//!   on the stream and answers with its own `StreamClose` (which frees the id in the agent); data
//!   it had in flight is dropped silently. A host blocked on credit wakes up on this close, or
//!   when the channel ends.
//! - As a defence against a host that ignores credit, the agent queues at most 16 MiB per stream;
//!   past that it gives the stream up as above.
//!
//! Paths in requests are guest paths. The host shares directories into the guest (9p tags) and
//! names them in [`Request::CreateContainer`]'s `mounts`; the spec it sends already refers to the
//! guest paths those mounts produce (`root.path`, bind-mount sources).

use serde::{Deserialize, Serialize};

/// Largest `data` of one [`Message::Stream`], in bytes (128 KiB). JSON spells a byte as up to 4
/// characters (`"255,"`), so a full chunk stays well under [`MAX_PAYLOAD`](crate::MAX_PAYLOAD).
pub const MAX_STREAM_CHUNK: usize = 128 * 1024;

/// Bytes of [`Message::Stream`] data the host may have sent on one host → guest stream and not
/// yet seen credited by [`Message::StreamCredit`] (1 MiB); see the module docs.
pub const STREAM_WINDOW: u32 = 1 << 20;

/// The agent credits a stream at the latest once it has written this many bytes of it to the
/// process (64 KiB), and earlier when it has nothing more queued for it.
pub const CREDIT_BATCH: u32 = 64 * 1024;

const _: () = assert!(STREAM_WINDOW as usize >= MAX_STREAM_CHUNK && CREDIT_BATCH < STREAM_WINDOW);

/// One protocol message; one per frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Message {
    /// Agent → host, first message on the channel.
    Hello {
        /// Protocol version the agent speaks ([`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION)).
        version: u32,
        /// The agent's own version (its crate version), for logs and `isola info`.
        agent_version: String,
        /// Guest uptime when the agent (`/init`) started, in milliseconds: the kernel's boot time.
        #[serde(default)]
        init_ms: u64,
        /// Guest uptime when this Hello was sent, in milliseconds.
        #[serde(default)]
        hello_ms: u64,
    },
    /// Host → agent: do something; answered by one [`Message::Response`] with the same `id`.
    Request {
        /// Chosen by the host, unique among its outstanding requests.
        id: u64,
        /// What to do.
        body: Request,
    },
    /// Agent → host: the answer to the request `id`.
    Response {
        /// The `id` of the request answered.
        id: u64,
        /// The result, or why the request failed.
        result: Result<Response, WireError>,
    },
    /// Either direction: bytes of stream `stream` (at most [`MAX_STREAM_CHUNK`]).
    Stream {
        /// Stream id, allocated by the host in [`StdioStreams`]; 0 is never used.
        stream: u32,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Either direction: the sender writes no more on `stream` (EOF for its reader).
    StreamClose {
        /// Stream id.
        stream: u32,
    },
    /// Agent → host: something happened that no request asked for.
    Event(Event),
    /// Agent → host: the agent wrote `bytes` more bytes of host → guest stream `stream` to the
    /// process; the host may send that many more (flow control, see the module docs).
    StreamCredit {
        /// Stream id (a process's stdin).
        stream: u32,
        /// Bytes written since the previous credit on this stream.
        bytes: u32,
    },
}

/// Requests the host sends (host → agent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Request {
    /// Liveness check; answered with [`Response::Pong`].
    Ping,
    /// Create the container from an OCI bundle, not started yet (like `runc create`).
    CreateContainer {
        /// Container ID (the engine's).
        id: String,
        /// The bundle's `config.json` (OCI runtime spec), as JSON, validated by the agent.
        spec: serde_json::Value,
        /// Filesystems the agent mounts in the guest, in order, before it creates the container:
        /// the root filesystem and every directory that bind mounts of the spec come from.
        mounts: Vec<GuestMount>,
        /// Stream ids for the container's stdio.
        stdio: StdioStreams,
    },
    /// Start the created container's process.
    Start {
        /// Container ID.
        id: String,
    },
    /// Send a signal to the container's init process (or to all its processes).
    Signal {
        /// Container ID.
        id: String,
        /// Signal number (Linux numbering, e.g. 15 for SIGTERM).
        signal: i32,
        /// Signal every process of the container, not only its init.
        all: bool,
    },
    /// Run one more process in the container.
    Exec {
        /// Container ID.
        id: String,
        /// ID of this exec, chosen by the host.
        exec_id: String,
        /// The OCI `process` object (args, env, cwd, user, terminal, ...), as JSON.
        process: serde_json::Value,
        /// Stream ids for the exec's stdio.
        stdio: StdioStreams,
    },
    /// Change the window size of a terminal stream.
    ResizeTty {
        /// The stream id of the terminal (its `stdout` stream).
        stream: u32,
        /// Rows, in characters.
        rows: u16,
        /// Columns, in characters.
        cols: u16,
    },
    /// List the container's processes with guest PIDs; answered with [`Response::Top`].
    Top {
        /// Container ID.
        id: String,
    },
    /// Resource usage of the container's cgroup in the guest; answered with [`Response::Stats`].
    Stats {
        /// Container ID.
        id: String,
    },
    /// Freeze every process of the container (cgroup freezer in the guest); answered `Done`.
    Pause {
        /// Container ID.
        id: String,
    },
    /// Thaw the container; answered `Done`.
    Resume {
        /// Container ID.
        id: String,
    },
    /// Wait for the container (or one exec) to exit; answered with [`Response::Exited`] (at once
    /// when it has exited already).
    Wait {
        /// Container ID.
        id: String,
        /// The exec to wait for; `None` means the container's init process.
        exec_id: Option<String>,
    },
    /// Sync the guest's filesystems and power the VM off; answered with
    /// [`Response::ShuttingDown`] before the agent reboots the guest (which ends QEMU).
    Shutdown,
    /// The VM was just restored from a snapshot of a template VM (whose Hello the host consumed
    /// when the template was made): the host sends this first, instead of waiting for a Hello.
    /// Every clone of a template starts with the same kernel random state and the template's
    /// wall clock, so the agent mixes `entropy` into the kernel's pool, forces the kernel's
    /// random generator to reseed, and sets the wall clock; answered with [`Response::Done`].
    Restored {
        /// The host's wall-clock time, in nanoseconds since the Unix epoch.
        unix_time_ns: u64,
        /// Fresh random bytes from the host, at least [`MIN_RESTORE_ENTROPY`] and at most
        /// [`MAX_RESTORE_ENTROPY`].
        entropy: Vec<u8>,
    },
}

/// Fewest bytes of host entropy a [`Request::Restored`] carries (512 bits).
pub const MIN_RESTORE_ENTROPY: usize = 64;
/// Most bytes of host entropy a [`Request::Restored`] may carry.
pub const MAX_RESTORE_ENTROPY: usize = 4096;

/// A filesystem the agent mounts inside the guest (rootfs layers, volumes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestMount {
    /// Source: a device (`/dev/vda`), a virtio-fs or 9p tag, or a path in the guest.
    pub source: String,
    /// Mount point: an absolute guest path below `/run/isola/` without `..` (the agent refuses
    /// anything else and creates the directory).
    pub target: String,
    /// Filesystem type: `erofs`, `ext4`, `virtiofs`, `9p`, `overlay`, ...
    pub fstype: String,
    /// Mount options as `mount -o` spells them (`ro`, `trans=virtio`, ...).
    pub options: Vec<String>,
}

/// Stream ids of a process's stdio; `None` = not connected (`/dev/null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdioStreams {
    /// Host → guest bytes for stdin.
    pub stdin: Option<u32>,
    /// Guest → host bytes of stdout (with `terminal`, the terminal's output).
    pub stdout: Option<u32>,
    /// Guest → host bytes of stderr (unused with `terminal`).
    pub stderr: Option<u32>,
    /// Run the process on a pseudo-terminal.
    pub terminal: bool,
}

/// Successful answers (agent → host).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Response {
    /// Answer to [`Request::Ping`].
    Pong,
    /// The request was carried out and has nothing to report.
    Done,
    /// Answer to `CreateContainer` / `Exec`: the process's guest PID.
    Process {
        /// Guest PID.
        pid: i32,
    },
    /// Answer to [`Request::Top`].
    Top {
        /// One entry per process, in guest PID order.
        processes: Vec<ProcessInfo>,
    },
    /// Answer to [`Request::Wait`].
    Exited(ExitStatus),
    /// Answer to [`Request::Stats`]: the runtime library's cgroup statistics, as JSON.
    Stats(serde_json::Value),
    /// Answer to [`Request::Shutdown`]; the VM ends right after.
    ShuttingDown,
}

/// One process of a container as seen in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessInfo {
    /// Guest PID.
    pub pid: i32,
    /// Guest parent PID.
    pub ppid: i32,
    /// Real user ID (in the guest, which is the container's user ID: no user namespace).
    pub uid: u32,
    /// CPU time used (user + system), in seconds.
    pub cpu_seconds: u64,
    /// Start time, in seconds since the guest booted.
    pub start_seconds: u64,
    /// Command line (`/proc/PID/cmdline`, NUL-separated arguments joined by spaces).
    pub cmd: String,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitStatus {
    /// Exit code when it exited, `None` when a signal killed it.
    pub code: Option<i32>,
    /// Signal number when a signal killed it.
    pub signal: Option<i32>,
    /// The guest's OOM killer killed it.
    pub oom_killed: bool,
}

/// Unsolicited reports (agent → host).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Event {
    /// A container's init process or an exec exited.
    Exited {
        /// Container ID.
        id: String,
        /// The exec, `None` for the init process.
        exec_id: Option<String>,
        /// How it ended.
        status: ExitStatus,
    },
    /// The agent received a frame it could not decode; the frame was dropped.
    ProtocolError {
        /// What was wrong with it.
        message: String,
    },
    /// The agent panicked; it powers the VM off right after sending this.
    AgentPanic {
        /// The panic message and location.
        message: String,
    },
}

/// A request's failure as it crosses the wire: a stable code plus a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(deny_unknown_fields)]
#[error("{code:?}: {message}")]
pub struct WireError {
    /// What kind of failure, for the host to act on.
    pub code: WireErrorCode,
    /// Details, for humans.
    pub message: String,
    /// For a process that could not be started: the exit status a shell would report
    /// (126: found but cannot be executed, 127: not found), as process isolation reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
}

impl WireError {
    /// A `WireError` from a code and a message.
    pub fn new(code: WireErrorCode, message: impl Into<String>) -> WireError {
        WireError {
            code,
            message: message.into(),
            status: None,
        }
    }

    /// The same error with the exit status of a process that could not be started.
    pub fn with_status(mut self, status: i32) -> WireError {
        self.status = Some(status);
        self
    }
}

/// Stable failure codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireErrorCode {
    /// This agent does not implement the request.
    Unsupported,
    /// The request is malformed (bad spec, unknown stream, ...).
    InvalidRequest,
    /// No such container, exec or stream.
    NotFound,
    /// A container or exec with that ID exists already.
    AlreadyExists,
    /// The agent is shutting down.
    ShuttingDown,
    /// The request failed inside the guest (a syscall, the runtime library).
    Internal,
}

impl Message {
    /// Splits `data` into [`Message::Stream`] chunks of at most [`MAX_STREAM_CHUNK`] bytes.
    pub fn stream_chunks(stream: u32, data: &[u8]) -> impl Iterator<Item = Message> + '_ {
        data.chunks(MAX_STREAM_CHUNK).map(move |c| Message::Stream {
            stream,
            data: c.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;

    #[test]
    fn wire_shape_is_stable() {
        let m = Message::Request {
            id: 1,
            body: Request::Ping,
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"Request":{"id":1,"body":"Ping"}}"#
        );
        let r = Message::Response {
            id: 1,
            result: Err(WireError::new(WireErrorCode::Unsupported, "x")),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"Response":{"id":1,"result":{"Err":{"code":"unsupported","message":"x"}}}}"#
        );
    }

    #[test]
    fn stream_credit_wire_shape() {
        let m = Message::StreamCredit {
            stream: 7,
            bytes: 65536,
        };
        let json = r#"{"StreamCredit":{"stream":7,"bytes":65536}}"#;
        assert_eq!(serde_json::to_string(&m).unwrap(), json);
        assert_eq!(frame::decode_payload(json.as_bytes()).unwrap(), m);
        let (back, used) = frame::decode(&frame::encode(&m).unwrap()).unwrap();
        assert_eq!((back, used), (m, crate::HEADER_LEN + json.len()));
        // Credits are u32: a negative or oversized count is not a message.
        for bad in [
            r#"{"StreamCredit":{"stream":7,"bytes":-1}}"#,
            r#"{"StreamCredit":{"stream":7,"bytes":4294967296}}"#,
            r#"{"StreamCredit":{"stream":7}}"#,
            r#"{"StreamCredit":{"stream":7,"bytes":1,"more":0}}"#,
        ] {
            assert!(frame::decode_payload(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let bad = br#"{"Request":{"id":1,"body":"Ping","extra":0}}"#;
        assert!(frame::decode_payload(bad).is_err());
    }

    #[test]
    fn full_stream_chunk_fits_a_frame() {
        let data = vec![255u8; MAX_STREAM_CHUNK * 2 + 1];
        let chunks: Vec<_> = Message::stream_chunks(9, &data).collect();
        assert_eq!(chunks.len(), 3);
        for c in &chunks {
            frame::encode(c).unwrap();
        }
    }

    #[test]
    fn requests_round_trip() {
        let reqs = [
            Request::CreateContainer {
                id: "c1".into(),
                spec: serde_json::json!({"ociVersion": "1.0.2"}),
                mounts: vec![GuestMount {
                    source: "/dev/vda".into(),
                    target: "/run/isola/c1/rootfs".into(),
                    fstype: "erofs".into(),
                    options: vec!["ro".into()],
                }],
                stdio: StdioStreams {
                    stdin: None,
                    stdout: Some(1),
                    stderr: Some(2),
                    terminal: false,
                },
            },
            Request::Signal {
                id: "c1".into(),
                signal: 15,
                all: true,
            },
            Request::Wait {
                id: "c1".into(),
                exec_id: Some("e1".into()),
            },
            Request::Shutdown,
            Request::Restored {
                unix_time_ns: 1_700_000_000_000_000_000,
                entropy: vec![7; MIN_RESTORE_ENTROPY],
            },
        ];
        for body in reqs {
            let m = Message::Request { id: 3, body };
            let (back, _) = frame::decode(&frame::encode(&m).unwrap()).unwrap();
            assert_eq!(back, m);
        }
    }
}
