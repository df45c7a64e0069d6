//! Moving the guest off the initramfs before anything else is mounted.
//!
//! The kernel starts the agent on `rootfs`, the initramfs's root mount, which has no parent
//! mount; `pivot_root(2)` refuses such a root with `EINVAL`, even in a new mount namespace, so a
//! container could only be entered with `MS_MOVE` + `chroot` (runc's `--no-pivot`, which leaves
//! the guest's mounts reachable below the container's root). Instead the agent does what
//! `switch_root` does: it mounts a tmpfs, moves it over `/` and chroots into it. Every later
//! mount (kernel filesystems, shares, containers) lives in that tmpfs, whose parent is rootfs,
//! so containers get a real `pivot_root`.
//!
//! The initramfs holds nothing but the agent itself (`/init`, mapped while it runs) and empty
//! mount points, so nothing is copied into the new root and nothing is freed from the old one.

use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

/// Where the new root is assembled before it is moved over `/`.
const STAGING: &str = "/newroot";

/// Directories the agent mounts on, created in the new root (mode 0755).
const MOUNT_POINTS: &[&str] = &["dev", "proc", "sys", "tmp", "run"];

/// A step of the switch failed.
#[derive(Debug, thiserror::Error)]
#[error("switch the guest root off the initramfs: {step}")]
pub struct SwitchError {
    /// What was being done.
    step: &'static str,
    /// The OS error.
    #[source]
    source: Errno,
}

fn step(step: &'static str) -> impl Fn(Errno) -> SwitchError {
    move |source| SwitchError { step, source }
}

/// Mounts a tmpfs at `/newroot`, makes the mount points, moves it over `/` and chroots into it.
///
/// # Errors
/// [`SwitchError`] naming the step; the root is then unchanged (or, past the move, already
/// the new one) and the caller falls back to `no_pivot` for containers.
pub fn switch_root() -> Result<(), SwitchError> {
    use nix::sys::stat::Mode;
    use nix::unistd::mkdir;
    match mkdir(STAGING, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(step("create /newroot")(e)),
    }
    mount(
        Some("root"),
        STAGING,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .map_err(step("mount a tmpfs on /newroot"))?;
    for d in MOUNT_POINTS {
        let p = Path::new(STAGING).join(d);
        match mkdir(&p, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(step("create the mount points in /newroot")(e)),
        }
    }
    nix::unistd::chdir(STAGING).map_err(step("chdir to /newroot"))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(step("move /newroot over /"))?;
    nix::unistd::chroot(".").map_err(step("chroot into the new root"))?;
    nix::unistd::chdir("/").map_err(step("chdir to /"))?;
    Ok(())
}
