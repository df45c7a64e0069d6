//! The lifecycle and the runc-compatible command line: create/start/state/kill/delete, option
//! placement, signal forms, list, ps, spec, features, --pid-file.

mod common;

use std::fs;

use common::{process_gone, Ctx};
use serde_json::Value;

#[test]
fn create_start_kill_delete() {
    let Some(mut ctx) = Ctx::new("lifecycle") else {
        return;
    };
    ctx.args(&["/probe", "sleep", "120"]);
    ctx.create(&[]).ok();
    let st = ctx.state();
    assert_eq!(st["status"], "created");
    let pid = st["pid"].as_i64().unwrap() as i32;
    assert!(pid > 0 && !process_gone(pid));
    ctx.oci(&["start", &ctx.id]).ok();
    assert_eq!(ctx.state()["status"], "running");
    // A started container cannot be started again.
    assert_ne!(ctx.oci(&["start", &ctx.id]).code, 0);
    // Nor deleted without --force while it runs.
    let out = ctx.oci(&["delete", &ctx.id]);
    assert_ne!(out.code, 0, "{out:#?}");
    ctx.oci(&["kill", &ctx.id, "KILL"]).ok();
    let st = ctx.wait_status("stopped");
    assert_eq!(st["pid"], 0, "{st}");
    ctx.oci(&["delete", &ctx.id]).ok();
    assert!(process_gone(pid));
    let out = ctx.oci(&["state", &ctx.id]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains(&ctx.id), "{out:#?}");
    assert!(!ctx.root.join(&ctx.id).exists());
}

#[test]
fn state_json_shape() {
    let Some(mut ctx) = Ctx::new("state_shape") else {
        return;
    };
    ctx.config["annotations"] = serde_json::json!({"org.example.key": "value"});
    ctx.args(&["/probe", "sleep", "120"]);
    let pid = ctx.start_detached();
    let st = ctx.state();
    assert!(
        st["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{st}"
    );
    assert_eq!(st["id"], ctx.id.as_str());
    assert_eq!(st["status"], "running");
    assert_eq!(st["pid"], pid);
    assert_eq!(st["bundle"], ctx.bundle.to_str().unwrap());
    assert_eq!(st["annotations"]["org.example.key"], "value");
}

#[test]
fn options_before_or_after_the_id() {
    let Some(mut ctx) = Ctx::new("option_placement") else {
        return;
    };
    ctx.args(&["/probe", "sleep", "120"]);
    let pid = ctx.start_detached();
    ctx.oci(&["delete", &ctx.id, "--force"]).ok();
    assert!(common::eventually(10, || process_gone(pid)));
    assert!(!ctx.root.join(&ctx.id).exists());

    let pid = ctx.start_detached();
    ctx.oci(&["delete", "--force", &ctx.id]).ok();
    assert!(common::eventually(10, || process_gone(pid)));

    // create's flags after the ID, too.
    ctx.write_config();
    let pid_file = ctx.path("after.pid");
    let bundle = ctx.bundle.to_str().unwrap();
    ctx.oci(&[
        "create",
        &ctx.id,
        "--bundle",
        bundle,
        "--pid-file",
        pid_file.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(
        fs::read_to_string(&pid_file).unwrap().trim(),
        ctx.pid().to_string()
    );
}

#[test]
fn kill_accepts_signal_names_and_numbers() {
    let Some(mut ctx) = Ctx::new("kill_signals") else {
        return;
    };
    ctx.args(&["/probe", "sleep", "120"]);
    for sig in ["KILL", "9", "SIGKILL"] {
        let pid = ctx.start_detached();
        ctx.oci(&["kill", &ctx.id, sig]).ok();
        assert!(common::eventually(10, || process_gone(pid)), "kill {sig}");
        ctx.wait_status("stopped");
        ctx.oci(&["delete", &ctx.id]).ok();
    }
    // PID 1 of a PID namespace only gets the signals it handles: trap SIGTERM.
    ctx.sh("trap 'exit 0' TERM; while :; do sleep 0.1; done");
    let pid = ctx.start_detached();
    let out = ctx.oci(&["kill", &ctx.id, "NOTASIGNAL"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("NOTASIGNAL"), "{out:#?}");
    assert!(!process_gone(pid));
    // The default signal is SIGTERM.
    ctx.oci(&["kill", &ctx.id]).ok();
    assert!(common::eventually(10, || process_gone(pid)));
}

#[test]
fn list_and_ps_formats() {
    let Some(mut ctx) = Ctx::new("list_ps") else {
        return;
    };
    ctx.args(&["/probe", "sleep", "120"]);
    let pid = ctx.start_detached();
    let second = format!("{}-b", ctx.id);
    ctx.extra_ids.push(second.clone());
    ctx.oci(&["create", "--bundle", ctx.bundle.to_str().unwrap(), &second])
        .ok();

    let table = ctx.oci(&["list"]).ok().stdout;
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
    assert!(
        table.contains(&ctx.id) && table.contains(&second),
        "{table}"
    );

    let quiet = ctx.oci(&["list", "-q"]).ok().stdout;
    let mut ids: Vec<&str> = quiet.lines().collect();
    ids.sort();
    assert_eq!(ids, [ctx.id.as_str(), second.as_str()]);

    let list = ctx.oci(&["list", "--format", "json"]).ok().json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let first = list.iter().find(|c| c["id"] == ctx.id.as_str()).unwrap();
    assert_eq!(first["status"], "running");
    assert_eq!(first["pid"], pid);
    let other = list.iter().find(|c| c["id"] == second.as_str()).unwrap();
    assert_eq!(other["status"], "created");

    let ps = ctx.oci(&["ps", "--format", "json", &ctx.id]).ok().json();
    assert_eq!(ps, serde_json::json!([pid]));
    let ps = ctx.oci(&["ps", &ctx.id, "--format", "json"]).ok().json();
    assert_eq!(ps, serde_json::json!([pid]));
}

#[test]
fn spec_and_features() {
    let Some(ctx) = Ctx::new("spec_features") else {
        return;
    };
    let dir = ctx.path("specdir");
    fs::create_dir(&dir).unwrap();
    ctx.oci(&["spec", "--bundle", dir.to_str().unwrap()]).ok();
    let spec: Value = serde_json::from_slice(&fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert!(spec["ociVersion"].is_string());
    assert_eq!(spec["root"]["path"], "rootfs");
    assert!(spec["process"]["args"].is_array());
    assert!(spec["linux"]["namespaces"].is_array());
    // It does not overwrite an existing config.
    let out = ctx.oci(&["spec", "--bundle", dir.to_str().unwrap()]);
    assert!(out.one_line_error().contains("config.json"));

    let f = ctx.oci(&["features"]).ok().json();
    assert!(
        f["ociVersionMin"].is_string() && f["ociVersionMax"].is_string(),
        "{f}"
    );
    let ns: Vec<&str> = f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"] {
        assert!(ns.contains(&want), "{want} missing from {ns:?}");
    }
    assert!(f["linux"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "CAP_SYS_ADMIN"));
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
    assert!(f["hooks"].as_array().unwrap().len() >= 6);
}

#[test]
fn pid_file_on_create() {
    let Some(mut ctx) = Ctx::new("pid_file_create") else {
        return;
    };
    ctx.args(&["/probe", "sleep", "120"]);
    let pid_file = ctx.path("c.pid");
    ctx.create(&["--pid-file", pid_file.to_str().unwrap()]).ok();
    assert_eq!(
        fs::read_to_string(&pid_file).unwrap().trim(),
        ctx.pid().to_string()
    );
}

#[test]
fn systemd_cgroup_is_refused_clearly() {
    let Some(ctx) = Ctx::new("systemd_cgroup") else {
        return;
    };
    ctx.write_config();
    let out = ctx.oci(&["--systemd-cgroup", "run", &ctx.id]);
    assert!(out.one_line_error().contains("systemd"));
}

#[test]
fn long_state_root_and_64_char_id() {
    let Some(mut ctx) = Ctx::new("long_root") else {
        return;
    };
    // containerd's shim uses 64-hex-digit IDs under roots like /run/containerd/runc/k8s.io; runc
    // keeps no socket in the state directory, so any root that fits PATH_MAX works.
    let deep = ctx.path("a-rather-long-state-root-directory/for-containers");
    ctx.root = deep;
    ctx.id = "0123456789abcdef".repeat(4);
    ctx.args(&["/probe", "exit", "0"]);
    let out = ctx.run();
    assert_eq!(out.code, 0, "{out:#?}");
}
