//! Why a request failed, and its mapping to the wire ([`to_wire`]), in one place.

use std::io;

use isola_proto::{WireError, WireErrorCode};

use crate::guest_mounts::MountError;

/// A request the agent could not carry out.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A field of the request is malformed; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// No such container, exec or stream; the message says which.
    #[error("{0}")]
    NotFound(String),
    /// A container or exec with that ID exists already.
    #[error("{0}")]
    Exists(String),
    /// Mounting one of the request's `mounts` failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// The runtime library failed.
    #[error("{op} {id}")]
    Runtime {
        /// What the agent asked of it: `create container`, `start container`, ...
        op: &'static str,
        /// The container ID.
        id: String,
        /// The runtime's error (boxed: it is large, and failures are rare).
        #[source]
        source: Box<isola_runtime::Error>,
    },
    /// A file or descriptor operation of the agent itself failed.
    #[error("{op} {what}")]
    Io {
        /// What was being done: `write`, `create directory`, ...
        op: &'static str,
        /// The path or object.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl AgentError {
    /// An [`AgentError::Io`].
    pub fn io(op: &'static str, what: impl Into<String>, source: io::Error) -> AgentError {
        AgentError::Io {
            op,
            what: what.into(),
            source,
        }
    }

    /// An [`AgentError::Runtime`].
    pub fn runtime(op: &'static str, id: &str, source: isola_runtime::Error) -> AgentError {
        AgentError::Runtime {
            op,
            id: id.to_owned(),
            source: Box::new(source),
        }
    }
}

/// The wire form of `e`: a stable code and the whole error chain as the message.
pub fn to_wire(e: &AgentError) -> WireError {
    use isola_runtime::Error as R;
    let code = match e {
        AgentError::Invalid(_) => WireErrorCode::InvalidRequest,
        AgentError::NotFound(_) => WireErrorCode::NotFound,
        AgentError::Exists(_) => WireErrorCode::AlreadyExists,
        AgentError::Runtime { source, .. } => match **source {
            R::NotFound(_) => WireErrorCode::NotFound,
            R::Exists(_) => WireErrorCode::AlreadyExists,
            R::BadId(_) | R::Config { .. } | R::BadStatus { .. } => WireErrorCode::InvalidRequest,
            _ => WireErrorCode::Internal,
        },
        AgentError::Mount(_) | AgentError::Io { .. } => WireErrorCode::Internal,
    };
    let wire = WireError::new(code, crate::chain(e));
    // A program that cannot run: the status a shell reports (126 cannot execute, 127 not found),
    // which the host turns into the container's or the exec's exit status.
    match e {
        AgentError::Runtime { source, .. } => match **source {
            R::Init {
                code: c @ (126 | 127),
                ..
            } => wire.with_status(c),
            _ => wire,
        },
        _ => wire,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_chains() {
        let e = AgentError::runtime(
            "start container",
            "c1",
            isola_runtime::Error::BadStatus {
                id: "c1".into(),
                status: "running".into(),
                op: "start",
            },
        );
        let w = to_wire(&e);
        assert_eq!(w.code, WireErrorCode::InvalidRequest);
        assert_eq!(
            w.message,
            "start container c1: container c1 is running: cannot start"
        );
        let e = AgentError::io("write", "/run/isola/x", io::Error::from_raw_os_error(28));
        let w = to_wire(&e);
        assert_eq!(w.code, WireErrorCode::Internal);
        assert!(
            w.message.starts_with("write /run/isola/x: "),
            "{}",
            w.message
        );
    }
}
