//! The error type of process setup.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

/// An error from validating or applying the process part of a bundle (config.md "Process",
/// config-linux.md "Sysctl", "Seccomp").
///
/// Messages are one lower-case line naming the field or value at fault; the underlying OS error,
/// where there is one, is the [`source`](std::error::Error::source) and is not repeated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// A field of config.json is invalid; `field` is its JSON path, e.g. `process.rlimits[1].type`.
    #[error("{field} {value:?}: {reason}")]
    Invalid {
        /// JSON path of the field.
        field: String,
        /// The offending value, as written in config.json.
        value: String,
        /// Why it is refused.
        reason: String,
    },

    /// Raising a hard rlimit above the current one without `CAP_SYS_RESOURCE`.
    #[error(
        "process.rlimits {resource}: hard limit {requested} is above the host's hard limit {host_hard}, \
         and raising it needs CAP_SYS_RESOURCE, which this process does not have"
    )]
    RlimitAboveHostHard {
        /// `RLIMIT_*` name.
        resource: String,
        /// The hard limit asked for.
        requested: u64,
        /// The hard limit this process has (inherited from the host).
        host_hard: u64,
    },

    /// `setrlimit(2)` failed for another reason.
    #[error("process.rlimits {resource}: setrlimit(soft {soft}, hard {hard})")]
    Rlimit {
        /// `RLIMIT_*` name.
        resource: String,
        /// Soft limit asked for.
        soft: u64,
        /// Hard limit asked for.
        hard: u64,
        /// The OS error.
        #[source]
        source: Errno,
    },

    /// Lowering `oom_score_adj` without `CAP_SYS_RESOURCE`.
    #[error(
        "process.oomScoreAdj {value}: lowering it below the current {current} needs CAP_SYS_RESOURCE, \
         which this process does not have"
    )]
    OomScoreAdjDenied {
        /// The value asked for.
        value: i32,
        /// The current value.
        current: i32,
    },

    /// Reading or writing a file (procfs, LSM attributes) failed.
    #[error("{}", .path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Writing a sysctl failed.
    #[error("linux.sysctl {name:?}: writing {value:?} to /proc/sys/{path}")]
    Sysctl {
        /// The sysctl name as written in config.json.
        name: String,
        /// The value.
        value: String,
        /// The path below `/proc/sys`.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A system call of process setup failed; `what` names the call and its arguments.
    #[error("{what}")]
    Syscall {
        /// The call, e.g. `setresuid(1000)`.
        what: String,
        /// The OS error.
        #[source]
        source: Errno,
    },

    /// Changing a capability set failed.
    #[error("process.capabilities: {what}")]
    Capabilities {
        /// What was being done, e.g. `dropping CAP_SYS_ADMIN from the bounding set`.
        what: String,
        /// The error from the `caps` crate.
        #[source]
        source: caps::errors::CapsError,
    },

    /// The seccomp profile cannot be compiled.
    #[error("linux.seccomp: {0}")]
    SeccompCompile(String),

    /// Installing the seccomp filter failed.
    #[error("linux.seccomp: installing filter {index} of {count}{hint}")]
    SeccompLoad {
        /// Index (from 1) of the BPF program that failed (filters are stacked).
        index: usize,
        /// Number of BPF programs.
        count: usize,
        /// What is missing, when that is known.
        hint: &'static str,
        /// The OS error.
        #[source]
        source: Errno,
    },

    /// `args[0]` does not exist (a shell would exit with 127).
    #[error("process.args[0] {arg0:?}: {}", if where_.is_empty() { "no such file or directory".to_owned() } else { format!("executable file not found{where_}") })]
    NotFound {
        /// `args[0]`.
        arg0: String,
        /// Where it was looked for, e.g. ` in $PATH` (empty for a path).
        where_: String,
    },

    /// `args[0]` exists but cannot be executed (a shell would exit with 126).
    #[error("process.args[0] {arg0:?}: {path} is {reason}")]
    NotExecutable {
        /// `args[0]`.
        arg0: String,
        /// The file found.
        path: String,
        /// `a directory`, `not executable`, ...
        reason: String,
    },

    /// `execve(2)` failed.
    #[error("exec {path}")]
    Exec {
        /// The program.
        path: String,
        /// The OS error.
        #[source]
        source: Errno,
    },
}

impl ProcessError {
    /// The program does not exist: exit status 127 by shell convention.
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::NotFound { .. } => true,
            Self::Exec { source, .. } => *source == Errno::ENOENT,
            _ => false,
        }
    }

    /// The program exists but cannot be executed: exit status 126 by shell convention.
    pub fn is_not_executable(&self) -> bool {
        match self {
            Self::NotExecutable { .. } => true,
            Self::Exec { source, .. } => matches!(
                *source,
                Errno::EACCES | Errno::EPERM | Errno::ENOEXEC | Errno::EISDIR | Errno::ETXTBSY
            ),
            _ => false,
        }
    }

    pub(crate) fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn syscall(what: impl Into<String>, source: Errno) -> Self {
        Self::Syscall {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn file(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::File {
            path: path.into(),
            source,
        }
    }
}
