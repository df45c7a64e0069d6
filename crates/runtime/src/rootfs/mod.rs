//! The container's root filesystem: everything between "the container process is in its new
//! mount namespace" and "it runs in its rootfs with every mount, device, masked and read-only
//! path in place" (runtime-spec config.md "Root" and "Mounts"; config-linux.md "Devices",
//! "Default Devices", "Masked Paths", "Readonly Paths", "Rootfs Mount Propagation").
//!
//! The lifecycle code calls, in the container's init process (single-threaded, after
//! `unshare(CLONE_NEWNS)` and any user/pid/net namespaces):
//! [`prepare`] → [`pivot`] → [`finish`] → [`ensure_cwd`].
//!
//! Threat model. The rootfs comes from an image that may be hostile (symlinks anywhere, a
//! `/dev/null` that is not the null device), and config.json may be hostile too. Neither may make
//! isola create, mount or write anything outside the rootfs:
//! - every destination (mounts, devices, `/dev/console`, masked and read-only paths, the working
//!   directory) is resolved with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from a
//!   descriptor of the root, and missing parts are created relative to descriptors resolved the
//!   same way ([`open_in_root`]); nothing is created on procfs, sysfs or cgroupfs;
//! - mounts are attached with `move_mount(2)` onto the resolved descriptor, so the destination
//!   cannot be swapped between resolution and mount;
//! - paths with `..` in config.json are refused with an error naming the field, and the whole
//!   config is checked before the first mount;
//! - masked paths are covered with the host's `/dev/null`, checked to be char 1:3 before the pivot;
//! - `remount` never reconfigures a superblock (which could be shared with host mounts);
//! - bind-mount *sources* are host paths from the bundle's config, trusted as runc trusts them.
//!
//! Requires Linux 5.12 (`openat2`, `fsopen`, `open_tree`, `move_mount`, `mount_setattr`).

mod apply;
mod devices;
mod error;
mod masked;
mod mount_ops;
mod mounts;
mod pivot;
mod safe_path;

#[cfg(test)]
mod tests;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::MountPropagationFlags;

pub use error::{OsError, RootfsError};
pub use pivot::pivot;
pub use safe_path::{open_in_root, CreateKind};

use mounts::{propagation, MountKind, PropagationChange};

/// How the root filesystem is set up, beyond what config.json says.
#[derive(Debug, Clone, Default)]
pub struct RootfsOptions {
    /// Switch root with `MS_MOVE` + `chroot` instead of `pivot_root` (rootfs on ramfs/initramfs).
    pub no_pivot: bool,
    /// The process is in a user namespace: device nodes cannot be made, so the host's nodes are
    /// bind-mounted instead (config-linux.md "Devices").
    pub in_user_ns: bool,
    /// For `cgroup` mounts on cgroup v1 and hybrid hosts: the container's directory in each
    /// hierarchy, mounted at `<destination>/<name>`. On v2 it is normally empty; if it holds an
    /// entry, its directory is bind-mounted when the kernel refuses a new cgroup2 instance.
    pub cgroup_hierarchies: Vec<CgroupMountSource>,
    /// The host uses the unified (v2) hierarchy only: `cgroup` mounts are a new cgroup2 instance.
    pub cgroup_v2: bool,
}

/// One cgroup v1 hierarchy to show inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMountSource {
    /// The hierarchy's name, e.g. `memory`, `cpu,cpuacct` or `name=systemd`.
    pub name: String,
    /// The container's cgroup directory in that hierarchy on the host.
    pub host_dir: PathBuf,
}

/// What [`prepare`] hands to [`finish`]: the host's `/dev/null`, cloned and checked before the
/// pivot, for masking paths after it. Dropping it closes the descriptor.
#[derive(Debug)]
pub struct PreparedRootfs {
    dev_null: masked::DevNull,
}

/// Prepares the rootfs before the pivot (config.md "Root", "Mounts"; config-linux.md
/// "Rootfs Mount Propagation", "Devices", "Default Devices").
///
/// Checks the whole config first (mount destinations, options and types, devices, masked and
/// read-only paths, `linux.rootfsPropagation`), so that a bad config.json fails before anything
/// is mounted. Then: clones and checks the host's `/dev/null`; sets the propagation of `/`
/// (`linux.rootfsPropagation`, default recursive slave, as runc); bind-mounts the rootfs onto
/// itself (recursively) so it is a mount point; applies every entry of `mounts` in order; creates
/// the default devices and links (unless `/dev` is a bind mount) and `linux.devices`; and binds
/// `console` (the pty slave) onto `/dev/console` when given.
pub fn prepare(
    spec: &Spec,
    rootfs: &Path,
    opts: &RootfsOptions,
    console: Option<&Path>,
) -> Result<PreparedRootfs, RootfsError> {
    let linux = spec.linux().as_ref();
    let mounts = apply::plan(spec.mounts().as_deref().unwrap_or(&[]))?;
    let dev_is_bind = mounts
        .iter()
        .any(|m| m.kind == MountKind::Bind && m.destination == Path::new("/dev"));
    let devices = devices::plan(
        linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]),
        !dev_is_bind,
    )?;
    check_paths_of(spec)?;
    let root_propagation = rootfs_propagation(spec)?;

    let dev_null = masked::DevNull::open()?;

    let change = root_propagation.unwrap_or(PropagationChange {
        kind: MountPropagationFlags::DOWNSTREAM,
        recursive: true,
    });
    mount_ops::set_path_propagation(Path::new("/"), change).map_err(|e| {
        RootfsError::Propagation {
            target: PathBuf::from("/"),
            source: e.into(),
        }
    })?;
    let rootfs_err = |e: Errno| RootfsError::Mount {
        destination: PathBuf::from("/"),
        kind: "bind".to_string(),
        source: e.into(),
    };
    rustix::mount::mount_bind_recursive(rootfs, rootfs).map_err(rootfs_err)?;
    if change.kind == MountPropagationFlags::SHARED {
        // pivot_root refuses a new root, or a parent of it, with shared propagation; finish()
        // applies the requested propagation once the pivot is done.
        make_parent_private(rootfs)?;
        rustix::mount::mount_change(rootfs, MountPropagationFlags::PRIVATE).map_err(rootfs_err)?;
    }

    // Opened after the self-bind, so that every lookup starts on the new mount.
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RootfsError::Resolve {
        path: rootfs.to_path_buf(),
        source: e.into(),
    })?;
    for m in &mounts {
        tracing::debug!(destination = ?m.destination, kind = m.kind.label(), "mount");
        apply::apply(root.as_fd(), m, opts)?;
    }
    for d in &devices {
        devices::create(root.as_fd(), d, opts.in_user_ns)?;
    }
    if !dev_is_bind {
        devices::create_links(root.as_fd())?;
    }
    if let Some(pty) = console {
        devices::console(root.as_fd(), pty)?;
    }
    Ok(PreparedRootfs { dev_null })
}

/// Finishes the rootfs after [`pivot`]: `linux.readonlyPaths` (config-linux.md "Readonly
/// Paths"), `linux.maskedPaths` ("Masked Paths"), `root.readonly` (config.md "Root") and the
/// final propagation of `/` when `linux.rootfsPropagation` is set ("Rootfs Mount Propagation").
///
/// Paths that do not exist in the container are skipped. Masked files are covered with the
/// `/dev/null` that [`prepare`] cloned from the host and checked, never with the container's.
pub fn finish(spec: &Spec, prepared: PreparedRootfs) -> Result<(), RootfsError> {
    let mut dev_null = prepared.dev_null;
    let (masked, readonly) = check_paths_of(spec)?;
    let root = masked::open_root()?;
    for path in &readonly {
        masked::readonly(root.as_fd(), path)?;
    }
    for path in &masked {
        masked::mask(root.as_fd(), path, &mut dev_null)?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        masked::root_readonly()?;
    }
    if let Some(change) = rootfs_propagation(spec)? {
        mount_ops::set_path_propagation(Path::new("/"), change).map_err(|e| {
            RootfsError::Propagation {
                target: PathBuf::from("/"),
                source: e.into(),
            }
        })?;
    }
    Ok(())
}

/// Makes sure `cwd` (`process.cwd`, config.md "Process") exists inside the current root, after
/// [`pivot`]: missing directories are created (mode 0755), resolving symlinks only within the
/// root, as runc and crun do. The caller then changes into it.
pub fn ensure_cwd(cwd: &Path) -> Result<(), RootfsError> {
    if !cwd.is_absolute() {
        return Err(error::invalid(
            "process.cwd",
            cwd.display(),
            "must be an absolute path",
        ));
    }
    let root = masked::open_root()?;
    safe_path::open_beneath(root.as_fd(), cwd, CreateKind::Dir).map(drop)
}

/// `linux.maskedPaths` and `linux.readonlyPaths`, checked.
fn check_paths_of(spec: &Spec) -> Result<(Vec<PathBuf>, Vec<PathBuf>), RootfsError> {
    let linux = spec.linux().as_ref();
    let masked = linux
        .and_then(|l| l.masked_paths().as_deref())
        .unwrap_or(&[]);
    let readonly = linux
        .and_then(|l| l.readonly_paths().as_deref())
        .unwrap_or(&[]);
    Ok((
        masked::check_paths("linux.maskedPaths", masked)?,
        masked::check_paths("linux.readonlyPaths", readonly)?,
    ))
}

/// `linux.rootfsPropagation`, parsed; `None` when unset or empty.
fn rootfs_propagation(spec: &Spec) -> Result<Option<PropagationChange>, RootfsError> {
    let Some(word) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .filter(|w| !w.is_empty())
    else {
        return Ok(None);
    };
    propagation(word).map(Some).ok_or_else(|| {
        error::invalid(
            "linux.rootfsPropagation",
            word,
            "must be shared, slave, private or unbindable (optionally r-prefixed)",
        )
    })
}

/// Makes the mount that contains `rootfs` private (walking up to the nearest mount point).
fn make_parent_private(rootfs: &Path) -> Result<(), RootfsError> {
    let abs = std::fs::canonicalize(rootfs).unwrap_or_else(|_| rootfs.to_path_buf());
    let mut dir = abs.parent();
    while let Some(d) = dir {
        match rustix::mount::mount_change(d, MountPropagationFlags::PRIVATE) {
            Ok(()) => return Ok(()),
            Err(Errno::INVAL) => dir = d.parent(),
            Err(e) => {
                return Err(RootfsError::Propagation {
                    target: d.to_path_buf(),
                    source: e.into(),
                })
            }
        }
    }
    Ok(())
}
