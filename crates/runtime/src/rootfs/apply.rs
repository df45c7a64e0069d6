//! Applying `mounts` (runtime-spec config.md "Mounts") beneath the rootfs: every entry is checked
//! first ([`plan`]), so a bad config fails before anything is mounted; then each destination is
//! resolved (and created) inside the root and the mount is attached onto its descriptor.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;
use rustix::fs::{self as rfs, FileType};
use rustix::io::Errno;
use rustix::mount::MountAttrFlags;

use super::error::{invalid, OsError, RootfsError};
use super::mount_ops::{self as ops, FsError, NewFs};
use super::mounts::{AttrChange, MountKind, MountOptions};
use super::safe_path::{check_container_path, open_beneath, CreateKind};
use super::RootfsOptions;

/// One entry of `mounts`, checked and parsed.
#[derive(Debug)]
pub(crate) struct PlannedMount<'a> {
    pub index: usize,
    pub destination: PathBuf,
    pub options: MountOptions,
    pub kind: MountKind,
    pub mount: &'a Mount,
}

/// Checks and parses every entry of `mounts`.
pub(crate) fn plan(mounts: &[Mount]) -> Result<Vec<PlannedMount<'_>>, RootfsError> {
    mounts
        .iter()
        .enumerate()
        .map(|(index, m)| {
            let field = format!("mounts[{index}].destination");
            let destination = check_container_path(&field, m.destination(), true)?;
            if destination == Path::new("/") {
                // A mount over the root itself would hide the rootfs from every later lookup.
                return Err(invalid(field, "/", "must not be the container root"));
            }
            if !m.destination().is_absolute() {
                tracing::warn!(
                    "{field} {:?} is relative; taking it relative to /",
                    m.destination()
                );
            }
            let options = MountOptions::parse(index, m.options().as_deref().unwrap_or(&[]))?;
            let kind = MountKind::of(index, m, &options)?;
            if kind == MountKind::Bind && m.source().is_none() && !options.remount {
                return Err(invalid(
                    format!("mounts[{index}].source"),
                    "",
                    "a bind mount needs a source",
                ));
            }
            if options.remount && (!options.data.is_empty() || has_sb_change(&options)) {
                return Err(invalid(
                    format!("mounts[{index}].options"),
                    options.data.join(","),
                    "a remount can only change per-mount flags, not filesystem options",
                ));
            }
            Ok(PlannedMount {
                index,
                destination,
                options,
                kind,
                mount: m,
            })
        })
        .collect()
}

fn has_sb_change(o: &MountOptions) -> bool {
    o.sb_flags.iter().any(|f| *f != "ro")
}

/// Applies one planned mount beneath `root`.
pub(crate) fn apply(
    root: BorrowedFd<'_>,
    p: &PlannedMount<'_>,
    opts: &RootfsOptions,
) -> Result<(), RootfsError> {
    if p.options.tmpcopyup {
        tracing::warn!(
            "mounts[{}]: tmpcopyup is not supported; {:?} starts empty",
            p.index,
            p.destination
        );
    }
    let m = Mounter { root, p };
    if p.options.remount {
        return m.remount();
    }
    match &p.kind {
        MountKind::Bind => m.bind(),
        MountKind::Cgroup => m.cgroup(opts),
        MountKind::Sysfs => m.sysfs(),
        MountKind::Filesystem(fstype) => m.filesystem(fstype),
    }
}

struct Mounter<'a, 'b> {
    root: BorrowedFd<'a>,
    p: &'a PlannedMount<'b>,
}

impl Mounter<'_, '_> {
    fn err(&self, e: Errno) -> RootfsError {
        RootfsError::Mount {
            destination: self.p.destination.clone(),
            kind: self.p.kind.label().to_string(),
            source: OsError(e),
        }
    }

    fn fs_err(&self, e: FsError) -> RootfsError {
        match e.message {
            Some(message) => RootfsError::MountRefused {
                destination: self.p.destination.clone(),
                kind: self.p.kind.label().to_string(),
                message,
            },
            None => self.err(e.errno),
        }
    }

    fn target(&self, path: &Path, kind: CreateKind) -> Result<OwnedFd, RootfsError> {
        open_beneath(self.root, path, kind)
    }

    fn source(&self) -> Option<&Path> {
        self.p.mount.source().as_deref()
    }

    /// Sets the mount's own and recursive attributes on a (detached) mount.
    fn set_attrs(&self, mnt: BorrowedFd<'_>) -> Result<(), RootfsError> {
        let o = &self.p.options;
        ops::set_attrs_keep_locked(mnt, &o.attrs, false).map_err(|e| self.err(e))?;
        ops::set_attrs_keep_locked(mnt, &o.rec_attrs, true).map_err(|e| self.err(e))
    }

    /// Attaches `mnt` onto `target`, then applies the propagation options to it.
    fn attach(&self, mnt: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), RootfsError> {
        ops::attach(mnt, target).map_err(|e| self.err(e))?;
        for change in &self.p.options.propagation {
            ops::set_propagation(mnt, *change).map_err(|e| RootfsError::Propagation {
                target: self.p.destination.clone(),
                source: e.into(),
            })?;
        }
        Ok(())
    }

    /// Bind mount of a host path: the source (trusted, from the bundle's config, as in runc)
    /// must exist; the destination is created as a file or a directory to match it.
    fn bind(&self) -> Result<(), RootfsError> {
        let source = self.source().unwrap_or(Path::new(""));
        let mnt = ops::clone_host_path(source, self.p.options.recursive).map_err(|e| {
            RootfsError::BindSource {
                destination: self.p.destination.clone(),
                source_path: source.to_path_buf(),
                source: e.into(),
            }
        })?;
        let st = rfs::fstat(&mnt).map_err(|e| self.err(e))?;
        let create = if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            CreateKind::Dir
        } else {
            CreateKind::File
        };
        let target = self.target(&self.p.destination, create)?;
        self.set_attrs(mnt.as_fd())?;
        self.attach(mnt.as_fd(), target.as_fd())
    }

    /// A new instance of `fstype` (tmpfs, proc, devpts, mqueue, …).
    fn filesystem(&self, fstype: &str) -> Result<(), RootfsError> {
        let target = self.target(&self.p.destination, CreateKind::Dir)?;
        let mnt = self
            .new_fs(fstype, self.source(), &self.p.options.data)
            .map_err(|e| self.fs_err(e))?;
        self.attach(mnt.as_fd(), target.as_fd())
    }

    fn new_fs(
        &self,
        fstype: &str,
        source: Option<&Path>,
        data: &[String],
    ) -> Result<OwnedFd, FsError> {
        let o = &self.p.options;
        let mnt = ops::new_filesystem(&NewFs {
            fstype,
            source,
            sb_flags: &o.sb_flags,
            data,
            attrs: o.attrs.fsmount_attrs(),
        })?;
        ops::set_attrs(mnt.as_fd(), &o.rec_attrs, true)?;
        Ok(mnt)
    }

    /// sysfs; when the kernel refuses a new instance (`EPERM`: no network namespace of our
    /// own), the host's `/sys` is bind-mounted recursively and read-only instead, as runc does.
    fn sysfs(&self) -> Result<(), RootfsError> {
        let target = self.target(&self.p.destination, CreateKind::Dir)?;
        let mnt = match self.new_fs("sysfs", self.source(), &self.p.options.data) {
            Ok(mnt) => mnt,
            Err(FsError {
                errno: Errno::PERM, ..
            }) => {
                tracing::warn!(
                    "mounts[{}]: sysfs refused without a private network namespace; \
                     bind-mounting the host's /sys read-only at {:?}",
                    self.p.index,
                    self.p.destination
                );
                let mnt = ops::clone_host_path(Path::new("/sys"), true).map_err(|e| self.err(e))?;
                let ro = AttrChange {
                    set: MountAttrFlags::MOUNT_ATTR_RDONLY
                        | MountAttrFlags::MOUNT_ATTR_NOSUID
                        | MountAttrFlags::MOUNT_ATTR_NODEV
                        | MountAttrFlags::MOUNT_ATTR_NOEXEC,
                    ..AttrChange::default()
                };
                ops::set_attrs(mnt.as_fd(), &ro, true).map_err(|e| self.err(e))?;
                mnt
            }
            Err(e) => return Err(self.fs_err(e)),
        };
        self.attach(mnt.as_fd(), target.as_fd())
    }

    /// cgroup mounts. On cgroup v2 a new cgroup2 instance (falling back to a bind of the
    /// container's own cgroup directory, if one was given, when that is refused). On v1 and
    /// hybrid hosts a tmpfs, with the container's directory of each hierarchy bind-mounted at
    /// `<destination>/<name>`, and `cpu`/`cpuacct`-style links for combined hierarchies.
    fn cgroup(&self, opts: &RootfsOptions) -> Result<(), RootfsError> {
        let target = self.target(&self.p.destination, CreateKind::Dir)?;
        if opts.cgroup_v2 {
            let mnt = match self.new_fs("cgroup2", Some(Path::new("cgroup")), &self.p.options.data)
            {
                Ok(mnt) => mnt,
                Err(FsError {
                    errno: Errno::PERM | Errno::BUSY,
                    ..
                }) if !opts.cgroup_hierarchies.is_empty() => {
                    let dir = &opts.cgroup_hierarchies[0].host_dir;
                    let mnt = ops::clone_host_path(dir, true).map_err(|e| self.err(e))?;
                    self.set_attrs(mnt.as_fd())?;
                    mnt
                }
                Err(e) => return Err(self.fs_err(e)),
            };
            return self.attach(mnt.as_fd(), target.as_fd());
        }

        // v1: everything but read-only goes on the tmpfs now; read-only once it is populated.
        let mut tmpfs_attrs = self.p.options.attrs;
        tmpfs_attrs.set -= MountAttrFlags::MOUNT_ATTR_RDONLY;
        let tmpfs = ops::new_filesystem(&NewFs {
            fstype: "tmpfs",
            source: Some(Path::new("tmpfs")),
            sb_flags: &[],
            data: &["mode=755".to_string()],
            attrs: tmpfs_attrs.fsmount_attrs(),
        })
        .map_err(|e| self.fs_err(e))?;
        self.attach(tmpfs.as_fd(), target.as_fd())?;

        for (i, h) in opts.cgroup_hierarchies.iter().enumerate() {
            if h.name.is_empty() || h.name.contains('/') || h.name == "." || h.name == ".." {
                return Err(invalid(
                    format!("cgroup_hierarchies[{i}].name"),
                    &h.name,
                    "is not a hierarchy name",
                ));
            }
            let dest = self.p.destination.join(&h.name);
            let sub = self.target(&dest, CreateKind::Dir)?;
            let mnt =
                ops::clone_host_path(&h.host_dir, true).map_err(|e| RootfsError::BindSource {
                    destination: dest.clone(),
                    source_path: h.host_dir.clone(),
                    source: e.into(),
                })?;
            self.set_attrs(mnt.as_fd())?;
            ops::attach(mnt.as_fd(), sub.as_fd()).map_err(|e| self.err(e))?;
            if h.name.contains(',') && !h.name.contains('=') {
                for part in h.name.split(',') {
                    match rfs::symlinkat(h.name.as_str(), &tmpfs, part) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(self.err(e)),
                    }
                }
            }
        }
        if self
            .p
            .options
            .attrs
            .set
            .contains(MountAttrFlags::MOUNT_ATTR_RDONLY)
        {
            let ro = AttrChange {
                set: MountAttrFlags::MOUNT_ATTR_RDONLY,
                ..AttrChange::default()
            };
            ops::set_attrs(tmpfs.as_fd(), &ro, false).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// `remount`: changes the per-mount flags of the mount already at the destination. The
    /// superblock is never reconfigured: that would change every other mount of the same
    /// filesystem, host mounts included.
    fn remount(&self) -> Result<(), RootfsError> {
        let target = self.target(&self.p.destination, CreateKind::None)?;
        self.set_attrs(target.as_fd())?;
        for change in &self.p.options.propagation {
            ops::set_propagation(target.as_fd(), *change).map_err(|e| {
                RootfsError::Propagation {
                    target: self.p.destination.clone(),
                    source: e.into(),
                }
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::MountBuilder;

    fn mount(dest: &str, typ: &str, opts: &[&str]) -> Mount {
        MountBuilder::default()
            .destination(dest)
            .typ(typ)
            .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap()
    }

    #[test]
    fn plan_checks_every_entry_first() {
        let ok = [
            mount("/proc", "proc", &[]),
            mount("run/x", "tmpfs", &["size=1m"]),
        ];
        let p = plan(&ok).unwrap();
        assert_eq!(p[1].destination, Path::new("/run/x"));
        assert_eq!(p[1].kind, MountKind::Filesystem("tmpfs".into()));

        let bad = [mount("/proc", "proc", &[]), mount("/", "tmpfs", &[])];
        let e = plan(&bad).unwrap_err().to_string();
        assert_eq!(
            e,
            r#"mounts[1].destination "/": must not be the container root"#
        );

        let e = plan(&[mount("/x", "bind", &["bind"])])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("mounts[0].source"), "{e}");

        let e = plan(&[mount("/x", "tmpfs", &["remount", "size=1m"])]).unwrap_err();
        assert!(e.to_string().contains("per-mount flags"), "{e}");
        plan(&[mount("/x", "tmpfs", &["remount", "ro", "nosuid"])]).unwrap();
    }
}
