//! Small wrappers over the file-descriptor-based mount API (Linux 5.12+): `fsopen`/`fsconfig`/
//! `fsmount` to create a filesystem, `open_tree` to clone a tree for a bind mount,
//! `mount_setattr` to change flags and propagation, and `move_mount` to attach a mount onto a
//! destination that was resolved beforehand. Every mount goes onto an `O_PATH` descriptor, so
//! nothing can swap the destination path between resolution and mount.

use std::ffi::c_uint;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, CWD};
use rustix::io::Errno;
use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
    open_tree, FsMountFlags, FsOpenFlags, MountAttrFlags, MountPropagationFlags, MoveMountFlags,
    OpenTreeFlags,
};

use super::mounts::{AttrChange, PropagationChange};

/// A failed mount step, with the kernel's explanation when the filesystem context logged one.
#[derive(Debug)]
pub(crate) struct FsError {
    pub errno: Errno,
    pub message: Option<String>,
}

impl From<Errno> for FsError {
    fn from(errno: Errno) -> Self {
        FsError {
            errno,
            message: None,
        }
    }
}

/// What to create with [`new_filesystem`].
#[derive(Debug)]
pub(crate) struct NewFs<'a> {
    pub fstype: &'a str,
    pub source: Option<&'a std::path::Path>,
    /// Superblock flags (`ro`, `sync`, `dirsync`, `mand`, `lazytime`).
    pub sb_flags: &'a [&'a str],
    /// Filesystem options, `key=value` or `flag`.
    pub data: &'a [String],
    /// Per-mount attributes of the new mount.
    pub attrs: MountAttrFlags,
}

/// Creates a detached mount of a new filesystem instance.
pub(crate) fn new_filesystem(fs: &NewFs<'_>) -> Result<OwnedFd, FsError> {
    let ctx = fsopen(fs.fstype, FsOpenFlags::FSOPEN_CLOEXEC)?;
    let with_log = |errno: Errno| FsError {
        errno,
        message: kernel_log(ctx.as_fd()),
    };
    if let Some(src) = fs.source {
        fsconfig_set_string(&ctx, "source", src).map_err(with_log)?;
    }
    for flag in fs.sb_flags {
        fsconfig_set_flag(&ctx, *flag).map_err(with_log)?;
    }
    for opt in fs.data {
        match opt.split_once('=') {
            Some((key, value)) => {
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                fsconfig_set_string(&ctx, key, value)
            }
            None => fsconfig_set_flag(&ctx, opt.as_str()),
        }
        .map_err(with_log)?;
    }
    fsconfig_create(&ctx).map_err(with_log)?;
    fsmount(&ctx, FsMountFlags::FSMOUNT_CLOEXEC, fs.attrs).map_err(with_log)
}

/// Reads the error messages the kernel queued on a filesystem context (`e tmpfs: Bad value…`).
fn kernel_log(ctx: BorrowedFd<'_>) -> Option<String> {
    let mut messages = Vec::new();
    let mut buf = [0u8; 512];
    for _ in 0..8 {
        match rustix::io::read(ctx, &mut buf) {
            Ok(n) if n > 0 => {
                let line = String::from_utf8_lossy(&buf[..n]);
                if let Some(msg) = line.trim_end().strip_prefix("e ") {
                    messages.push(msg.to_string());
                }
            }
            _ => break,
        }
    }
    (!messages.is_empty()).then(|| messages.join("; "))
}

/// Clones the mount tree at `path` (relative to `dir`; empty for `dir` itself) into a detached
/// mount, for a bind mount. `recursive` brings submounts along (`rbind`).
pub(crate) fn clone_tree(
    dir: BorrowedFd<'_>,
    path: &std::path::Path,
    recursive: bool,
) -> Result<OwnedFd, Errno> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    if path.as_os_str().is_empty() {
        flags |= OpenTreeFlags::AT_EMPTY_PATH;
    }
    open_tree(dir, path, flags)
}

/// Clones a host path (relative paths are relative to the current directory).
pub(crate) fn clone_host_path(path: &std::path::Path, recursive: bool) -> Result<OwnedFd, Errno> {
    clone_tree(CWD, path, recursive)
}

/// Attaches the detached mount `mnt` onto the resolved destination `target`.
pub(crate) fn attach(mnt: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), Errno> {
    move_mount(
        mnt,
        "",
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
}

/// `struct mount_attr` of `<linux/mount.h>` (`MOUNT_ATTR_SIZE_VER0`).
#[repr(C)]
#[derive(Debug, Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(2)` on the mount whose root `fd` is (a mount descriptor from `fsmount` or
/// `open_tree`, or an `O_PATH` descriptor of a mount point), or on `path` when given.
fn mount_setattr(
    fd: BorrowedFd<'_>,
    path: Option<&std::ffi::CStr>,
    recursive: bool,
    attr: &MountAttr,
) -> Result<(), Errno> {
    let mut flags: c_uint = 0;
    if path.is_none() {
        flags |= libc::AT_EMPTY_PATH as c_uint;
    }
    if recursive {
        flags |= libc::AT_RECURSIVE as c_uint;
    }
    let path = path.unwrap_or(c"");
    // SAFETY: `path` is a NUL-terminated string and `attr` a live `struct mount_attr` whose exact
    // size is passed; the kernel only reads them during the call. `fd` is a valid descriptor
    // borrowed for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            path.as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO))
    }
}

/// Applies an attribute change to the mount `fd` (and, if `recursive`, everything below it).
/// Flags not named in `change` are left alone, so flags locked by a user namespace survive.
pub(crate) fn set_attrs(
    fd: BorrowedFd<'_>,
    change: &AttrChange,
    recursive: bool,
) -> Result<(), Errno> {
    if change.is_empty() {
        return Ok(());
    }
    let (set, clear) = change.setattr_pair();
    let attr = MountAttr {
        attr_set: set.bits().into(),
        attr_clr: clear.bits().into(),
        ..MountAttr::default()
    };
    mount_setattr(fd, None, recursive, &attr)
}

/// [`set_attrs`], retried without clearing the flags the mount already has when the kernel
/// refuses with `EPERM`: in a user namespace, flags inherited from a more privileged mount
/// (e.g. `nodev`) are locked, and like runc isola keeps them rather than fail.
pub(crate) fn set_attrs_keep_locked(
    fd: BorrowedFd<'_>,
    change: &AttrChange,
    recursive: bool,
) -> Result<(), Errno> {
    match set_attrs(fd, change, recursive) {
        Err(Errno::PERM) if !change.clear.is_empty() || change.atime.is_some() => {
            let present = present_attrs(fd)?;
            let mut relaxed = *change;
            relaxed.clear -= present;
            if present.intersects(MountAttrFlags::MOUNT_ATTR_NOATIME) {
                relaxed.atime = None;
            }
            set_attrs(fd, &relaxed, recursive)
        }
        other => other,
    }
}

/// The per-mount attributes a mount has now, from `fstatvfs(2)`.
fn present_attrs(fd: BorrowedFd<'_>) -> Result<MountAttrFlags, Errno> {
    use rustix::fs::StatVfsMountFlags as S;
    let st = rfs::fstatvfs(fd)?;
    let mut out = MountAttrFlags::empty();
    for (s, a) in [
        (S::RDONLY, MountAttrFlags::MOUNT_ATTR_RDONLY),
        (S::NOSUID, MountAttrFlags::MOUNT_ATTR_NOSUID),
        (S::NODEV, MountAttrFlags::MOUNT_ATTR_NODEV),
        (S::NOEXEC, MountAttrFlags::MOUNT_ATTR_NOEXEC),
        (S::NOATIME, MountAttrFlags::MOUNT_ATTR_NOATIME),
        (S::NODIRATIME, MountAttrFlags::MOUNT_ATTR_NODIRATIME),
    ] {
        if st.f_flag.contains(s) {
            out |= a;
        }
    }
    Ok(out)
}

/// Changes the propagation of the (attached) mount `fd`.
pub(crate) fn set_propagation(fd: BorrowedFd<'_>, change: PropagationChange) -> Result<(), Errno> {
    let attr = MountAttr {
        propagation: change.kind.bits().into(),
        ..MountAttr::default()
    };
    mount_setattr(fd, None, change.recursive, &attr)
}

/// Changes the propagation of the mount at `path` (a mount point, e.g. `/`).
pub(crate) fn set_path_propagation(
    path: &std::path::Path,
    change: PropagationChange,
) -> Result<(), Errno> {
    let mut flags = change.kind;
    if change.recursive {
        flags |= MountPropagationFlags::REC;
    }
    rustix::mount::mount_change(path, flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_attr_has_the_kernel_layout() {
        // MOUNT_ATTR_SIZE_VER0
        assert_eq!(std::mem::size_of::<MountAttr>(), 32);
    }

    #[test]
    fn unknown_filesystem_is_enodev() {
        let e = new_filesystem(&NewFs {
            fstype: "isola-no-such-fs",
            source: None,
            sb_flags: &[],
            data: &[],
            attrs: MountAttrFlags::empty(),
        })
        .unwrap_err();
        // Unprivileged callers get EPERM before the type is looked up.
        assert!(matches!(e.errno, Errno::NODEV | Errno::PERM), "{e:?}");
    }
}
