//! isola's host ↔ guest-agent protocol (VM isolation).
//!
//! The host (the engine's VM driver) and the agent (PID 1 in the guest) exchange typed
//! [`Message`]s, one per length-prefixed, versioned [frame](frame), over a byte channel
//! ([`Transport`]): today a virtio-serial port (virtio-console) bound on the host to a QEMU
//! chardev Unix socket. The crate knows nothing about the engine or the runtime.
//!
//! # Threat model
//! The guest runs untrusted container code and may be compromised, so on the host side every
//! byte from the agent is untrusted:
//! - a frame's length is checked against [`MAX_PAYLOAD`] (1 MiB) before anything is allocated;
//! - a frame that is not ours (bad magic, other version, reserved flags) or whose payload is not
//!   a known message is an error, never a guess; after it the channel is poisoned;
//! - every host call has a deadline ([`Transport::recv_deadline`], [`Client`]): a silent,
//!   trickling or dead guest is an error, never a hang;
//! - unsolicited messages kept while waiting are bounded ([`client::MAX_BACKLOG`]);
//! - stream credits only refill a window up to its size ([`SendWindow`]): a guest that lies about
//!   credit cannot make the host send more than one window ahead, and one that never credits
//!   stalls only that stream.
//!
//! Not guarded against here: a guest that answers correctly but lies (wrong PIDs, wrong exit
//! codes); the engine must treat answers as claims by the guest, not facts about the host.

pub mod client;
pub mod flow;
pub mod frame;
pub mod message;
pub mod transport;

pub use client::{AgentInfo, Client, ClientError};
pub use flow::{SendWindow, WindowError};
pub use frame::{FrameError, HEADER_LEN, MAGIC, MAX_PAYLOAD, PROTOCOL_VERSION};
pub use message::{
    Event, ExitStatus, GuestMount, Message, ProcessInfo, Request, Response, StdioStreams,
    WireError, WireErrorCode, CREDIT_BATCH, MAX_RESTORE_ENTROPY, MAX_STREAM_CHUNK,
    MIN_RESTORE_ENTROPY, STREAM_WINDOW,
};
pub use transport::{ReadTimeout, Transport, TransportError};

/// Name of the virtio-serial port the agent listens on (QEMU `virtserialport,name=...`; in the
/// guest `/sys/class/virtio-ports/vportNpM/name`).
pub const AGENT_PORT_NAME: &str = "isola.agent";
