//! Switching the process into the container's root (runtime-spec config.md "Root"): either
//! `pivot_root(2)` with the old root detached, or, where that cannot work (a rootfs on the
//! initramfs), moving the rootfs mount over `/` and `chroot(2)`.

use std::path::Path;

use rustix::fs::{self as rfs, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{unmount, MountPropagationFlags, UnmountFlags};
use rustix::process::{chdir, chroot, fchdir, pivot_root};

use super::error::RootfsError;

/// Makes `rootfs` (prepared by [`super::prepare`]) the process's root and `/` its working
/// directory.
///
/// With `no_pivot` false this is `pivot_root(".", ".")` from inside the rootfs: the old root is
/// stacked on the new one, made a recursive slave (so detaching it cannot propagate to the
/// host's mounts) and lazily unmounted, leaving nothing of the host reachable. With `no_pivot`
/// the rootfs mount is moved onto `/` and the process chroots into it, as runc's `--no-pivot`
/// does; this is weaker (the old mounts stay in the namespace, beneath the rootfs) and is meant
/// for a rootfs on ramfs/initramfs, where `pivot_root` fails with `EINVAL`.
pub fn pivot(rootfs: &Path, no_pivot: bool) -> Result<(), RootfsError> {
    let step = |step: &'static str| {
        move |e: Errno| RootfsError::Pivot {
            step,
            rootfs: rootfs.to_path_buf(),
            source: e.into(),
        }
    };
    let dir = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
    let new_root = rfs::open(rootfs, dir, Mode::empty()).map_err(step("open the rootfs"))?;
    if no_pivot {
        fchdir(&new_root).map_err(step("chdir"))?;
        rustix::mount::mount_move(".", "/").map_err(step("move the rootfs over /"))?;
        chroot(".").map_err(step("chroot"))?;
    } else {
        let old_root = rfs::open("/", dir, Mode::empty()).map_err(step("open the old root"))?;
        fchdir(&new_root).map_err(step("chdir"))?;
        pivot_root(".", ".").map_err(step("pivot_root"))?;
        // The old root is now mounted on top of the new one; step onto it to detach it.
        fchdir(&old_root).map_err(step("chdir to the old root"))?;
        rustix::mount::mount_change(
            ".",
            MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
        )
        .map_err(step("make the old root a slave"))?;
        unmount(".", UnmountFlags::DETACH).map_err(step("detach the old root"))?;
    }
    chdir("/").map_err(step("chdir to /"))
}
