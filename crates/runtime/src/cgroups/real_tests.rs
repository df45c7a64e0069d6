//! Privileged tests on the host's real cgroup hierarchies. Each test creates its own
//! `/isola-test-<unique>/c` cgroup, puts forked children into it, and removes everything in a
//! `Drop` guard even when an assertion fails. Without root, or without a needed controller, a
//! test prints `skipped: <reason>` and returns.
//!
//! On v1/hybrid hosts the v1 paths are tested through [`Cgroup::new`]; the v2 manager is tested
//! on the host's cgroup2 mount (on our hybrid hosts `/sys/fs/cgroup/unified`).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};

use super::detect::Layout;
use super::*;

const MIB: i64 = 1024 * 1024;

fn is_root() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        true
    } else {
        println!("skipped: not root");
        false
    }
}

fn unique_parent() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "isola-test-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources JSON")
}

/// What a forked child does once told to go.
#[derive(Clone, Copy)]
enum Action {
    /// Wait for signals forever.
    Pause,
    /// Exit 0 if `/dev/null` opens and `/dev/full` fails with EPERM, 2 if both open, else 1.
    OpenDevices,
    /// Map and touch 64 MiB, then exit 0 (the OOM killer should strike first).
    Hog,
}

/// A forked child blocked on a pipe until [`Child::go`].
struct Child {
    pid: Pid,
    go: Option<OwnedFd>,
}

impl Child {
    fn spawn(action: Action) -> Child {
        let (read_end, write_end) = rustix::pipe::pipe().expect("pipe");
        // SAFETY: the child only makes async-signal-safe system calls (read, open, mmap, pause,
        // _exit) and never returns into the test harness.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let mut byte = [0u8; 1];
                let _ = rustix::io::read(&read_end, &mut byte);
                let code = run_action(action);
                // SAFETY: `_exit` ends the forked child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => Child {
                pid: child,
                go: Some(write_end),
            },
        }
    }

    fn raw(&self) -> i32 {
        self.pid.as_raw()
    }

    fn go(&mut self) {
        if let Some(fd) = self.go.take() {
            rustix::io::write(&fd, b"g").expect("write go");
        }
    }

    /// Waits up to 20 s for the child to end.
    fn wait(&mut self) -> WaitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)).expect("waitpid") {
                WaitStatus::StillAlive if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                WaitStatus::StillAlive => panic!("child {} did not exit", self.pid),
                status => {
                    self.pid = Pid::from_raw(0);
                    return status;
                }
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.pid.as_raw() > 0 {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

fn run_action(action: Action) -> i32 {
    use rustix::fs::{open, Mode, OFlags};
    match action {
        Action::Pause => loop {
            nix::unistd::pause();
        },
        Action::OpenDevices => {
            let null = open(c"/dev/null", OFlags::RDWR, Mode::empty());
            let full = open(c"/dev/full", OFlags::RDWR, Mode::empty());
            match (null, full) {
                (Ok(_), Err(rustix::io::Errno::PERM)) => 0,
                (Ok(_), Ok(_)) => 2,
                _ => 1,
            }
        }
        Action::Hog => {
            let len = 64 * 1024 * 1024;
            // SAFETY: an anonymous private mapping at an address of the kernel's choosing; no
            // existing memory is affected.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return 3;
            }
            for off in (0..len).step_by(4096) {
                // SAFETY: `off < len`, inside the writable mapping created above.
                unsafe { std::ptr::write_volatile(p.cast::<u8>().add(off), 1) };
            }
            0
        }
    }
}

/// Owns a test cgroup `/<parent>/c`: on drop, thaws it, kills its children, destroys it and
/// removes `/<parent>` from every hierarchy.
struct Guard {
    cg: Cgroup,
    parent: String,
    children: Vec<Child>,
}

impl Guard {
    fn new(cg: Cgroup, parent: String) -> Guard {
        Guard {
            cg,
            parent,
            children: Vec::new(),
        }
    }

    /// Forks a child, adds it to the cgroup, then lets it go.
    fn child(&mut self, action: Action) -> &mut Child {
        let mut child = Child::spawn(action);
        self.cg.add_process(child.raw()).expect("add_process");
        child.go();
        self.children.push(child);
        self.children.last_mut().expect("just pushed")
    }

    fn mounts(&self) -> Vec<PathBuf> {
        self.cg
            .hierarchies()
            .into_iter()
            .map(|h| h.mount_point)
            .collect()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.cg.thaw();
        self.children.clear();
        if let Err(e) = self.cg.destroy() {
            eprintln!("cleanup: {e}");
        }
        for m in self.mounts() {
            let _ = std::fs::remove_dir(m.join(&self.parent));
        }
    }
}

/// A cgroup on the host's own layout, or `None` (after printing why) if it cannot be tested.
fn host_cgroup() -> Option<Guard> {
    if !is_root() {
        return None;
    }
    let parent = unique_parent();
    let cg = match Cgroup::new(Some(&format!("/{parent}/c")), "unused") {
        Ok(cg) => cg,
        Err(e) => {
            println!("skipped: {e}");
            return None;
        }
    };
    let guard = Guard::new(cg, parent);
    guard.cg.create().expect("create");
    Some(guard)
}

/// A v2 cgroup on the host's cgroup2 mount (the unified one on hybrid hosts).
fn unified_cgroup() -> Option<Guard> {
    if !is_root() {
        return None;
    }
    let Some(mount) = Layout::probe().ok().and_then(|l| l.unified) else {
        println!("skipped: no cgroup2 mount on this host");
        return None;
    };
    let parent = unique_parent();
    let cg = Cgroup::with_root(&mount.mount_point, Some(&format!("{parent}/c")), "unused")
        .expect("v2 cgroup");
    assert_eq!(cg.mode(), CgroupMode::V2);
    let guard = Guard::new(cg, parent);
    guard.cg.create().expect("create");
    Some(guard)
}

fn v1_dir(cg: &Cgroup, controller: &str) -> Option<PathBuf> {
    cg.hierarchies()
        .into_iter()
        .find(|h| h.controllers.iter().any(|c| c == controller))
        .map(|h| h.host_dir)
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

fn devices_rules(extra_allow_full: bool) -> Vec<LinuxDeviceCgroup> {
    let mut rules: Vec<LinuxDeviceCgroup> =
        serde_json::from_str(r#"[{"allow":false,"access":"rwm"}]"#).unwrap();
    rules.extend(default_device_rules().into_iter().filter(|r| {
        // Keep /dev/null, drop /dev/full (1:7) unless asked for.
        extra_allow_full || !(r.major() == Some(1) && r.minor() == Some(7))
    }));
    rules
}

#[test]
fn real_detect_matches_manager() {
    if !is_root() {
        return;
    }
    let mode = detect_mode().unwrap();
    let cg = Cgroup::new(None, "probe").unwrap();
    assert_eq!(cg.mode(), mode);
    assert_eq!(cg.path(), "/isola/probe");
    println!("host cgroup mode: {mode}");
}

#[test]
fn real_host_lifecycle() {
    let Some(mut g) = host_cgroup() else { return };
    if g.cg.mode() == CgroupMode::V2 {
        println!("skipped: v2 host; covered by the unified tests");
        return;
    }
    let mut json = String::from(
        r#"{"memory":{"limit":67108864},"cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0","mems":"0"},"pids":{"limit":32}"#,
    );
    let hugetlb = Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists();
    if hugetlb {
        json.push_str(r#","hugepageLimits":[{"pageSize":"2MB","limit":4194304}]"#);
    }
    json.push('}');
    let warnings = g.cg.apply(&resources(&json)).expect("apply");
    assert!(warnings.is_empty(), "{warnings:?}");
    let mem = v1_dir(&g.cg, "memory").expect("memory hierarchy");
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "67108864");
    let cpu = v1_dir(&g.cg, "cpu").expect("cpu hierarchy");
    assert_eq!(read(&cpu, "cpu.shares"), "512");
    assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
    let cpuset = v1_dir(&g.cg, "cpuset").expect("cpuset hierarchy");
    assert_eq!(read(&cpuset, "cpuset.cpus"), "0");
    // The intermediate level inherited its parent's cpus.
    assert!(!read(cpuset.parent().unwrap(), "cpuset.cpus").is_empty());
    let pids = v1_dir(&g.cg, "pids").expect("pids hierarchy");
    assert_eq!(read(&pids, "pids.max"), "32");
    if hugetlb && g.cg.mode() == CgroupMode::Hybrid {
        let unified = g.cg.hierarchies().into_iter().find(|h| h.unified).unwrap();
        assert_eq!(read(&unified.host_dir, "hugetlb.2MB.max"), "4194304");
    }

    let a = g.child(Action::Pause).raw();
    let b = g.child(Action::Pause).raw();
    let mut expected = vec![a, b];
    expected.sort_unstable();
    assert_eq!(g.cg.pids().unwrap(), expected);
    let proc_cgroup = std::fs::read_to_string(format!("/proc/{a}/cgroup")).unwrap();
    assert!(
        proc_cgroup
            .lines()
            .any(|l| l.contains(":memory:") && l.ends_with(g.cg.path())),
        "{proc_cgroup}"
    );

    g.cg.freeze().unwrap();
    assert!(g.cg.is_frozen().unwrap());
    if let Some(freezer) = v1_dir(&g.cg, "freezer") {
        assert_eq!(read(&freezer, "freezer.state"), "FROZEN");
    }
    g.cg.thaw().unwrap();
    assert!(!g.cg.is_frozen().unwrap());

    let stats = g.cg.stats().unwrap();
    assert_eq!(stats.pids.as_ref().unwrap().current, 2);
    assert_eq!(stats.pids.as_ref().unwrap().limit, Some(32));
    assert_eq!(stats.memory.as_ref().unwrap().limit_bytes, Some(64 << 20));
    // Usage may be 0: v1 does not move a forked child's existing pages into the new cgroup.
    assert!(stats.memory.as_ref().unwrap().max_usage_bytes.is_some());
    assert!(stats.cpu.is_some());

    // The freeze / signal / thaw path.
    g.cg.kill_all(libc::SIGTERM).unwrap();
    for c in &mut g.children {
        let pid = c.pid;
        assert_eq!(c.wait(), WaitStatus::Signaled(pid, Signal::SIGTERM, false));
    }
    g.children.clear();
    // SIGKILL of a paused container (cgroup.kill in the unified mount on hybrid hosts, then
    // a thaw so that the v1-frozen process can die).
    let c = g.child(Action::Pause).raw();
    g.cg.freeze().unwrap();
    g.cg.kill_all(libc::SIGKILL).unwrap();
    let status = g.children[0].wait();
    assert_eq!(
        status,
        WaitStatus::Signaled(Pid::from_raw(c), Signal::SIGKILL, false)
    );
    g.children.clear();

    let dirs: Vec<PathBuf> = g.cg.hierarchies().into_iter().map(|h| h.host_dir).collect();
    g.cg.destroy().unwrap();
    for d in dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    g.cg.destroy().unwrap();
}

#[test]
fn real_v1_memsw_ordering() {
    let Some(g) = host_cgroup() else { return };
    let Some(mem) = v1_dir(&g.cg, "memory") else {
        println!("skipped: no v1 memory hierarchy");
        return;
    };
    if !mem.join("memory.memsw.limit_in_bytes").exists() {
        println!("skipped: no swap accounting (memory.memsw.limit_in_bytes)");
        return;
    }
    for (limit, swap) in [
        (32 * MIB, 64 * MIB),
        (128 * MIB, 256 * MIB),
        (16 * MIB, 32 * MIB),
        (-1, -1),
    ] {
        let json = format!(r#"{{"memory":{{"limit":{limit},"swap":{swap}}}}}"#);
        g.cg.apply(&resources(&json))
            .unwrap_or_else(|e| panic!("{json}: {e}"));
        if limit > 0 {
            assert_eq!(read(&mem, "memory.limit_in_bytes"), limit.to_string());
            assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), swap.to_string());
        }
    }
}

#[test]
fn real_oom_kill_is_counted() {
    let Some(mut g) = host_cgroup() else { return };
    if g.cg.mode() == CgroupMode::V2 {
        println!("skipped: v2 host; the memory controller of the unified tests is absent here");
        return;
    }
    let Some(mem) = v1_dir(&g.cg, "memory") else {
        println!("skipped: no v1 memory hierarchy");
        return;
    };
    let swap = if mem.join("memory.memsw.limit_in_bytes").exists() {
        r#","swap":16777216"#
    } else {
        ""
    };
    g.cg.apply(&resources(&format!(
        r#"{{"memory":{{"limit":16777216{swap}}}}}"#
    )))
    .unwrap();
    assert_eq!(g.cg.oom_kills().unwrap(), 0);
    let pid = g.child(Action::Hog).raw();
    let status = g.children[0].wait();
    assert_eq!(
        status,
        WaitStatus::Signaled(Pid::from_raw(pid), Signal::SIGKILL, false)
    );
    assert!(g.cg.oom_kills().unwrap() >= 1);
    assert!(g.cg.stats().unwrap().memory.unwrap().oom_kills >= 1);
}

#[test]
fn real_v1_devices_and_refused_write() {
    let Some(mut g) = host_cgroup() else { return };
    if v1_dir(&g.cg, "devices").is_none() {
        println!("skipped: no v1 devices hierarchy");
        return;
    }
    let mut res = LinuxResources::default();
    res.set_devices(Some(devices_rules(false)));
    g.cg.apply(&res).unwrap();
    let devices = v1_dir(&g.cg, "devices").unwrap();
    let list = read(&devices, "devices.list");
    assert!(list.lines().any(|l| l == "c 1:3 rwm"), "{list}");
    assert!(!list.lines().any(|l| l.starts_with("a ")), "{list}");
    g.child(Action::OpenDevices);
    let status = g.children[0].wait();
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");

    // A value the kernel refuses: the error names the cgroup, file, value and reason.
    if v1_dir(&g.cg, "cpuset").is_some() {
        let e =
            g.cg.apply(&resources(r#"{"cpu":{"cpus":"4095"}}"#))
                .unwrap_err();
        let prefix = format!("cgroup {}: write \"4095\" to cpuset.cpus: ", g.cg.path());
        assert!(e.to_string().starts_with(&prefix), "{e}");
        assert!(e.errno().is_some());
    }
}

#[test]
fn real_v2_lifecycle_on_cgroup2_mount() {
    let Some(mut g) = unified_cgroup() else {
        return;
    };
    let leaf = g.cg.hierarchies()[0].host_dir.clone();
    let a = g.child(Action::Pause).raw();
    assert_eq!(g.cg.pids().unwrap(), [a]);
    assert_eq!(read(&leaf, "cgroup.procs"), a.to_string());

    if leaf.join("cgroup.freeze").exists() {
        g.cg.freeze().unwrap();
        assert!(g.cg.is_frozen().unwrap());
        g.cg.thaw().unwrap();
        assert!(!g.cg.is_frozen().unwrap());
        // The freeze / signal / thaw path.
        g.cg.kill_all(libc::SIGTERM).unwrap();
        let status = g.children[0].wait();
        assert_eq!(
            status,
            WaitStatus::Signaled(Pid::from_raw(a), Signal::SIGTERM, false)
        );
    } else {
        println!("skipped part: no cgroup.freeze (kernel < 5.2)");
    }
    g.children.clear();

    let controllers = read(&leaf, "cgroup.controllers");
    if controllers.split_whitespace().any(|c| c == "hugetlb")
        && Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists()
    {
        g.cg.apply(&resources(
            r#"{"hugepageLimits":[{"pageSize":"2MB","limit":2097152}]}"#,
        ))
        .unwrap();
        assert_eq!(read(&leaf, "hugetlb.2MB.max"), "2097152");
    }
    if !controllers.split_whitespace().any(|c| c == "pids") {
        let e =
            g.cg.apply(&resources(r#"{"pids":{"limit":3}}"#))
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cgroup: the pids controller is not available on this host"
        );
    }
    assert_eq!(g.cg.oom_kills().unwrap(), 0);

    if leaf.join("cgroup.kill").exists() {
        let b = g.child(Action::Pause).raw();
        if leaf.join("cgroup.freeze").exists() {
            g.cg.freeze().unwrap();
        }
        g.cg.kill_all(libc::SIGKILL).unwrap();
        let status = g.children[0].wait();
        assert_eq!(
            status,
            WaitStatus::Signaled(Pid::from_raw(b), Signal::SIGKILL, false)
        );
        g.children.clear();
    }
    g.cg.destroy().unwrap();
    assert!(!leaf.exists());
}

#[test]
fn real_v2_device_filter() {
    let Some(mut g) = unified_cgroup() else {
        return;
    };
    let mut res = LinuxResources::default();
    res.set_devices(Some(devices_rules(false)));
    g.cg.apply(&res)
        .expect("load and attach the device program");
    g.child(Action::OpenDevices);
    let status = g.children[0].wait();
    assert!(
        matches!(status, WaitStatus::Exited(_, 0)),
        "null allowed, full denied: {status:?}"
    );
    g.children.clear();

    // A second apply replaces the program (the old one is detached, not stacked).
    res.set_devices(Some(devices_rules(true)));
    g.cg.apply(&res).unwrap();
    g.child(Action::OpenDevices);
    let status = g.children[0].wait();
    assert!(
        matches!(status, WaitStatus::Exited(_, 2)),
        "both allowed now: {status:?}"
    );
}
