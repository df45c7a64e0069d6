//! Control groups for a container (runtime-spec config-linux.md, "Control groups" and
//! "cgroup ownership"): where the container's cgroup is, creating it, joining processes to it,
//! applying `linux.resources`, freezing, statistics, killing and removal.
//!
//! Three host layouts are supported, found from `/proc/self/mountinfo` ([`detect_mode`]):
//! cgroup v1, cgroup v2, and "hybrid" (v1 controllers plus a cgroup2 mount, usually at
//! `/sys/fs/cgroup/unified`). There is no systemd driver: cgroups are managed directly in
//! cgroupfs, so systemd-style `slice:prefix:name` paths are refused.
//!
//! Guarding against: a `cgroupsPath` that climbs out of the hierarchy (`..`) or names the root
//! cgroup; unified keys that are not plain file names; silently dropped limits (a setting the
//! host cannot apply is either an error naming the controller or a returned warning).

mod bpf;
mod convert;
mod detect;
mod devices;
mod error;
mod fs;
mod stats;
pub mod v1;
mod v1_apply;
pub mod v2;
mod v2_apply;

#[cfg(test)]
mod fake_tests;
#[cfg(test)]
mod real_tests;

use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

pub use detect::{detect_mode, CgroupMode};
pub use devices::default_device_rules;
pub use error::CgroupError;
pub use stats::{CpuStats, MemoryStats, PidsStats, Stats};

use detect::Layout;

/// A container's cgroup: one directory per v1 hierarchy (and one in the cgroup2 mount on hybrid
/// hosts), or one directory in the v2 hierarchy.
#[derive(Debug, Clone)]
pub enum Cgroup {
    /// cgroup v1 or hybrid host.
    V1(v1::Manager),
    /// cgroup v2 host.
    V2(v2::Manager),
}

/// One hierarchy the container's cgroup lives in, for building the container's
/// `/sys/fs/cgroup` (the rootfs code bind-mounts `host_dir` at `/sys/fs/cgroup/<name>` on v1
/// and hybrid hosts; on v2 hosts the single hierarchy is `/sys/fs/cgroup` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// The last component of the host mount point: `memory`, `cpu,cpuacct`, `systemd`,
    /// `unified` (on v2 hosts usually `cgroup`). The name to use under the container's
    /// `/sys/fs/cgroup`, as on the host.
    pub name: String,
    /// Where the hierarchy is mounted on the host, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// v1: the controllers bound to it (`["cpu", "cpuacct"]`), or `["name=systemd"]` for a
    /// named hierarchy. Empty for a cgroup2 hierarchy.
    pub controllers: Vec<String>,
    /// A cgroup2 hierarchy (the only one on v2 hosts; `unified` on hybrid hosts).
    pub unified: bool,
    /// The container's cgroup directory on the host.
    pub host_dir: PathBuf,
}

impl Hierarchy {
    pub(crate) fn new(mount: &detect::Mounted, host_dir: &Path) -> Self {
        Self {
            name: mount
                .mount_point
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            mount_point: mount.mount_point.clone(),
            controllers: mount.controllers.clone(),
            unified: mount.unified,
            host_dir: host_dir.to_path_buf(),
        }
    }
}

impl Cgroup {
    /// The cgroup for a container on this host. `cgroups_path` is `linux.cgroupsPath`: `/a/b` is
    /// relative to each hierarchy's root, and so is a relative `a/b` (cgroupfs driver, running
    /// as root); `None` gives `/isola/<id>`. The systemd form `slice:prefix:name` is refused
    /// (no systemd here), as are `..` components and the root cgroup itself. Nothing is
    /// created yet (see [`Cgroup::create`]).
    pub fn new(cgroups_path: Option<&str>, id: &str) -> Result<Self, CgroupError> {
        let path = cgroup_path(cgroups_path, id)?;
        Self::from_layout(&Layout::probe()?, &path)
    }

    /// Like [`Cgroup::new`], for a cgroupfs tree rooted at `root` instead of the mounts in
    /// `/proc/self/mountinfo` (tests point it at a temporary directory). If `root` holds
    /// `cgroup.controllers` it is a v2 hierarchy; otherwise each subdirectory is a v1 hierarchy
    /// named after its controllers (`cpu,cpuacct`, `memory`, …; `systemd` is `name=systemd`),
    /// and a subdirectory `unified` holding `cgroup.controllers` makes the host hybrid.
    pub fn with_root(
        root: &Path,
        cgroups_path: Option<&str>,
        id: &str,
    ) -> Result<Self, CgroupError> {
        let path = cgroup_path(cgroups_path, id)?;
        Self::from_layout(&Layout::from_dir(root)?, &path)
    }

    fn from_layout(layout: &Layout, path: &str) -> Result<Self, CgroupError> {
        Ok(match layout.mode()? {
            CgroupMode::V1 | CgroupMode::Hybrid => Cgroup::V1(v1::Manager::new(layout, path)),
            CgroupMode::V2 => {
                let mount = layout.unified.clone().ok_or(CgroupError::NotMounted)?;
                Cgroup::V2(v2::Manager::new(mount, path))
            }
        })
    }

    /// The host layout this cgroup lives in.
    pub fn mode(&self) -> CgroupMode {
        match self {
            Cgroup::V1(m) if m.unified.is_some() => CgroupMode::Hybrid,
            Cgroup::V1(_) => CgroupMode::V1,
            Cgroup::V2(_) => CgroupMode::V2,
        }
    }

    /// The cgroup path, relative to each hierarchy's root, e.g. `/isola/<id>`.
    pub fn path(&self) -> &str {
        match self {
            Cgroup::V1(m) => &m.path,
            Cgroup::V2(m) => m.path(),
        }
    }

    /// Creates the cgroup directory (and missing parents) in every hierarchy. v1: new cpuset
    /// levels inherit their parent's `cpuset.cpus`/`cpuset.mems`. v2 (and the cgroup2 mount of
    /// hybrid hosts): each parent's `cgroup.subtree_control` enables all its controllers.
    pub fn create(&self) -> Result<(), CgroupError> {
        match self {
            Cgroup::V1(m) => m.create(),
            Cgroup::V2(m) => m.create(),
        }
    }

    /// Moves process `pid` (and its threads) into the cgroup: writes it to `cgroup.procs` in
    /// every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        match self {
            Cgroup::V1(m) => m.add_process(pid),
            Cgroup::V2(m) => m.add_process(pid),
        }
    }

    /// Applies `linux.resources` (config-linux.md "Control groups": memory, cpu, pids, devices,
    /// hugepageLimits, blockIO, network, rdma, unified). Returns one warning line per setting
    /// this host cannot apply but that is not fatal (e.g. a swap limit without swap
    /// accounting). Invalid values, values the kernel refuses and settings whose controller is
    /// absent or read-only are errors naming the file, value or controller.
    ///
    /// Device rules are applied exactly as given, starting from "deny everything"; the caller
    /// appends [`default_device_rules`] and the `linux.devices` entries.
    pub fn apply(&self, res: &LinuxResources) -> Result<Vec<String>, CgroupError> {
        match self {
            Cgroup::V1(m) => m.apply(res),
            Cgroup::V2(m) => m.apply(res),
        }
    }

    /// Freezes every process of the cgroup (v1 `freezer.state` = `FROZEN`; v2 `cgroup.freeze` =
    /// 1) and waits up to 2 s until the kernel reports the state.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        match self {
            Cgroup::V1(m) => m.freeze(),
            Cgroup::V2(m) => m.freeze(),
        }
    }

    /// Thaws the cgroup and waits up to 2 s until the kernel reports it thawed.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        match self {
            Cgroup::V1(m) => m.thaw(),
            Cgroup::V2(m) => m.thaw(),
        }
    }

    /// Whether the cgroup is frozen (v1 `freezer.state`, v2 `cgroup.events` `frozen`).
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        match self {
            Cgroup::V1(m) => m.is_frozen(),
            Cgroup::V2(m) => m.is_frozen(),
        }
    }

    /// Every process in the cgroup and its descendant cgroups (`cgroup.procs`), sorted.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        match self {
            Cgroup::V1(m) => m.pids(),
            Cgroup::V2(m) => m.pids(),
        }
    }

    /// How many processes the OOM killer killed in the cgroup (v2 `memory.events` `oom_kill`,
    /// v1 `memory.oom_control` `oom_kill`); 0 if the kernel does not count them or the host has
    /// no memory controller.
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        match self {
            Cgroup::V1(m) => m.oom_kills(),
            Cgroup::V2(m) => m.oom_kills(),
        }
    }

    /// Memory, CPU and pids usage and limits.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        match self {
            Cgroup::V1(m) => m.stats(),
            Cgroup::V2(m) => m.stats(),
        }
    }

    /// Sends `signal` to every process of the cgroup. `SIGKILL` uses `cgroup.kill` where the
    /// kernel has it (v2, and the cgroup2 mount of hybrid hosts), thawing a frozen cgroup
    /// afterwards so that its processes can die. Otherwise the cgroup is
    /// frozen (if a freezer is available) so that no process escapes by forking, each process
    /// is signalled, and the cgroup is thawed again, unless it was frozen before and the
    /// signal is not `SIGKILL` (a killed process must be thawed to die).
    pub fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        let sig = Signal::try_from(signal).map_err(|_| CgroupError::InvalidValue {
            field: "signal",
            value: signal.to_string(),
            reason: "not a signal number".into(),
        })?;
        let kill_dir = match self {
            Cgroup::V1(m) => m.kill_dir(),
            Cgroup::V2(m) => m.kill_dir(),
        };
        let was_frozen = self.is_frozen().unwrap_or(false);
        if let (Signal::SIGKILL, Some(dir)) = (sig, kill_dir) {
            dir.write("cgroup.kill", "1")?;
            // On hybrid hosts a v1-frozen process cannot die until it is thawed.
            if was_frozen {
                self.thaw()?;
            }
            return Ok(());
        }
        let froze = !was_frozen && {
            match self.freeze() {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(error = %e, "signalling without freezing");
                    false
                }
            }
        };
        let result = self.signal_each(sig);
        if froze || (was_frozen && sig == Signal::SIGKILL) {
            self.thaw()?;
        }
        result
    }

    fn signal_each(&self, sig: Signal) -> Result<(), CgroupError> {
        for pid in self.pids()? {
            match kill(Pid::from_raw(pid), sig) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => {
                    return Err(CgroupError::Signal {
                        cgroup: self.path().to_string(),
                        pid,
                        signal: sig as i32,
                        err: e.into(),
                    })
                }
            }
        }
        Ok(())
    }

    /// Removes the cgroup directory (and any cgroups the container created below it) in every
    /// hierarchy; never its parents such as `/isola`. `EBUSY` is retried for up to 1 s; a
    /// directory that is already gone is not an error.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        match self {
            Cgroup::V1(m) => m.destroy(),
            Cgroup::V2(m) => m.destroy(),
        }
    }

    /// Moves the calling process (single-threaded) into the cgroup, in every hierarchy: `0` written
    /// to `tasks` on v1 (much cheaper than a write of another PID to `cgroup.procs`, which waits for
    /// an RCU grace period) and to `cgroup.procs` on cgroup2.
    pub fn join_self(&self) -> Result<(), CgroupError> {
        for h in self.hierarchies() {
            let file = if h.unified { "cgroup.procs" } else { "tasks" };
            let path = h.host_dir.join(file);
            std::fs::write(&path, "0").map_err(|e| CgroupError::Join { path, source: e })?;
        }
        Ok(())
    }

    /// The hierarchies the cgroup lives in, for the container's `/sys/fs/cgroup` view.
    pub fn hierarchies(&self) -> Vec<Hierarchy> {
        match self {
            Cgroup::V1(m) => m.hierarchies(),
            Cgroup::V2(m) => m.hierarchies(),
        }
    }
}

/// Normalizes `linux.cgroupsPath` (or the default `/isola/<id>`) to `/a/b` form.
fn cgroup_path(cgroups_path: Option<&str>, id: &str) -> Result<String, CgroupError> {
    let invalid = |path: &str, reason| CgroupError::InvalidPath {
        path: path.to_string(),
        reason,
    };
    let given = match cgroups_path {
        Some(p) => p.to_string(),
        None => {
            if id.is_empty() || id == "." || id == ".." || id.contains('/') {
                return Err(invalid(id, "the container ID cannot name a cgroup"));
            }
            format!("/isola/{id}")
        }
    };
    if given.contains('\0') {
        return Err(invalid(&given, "contains a NUL byte"));
    }
    if !given.starts_with('/') && !given.contains('/') && given.split(':').count() == 3 {
        return Err(invalid(
            &given,
            "systemd slice paths (slice:prefix:name) need the systemd cgroup driver, and this host does not run systemd",
        ));
    }
    let mut parts = Vec::new();
    for comp in given.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err(invalid(&given, "\"..\" components are not allowed")),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(invalid(
            &given,
            "the root cgroup cannot be a container's cgroup",
        ));
    }
    Ok(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rules() {
        assert_eq!(cgroup_path(None, "abc").unwrap(), "/isola/abc");
        assert_eq!(cgroup_path(Some("/a/b"), "x").unwrap(), "/a/b");
        assert_eq!(cgroup_path(Some("a/b/"), "x").unwrap(), "/a/b");
        assert_eq!(cgroup_path(Some("//a/./b"), "x").unwrap(), "/a/b");
        assert_eq!(cgroup_path(Some("plain"), "x").unwrap(), "/plain");
        for bad in ["/a/../b", "..", "/", "", "a\0b"] {
            assert!(cgroup_path(Some(bad), "x").is_err(), "{bad:?}");
        }
        let e = cgroup_path(Some("system.slice:isola:abc"), "x").unwrap_err();
        assert!(e.to_string().contains("systemd"), "{e}");
        assert!(cgroup_path(Some("/a:b:c"), "x").is_ok());
        for bad in ["", "..", "a/b"] {
            assert!(cgroup_path(None, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hierarchy_name() {
        let mount = detect::Mounted {
            mount_point: "/sys/fs/cgroup/cpu,cpuacct".into(),
            controllers: vec!["cpu".into(), "cpuacct".into()],
            read_only: false,
            unified: false,
        };
        let h = Hierarchy::new(&mount, Path::new("/sys/fs/cgroup/cpu,cpuacct/isola/x"));
        assert_eq!(h.name, "cpu,cpuacct");
        assert_eq!(h.controllers, ["cpu", "cpuacct"]);
    }
}
