//! The guest's early mounts: the kernel filesystems PID 1 must set up itself, because the
//! guest's root is the initramfs and no other init runs before the agent.

use std::fs;
use std::io;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

/// A mount the agent could not make.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// Creating the mount point failed.
    #[error("create mount point {target}")]
    MkDir {
        /// The mount point.
        target: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// mount(2) failed.
    #[error("mount {fstype} on {target}")]
    Mount {
        /// Filesystem type.
        fstype: String,
        /// Mount point.
        target: String,
        /// The OS error.
        #[source]
        source: Errno,
    },
}

struct Early {
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// In order: a later entry may live inside an earlier one.
const EARLY: &[Early] = &[
    Early {
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    Early {
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    Early {
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    Early {
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("newinstance,ptmxmode=0666,mode=0620"),
    },
    Early {
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
    Early {
        target: "/tmp",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
    Early {
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
    },
];

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn mount_one(
    target: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), MountError> {
    match mount(Some(fstype), target, Some(fstype), flags, data) {
        // Already mounted (e.g. devtmpfs by the kernel): fine.
        Ok(()) | Err(Errno::EBUSY) => Ok(()),
        Err(source) => Err(MountError::Mount {
            fstype: fstype.to_owned(),
            target: target.to_owned(),
            source,
        }),
    }
}

/// Mounts /proc, /sys, /dev (devtmpfs), /dev/pts, /dev/shm, /tmp, /run and the cgroup
/// hierarchy; continues past failures and returns them all (empty = everything mounted).
pub fn mount_early() -> Vec<MountError> {
    let mut errors = Vec::new();
    for m in EARLY {
        if let Err(source) = fs::create_dir_all(m.target) {
            errors.push(MountError::MkDir {
                target: m.target,
                source,
            });
            continue;
        }
        if let Err(e) = mount_one(m.target, m.fstype, m.flags, m.data) {
            errors.push(e);
        }
    }
    match mount_cgroups() {
        Ok(()) => enable_controllers(),
        Err(e) => errors.extend(e),
    }
    errors
}

/// Controllers the containers' limits need, enabled for the root cgroup's children (the
/// runtime enables them further down as it creates `/isola/<id>`).
const CONTROLLERS: &[&str] = &["cpu", "cpuset", "memory", "pids"];

/// Writes `+controller` to the root's `cgroup.subtree_control` for each of [`CONTROLLERS`]
/// the kernel offers (cgroup v2 only); a failure only goes to the console.
fn enable_controllers() {
    let root = Path::new(CGROUP_ROOT);
    let Ok(offered) = fs::read_to_string(root.join("cgroup.controllers")) else {
        return;
    };
    for c in CONTROLLERS {
        if !offered.split_whitespace().any(|o| o == *c) {
            crate::log!("cgroup controller {c} is not offered by the kernel");
            continue;
        }
        if let Err(e) = fs::write(root.join("cgroup.subtree_control"), format!("+{c}")) {
            crate::log!("enable cgroup controller {c}: {e}");
        }
    }
}

/// cgroup v2 (unified) at /sys/fs/cgroup, as the container runtime prefers it; if the kernel
/// refuses, a tmpfs there with one v1 hierarchy per enabled controller of /proc/cgroups.
fn mount_cgroups() -> Result<(), Vec<MountError>> {
    let flags = NOSUID_NODEV_NOEXEC;
    let v2 = mount_one(CGROUP_ROOT, "cgroup2", flags, Some("nsdelegate"));
    let Err(v2_err) = v2 else { return Ok(()) };
    let mut errors = vec![v2_err];
    if let Err(e) = mount_one(CGROUP_ROOT, "tmpfs", flags, Some("mode=0755")) {
        errors.push(e);
        return Err(errors);
    }
    let table = fs::read_to_string("/proc/cgroups").unwrap_or_default();
    for line in table.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(name), Some(&"1")) = (f.first(), f.get(3)) else {
            continue;
        };
        let target = Path::new(CGROUP_ROOT).join(name);
        let target = target.to_string_lossy();
        if fs::create_dir_all(&*target).is_ok() {
            if let Err(e) = mount(Some("cgroup"), &*target, Some("cgroup"), flags, Some(*name)) {
                errors.push(MountError::Mount {
                    fstype: format!("cgroup ({name})"),
                    target: target.into_owned(),
                    source: e,
                });
            }
        }
    }
    // v1 in place of v2 works; report only the failures of the v1 mounts themselves.
    errors.remove(0);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
