//! The public API against fake cgroupfs trees: directories with the control files as plain
//! files. A plain file keeps only the last value written, so these tests check final values;
//! write sequences are checked in `devices.rs` and on the real kernel (`real_tests.rs`).

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use tempfile::TempDir;

use super::detect::Layout;
use super::*;

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources JSON")
}

fn write(path: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(path).unwrap();
    for (name, content) in files {
        std::fs::write(path.join(name), content).unwrap();
    }
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A hybrid host like ours, with the container cgroup `/isola/c1` already populated (cgroupfs
/// fills a new directory with its control files; plain directories do not).
fn hybrid() -> (TempDir, Cgroup) {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    let leaf = |h: &str| r.join(h).join("isola/c1");
    write(
        &r.join("cpuset"),
        &[("cpuset.cpus", "0-1\n"), ("cpuset.mems", "0\n")],
    );
    write(
        &r.join("cpuset/isola"),
        &[("cpuset.cpus", "\n"), ("cpuset.mems", "\n")],
    );
    write(
        &leaf("cpuset"),
        &[
            ("cpuset.cpus", "\n"),
            ("cpuset.mems", "\n"),
            ("cgroup.procs", ""),
        ],
    );
    write(
        &leaf("memory"),
        &[
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
            ("memory.soft_limit_in_bytes", "9223372036854771712\n"),
            ("memory.swappiness", "60\n"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
            ),
            ("memory.kmem.tcp.limit_in_bytes", "0\n"),
            ("memory.use_hierarchy", "1\n"),
            ("memory.usage_in_bytes", "4096\n"),
            ("memory.max_usage_in_bytes", "8192\n"),
            ("cgroup.procs", "7\n"),
        ],
    );
    write(
        &leaf("cpu"),
        &[
            ("cpu.shares", "1024\n"),
            ("cpu.cfs_quota_us", "-1\n"),
            ("cpu.cfs_period_us", "100000\n"),
            ("cpu.rt_period_us", "1000000\n"),
            ("cpu.rt_runtime_us", "0\n"),
            ("cpu.idle", "0\n"),
            (
                "cpu.stat",
                "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
            ),
            ("cgroup.procs", ""),
        ],
    );
    write(
        &leaf("cpuacct"),
        &[("cpuacct.usage", "5000\n"), ("cgroup.procs", "")],
    );
    write(
        &leaf("devices"),
        &[
            ("devices.allow", ""),
            ("devices.deny", ""),
            ("cgroup.procs", ""),
        ],
    );
    write(
        &leaf("freezer"),
        &[("freezer.state", "THAWED\n"), ("cgroup.procs", "")],
    );
    write(
        &leaf("blkio"),
        &[("blkio.throttle.read_bps_device", ""), ("cgroup.procs", "")],
    );
    write(
        &leaf("pids"),
        &[
            ("pids.max", "max\n"),
            ("pids.current", "1\n"),
            ("cgroup.procs", "9\n"),
        ],
    );
    write(&leaf("systemd"), &[("cgroup.procs", "")]);
    write(
        &r.join("unified"),
        &[
            ("cgroup.controllers", "hugetlb\n"),
            ("cgroup.subtree_control", ""),
        ],
    );
    write(
        &r.join("unified/isola"),
        &[
            ("cgroup.controllers", "hugetlb\n"),
            ("cgroup.subtree_control", ""),
        ],
    );
    write(
        &leaf("unified"),
        &[
            ("cgroup.controllers", "hugetlb\n"),
            ("hugetlb.2MB.max", "max\n"),
            ("cgroup.procs", "7\n"),
            ("cgroup.freeze", "0\n"),
        ],
    );
    let cg = Cgroup::with_root(r, None, "c1").unwrap();
    (tmp, cg)
}

/// A v2 host with `/isola/c1` populated and the given controllers enabled for it.
fn v2(controllers: &str) -> (TempDir, Cgroup) {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    write(
        r,
        &[
            (
                "cgroup.controllers",
                "cpuset cpu io memory hugetlb pids rdma\n",
            ),
            ("cgroup.subtree_control", ""),
        ],
    );
    write(
        &r.join("isola/c1"),
        &[
            ("cgroup.controllers", controllers),
            ("cgroup.procs", "12\n"),
            ("memory.max", "max\n"),
            ("memory.low", "0\n"),
            ("memory.swap.max", "max\n"),
            ("memory.current", "1000\n"),
            ("cpu.weight", "100\n"),
            ("cpu.max", "max 100000\n"),
            ("cpu.idle", "0\n"),
            ("cpuset.cpus", "\n"),
            ("cpuset.mems", "\n"),
            ("pids.max", "max\n"),
            ("hugetlb.1GB.max", "max\n"),
            ("io.weight", "default 100\n"),
            ("io.max", ""),
            ("memory.high", "max\n"),
        ],
    );
    let cg = Cgroup::with_root(r, None, "c1").unwrap();
    (tmp, cg)
}

#[test]
fn hybrid_layout_create_and_join() {
    let (tmp, cg) = hybrid();
    let r = tmp.path();
    assert_eq!(cg.mode(), CgroupMode::Hybrid);
    assert_eq!(cg.path(), "/isola/c1");
    cg.create().unwrap();
    // cpuset levels inherit the parent's cpus and mems.
    assert_eq!(read(r.join("cpuset/isola/cpuset.cpus")), "0-1");
    assert_eq!(read(r.join("cpuset/isola/c1/cpuset.mems")), "0");
    // Directories exist in every hierarchy; the cgroup2 parents got hugetlb enabled.
    assert!(r.join("systemd/isola/c1").is_dir());
    assert_eq!(read(r.join("unified/cgroup.subtree_control")), "+hugetlb");
    cg.add_process(4242).unwrap();
    for h in ["cpu", "memory", "pids", "systemd", "unified", "freezer"] {
        assert_eq!(read(r.join(h).join("isola/c1/cgroup.procs")), "4242", "{h}");
    }
    let hs = cg.hierarchies();
    assert_eq!(hs.len(), 10);
    let unified = hs.iter().find(|h| h.unified).unwrap();
    assert_eq!(unified.name, "unified");
    assert_eq!(unified.host_dir, r.join("unified/isola/c1"));
    let systemd = hs.iter().find(|h| h.name == "systemd").unwrap();
    assert_eq!(systemd.controllers, ["name=systemd"]);
}

#[test]
fn hybrid_apply_writes_v1_files() {
    let (tmp, cg) = hybrid();
    let leaf = |h: &str, f: &str| tmp.path().join(h).join("isola/c1").join(f);
    let warnings = cg
        .apply(&resources(
            r#"{"memory":{"limit":33554432,"reservation":16777216,"swap":67108864,"kernel":1,
                          "kernelTCP":8192,"swappiness":10,"disableOOMKiller":true,
                          "useHierarchy":false},
                "cpu":{"shares":512,"quota":50000,"period":200000,"realtimeRuntime":1000,
                       "realtimePeriod":500000,"idle":1,"cpus":"1","mems":"0"},
                "pids":{"limit":0},
                "devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}],
                "hugepageLimits":[{"pageSize":"2MB","limit":4194304}],
                "blockIO":{"weight":500,"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}]},
                "network":{"classID":1048577},
                "unified":{"hugetlb.2MB.max":"2097152"}}"#,
        ))
        .unwrap();
    assert_eq!(read(leaf("memory", "memory.limit_in_bytes")), "33554432");
    assert_eq!(
        read(leaf("memory", "memory.memsw.limit_in_bytes")),
        "67108864"
    );
    assert_eq!(
        read(leaf("memory", "memory.soft_limit_in_bytes")),
        "16777216"
    );
    assert_eq!(read(leaf("memory", "memory.swappiness")), "10");
    assert_eq!(read(leaf("memory", "memory.oom_control")), "1");
    assert_eq!(
        read(leaf("memory", "memory.kmem.tcp.limit_in_bytes")),
        "8192"
    );
    assert_eq!(read(leaf("cpu", "cpu.shares")), "512");
    assert_eq!(read(leaf("cpu", "cpu.cfs_quota_us")), "50000");
    assert_eq!(read(leaf("cpu", "cpu.cfs_period_us")), "200000");
    assert_eq!(read(leaf("cpu", "cpu.rt_runtime_us")), "1000");
    assert_eq!(read(leaf("cpu", "cpu.rt_period_us")), "500000");
    assert_eq!(read(leaf("cpu", "cpu.idle")), "1");
    assert_eq!(read(leaf("cpuset", "cpuset.cpus")), "1");
    assert_eq!(read(leaf("cpuset", "cpuset.mems")), "0");
    assert_eq!(read(leaf("pids", "pids.max")), "max");
    assert_eq!(read(leaf("devices", "devices.deny")), "a");
    assert_eq!(read(leaf("devices", "devices.allow")), "c 1:3 rwm");
    // `unified` is applied after hugepageLimits and wins.
    assert_eq!(read(leaf("unified", "hugetlb.2MB.max")), "2097152");
    assert_eq!(
        read(leaf("blkio", "blkio.throttle.read_bps_device")),
        "8:0 1048576"
    );
    assert_eq!(
        warnings,
        [
            "memory.kernel: kernel memory limits are not supported; ignored",
            "blockIO.weight: not supported on this host (no blkio.weight); ignored",
            "network.classID: the net_cls controller is not available on this host; ignored",
        ]
    );
}

#[test]
fn hybrid_hugetlb_goes_to_the_unified_mount() {
    let (tmp, cg) = hybrid();
    cg.apply(&resources(
        r#"{"hugepageLimits":[{"pageSize":"2MB","limit":-1}]}"#,
    ))
    .unwrap();
    assert_eq!(
        read(tmp.path().join("unified/isola/c1/hugetlb.2MB.max")),
        "max"
    );
    let e = cg
        .apply(&resources(
            r#"{"hugepageLimits":[{"pageSize":"1GB","limit":1073741824}]}"#,
        ))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("write \"1073741824\" to hugetlb.1GB.max: no such file"),
        "{e}"
    );
    let e = cg
        .apply(&resources(
            r#"{"hugepageLimits":[{"pageSize":"../2MB","limit":1}]}"#,
        ))
        .unwrap_err();
    assert!(matches!(e, CgroupError::InvalidValue { .. }), "{e}");
}

#[test]
fn v1_memsw_write_order() {
    // Make each file in turn unwritable (a directory); the file written first fails before the
    // other one is touched, which reveals the order.
    let (tmp, cg) = hybrid();
    let mem = tmp.path().join("memory/isola/c1");
    std::fs::remove_file(mem.join("memory.memsw.limit_in_bytes")).unwrap();
    std::fs::create_dir(mem.join("memory.memsw.limit_in_bytes")).unwrap();
    // Raising (current limit unlimited is "raising" only if memsw ≥ it; here it is lowering).
    let lower = resources(r#"{"memory":{"limit":1000000,"swap":2000000}}"#);
    assert!(cg.apply(&lower).is_err());
    assert_eq!(
        read(mem.join("memory.limit_in_bytes")),
        "1000000",
        "lowering: limit first"
    );
    // Now the limit is 1000000; raising to 3000000/4000000 must write memsw first.
    let raise = resources(r#"{"memory":{"limit":3000000,"swap":4000000}}"#);
    let e = cg.apply(&raise).unwrap_err();
    assert!(e.to_string().contains("memory.memsw.limit_in_bytes"), "{e}");
    assert_eq!(
        read(mem.join("memory.limit_in_bytes")),
        "1000000",
        "raising: memsw first"
    );
}

#[test]
fn v1_swap_without_accounting_is_a_warning() {
    let (tmp, cg) = hybrid();
    let mem = tmp.path().join("memory/isola/c1");
    std::fs::remove_file(mem.join("memory.memsw.limit_in_bytes")).unwrap();
    let w = cg
        .apply(&resources(r#"{"memory":{"limit":1000000,"swap":2000000}}"#))
        .unwrap();
    assert_eq!(read(mem.join("memory.limit_in_bytes")), "1000000");
    assert_eq!(w.len(), 1);
    assert!(
        w[0].starts_with("memory.swap: swap accounting is not enabled"),
        "{w:?}"
    );
}

#[test]
fn v1_invalid_values() {
    let (_tmp, cg) = hybrid();
    for (json, needle) in [
        (
            r#"{"memory":{"limit":2000,"swap":1000}}"#,
            "memory.swap 1000",
        ),
        (r#"{"memory":{"limit":-5}}"#, "memory.limit -5"),
        (r#"{"memory":{"swappiness":101}}"#, "memory.swappiness 101"),
        (
            r#"{"devices":[{"allow":true,"access":"x"}]}"#,
            "devices.access",
        ),
    ] {
        let e = cg.apply(&resources(json)).unwrap_err();
        assert!(e.to_string().contains(needle), "{json}: {e}");
    }
}

#[test]
fn v1_missing_and_read_only_controllers() {
    let (tmp, _) = hybrid();
    std::fs::remove_dir_all(tmp.path().join("pids")).unwrap();
    let cg = Cgroup::with_root(tmp.path(), None, "c1").unwrap();
    let e = cg
        .apply(&resources(r#"{"pids":{"limit":10}}"#))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cgroup: the pids controller is not available on this host"
    );
    // An empty setting needs no controller.
    assert!(cg.apply(&resources(r#"{"cpu":{}}"#)).unwrap().is_empty());

    let mut layout = Layout::from_dir(tmp.path()).unwrap();
    for m in &mut layout.v1 {
        m.read_only = m.controllers == ["memory"];
    }
    let cg = Cgroup::V1(v1::Manager::new(&layout, "/isola/c1"));
    let e = cg
        .apply(&resources(r#"{"memory":{"limit":1048576}}"#))
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cgroup: the memory controller is mounted read-only at "),
        "{e}"
    );
    // A read-only hierarchy is not written to when joining.
    cg.add_process(5).unwrap();
    assert_eq!(read(tmp.path().join("memory/isola/c1/cgroup.procs")), "7\n");
}

#[test]
fn pure_v1_refuses_unified() {
    let (tmp, _) = hybrid();
    std::fs::remove_dir_all(tmp.path().join("unified")).unwrap();
    let cg = Cgroup::with_root(tmp.path(), None, "c1").unwrap();
    assert_eq!(cg.mode(), CgroupMode::V1);
    let e = cg
        .apply(&resources(r#"{"unified":{"memory.high":"1000"}}"#))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cgroup: linux.resources.unified needs cgroup v2; this host uses cgroup v1 only"
    );
    let e = cg
        .apply(&resources(
            r#"{"hugepageLimits":[{"pageSize":"2MB","limit":1}]}"#,
        ))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cgroup: the hugetlb controller is not available on this host"
    );
}

#[test]
fn v1_freezer_pids_oom_and_stats() {
    let (tmp, cg) = hybrid();
    assert!(!cg.is_frozen().unwrap());
    cg.freeze().unwrap();
    assert_eq!(
        read(tmp.path().join("freezer/isola/c1/freezer.state")),
        "FROZEN"
    );
    assert!(cg.is_frozen().unwrap());
    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());
    assert_eq!(cg.pids().unwrap(), [7, 9]);
    assert_eq!(cg.oom_kills().unwrap(), 4);
    let s = cg.stats().unwrap();
    let m = s.memory.unwrap();
    assert_eq!(
        (m.usage_bytes, m.max_usage_bytes, m.limit_bytes, m.oom_kills),
        (4096, Some(8192), None, 4)
    );
    assert_eq!(s.cpu.unwrap().usage_ns, 5000);
    assert_eq!(
        s.pids.unwrap(),
        PidsStats {
            current: 1,
            limit: None
        }
    );
}

#[test]
fn hybrid_without_v1_freezer_uses_cgroup_freeze() {
    let (tmp, _) = hybrid();
    std::fs::remove_dir_all(tmp.path().join("freezer")).unwrap();
    let unified = tmp.path().join("unified/isola/c1");
    std::fs::write(unified.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
    let cg = Cgroup::with_root(tmp.path(), None, "c1").unwrap();
    cg.freeze().unwrap();
    assert_eq!(read(unified.join("cgroup.freeze")), "1");
    assert!(cg.is_frozen().unwrap());
}

#[test]
fn v2_apply_converts_values() {
    let (tmp, cg) = v2("cpuset cpu io memory hugetlb pids\n");
    assert_eq!(cg.mode(), CgroupMode::V2);
    let leaf = |f: &str| tmp.path().join("isola/c1").join(f);
    let warnings = cg
        .apply(&resources(
            r#"{"memory":{"limit":100000000,"reservation":50000000,"swap":300000000,"swappiness":5,
                          "disableOOMKiller":true,"kernel":5},
                "cpu":{"shares":1024,"quota":-1,"period":50000,"idle":1,"realtimeRuntime":5,"cpus":"0","mems":"0"},
                "pids":{"limit":64},
                "hugepageLimits":[{"pageSize":"1GB","limit":1073741824}],
                "blockIO":{"weight":500,"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":100}]},
                "network":{"classID":7},
                "unified":{"memory.high":"90000000"}}"#,
        ))
        .unwrap();
    assert_eq!(read(leaf("memory.max")), "100000000");
    assert_eq!(read(leaf("memory.low")), "50000000");
    assert_eq!(read(leaf("memory.swap.max")), "200000000");
    assert_eq!(read(leaf("memory.high")), "90000000");
    assert_eq!(read(leaf("cpu.weight")), "39");
    assert_eq!(read(leaf("cpu.max")), "max 50000");
    assert_eq!(read(leaf("cpu.idle")), "1");
    assert_eq!(read(leaf("cpuset.cpus")), "0");
    assert_eq!(read(leaf("pids.max")), "64");
    assert_eq!(read(leaf("hugetlb.1GB.max")), "1073741824");
    assert_eq!(read(leaf("io.weight")), "default 4950");
    assert_eq!(read(leaf("io.max")), "8:0 rbps=100");
    assert_eq!(
        warnings,
        [
            "memory.kernel: kernel memory limits are not supported; ignored",
            "memory.swappiness: not supported on cgroup v2; ignored",
            "memory.disableOOMKiller: not supported on cgroup v2; ignored",
            "cpu.realtimeRuntime/realtimePeriod: not supported on cgroup v2; ignored",
            "network: classID and priorities need the v1 net_cls/net_prio controllers, which cgroup v2 does not have; ignored",
        ]
    );
}

#[test]
fn v2_unlimited_and_partial_values() {
    let (tmp, cg) = v2("cpu memory pids\n");
    let leaf = |f: &str| tmp.path().join("isola/c1").join(f);
    std::fs::write(leaf("cpu.max"), "25000 100000\n").unwrap();
    cg.apply(&resources(
        r#"{"memory":{"limit":-1,"swap":-1},"cpu":{"period":10000},"pids":{"limit":-1}}"#,
    ))
    .unwrap();
    assert_eq!(read(leaf("memory.max")), "max");
    assert_eq!(read(leaf("memory.swap.max")), "max");
    assert_eq!(read(leaf("cpu.max")), "25000 10000");
    assert_eq!(read(leaf("pids.max")), "max");
}

#[test]
fn v2_errors_and_warnings() {
    let (tmp, cg) = v2("cpu memory\n");
    let e = cg.apply(&resources(r#"{"pids":{"limit":5}}"#)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cgroup: the pids controller is not available on this host"
    );
    let e = cg.apply(&resources(r#"{"cpu":{"cpus":"0"}}"#)).unwrap_err();
    assert!(e.to_string().contains("the cpuset controller"), "{e}");
    let e = cg
        .apply(&resources(r#"{"memory":{"swap":1000}}"#))
        .unwrap_err();
    assert!(e.to_string().contains("needs a memory limit"), "{e}");
    let e = cg
        .apply(&resources(r#"{"unified":{"../../escape.max":"1"}}"#))
        .unwrap_err();
    assert!(e.to_string().contains("linux.resources.unified"), "{e}");
    let e = cg
        .apply(&resources(
            r#"{"memory":{"limit":500,"checkBeforeUpdate":true}}"#,
        ))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("below the current usage of 1000 bytes"),
        "{e}"
    );
    std::fs::remove_file(tmp.path().join("isola/c1/memory.swap.max")).unwrap();
    let w = cg
        .apply(&resources(r#"{"memory":{"limit":1000000,"swap":2000000}}"#))
        .unwrap();
    assert!(
        w[0].starts_with("memory.swap: swap accounting is not enabled"),
        "{w:?}"
    );
    assert_eq!(read(tmp.path().join("isola/c1/memory.max")), "1000000");
}

#[test]
fn v2_pids_stats_and_hierarchies() {
    let (tmp, cg) = v2("memory pids\n");
    let sub = tmp.path().join("isola/c1/sub");
    write(&sub, &[("cgroup.procs", "3\n")]);
    assert_eq!(cg.pids().unwrap(), [3, 12]);
    let s = cg.stats().unwrap();
    assert_eq!(s.memory.unwrap().usage_bytes, 1000);
    assert_eq!(s.cpu, None);
    let hs = cg.hierarchies();
    assert_eq!(hs.len(), 1);
    assert!(hs[0].unified);
    assert_eq!(hs[0].mount_point, tmp.path());
    std::fs::remove_dir(&sub).ok();
}

#[test]
fn destroy_on_fake_tree_removes_only_empty_leaf() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), &[("cgroup.controllers", "")]);
    let cg = Cgroup::with_root(tmp.path(), Some("/isola/gone"), "x").unwrap();
    cg.create().unwrap();
    assert!(tmp.path().join("isola/gone").is_dir());
    cg.destroy().unwrap();
    assert!(!tmp.path().join("isola/gone").exists());
    assert!(tmp.path().join("isola").is_dir());
    cg.destroy().unwrap();
}

#[test]
fn fake_layout_needs_a_mount() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(
        Cgroup::with_root(tmp.path(), None, "x"),
        Err(CgroupError::NotMounted)
    ));
}
