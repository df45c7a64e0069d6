//! The isola runtime library: executes an OCI runtime bundle (runtime-spec v1.2, Linux) as an isolated
//! process. Process isolation calls it on the host; the guest agent calls the same code inside each VM.
//!
//! It depends on nothing host-specific: no image store, no engine, no database.
//!
//! Threat model. The bundle's `config.json` and the root filesystem come from an image that may be
//! hostile, and the container's processes are untrusted once they run:
//! - every mount destination and every path the runtime creates inside the container is resolved
//!   beneath the rootfs without following symlinks out of it (`openat2` with `RESOLVE_IN_ROOT`);
//! - no host file descriptor reaches the container process; the runtime's own binary is never
//!   reachable for writing from inside (the process is non-dumpable until it execs);
//! - the working directory is resolved inside the container after `pivot_root`, never on the host;
//! - masked paths are bind-mounted from a `/dev/null` that is checked to be the real device;
//! - config.json is validated at the boundary: unknown namespace types, capability names, mount
//!   destinations that climb out of the rootfs are refused with an error naming the field.

pub mod cgroups;
pub mod container;
pub mod error;
pub mod hooks;
mod init;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod spec;
pub mod state;
pub mod sync;
mod syscall;
pub mod tty;

pub use container::{Container, CreateOptions, ExecOptions, Runtime};
pub use error::{Error, Result};
pub use oci_spec::runtime as oci;
