//! Errors of the engine. Variants carry the container, path or flag they are about.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the engine can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container database failed.
    #[error("container database {path}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A record that does not decode.
    #[error("container {id}: corrupt record: {reason}")]
    Corrupt {
        /// The container ID.
        id: String,
        /// What does not decode.
        reason: String,
    },
    /// No container by that ID, name or prefix.
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    /// An ID prefix matching several containers.
    #[error("multiple containers match {0:?}: use more of the ID or the name")]
    Ambiguous(String),
    /// A container name already taken.
    #[error("the container name {0:?} is already in use")]
    NameInUse(String),
    /// A container name that is not `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
    #[error("invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    BadName(String),
    /// The operation does not fit the container's status.
    #[error("container {name} is {status}: {hint}")]
    BadStatus {
        /// The container's name.
        name: String,
        /// Its status.
        status: String,
        /// What to do instead.
        hint: String,
    },
    /// A file operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Building the container's runtime spec failed (bad flag, unknown user, …).
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] isola_image::Error),
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] isola_runtime::Error),
    /// The container's program could not be started; `code` is Docker's exit status for it
    /// (126 cannot invoke, 127 not found).
    #[error("{message}")]
    StartFailed {
        /// One line.
        message: String,
        /// 126, 127 or 125.
        code: i32,
    },
    /// The configuration file is invalid.
    #[error("invalid {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        reason: String,
    },
    /// The isolation mode cannot do this (yet) on this host.
    #[error("{0}")]
    NotAvailable(String),
    /// VM isolation failed: QEMU, the guest assets or the guest agent.
    #[error("VM: {0}")]
    Vm(String),
    /// The VM layer failed (assets, QEMU, the accelerator probe).
    #[error(transparent)]
    VmLayer(#[from] isola_vm::Error),
    /// The monitor process could not be reached or failed.
    #[error("container {id}: monitor: {reason}")]
    Monitor {
        /// The container ID.
        id: String,
        /// What went wrong.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
