//! Errors of building a container's runtime spec. A refused flag or image setting names itself
//! and the value as the user wrote it, e.g. `--cap-add "CAP_FOO": unknown capability`.

use std::io;
use std::path::PathBuf;

use isola_runtime::rootfs::RootfsError;

/// Why the runtime spec of a container could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A flag (or the image setting it defaults to) has a value that cannot be used.
    #[error("{flag} {value:?}: {reason}")]
    Invalid {
        /// The flag as the user types it (`-u`, `--cap-add`), or the image setting (`image User`).
        flag: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Neither the user nor the image names a program to run.
    #[error("no command: the image has no Cmd or Entrypoint and none was given")]
    NoCommand,

    /// `--init` was asked for, but no init binary is available on this host.
    #[error("--init: no init binary is available on this host")]
    NoInit,

    /// A file of the image (`/etc/passwd`, `/etc/group`) could not be resolved inside the rootfs.
    #[error("resolve the image's {path}")]
    ImageFile {
        /// The path inside the container.
        path: &'static str,
        /// Why resolving failed.
        #[source]
        source: RootfsError,
    },

    /// A file of the image is not something that can be read as a database.
    #[error("the image's {path}: {reason}")]
    ImageFileType {
        /// The path inside the container.
        path: &'static str,
        /// e.g. `not a regular file`.
        reason: &'static str,
    },

    /// oci-spec refused to build a part of the spec (a builder's check).
    #[error("build the runtime spec")]
    Build(#[from] oci_spec::OciSpecError),

    /// A host file operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done, e.g. `write`.
        op: &'static str,
        /// The host path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl SpecError {
    /// A refused flag value.
    pub(crate) fn invalid(
        flag: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        SpecError::Invalid {
            flag,
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// A failed host file operation.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SpecError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
