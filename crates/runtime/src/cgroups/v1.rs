//! The cgroup v1 manager: one directory per mounted v1 hierarchy (kernel
//! Documentation/admin-guide/cgroup-v1/), plus one in the cgroup2 mount on hybrid hosts.

use std::io;

use oci_spec::runtime::LinuxResources;

use super::detect::{Layout, Mounted};
use super::error::CgroupError;
use super::fs::{create_dir_all, levels, wait_until, Dir};
use super::stats::{self, Stats};
use super::v2::{self, FREEZE_PATIENCE};
use super::{v1_apply, Hierarchy};

/// A container's cgroup on a cgroup v1 or hybrid host.
#[derive(Debug, Clone)]
pub struct Manager {
    pub(crate) path: String,
    /// The v1 hierarchies, each with the container's directory in it.
    pub(crate) v1: Vec<(Mounted, Dir)>,
    /// Hybrid hosts: the cgroup2 mount and the container's directory in it.
    pub(crate) unified: Option<(Mounted, Dir)>,
}

impl Manager {
    pub(crate) fn new(layout: &Layout, path: &str) -> Self {
        let place = |m: &Mounted| {
            let dir = Dir::new(path, m.mount_point.join(path.trim_start_matches('/')));
            (m.clone(), dir)
        };
        Self {
            path: path.to_string(),
            v1: layout.v1.iter().map(place).collect(),
            unified: layout.unified.as_ref().map(place),
        }
    }

    /// The hierarchy a controller is bound to.
    pub(crate) fn find(&self, controller: &str) -> Option<&(Mounted, Dir)> {
        self.v1
            .iter()
            .find(|(m, _)| m.controllers.iter().any(|c| c == controller))
    }

    /// The container's directory for `controller`, or why it cannot be used.
    pub(crate) fn need(&self, controller: &str) -> Result<&Dir, CgroupError> {
        match self.find(controller) {
            None => Err(CgroupError::ControllerUnavailable {
                controller: controller.to_string(),
            }),
            Some((m, _)) if m.read_only => Err(CgroupError::ControllerReadOnly {
                controller: controller.to_string(),
                mount: m.mount_point.clone(),
            }),
            Some((_, dir)) => Ok(dir),
        }
    }

    /// The container's directory for `controller` if it is mounted writable.
    pub(crate) fn optional(&self, controller: &str) -> Option<&Dir> {
        self.need(controller).ok()
    }

    /// Every writable hierarchy's directory, the unified one last.
    fn writable(&self) -> impl Iterator<Item = &(Mounted, Dir)> {
        self.v1
            .iter()
            .chain(self.unified.iter())
            .filter(|(m, _)| !m.read_only)
    }

    /// `mkdir -p` in every writable hierarchy. In the cpuset hierarchy a new cgroup starts with
    /// empty `cpuset.cpus`/`cpuset.mems`, which makes adding a process fail with `ENOSPC`, so
    /// each level gets its parent's values. In the cgroup2 mount of a hybrid host the parents'
    /// controllers are enabled as on v2.
    pub(crate) fn create(&self) -> Result<(), CgroupError> {
        for (mount, dir) in &self.v1 {
            if mount.read_only {
                continue;
            }
            let cpuset = mount.controllers.iter().any(|c| c == "cpuset");
            let mut parent = Dir::new(&self.path, mount.mount_point.clone());
            for level in levels(&mount.mount_point, &self.path) {
                create_dir_all(&self.path, &level)?;
                let here = Dir::new(&self.path, level);
                if cpuset {
                    for file in ["cpuset.cpus", "cpuset.mems"] {
                        inherit_if_empty(&parent, &here, file)?;
                    }
                }
                parent = here;
            }
            debug_assert_eq!(parent.path, dir.path);
        }
        if let Some((mount, dir)) = self.unified.as_ref().filter(|(m, _)| !m.read_only) {
            v2::create_tree(mount, dir)?;
        }
        Ok(())
    }

    pub(crate) fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        let pid = pid.to_string();
        for (_, dir) in self.writable() {
            dir.write("cgroup.procs", &pid)?;
        }
        Ok(())
    }

    pub(crate) fn apply(&self, res: &LinuxResources) -> Result<Vec<String>, CgroupError> {
        v1_apply::apply(self, res)
    }

    /// The freezer to use: the v1 one, else `cgroup.freeze` in the hybrid cgroup2 mount.
    fn freezer(&self) -> Result<Freezer<'_>, CgroupError> {
        if let Some(dir) = self.optional("freezer") {
            return Ok(Freezer::V1(dir));
        }
        match &self.unified {
            Some((m, dir)) if !m.read_only && dir.exists("cgroup.freeze") => Ok(Freezer::V2(dir)),
            _ => Err(CgroupError::NoFreezer {
                cgroup: self.path.clone(),
            }),
        }
    }

    pub(crate) fn freeze(&self) -> Result<(), CgroupError> {
        match self.freezer()? {
            Freezer::V1(dir) => set_state(dir, "FROZEN"),
            Freezer::V2(dir) => v2::set_frozen(dir, true),
        }
    }

    pub(crate) fn thaw(&self) -> Result<(), CgroupError> {
        match self.freezer()? {
            Freezer::V1(dir) => set_state(dir, "THAWED"),
            Freezer::V2(dir) => v2::set_frozen(dir, false),
        }
    }

    pub(crate) fn is_frozen(&self) -> Result<bool, CgroupError> {
        match self.freezer()? {
            Freezer::V1(dir) => Ok(dir.read("freezer.state")?.trim() == "FROZEN"),
            Freezer::V2(dir) => v2::is_frozen(dir),
        }
    }

    /// The processes found in any hierarchy (they normally agree).
    pub(crate) fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        let mut found = false;
        for (_, dir) in self.writable() {
            match dir.procs_recursive() {
                Ok(p) => {
                    found = true;
                    pids.extend(p);
                }
                Err(CgroupError::Io { ref err, .. }) if err.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if !found {
            return Err(CgroupError::Io {
                cgroup: self.path.clone(),
                op: "read",
                path: self.path.clone().into(),
                err: io::Error::from_raw_os_error(libc::ENOENT),
            });
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// `oom_kill` of `memory.oom_control`; 0 when the host has no memory hierarchy.
    pub(crate) fn oom_kills(&self) -> Result<u64, CgroupError> {
        match self.find("memory") {
            Some((_, dir)) => stats::oom_kills_v1(dir),
            None => Ok(0),
        }
    }

    pub(crate) fn stats(&self) -> Result<Stats, CgroupError> {
        let memory = match self.find("memory") {
            Some((_, dir)) => Some(stats::memory_v1(dir)?),
            None => None,
        };
        let cpu = match self.find("cpuacct") {
            Some((_, dir)) => Some(stats::cpu_v1(dir, self.find("cpu").map(|(_, d)| d))?),
            None => None,
        };
        let pids = match self.find("pids") {
            Some((_, dir)) => stats::pids(dir)?,
            None => None,
        };
        Ok(Stats { memory, cpu, pids })
    }

    /// On hybrid hosts, the cgroup2 directory if it has `cgroup.kill`: every process of the
    /// container is in it as well.
    pub(crate) fn kill_dir(&self) -> Option<&Dir> {
        self.unified
            .as_ref()
            .filter(|(m, d)| !m.read_only && d.exists("cgroup.kill"))
            .map(|(_, d)| d)
    }

    /// Removes the directory in every hierarchy; tries them all and reports the first failure.
    pub(crate) fn destroy(&self) -> Result<(), CgroupError> {
        let mut first = None;
        for (_, dir) in self.writable() {
            if let Err(e) = dir.remove() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    pub(crate) fn hierarchies(&self) -> Vec<Hierarchy> {
        self.v1
            .iter()
            .chain(self.unified.iter())
            .map(|(m, d)| Hierarchy::new(m, &d.path))
            .collect()
    }
}

enum Freezer<'a> {
    V1(&'a Dir),
    V2(&'a Dir),
}

/// Copies `file` from the parent if it is empty here (cpuset inheritance).
fn inherit_if_empty(parent: &Dir, here: &Dir, file: &str) -> Result<(), CgroupError> {
    if !here.read(file)?.trim().is_empty() {
        return Ok(());
    }
    let value = parent.read(file)?;
    let value = value.trim();
    if !value.is_empty() {
        here.write(file, value)?;
    }
    Ok(())
}

/// Writes the v1 `freezer.state` and waits until it reads back. Freezing can stall in FREEZING
/// while tasks are busy in the kernel, so the request is repeated while waiting.
fn set_state(dir: &Dir, state: &'static str) -> Result<(), CgroupError> {
    dir.write("freezer.state", state)?;
    let reached = wait_until(FREEZE_PATIENCE, || {
        if dir.read("freezer.state")?.trim() == state {
            return Ok(true);
        }
        dir.write("freezer.state", state)?;
        Ok(false)
    })?;
    if reached {
        return Ok(());
    }
    if state == "FROZEN" {
        // Do not leave the cgroup half frozen.
        let _ = dir.write("freezer.state", "THAWED");
    }
    Err(CgroupError::FreezeTimeout {
        cgroup: dir.cgroup.clone(),
        state: if state == "FROZEN" {
            "frozen"
        } else {
            "thawed"
        },
    })
}
