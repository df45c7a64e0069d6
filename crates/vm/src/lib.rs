//! VM isolation, host side (DESIGN.md, "Components": `vm`).
//!
//! - [`qemu`]: starts QEMU's `microvm` machine with isola's guest kernel and initramfs, the agent's
//!   virtio-serial channel and 9p shares; owns its lifetime (parent-death signal, QMP `quit`).
//! - [`assets`]: finds QEMU, the guest kernel and assembles the initramfs holding the agent.
//! - [`accel`]: decides KVM or TCG by booting the guest for real under KVM with a deadline.
//! - [`template`]: VM templates: a guest booted once, saved, and restored into many VMs.
//! - [`qmp`]: the QMP client those use.

pub mod accel;
pub mod assets;
mod cpio;
mod elf;
mod error;
pub mod qemu;
pub mod qmp;
pub mod template;

pub use error::{Error, Result};
