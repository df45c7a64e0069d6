//! The cgroup v2 manager: one directory in the unified hierarchy (kernel
//! Documentation/admin-guide/cgroup-v2.rst). The helpers for the unified tree are also used for
//! the cgroup2 mount of hybrid hosts.

use std::io;
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

use super::detect::Mounted;
use super::error::CgroupError;
use super::fs::{create_dir_all, levels, wait_until, Dir};
use super::stats::{self, Stats};
use super::{v2_apply, Hierarchy};

/// How long `freeze`/`thaw` wait for `cgroup.events` to confirm the state.
pub(crate) const FREEZE_PATIENCE: Duration = Duration::from_secs(2);

/// A container's cgroup on a cgroup v2 host.
#[derive(Debug, Clone)]
pub struct Manager {
    pub(crate) mount: Mounted,
    pub(crate) dir: Dir,
}

impl Manager {
    pub(crate) fn new(mount: Mounted, path: &str) -> Self {
        let dir = Dir::new(path, mount.mount_point.join(path.trim_start_matches('/')));
        Self { mount, dir }
    }

    pub(crate) fn path(&self) -> &str {
        &self.dir.cgroup
    }

    /// Creates the directory and every missing parent, enabling in each ancestor's
    /// `cgroup.subtree_control` all the controllers it has.
    pub(crate) fn create(&self) -> Result<(), CgroupError> {
        create_tree(&self.mount, &self.dir)
    }

    pub(crate) fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        self.dir.write("cgroup.procs", &pid.to_string())
    }

    pub(crate) fn apply(&self, res: &LinuxResources) -> Result<Vec<String>, CgroupError> {
        v2_apply::apply(self, res)
    }

    pub(crate) fn freeze(&self) -> Result<(), CgroupError> {
        set_frozen(&self.dir, true)
    }

    pub(crate) fn thaw(&self) -> Result<(), CgroupError> {
        set_frozen(&self.dir, false)
    }

    pub(crate) fn is_frozen(&self) -> Result<bool, CgroupError> {
        is_frozen(&self.dir)
    }

    pub(crate) fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        self.dir.procs_recursive()
    }

    /// `oom_kill` of `memory.events`; 0 when the memory controller is not enabled here.
    pub(crate) fn oom_kills(&self) -> Result<u64, CgroupError> {
        if !self.dir.path.exists() {
            return Err(self.dir.io_error_at(
                "read",
                self.dir.path.clone(),
                io::Error::from_raw_os_error(libc::ENOENT),
            ));
        }
        match self.dir.read_opt("memory.events")? {
            Some(text) => Ok(self
                .dir
                .parse_key("memory.events", &text, "oom_kill")?
                .unwrap_or(0)),
            None => Ok(0),
        }
    }

    pub(crate) fn stats(&self) -> Result<Stats, CgroupError> {
        Ok(Stats {
            memory: stats::memory_v2(&self.dir)?,
            cpu: stats::cpu_v2(&self.dir)?,
            pids: stats::pids(&self.dir)?,
        })
    }

    /// The directory to write `1` to `cgroup.kill` in (kernel ≥ 5.14), if any.
    pub(crate) fn kill_dir(&self) -> Option<&Dir> {
        self.dir.exists("cgroup.kill").then_some(&self.dir)
    }

    pub(crate) fn destroy(&self) -> Result<(), CgroupError> {
        self.dir.remove()
    }

    pub(crate) fn hierarchies(&self) -> Vec<Hierarchy> {
        vec![Hierarchy::new(&self.mount, &self.dir.path)]
    }

    /// The controllers usable in this cgroup (its `cgroup.controllers`).
    pub(crate) fn controllers(&self) -> Result<Vec<String>, CgroupError> {
        controllers(&self.dir)
    }

    /// Fails unless `controller` is enabled for the cgroup and the hierarchy is writable.
    pub(crate) fn need(&self, controller: &str) -> Result<&Dir, CgroupError> {
        if !self.controllers()?.iter().any(|c| c == controller) {
            return Err(CgroupError::ControllerUnavailable {
                controller: controller.to_string(),
            });
        }
        self.writable(controller)
    }

    /// Fails if the hierarchy is mounted read-only (`what` names the setting's controller).
    pub(crate) fn writable(&self, what: &str) -> Result<&Dir, CgroupError> {
        if self.mount.read_only {
            return Err(CgroupError::ControllerReadOnly {
                controller: what.to_string(),
                mount: self.mount.mount_point.clone(),
            });
        }
        Ok(&self.dir)
    }
}

/// The words of a directory's `cgroup.controllers`.
pub(crate) fn controllers(dir: &Dir) -> Result<Vec<String>, CgroupError> {
    Ok(dir
        .read("cgroup.controllers")?
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

/// `mkdir -p` in a cgroup2 hierarchy; before each level is created, its parent's
/// `cgroup.subtree_control` gets every controller the parent has. Enabling is best effort (a
/// parent with processes of its own refuses, by the "no internal processes" rule); a controller
/// that did not get enabled is reported when a setting needs it.
pub(crate) fn create_tree(mount: &Mounted, leaf: &Dir) -> Result<(), CgroupError> {
    let mut parent = Dir::new(&leaf.cgroup, mount.mount_point.clone());
    for level in levels(&mount.mount_point, &leaf.cgroup) {
        enable_controllers(&parent);
        if !level.exists() {
            create_dir_all(&leaf.cgroup, &level)?;
        }
        parent = Dir::new(&leaf.cgroup, level);
    }
    Ok(())
}

fn enable_controllers(parent: &Dir) {
    let Ok(available) = controllers(parent) else {
        return;
    };
    let enabled: Vec<String> = parent
        .read("cgroup.subtree_control")
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    for c in available.iter().filter(|c| !enabled.contains(c)) {
        if let Err(e) = parent.write("cgroup.subtree_control", &format!("+{c}")) {
            tracing::debug!(error = %e, "cgroup controller not enabled");
        }
    }
}

/// v2 freezer: writes `cgroup.freeze` and waits until `cgroup.events` reports the state.
pub(crate) fn set_frozen(dir: &Dir, frozen: bool) -> Result<(), CgroupError> {
    if !dir.exists("cgroup.freeze") {
        return Err(CgroupError::NoFreezer {
            cgroup: dir.cgroup.clone(),
        });
    }
    dir.write("cgroup.freeze", if frozen { "1" } else { "0" })?;
    if wait_until(FREEZE_PATIENCE, || Ok(is_frozen(dir)? == frozen))? {
        return Ok(());
    }
    if frozen {
        // Do not leave the cgroup half frozen.
        let _ = dir.write("cgroup.freeze", "0");
    }
    Err(CgroupError::FreezeTimeout {
        cgroup: dir.cgroup.clone(),
        state: if frozen { "frozen" } else { "thawed" },
    })
}

/// `frozen` of `cgroup.events`.
pub(crate) fn is_frozen(dir: &Dir) -> Result<bool, CgroupError> {
    if !dir.exists("cgroup.freeze") {
        return Err(CgroupError::NoFreezer {
            cgroup: dir.cgroup.clone(),
        });
    }
    Ok(dir.read_key("cgroup.events", "frozen")? == Some(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fake_mount(root: &Path) -> Mounted {
        Mounted {
            mount_point: root.to_path_buf(),
            controllers: Vec::new(),
            read_only: false,
            unified: true,
        }
    }

    #[test]
    fn create_enables_parent_controllers() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        let m = Manager::new(fake_mount(root), "/isola/c1");
        m.create().unwrap();
        assert!(root.join("isola/c1").is_dir());
        // A plain file keeps only the last write; on cgroupfs each "+x" adds one controller.
        assert_eq!(
            std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+pids"
        );
        // Already-enabled controllers are not written again.
        std::fs::write(root.join("cgroup.subtree_control"), "cpu memory pids\n").unwrap();
        std::fs::write(root.join("isola/cgroup.controllers"), "memory\n").unwrap();
        std::fs::write(root.join("isola/cgroup.subtree_control"), "").unwrap();
        std::fs::remove_dir(root.join("isola/c1")).unwrap();
        m.create().unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "cpu memory pids\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("isola/cgroup.subtree_control")).unwrap(),
            "+memory"
        );
        assert_eq!(m.path(), "/isola/c1");
        assert_eq!(m.hierarchies()[0].host_dir, root.join("isola/c1"));
    }

    #[test]
    fn need_reports_missing_and_read_only() {
        let tmp = tempfile::tempdir().unwrap();
        let leaf = tmp.path().join("c");
        std::fs::create_dir(&leaf).unwrap();
        std::fs::write(leaf.join("cgroup.controllers"), "memory\n").unwrap();
        let mut m = Manager::new(fake_mount(tmp.path()), "/c");
        m.need("memory").unwrap();
        assert_eq!(
            m.need("pids").unwrap_err().to_string(),
            "cgroup: the pids controller is not available on this host"
        );
        m.mount.read_only = true;
        assert!(matches!(
            m.need("memory"),
            Err(CgroupError::ControllerReadOnly { .. })
        ));
    }

    #[test]
    fn freezer_files() {
        let tmp = tempfile::tempdir().unwrap();
        let m = Manager::new(fake_mount(tmp.path()), "/");
        assert!(matches!(m.freeze(), Err(CgroupError::NoFreezer { .. })));
        std::fs::write(tmp.path().join("cgroup.freeze"), "0\n").unwrap();
        std::fs::write(tmp.path().join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        m.freeze().unwrap();
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("cgroup.freeze")).unwrap(),
            "1"
        );
        assert!(m.is_frozen().unwrap());
    }

    #[test]
    fn oom_kills_from_memory_events() {
        let tmp = tempfile::tempdir().unwrap();
        let m = Manager::new(fake_mount(tmp.path()), "/");
        assert_eq!(m.oom_kills().unwrap(), 0);
        std::fs::write(
            tmp.path().join("memory.events"),
            "low 0\noom 2\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(m.oom_kills().unwrap(), 2);
        let gone = Manager::new(fake_mount(tmp.path()), "/gone");
        assert!(gone.oom_kills().is_err());
    }
}
