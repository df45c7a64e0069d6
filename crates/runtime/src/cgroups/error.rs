//! Errors of the cgroups module.
//!
//! Every message is one lower-case line that names the cgroup, the control file and the value
//! involved, and ends with the kernel's reason (e.g. `device or resource busy`). The underlying
//! [`std::io::Error`] is kept in the variant (not as a `#[source]`, so it is not printed twice);
//! use [`CgroupError::errno`] to branch on it instead of matching on the message.

use std::io;
use std::path::PathBuf;

/// An error from creating, configuring, inspecting or removing a container's cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `/proc/self/mountinfo` could not be read.
    #[error("cgroup: read {}: {}", path.display(), describe(err))]
    Mountinfo {
        /// The mountinfo file.
        path: PathBuf,
        /// The reason.
        err: io::Error,
    },
    /// A line of `/proc/self/mountinfo` does not have the documented layout.
    #[error("cgroup: malformed mountinfo line {line:?}")]
    MalformedMountinfo {
        /// The offending line.
        line: String,
    },
    /// The calling process could not move itself into the cgroup.
    #[error("cgroup: join {}: {}", path.display(), describe(source))]
    Join {
        /// The `tasks` or `cgroup.procs` file.
        path: PathBuf,
        /// The reason.
        source: io::Error,
    },
    /// No cgroup hierarchy (v1 or v2) is mounted.
    #[error("cgroup: no cgroup filesystem is mounted on this host")]
    NotMounted,
    /// `linux.cgroupsPath` (or the container ID used to derive it) is not acceptable.
    #[error("cgroup path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A controller needed by a non-empty setting is not mounted or not enabled.
    #[error("cgroup: the {controller} controller is not available on this host")]
    ControllerUnavailable {
        /// The controller name (`memory`, `pids`, …).
        controller: String,
    },
    /// A controller needed by a non-empty setting is mounted read-only.
    #[error("cgroup: the {controller} controller is mounted read-only at {}", mount.display())]
    ControllerReadOnly {
        /// The controller name.
        controller: String,
        /// Its mount point.
        mount: PathBuf,
    },
    /// A value in `linux.resources` is invalid whatever the host.
    #[error("cgroup: invalid linux.resources.{field} {value}: {reason}")]
    InvalidValue {
        /// The spec field, e.g. `memory.swap`.
        field: &'static str,
        /// The value as given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A setting that this host's cgroup version cannot express at all.
    #[error("cgroup: linux.resources.{field} {reason}")]
    Unsupported {
        /// The spec field, e.g. `unified`.
        field: &'static str,
        /// Why, e.g. `needs cgroup v2; this host uses cgroup v1`.
        reason: &'static str,
    },
    /// Writing a control file failed (the kernel refused the value, or the file is missing).
    #[error("cgroup {cgroup}: write {value:?} to {file}: {}", describe(err))]
    Write {
        /// The cgroup path, e.g. `/isola/<id>`.
        cgroup: String,
        /// The control file name, e.g. `memory.limit_in_bytes`.
        file: String,
        /// The value written.
        value: String,
        /// The reason.
        err: io::Error,
    },
    /// Another file-system operation on the cgroup failed (read, mkdir, rmdir, open).
    #[error("cgroup {cgroup}: {op} {}: {}", path.display(), describe(err))]
    Io {
        /// The cgroup path.
        cgroup: String,
        /// What was being done: `read`, `create directory`, `remove directory`, `open`.
        op: &'static str,
        /// The file or directory on the host.
        path: PathBuf,
        /// The reason.
        err: io::Error,
    },
    /// A control file holds something that is not in its documented format.
    #[error("cgroup {cgroup}: cannot parse {file}: {content:?}")]
    Parse {
        /// The cgroup path.
        cgroup: String,
        /// The control file name.
        file: String,
        /// What it held (trimmed).
        content: String,
    },
    /// The freezer did not reach the requested state in time.
    #[error("cgroup {cgroup}: timed out waiting for the freezer to become {state}")]
    FreezeTimeout {
        /// The cgroup path.
        cgroup: String,
        /// The state that was requested (`frozen` or `thawed`).
        state: &'static str,
    },
    /// Neither a v1 freezer nor a v2 `cgroup.freeze` is available.
    #[error("cgroup {cgroup}: no freezer is available on this host")]
    NoFreezer {
        /// The cgroup path.
        cgroup: String,
    },
    /// A `bpf(2)` call failed while installing the v2 device filter.
    #[error("cgroup {cgroup}: bpf {op}: {}{}", describe(err), verifier_suffix(log))]
    Bpf {
        /// The cgroup path.
        cgroup: String,
        /// The bpf command, e.g. `BPF_PROG_LOAD`.
        op: &'static str,
        /// The reason.
        err: io::Error,
        /// The verifier log (for `BPF_PROG_LOAD`), possibly empty.
        log: String,
    },
    /// Signalling a process of the cgroup failed.
    #[error(
        "cgroup {cgroup}: send signal {signal} to process {pid}: {}",
        describe(err)
    )]
    Signal {
        /// The cgroup path.
        cgroup: String,
        /// The process ID.
        pid: i32,
        /// The signal number.
        signal: i32,
        /// The reason.
        err: io::Error,
    },
}

impl CgroupError {
    /// The OS error number behind this error, if it came from a system call.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Mountinfo { err, .. }
            | Self::Write { err, .. }
            | Self::Io { err, .. }
            | Self::Bpf { err, .. }
            | Self::Signal { err, .. } => err.raw_os_error(),
            _ => None,
        }
    }
}

/// The kernel's reason for an I/O error in lower case, without Rust's `(os error N)` suffix.
pub(crate) fn describe(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => {
            let desc = nix::errno::Errno::from_raw(code).desc();
            let mut chars = desc.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => format!("os error {code}"),
            }
        }
        None => err.to_string(),
    }
}

fn verifier_suffix(log: &str) -> String {
    let log = log.trim();
    if log.is_empty() {
        String::new()
    } else {
        // The verifier log is multi-line; keep the message on one line.
        format!(
            " (verifier: {})",
            log.lines().collect::<Vec<_>>().join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_error_names_file_value_and_reason() {
        let e = CgroupError::Write {
            cgroup: "/isola/x".into(),
            file: "memory.limit_in_bytes".into(),
            value: "1000".into(),
            err: io::Error::from_raw_os_error(libc::EBUSY),
        };
        assert_eq!(
            e.to_string(),
            "cgroup /isola/x: write \"1000\" to memory.limit_in_bytes: device or resource busy"
        );
        assert_eq!(e.errno(), Some(libc::EBUSY));
    }

    #[test]
    fn controller_unavailable_message() {
        let e = CgroupError::ControllerUnavailable {
            controller: "pids".into(),
        };
        assert_eq!(
            e.to_string(),
            "cgroup: the pids controller is not available on this host"
        );
        assert_eq!(e.errno(), None);
    }

    #[test]
    fn bpf_log_stays_on_one_line() {
        let e = CgroupError::Bpf {
            cgroup: "/a".into(),
            op: "BPF_PROG_LOAD",
            err: io::Error::from_raw_os_error(libc::EACCES),
            log: "0: R1 ok\n1: bad\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "cgroup /a: bpf BPF_PROG_LOAD: permission denied (verifier: 0: R1 ok; 1: bad)"
        );
    }
}
