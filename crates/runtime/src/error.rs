//! Errors of the runtime library. Module errors (rootfs, cgroups, process) are wrapped as they are; the
//! lifecycle's own variants carry the container ID, path or field they are about.

use std::io;
use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the runtime can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// config.json is unreadable, malformed, or fails validation; names the field.
    #[error("invalid {path}: {reason}")]
    Config {
        /// The config.json path.
        path: PathBuf,
        /// What is wrong, naming the field (e.g. `linux.namespaces[1].type: unknown variant "foo"`).
        reason: String,
    },
    /// A container ID that is empty, too long, or has characters other than `[A-Za-z0-9_.-]`.
    #[error("invalid container ID {0:?}: use 1 to 1024 characters of [A-Za-z0-9_.-], not starting with '.'")]
    BadId(String),
    /// No container with this ID in the state root.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// A container with this ID already exists.
    #[error("container {0} already exists")]
    Exists(String),
    /// The operation does not fit the container's status (e.g. start on a running container).
    #[error("container {id} is {status}: cannot {op}")]
    BadStatus {
        /// The container.
        id: String,
        /// Its status.
        status: String,
        /// What was asked.
        op: &'static str,
    },
    /// A system call or file operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path or object it was done on.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A system call without a path failed.
    #[error("{op}")]
    Sys {
        /// What was being done, e.g. "unshare mount namespace".
        op: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The container's init process reported an error while setting itself up.
    #[error("container {id}: {message}")]
    Init {
        /// The container.
        id: String,
        /// The init process's error chain, as one line.
        message: String,
        /// Exit status the container process would have had: 126 cannot invoke, 127 not found, else 1.
        code: i32,
    },
    /// A lifecycle hook failed.
    #[error("{kind} hook {path}")]
    Hook {
        /// Which hooks, e.g. "createRuntime".
        kind: &'static str,
        /// The hook's path.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// Root filesystem setup failed.
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    /// cgroup setup or control failed.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    /// Process setup (user, capabilities, rlimits, seccomp) failed.
    #[error(transparent)]
    Process(#[from] crate::process::ProcessError),
    /// A feature the host cannot provide (e.g. systemd cgroups without systemd).
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    pub(crate) fn sys(op: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Error::Sys {
            op: op.into(),
            source: source.into(),
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<io::Error>,
    ) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source: source.into(),
        }
    }
}
