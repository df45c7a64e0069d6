//! After the pivot: `linux.readonlyPaths` (config-linux.md "Readonly Paths"),
//! `linux.maskedPaths` (config-linux.md "Masked Paths") and `root.readonly` (config.md "Root").
//!
//! Masked files are covered with a bind mount of `/dev/null` — the host's, cloned before the
//! pivot and checked to be the character device 1:3, never the container's own `/dev/null`,
//! which a hostile image or config could make a symlink or a regular file (the CVE-2025-31133
//! class). Masked directories get an empty read-only tmpfs.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;
use rustix::mount::MountAttrFlags;

use super::error::{OsError, RootfsError};
use super::mount_ops::{self as ops, NewFs};
use super::mounts::AttrChange;
use super::safe_path::{check_container_path, open_beneath, CreateKind};

/// A detached mount of the host's `/dev/null`, checked to be the null device (char 1:3).
#[derive(Debug)]
pub(crate) struct DevNull {
    mnt: OwnedFd,
    /// Once attached (at the first masked file) the mount is in the container's mount namespace
    /// and further copies are cloned from it.
    attached: bool,
}

impl DevNull {
    /// Clones the host's `/dev/null` and checks what was cloned.
    pub fn open() -> Result<Self, RootfsError> {
        let path = Path::new("/dev/null");
        let mnt = ops::clone_host_path(path, false).map_err(|e| RootfsError::DevNull {
            reason: format!("cannot clone: {}", OsError(e)),
        })?;
        let st = rfs::fstat(&mnt).map_err(|e| RootfsError::DevNull {
            reason: format!("cannot stat: {}", OsError(e)),
        })?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind != FileType::CharacterDevice || st.st_rdev != rfs::makedev(1, 3) {
            return Err(RootfsError::DevNull {
                reason: format!(
                    "is a {kind:?} {}:{}, not the null character device 1:3",
                    rfs::major(st.st_rdev),
                    rfs::minor(st.st_rdev)
                ),
            });
        }
        Ok(DevNull {
            mnt,
            attached: false,
        })
    }

    /// Mounts the null device onto `target`.
    fn mount_onto(&mut self, target: BorrowedFd<'_>) -> Result<(), Errno> {
        if self.attached {
            let copy = ops::clone_tree(self.mnt.as_fd(), Path::new(""), false)?;
            ops::attach(copy.as_fd(), target)
        } else {
            ops::attach(self.mnt.as_fd(), target)?;
            self.attached = true;
            Ok(())
        }
    }
}

/// Checks `linux.maskedPaths` or `linux.readonlyPaths`: absolute, without `..`.
pub(crate) fn check_paths(field: &str, paths: &[String]) -> Result<Vec<PathBuf>, RootfsError> {
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| check_container_path(&format!("{field}[{i}]"), Path::new(p), false))
        .collect()
}

/// The current root, for in-root resolution after the pivot.
pub(crate) fn open_root() -> Result<OwnedFd, RootfsError> {
    rfs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RootfsError::Resolve {
        path: PathBuf::from("/"),
        source: e.into(),
    })
}

/// Resolves `path` inside the root; `None` when it does not exist (such paths are skipped).
fn existing(root: BorrowedFd<'_>, path: &Path) -> Result<Option<OwnedFd>, RootfsError> {
    match open_beneath(root, path, CreateKind::None) {
        Ok(fd) => Ok(Some(fd)),
        Err(RootfsError::Resolve {
            source: OsError(Errno::NOENT | Errno::NOTDIR),
            ..
        }) => {
            tracing::debug!("{path:?} does not exist in the container; skipped");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Masks one path: `/dev/null` over a file, an empty read-only tmpfs over a directory.
pub(crate) fn mask(
    root: BorrowedFd<'_>,
    path: &Path,
    dev_null: &mut DevNull,
) -> Result<(), RootfsError> {
    let Some(target) = existing(root, path)? else {
        return Ok(());
    };
    let err = |e: Errno| RootfsError::Mask {
        path: path.to_path_buf(),
        source: OsError(e),
    };
    let st = rfs::fstat(&target).map_err(err)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return dev_null.mount_onto(target.as_fd()).map_err(err);
    }
    let tmpfs = ops::new_filesystem(&NewFs {
        fstype: "tmpfs",
        source: Some(Path::new("tmpfs")),
        sb_flags: &["ro"],
        data: &[],
        attrs: MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    })
    .map_err(|e| err(e.errno))?;
    ops::attach(tmpfs.as_fd(), target.as_fd()).map_err(err)
}

/// Makes one path (and every mount below it) read-only: a recursive bind of the path onto
/// itself, made read-only before it is attached. Other flags (nosuid, nodev, noexec, and
/// flags locked by a user namespace) are kept as they are.
pub(crate) fn readonly(root: BorrowedFd<'_>, path: &Path) -> Result<(), RootfsError> {
    let Some(target) = existing(root, path)? else {
        return Ok(());
    };
    let err = |e: Errno| RootfsError::Readonly {
        path: path.to_path_buf(),
        source: OsError(e),
    };
    let mnt = ops::clone_tree(target.as_fd(), Path::new(""), true).map_err(err)?;
    ops::set_attrs(mnt.as_fd(), &read_only(), true).map_err(err)?;
    ops::attach(mnt.as_fd(), target.as_fd()).map_err(err)
}

/// `root.readonly`: the root mount itself (not the mounts on it) becomes read-only.
pub(crate) fn root_readonly() -> Result<(), RootfsError> {
    let err = |e: Errno| RootfsError::Readonly {
        path: PathBuf::from("/"),
        source: OsError(e),
    };
    let root = rfs::openat(
        CWD,
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(err)?;
    ops::set_attrs(root.as_fd(), &read_only(), false).map_err(err)
}

fn read_only() -> AttrChange {
    AttrChange {
        set: MountAttrFlags::MOUNT_ATTR_RDONLY,
        ..AttrChange::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_by_field() {
        let ok = check_paths("linux.maskedPaths", &["/proc/kcore".into()]).unwrap();
        assert_eq!(ok, vec![PathBuf::from("/proc/kcore")]);
        let e = check_paths("linux.maskedPaths", &["/proc".into(), "proc/x".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"linux.maskedPaths[1] "proc/x": must be an absolute path"#
        );
        let e = check_paths("linux.readonlyPaths", &["/../etc".into()]).unwrap_err();
        assert!(e.to_string().contains("escapes the container root"));
    }
}
