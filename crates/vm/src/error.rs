//! Errors of the VM layer.

use std::path::PathBuf;

/// A failure of the VM layer; every variant names what it was about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call or file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("spawn", "connect to", ...).
        action: &'static str,
        /// The file, socket or program concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A guest asset (QEMU, kernel, agent) is missing or unusable; the message says how to get it.
    #[error("{0}")]
    Asset(String),
    /// The VM did not come up, or the agent broke the protocol.
    #[error("{0}")]
    Boot(String),
    /// A request to the agent failed.
    #[error("agent: {0}")]
    Agent(String),
    /// The VM settings are invalid (too many shares, a bad name, ...).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An [`Error::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
