//! cgroups from `linux.resources`, seen from inside the container (its read-only cgroup mount at
//! /sys/fs/cgroup) and, for what the container cannot show, from the host: memory, cpu, cpuset,
//! pids, devices, OOM kills, the freezer (pause/resume), ps and kill --all.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{cgroup_hierarchies, proc_status, process_gone, Ctx};
use serde_json::{json, Value};

const MIB: u64 = 1 << 20;

/// The host directory of the container's cgroup in the hierarchy that has `file` (v1), or in the
/// v2 hierarchy.
fn host_cgroup_file(ctx: &Ctx, file: &str) -> Option<PathBuf> {
    let rel = ctx.cgroup_path_of(&ctx.id);
    cgroup_hierarchies()
        .into_iter()
        .map(|h| h.join(rel.trim_start_matches('/')).join(file))
        .find(|p| p.exists())
}

fn is_v1_memory() -> bool {
    Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
}

/// `name=value` lines from `for f in FILES; do echo $f=$(cat $f); done` inside the container.
fn read_in_container(ctx: &mut Ctx, files: &[&str]) -> Vec<(String, String)> {
    let script: String = files
        .iter()
        .map(|f| format!("echo {f}=$(cat /sys/fs/cgroup/{f} 2>&1); "))
        .collect();
    ctx.sh(&script);
    let out = ctx.run().ok().stdout;
    out.lines()
        .filter_map(|l| l.split_once('=').map(|(a, b)| (a.to_owned(), b.to_owned())))
        .collect()
}

#[test]
fn memory_limit_reservation_and_swap() {
    let Some(mut ctx) = Ctx::new("cg_memory") else {
        return;
    };
    ctx.linux()["resources"]["memory"] =
        json!({"limit": 64 * MIB, "reservation": 32 * MIB, "swap": 96 * MIB});
    if is_v1_memory() {
        let got = read_in_container(
            &mut ctx,
            &[
                "memory/memory.limit_in_bytes",
                "memory/memory.soft_limit_in_bytes",
                "memory/memory.memsw.limit_in_bytes",
            ],
        );
        let want = [64 * MIB, 32 * MIB, 96 * MIB].map(|v| v.to_string());
        assert_eq!(
            got.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(),
            want,
            "{got:?}"
        );
    } else {
        let got = read_in_container(&mut ctx, &["memory.max", "memory.low", "memory.swap.max"]);
        let want = [64 * MIB, 32 * MIB, 32 * MIB].map(|v| v.to_string());
        assert_eq!(
            got.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(),
            want,
            "{got:?}"
        );
    }
}

#[test]
fn cpu_shares_quota_period_and_cpuset() {
    let Some(mut ctx) = Ctx::new("cg_cpu") else {
        return;
    };
    ctx.linux()["resources"]["cpu"] =
        json!({"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"});
    if Path::new("/sys/fs/cgroup/cpu/cpu.shares").exists() {
        let got = read_in_container(
            &mut ctx,
            &[
                "cpu/cpu.shares",
                "cpu/cpu.cfs_quota_us",
                "cpu/cpu.cfs_period_us",
                "cpuset/cpuset.cpus",
                "cpuset/cpuset.mems",
            ],
        );
        let vals: Vec<&str> = got.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(vals, ["512", "50000", "100000", "0", "0"], "{got:?}");
    } else {
        let got = read_in_container(&mut ctx, &["cpu.max", "cpuset.cpus", "cpuset.mems"]);
        let vals: Vec<&str> = got.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(vals, ["50000 100000", "0", "0"], "{got:?}");
    }
}

#[test]
fn pids_limit() {
    let Some(mut ctx) = Ctx::new("cg_pids") else {
        return;
    };
    ctx.linux()["resources"]["pids"] = json!({"limit": 10});
    ctx.sh("echo max=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max); /probe fork 30");
    let out = ctx.run().ok().stdout;
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("max=10"), "{out}");
    let r: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let forked = r["forked"].as_u64().unwrap();
    assert!(forked < 10, "{r}");
    assert_eq!(r["error"], "errno 11", "fork fails with EAGAIN: {r}");
}

#[test]
fn devices_cgroup_denies_what_is_not_allowed() {
    let Some(mut ctx) = Ctx::new("cg_devices") else {
        return;
    };
    let mut caps: Vec<Value> = ctx.config["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .clone();
    caps.push(json!("CAP_MKNOD"));
    for set in ["bounding", "effective", "permitted"] {
        ctx.config["process"]["capabilities"][set] = json!(caps);
    }
    // /dev/fuse (c 10:229) opens without any capability once the device cgroup allows it.
    if !Path::new("/dev/fuse").exists() {
        return common::skip("cg_devices", "needs /dev/fuse on the host");
    }
    ctx.sh(
        "/probe try mknod /dev/fuse0 c 10 229; /probe try open-read /dev/fuse0; \
         /probe try mknod /dev/fuse1 c 10 229; /probe try open-write /dev/fuse1; /probe try open-read /dev/null",
    );
    // Not in the allow list (runc's defaults allow mknod of any node, and the default /dev nodes).
    ctx.linux()["resources"]["devices"] = json!([{"allow": false, "access": "rwm"}]);
    let out = ctx.run().ok().stdout;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["ok", "EPERM", "ok", "EPERM", "ok"],
        "{out}"
    );

    ctx.linux()["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "r"},
    ]);
    let out = ctx.run().ok().stdout;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["ok", "ok", "ok", "EPERM", "ok"],
        "{out}"
    );
}

#[test]
fn oom_kill_is_detected() {
    let Some(mut ctx) = Ctx::new("cg_oom") else {
        return;
    };
    ctx.linux()["resources"]["memory"] = json!({"limit": 32 * MIB, "swap": 32 * MIB});
    ctx.args(&["/probe", "alloc", "128"]);
    ctx.write_config();
    let out = ctx.oci(&[
        "run",
        "--keep",
        "--bundle",
        ctx.bundle.to_str().unwrap(),
        &ctx.id,
    ]);
    assert_eq!(out.code, 137, "{out:#?}");
    assert!(!out.stdout.contains("allocated"), "{out:#?}");
    if is_v1_memory() {
        let f = host_cgroup_file(&ctx, "memory.oom_control").expect("memory cgroup kept");
        let text = fs::read_to_string(&f).unwrap();
        let kills: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no oom_kill in {text}"));
        assert!(kills >= 1, "{text}");
    } else {
        let f = host_cgroup_file(&ctx, "memory.events").expect("memory cgroup kept");
        let text = fs::read_to_string(&f).unwrap();
        assert!(!text.contains("oom_kill 0"), "{text}");
    }
    assert_eq!(ctx.state()["status"], "stopped");
}

#[test]
fn pause_and_resume() {
    let Some(mut ctx) = Ctx::new("cg_pause") else {
        return;
    };
    ctx.args(&["/probe", "sleep", "120"]);
    let pid = ctx.start_detached();
    ctx.oci(&["pause", &ctx.id]).ok();
    assert_eq!(ctx.state()["status"], "paused");
    if let Some(f) = host_cgroup_file(&ctx, "freezer.state") {
        assert_eq!(fs::read_to_string(f).unwrap().trim(), "FROZEN");
    }
    assert!(common::eventually(5, || proc_status(pid, "State")
        .is_some_and(|s| s.starts_with('D') || s.starts_with('S'))));
    ctx.oci(&["resume", &ctx.id]).ok();
    assert_eq!(ctx.state()["status"], "running");
    if let Some(f) = host_cgroup_file(&ctx, "freezer.state") {
        assert_eq!(fs::read_to_string(f).unwrap().trim(), "THAWED");
    }
    // A paused container can be deleted by force.
    ctx.oci(&["pause", &ctx.id]).ok();
    ctx.oci(&["delete", "--force", &ctx.id]).ok();
    assert!(common::eventually(10, || process_gone(pid)));
}

#[test]
fn ps_lists_the_container_processes() {
    let Some(mut ctx) = Ctx::new("cg_ps") else {
        return;
    };
    ctx.sh("/probe sleep 120 & /probe sleep 120 & wait");
    let pid = ctx.start_detached();
    let mut pids = Vec::new();
    assert!(
        common::eventually(10, || {
            pids = ctx
                .oci(&["ps", "--format", "json", &ctx.id])
                .ok()
                .json()
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_i64)
                .collect();
            pids.len() == 3
        }),
        "{pids:?}"
    );
    assert!(pids.contains(&(pid as i64)), "{pids:?} lacks init {pid}");
    let table = ctx.oci(&["ps", &ctx.id]).ok().stdout;
    assert!(
        table.lines().next().unwrap_or_default().contains("PID"),
        "{table}"
    );
    for p in &pids {
        assert!(
            table
                .lines()
                .skip(1)
                .any(|l| l.split_whitespace().any(|w| w == p.to_string())),
            "{p} not in {table}"
        );
    }
    assert_eq!(table.lines().count(), 4, "{table}");
}

#[test]
fn kill_all_signals_every_process() {
    let Some(mut ctx) = Ctx::new("cg_kill_all") else {
        return;
    };
    // Without a PID namespace, killing init alone would leave its children running.
    ctx.drop_namespace("pid");
    ctx.sh("/probe sleep 120 & /probe sleep 120 & wait");
    ctx.start_detached();
    let mut pids = Vec::new();
    assert!(common::eventually(10, || {
        pids = ctx
            .oci(&["ps", "--format", "json", &ctx.id])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_i64)
            .collect();
        pids.len() == 3
    }));
    ctx.oci(&["kill", "--all", &ctx.id, "KILL"]).ok();
    for p in &pids {
        assert!(
            common::eventually(10, || process_gone(*p as i32)),
            "{p} survived kill --all"
        );
    }
    ctx.wait_status("stopped");
}

#[test]
fn run_reports_an_oom_kill() {
    let Some(mut ctx) = Ctx::new("cg_oom_report") else {
        return;
    };
    ctx.linux()["resources"]["memory"] = json!({"limit": 32 * MIB, "swap": 32 * MIB});
    ctx.args(&["/probe", "alloc", "128"]);
    let out = ctx.run();
    assert_eq!(out.code, 137, "{out:#?}");
    let err = out.stderr.to_ascii_lowercase();
    assert!(
        err.contains("oom") || err.contains("out of memory"),
        "an OOM kill should be reported: {out:#?}"
    );
}
