//! The filesystems a `CreateContainer` request asks for ([`GuestMount`]): the container's root
//! (a 9p share of the host's rootfs today) and the directories its bind mounts come from.
//!
//! Checked before anything is mounted: each target is an absolute, normal path strictly below
//! [`MOUNT_ROOT`] (no `.`, `..` or empty components) and outside the agent's own directories
//! ([`RESERVED`]); options are `mount -o` words without `,` or NUL. The target's directories are
//! created one component at a time without following symlinks, and the mount is made on the
//! opened directory (`/proc/self/fd/N`), so a symlink inside an earlier share cannot redirect a
//! later mount elsewhere in the guest.
//!
//! 9p: the host names the share by its tag (`source`). Options the host leaves out get the
//! agent's defaults ([`NINEP_DEFAULTS`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path};

use isola_proto::GuestMount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use rustix::fs::{mkdirat, openat, Mode, OFlags, CWD};
use rustix::io::Errno;

/// Every mount target lies below this directory.
pub const MOUNT_ROOT: &str = "/run/isola/";

/// The agent's own directories below [`MOUNT_ROOT`]; no target may be one of them, inside one,
/// or above one.
pub const RESERVED: &[&str] = &[
    "/run/isola/bundles",
    "/run/isola/runtime",
    "/run/isola/console",
];

/// Options added to a 9p mount unless the host gives the same key: the virtio transport, the
/// Linux dialect, `cache=mmap` and a 128 KiB message size.
///
/// `cache=mmap` caches nothing but the pages of shared writable mappings, so the guest always
/// sees what the host's directory holds (no stale metadata or data if the host changes it) and
/// programs that map files shared and writable work (`cache=none` cannot do that). Measured
/// under TCG (`tests/ninep.rs`, medians of 3 boots, 1 vCPU): create 280 ms vs 238 (none) and
/// 253 (loose); 100 fork+execs of busybox 694 ms vs 841 / 775; reading 32 MiB 153 ms vs 221 /
/// 167; reading it again 132 ms vs 241 / 38; walking 2,000 files 1.6 s vs 1.8 / 1.3; writing
/// 32 MiB 291 ms vs 290 / 1372 (`cache=loose` writes back page by page). `loose` wins only on
/// re-reads and walks, loses 4-5x on writes, and would serve stale data if the host changed the
/// directory. `msize=512000` (the virtio transport's maximum) measured no better than 128 KiB.
pub const NINEP_DEFAULTS: &[(&str, &str)] = &[
    ("trans", "virtio"),
    ("version", "9p2000.L"),
    ("cache", "mmap"),
    ("msize", "131072"),
];

/// A mount of the request that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The target's directories could not be created or opened.
    #[error("mounts[{index}]: create mount point {target}")]
    MountPoint {
        /// Index in the request's `mounts`.
        index: usize,
        /// The target.
        target: String,
        /// The OS error.
        #[source]
        source: Errno,
    },
    /// mount(2) failed.
    #[error("mounts[{index}]: mount {fstype} {source_name:?} on {target} with {data:?}")]
    Mount {
        /// Index in the request's `mounts`.
        index: usize,
        /// Filesystem type.
        fstype: String,
        /// The mount's source (tag, device, path).
        source_name: String,
        /// The target.
        target: String,
        /// The filesystem options passed.
        data: String,
        /// The OS error.
        #[source]
        source: nix::errno::Errno,
    },
}

/// A checked [`GuestMount`]: flags and the filesystem's own options apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    source: String,
    target: String,
    fstype: String,
    flags: MsFlags,
    data: String,
    /// A bind mount asked to be read-only: needs a remount after the bind.
    bind_ro: bool,
}

/// Checks a guest path the host names as a mount target or a container's root: absolute,
/// normal, strictly below [`MOUNT_ROOT`], clear of [`RESERVED`]. The message names the problem
/// (the caller adds the field).
///
/// # Errors
/// What is wrong with `target`, e.g. `must be an absolute path below /run/isola/`.
pub fn check_target(target: &str) -> Result<(), String> {
    if target.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    let Some(rest) = target.strip_prefix(MOUNT_ROOT) else {
        return Err(format!("must be an absolute path below {MOUNT_ROOT}"));
    };
    if rest.is_empty()
        || rest
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(
            "must be a normal path (no empty, \".\" or \"..\" components, no trailing /)".into(),
        );
    }
    for r in RESERVED {
        let clash = target == *r
            || target.starts_with(&format!("{r}/"))
            || r.starts_with(&format!("{target}/"));
        if clash {
            return Err(format!("clashes with the agent's own directory {r}"));
        }
    }
    Ok(())
}

fn flag(word: &str) -> Option<(MsFlags, bool)> {
    // (flag, set): `false` clears it (e.g. `rw` clears MS_RDONLY).
    Some(match word {
        "ro" => (MsFlags::MS_RDONLY, true),
        "rw" => (MsFlags::MS_RDONLY, false),
        "nosuid" => (MsFlags::MS_NOSUID, true),
        "suid" => (MsFlags::MS_NOSUID, false),
        "nodev" => (MsFlags::MS_NODEV, true),
        "dev" => (MsFlags::MS_NODEV, false),
        "noexec" => (MsFlags::MS_NOEXEC, true),
        "exec" => (MsFlags::MS_NOEXEC, false),
        "sync" => (MsFlags::MS_SYNCHRONOUS, true),
        "async" => (MsFlags::MS_SYNCHRONOUS, false),
        "dirsync" => (MsFlags::MS_DIRSYNC, true),
        "noatime" => (MsFlags::MS_NOATIME, true),
        "atime" => (MsFlags::MS_NOATIME, false),
        "nodiratime" => (MsFlags::MS_NODIRATIME, true),
        "diratime" => (MsFlags::MS_NODIRATIME, false),
        "relatime" => (MsFlags::MS_RELATIME, true),
        "norelatime" => (MsFlags::MS_RELATIME, false),
        "strictatime" => (MsFlags::MS_STRICTATIME, true),
        "bind" => (MsFlags::MS_BIND, true),
        "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, true),
        "defaults" => (MsFlags::empty(), true),
        _ => return None,
    })
}

/// Checks mount `index` of a request and splits its options. The error names the field.
///
/// # Errors
/// A message like `mounts[1].target "/etc": must be an absolute path below /run/isola/`.
pub fn plan(index: usize, m: &GuestMount) -> Result<Plan, String> {
    let field = |f: &str| format!("mounts[{index}].{f}");
    check_target(&m.target).map_err(|e| format!("{} {:?}: {e}", field("target"), m.target))?;
    let bad_word = |w: &str| w.is_empty() || w.contains(['\0', ',']);
    if m.fstype.is_empty() || m.fstype.contains(['\0', ',', ' ']) {
        return Err(format!(
            "{} {:?}: not a filesystem type",
            field("fstype"),
            m.fstype
        ));
    }
    if m.source.contains('\0') {
        return Err(format!(
            "{} {:?}: contains a NUL byte",
            field("source"),
            m.source
        ));
    }
    let mut flags = MsFlags::empty();
    let mut data: Vec<String> = Vec::new();
    for (i, o) in m.options.iter().enumerate() {
        if bad_word(o) {
            return Err(format!(
                "{}[{i}] {o:?}: one option per entry, without ',' or NUL",
                field("options")
            ));
        }
        if matches!(
            o.as_str(),
            "remount"
                | "move"
                | "shared"
                | "rshared"
                | "slave"
                | "rslave"
                | "private"
                | "rprivate"
                | "unbindable"
                | "runbindable"
        ) {
            return Err(format!("{}[{i}] {o:?}: not allowed here", field("options")));
        }
        match flag(o) {
            Some((f, true)) => flags |= f,
            Some((f, false)) => flags &= !f,
            None => data.push(o.clone()),
        }
    }
    let bind = m.fstype == "bind" || flags.contains(MsFlags::MS_BIND);
    if bind {
        flags |= MsFlags::MS_BIND;
    }
    if m.fstype == "9p" {
        for (k, v) in NINEP_DEFAULTS {
            let given = data.iter().any(|d| d.split('=').next() == Some(k));
            if !given {
                data.push(format!("{k}={v}"));
            }
        }
    }
    let bind_ro = bind && flags.contains(MsFlags::MS_RDONLY);
    Ok(Plan {
        source: m.source.clone(),
        target: m.target.clone(),
        fstype: m.fstype.clone(),
        flags,
        data: data.join(","),
        bind_ro,
    })
}

/// Creates `target`'s directories (mode 0755) one component at a time, never following a
/// symlink, and returns the last one opened (`O_PATH`).
fn open_target(target: &str) -> Result<OwnedFd, Errno> {
    let mut dir = openat(
        CWD,
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for c in Path::new(target).components() {
        let Component::Normal(name) = c else { continue };
        match mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
        dir = openat(
            &dir,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
    }
    Ok(dir)
}

/// Mounts `plan` (mount `index` of the request).
///
/// # Errors
/// [`MountError`] naming the index, the target and the options.
pub fn mount_one(index: usize, plan: &Plan) -> Result<(), MountError> {
    let dir = open_target(&plan.target).map_err(|source| MountError::MountPoint {
        index,
        target: plan.target.clone(),
        source,
    })?;
    let at = format!("/proc/self/fd/{}", dir.as_raw_fd());
    let err = |data: &str, source| MountError::Mount {
        index,
        fstype: plan.fstype.clone(),
        source_name: plan.source.clone(),
        target: plan.target.clone(),
        data: data.to_owned(),
        source,
    };
    let data = (!plan.data.is_empty()).then_some(plan.data.as_str());
    let first_flags = if plan.bind_ro {
        plan.flags & !MsFlags::MS_RDONLY
    } else {
        plan.flags
    };
    mount(
        Some(plan.source.as_str()),
        at.as_str(),
        Some(plan.fstype.as_str()),
        first_flags,
        data,
    )
    .map_err(|e| err(&plan.data, e))?;
    if plan.bind_ro {
        let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | plan.flags;
        if let Err(e) = mount(None::<&str>, at.as_str(), None::<&str>, flags, None::<&str>) {
            let _ = umount2(plan.target.as_str(), MntFlags::MNT_DETACH);
            return Err(err("remount read-only", e));
        }
    }
    Ok(())
}

/// Mounts every entry of `mounts` in order. Returns the targets mounted, for [`unmount_all`].
///
/// # Errors
/// An [`AgentError::Invalid`](crate::error::AgentError::Invalid) naming the field when an entry
/// is malformed (nothing is mounted then), or the [`MountError`] of the first mount that fails
/// (the ones before it are unmounted again).
pub fn mount_all(mounts: &[GuestMount]) -> Result<Vec<String>, crate::error::AgentError> {
    let plans = mounts
        .iter()
        .enumerate()
        .map(|(i, m)| plan(i, m))
        .collect::<Result<Vec<_>, _>>()
        .map_err(crate::error::AgentError::Invalid)?;
    let mut done = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        if let Err(e) = mount_one(i, p) {
            unmount_all(&done);
            return Err(e.into());
        }
        done.push(p.target.clone());
    }
    Ok(done)
}

/// Detaches `targets`, last first (best effort: a failure only goes to the console).
pub fn unmount_all(targets: &[String]) {
    for t in targets.iter().rev() {
        if let Err(e) = umount2(t.as_str(), MntFlags::MNT_DETACH) {
            crate::log!("unmount {t}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gm(target: &str, fstype: &str, options: &[&str]) -> GuestMount {
        GuestMount {
            source: "rootfs".into(),
            target: target.into(),
            fstype: fstype.into(),
            options: options.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn targets() {
        for ok in [
            "/run/isola/c1/rootfs",
            "/run/isola/x",
            "/run/isola/bundlesX",
        ] {
            assert!(check_target(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/run/isola/",
            "/run/isola",
            "run/isola/x",
            "/etc",
            "/run/isola/../etc",
            "/run/isola/a/./b",
            "/run/isola/a//b",
            "/run/isola/a/",
            "/run/isola/bundles",
            "/run/isola/bundles/c1/rootfs",
            "/run/isola/runtime/x",
            "/run/isolation/x",
        ] {
            assert!(check_target(bad).is_err(), "{bad}");
        }
        let e = plan(2, &gm("/etc", "9p", &[])).unwrap_err();
        assert_eq!(
            e,
            "mounts[2].target \"/etc\": must be an absolute path below /run/isola/"
        );
    }

    #[test]
    fn ninep_defaults_and_flags() {
        let p = plan(
            0,
            &gm("/run/isola/c/rootfs", "9p", &["ro", "cache=loose", "nodev"]),
        )
        .unwrap();
        assert_eq!(p.flags, MsFlags::MS_RDONLY | MsFlags::MS_NODEV);
        assert_eq!(
            p.data,
            "cache=loose,trans=virtio,version=9p2000.L,msize=131072"
        );
        assert!(!p.bind_ro);
        let p = plan(0, &gm("/run/isola/c/v", "bind", &["ro"])).unwrap();
        assert!(p.bind_ro);
        assert!(p.flags.contains(MsFlags::MS_BIND));
        let p = plan(
            0,
            &gm("/run/isola/c/v", "overlay", &["lowerdir=/a:/b", "rw"]),
        )
        .unwrap();
        assert_eq!(p.flags, MsFlags::empty());
        assert_eq!(p.data, "lowerdir=/a:/b");
    }

    #[test]
    fn bad_options_are_named() {
        let e = plan(0, &gm("/run/isola/c", "9p", &["ro", "a,b"])).unwrap_err();
        assert!(e.starts_with("mounts[0].options[1] \"a,b\""), "{e}");
        let e = plan(1, &gm("/run/isola/c", "9p", &["rshared"])).unwrap_err();
        assert!(e.contains("not allowed"), "{e}");
        let e = plan(1, &gm("/run/isola/c", "", &[])).unwrap_err();
        assert!(e.starts_with("mounts[1].fstype"), "{e}");
    }
}
