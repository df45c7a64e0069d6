//! Errors of the root filesystem module: one enum, each variant naming the path, mount destination
//! or config field it is about. Messages are one line, lower case, and do not repeat their source.

use std::fmt;
use std::path::PathBuf;

use rustix::io::Errno;

/// An errno from a system call, displayed the way the rest of isola's messages read
/// (`permission denied`, not `Permission denied (os error 13)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsError(pub Errno);

impl OsError {
    /// The raw errno value.
    pub fn raw(&self) -> i32 {
        self.0.raw_os_error()
    }
}

impl From<Errno> for OsError {
    fn from(e: Errno) -> Self {
        OsError(e)
    }
}

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = std::io::Error::from_raw_os_error(self.raw()).to_string();
        let text = match text.rfind(" (os error ") {
            Some(i) => &text[..i],
            None => &text[..],
        };
        let mut chars = text.chars();
        match chars.next() {
            Some(c) => write!(f, "{}{}", c.to_lowercase(), chars.as_str()),
            None => write!(f, "os error {}", self.raw()),
        }
    }
}

impl std::error::Error for OsError {}

/// Why preparing, pivoting into or finishing the container's root filesystem failed.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A path or value in config.json is refused before anything is touched, e.g.
    /// `mounts[3].destination "../../etc": escapes the container root`.
    #[error("{field} {value:?}: {reason}")]
    InvalidConfig {
        /// The config.json field, e.g. `mounts[3].destination` or `linux.maskedPaths[0]`.
        field: String,
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Resolving (and creating) a path beneath the container root failed.
    #[error("resolve {path:?} in the container root")]
    Resolve {
        /// The path inside the container.
        path: PathBuf,
        /// The failing system call.
        #[source]
        source: OsError,
    },

    /// A path that must be a directory (or must not be one) is the other kind.
    #[error("{path:?} in the container root: {reason}")]
    WrongType {
        /// The path inside the container.
        path: PathBuf,
        /// e.g. `is not a directory`.
        reason: &'static str,
    },

    /// Creating a missing directory or file was refused because its parent is on a kernel
    /// filesystem (proc, sysfs, cgroupfs, …), where creating it would change host state.
    #[error("refusing to create {path:?}: its parent is on a kernel filesystem")]
    KernelFilesystem {
        /// The path inside the container.
        path: PathBuf,
    },

    /// A mount from `mounts` (or one isola makes itself) failed.
    #[error("mount {destination:?} ({kind})")]
    Mount {
        /// The mount destination inside the container.
        destination: PathBuf,
        /// The mount type, or `bind`.
        kind: String,
        /// The failing system call.
        #[source]
        source: OsError,
    },

    /// A mount failed and the kernel explained why in the filesystem context's log.
    #[error("mount {destination:?} ({kind}): {message}")]
    MountRefused {
        /// The mount destination inside the container.
        destination: PathBuf,
        /// The mount type.
        kind: String,
        /// The kernel's message, e.g. `tmpfs: Bad value for 'size'`.
        message: String,
    },

    /// The source of a bind mount cannot be opened.
    #[error("mount {destination:?}: bind source {source_path:?}")]
    BindSource {
        /// The mount destination inside the container.
        destination: PathBuf,
        /// The host path of the source.
        source_path: PathBuf,
        /// The failing system call.
        #[source]
        source: OsError,
    },

    /// Changing the propagation of a mount failed.
    #[error("set propagation of {target:?}")]
    Propagation {
        /// The mount point.
        target: PathBuf,
        /// The failing system call.
        #[source]
        source: OsError,
    },

    /// Creating a device node (default device or `linux.devices`) failed.
    #[error("device {path:?}")]
    Device {
        /// The device path inside the container.
        path: PathBuf,
        /// The failing system call.
        #[source]
        source: OsError,
    },

    /// Something other than the requested device already exists at a device path.
    #[error("device {path:?}: a different file already exists there")]
    DeviceExists {
        /// The device path inside the container.
        path: PathBuf,
    },

    /// The host's `/dev/null`, the source of every masked-path mount, is not the null device.
    #[error("/dev/null: {reason}")]
    DevNull {
        /// What was found instead.
        reason: String,
    },

    /// Masking a path (`linux.maskedPaths`) failed.
    #[error("mask {path:?}")]
    Mask {
        /// The masked path inside the container.
        path: PathBuf,
        /// The failing system call.
        #[source]
        source: OsError,
    },

    /// Making a path read-only (`linux.readonlyPaths` or `root.readonly`) failed.
    #[error("make {path:?} read-only")]
    Readonly {
        /// The path inside the container.
        path: PathBuf,
        /// The failing system call.
        #[source]
        source: OsError,
    },

    /// A step of switching to the container root failed.
    #[error("{step} into {rootfs:?}")]
    Pivot {
        /// e.g. `pivot_root` or `detach the old root`.
        step: &'static str,
        /// The rootfs path on the host.
        rootfs: PathBuf,
        /// The failing system call.
        #[source]
        source: OsError,
    },
}

/// Shorthand for building a `RootfsError::InvalidConfig`.
pub(crate) fn invalid(
    field: impl Into<String>,
    value: impl fmt::Display,
    reason: &str,
) -> RootfsError {
    RootfsError::InvalidConfig {
        field: field.into(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_error_reads_lower_case_without_code() {
        assert_eq!(OsError(Errno::ACCESS).to_string(), "permission denied");
        assert_eq!(
            OsError(Errno::NOENT).to_string(),
            "no such file or directory"
        );
    }

    #[test]
    fn invalid_config_names_field_and_value() {
        let e = invalid(
            "mounts[3].destination",
            "../../etc",
            "escapes the container root",
        );
        assert_eq!(
            e.to_string(),
            r#"mounts[3].destination "../../etc": escapes the container root"#
        );
    }
}
