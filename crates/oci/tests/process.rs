//! The `process` object and the process-related parts of `linux`: args, env, cwd, user, umask,
//! rlimits, no_new_privs, capabilities, oomScoreAdj, sysctl, seccomp, hooks and exit codes.

mod common;

use std::fs;

use common::{cap_mask, Ctx};
use serde_json::{json, Value};

#[test]
fn args_env_and_cwd_created_if_missing() {
    let Some(mut ctx) = Ctx::new("args_env_cwd") else {
        return;
    };
    ctx.process().insert(
        "env".into(),
        json!(["PATH=/bin", "GREETING=hello world", "EMPTY="]),
    );
    ctx.process().insert("cwd".into(), json!("/work/sub"));
    // As in runc and crun, a missing cwd is created even when the root becomes read-only.
    ctx.config["root"]["readonly"] = json!(true);
    let r = ctx.report();
    assert_eq!(r["cwd"], "/work/sub");
    let env = r["env"].as_object().unwrap();
    assert_eq!(env["GREETING"], "hello world");
    assert_eq!(env["EMPTY"], "");
    assert_eq!(env["PATH"], "/bin");
    assert_eq!(env.len(), 3, "no other variables leak in: {env:?}");
    assert!(!ctx.rootfs.join("work/sub").exists() || ctx.rootfs.join("work/sub").is_dir());

    ctx.args(&["/bin/echo", "one", "two  three", ""]);
    assert_eq!(ctx.run().ok().stdout, "one two  three \n");
}

#[test]
fn user_uid_gid_and_additional_gids() {
    let Some(mut ctx) = Ctx::new("user_ids") else {
        return;
    };
    ctx.process().insert(
        "user".into(),
        json!({"uid": 1000, "gid": 1000, "additionalGids": [2000, 1000]}),
    );
    let r = ctx.report();
    assert_eq!(
        (r["uid"].as_u64(), r["euid"].as_u64()),
        (Some(1000), Some(1000))
    );
    assert_eq!(
        (r["gid"].as_u64(), r["egid"].as_u64()),
        (Some(1000), Some(1000))
    );
    let mut groups: Vec<u64> = r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    groups.sort();
    groups.dedup();
    assert_eq!(groups, [1000, 2000]);
}

#[test]
fn umask() {
    let Some(mut ctx) = Ctx::new("umask") else {
        return;
    };
    ctx.config["process"]["user"]["umask"] = json!(0o027);
    assert_eq!(ctx.report()["umask"], "0027");
}

#[test]
fn rlimits_nofile() {
    let Some(mut ctx) = Ctx::new("rlimits_nofile") else {
        return;
    };
    ctx.process().insert(
        "rlimits".into(),
        json!([{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
               {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]),
    );
    let r = ctx.report();
    assert_eq!(
        r["rlimits"]["RLIMIT_NOFILE"],
        json!({"soft": 100, "hard": 200})
    );
    assert_eq!(r["rlimits"]["RLIMIT_CORE"], json!({"soft": 0, "hard": 0}));
}

#[test]
fn raising_hard_nofile_above_the_host_names_the_limit() {
    let Some(mut ctx) = Ctx::new("rlimit_above_host") else {
        return;
    };
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a valid rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let above = lim.rlim_max + 10_000;
    ctx.process().insert(
        "rlimits".into(),
        json!([{"type": "RLIMIT_NOFILE", "soft": above, "hard": above}]),
    );
    let out = ctx.run();
    let line = out.one_line_error();
    assert!(line.contains("RLIMIT_NOFILE"), "{line}");
    assert!(line.contains("CAP_SYS_RESOURCE"), "{line}");
}

#[test]
fn no_new_privileges() {
    let Some(mut ctx) = Ctx::new("no_new_privs") else {
        return;
    };
    ctx.process().insert("noNewPrivileges".into(), json!(true));
    assert_eq!(ctx.report()["no_new_privs"], "1");
    ctx.process().insert("noNewPrivileges".into(), json!(false));
    assert_eq!(ctx.report()["no_new_privs"], "0");
}

const CAP_CHOWN: u32 = 0;
const CAP_DAC_OVERRIDE: u32 = 1;
const CAP_KILL: u32 = 5;
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_NET_BIND_SERVICE: u32 = 10;
const CAP_NET_RAW: u32 = 13;
const CAP_AUDIT_WRITE: u32 = 29;

#[test]
fn default_capabilities_as_root() {
    let Some(ctx) = Ctx::new("caps_default_root") else {
        return;
    };
    let r = ctx.report();
    let want = cap_mask(&[CAP_NET_BIND_SERVICE, CAP_AUDIT_WRITE, CAP_KILL]);
    for set in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        assert_eq!(r["caps"][set], want, "{set}");
    }
}

#[test]
fn five_capability_sets_as_configured() {
    let Some(mut ctx) = Ctx::new("caps_five_sets") else {
        return;
    };
    let names = |l: &[&str]| json!(l);
    let bounding = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_RAW",
    ];
    let inheritable = ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"];
    let ambient = ["CAP_KILL", "CAP_NET_BIND_SERVICE"];
    // A non-root user keeps exactly the configured sets across execve when permitted, effective
    // and ambient agree (for root, the kernel widens permitted to inheritable | bounding).
    ctx.process()
        .insert("user".into(), json!({"uid": 1000, "gid": 1000}));
    ctx.process().insert(
        "capabilities".into(),
        json!({
            "bounding": names(&bounding), "inheritable": names(&inheritable),
            "permitted": names(&ambient), "effective": names(&ambient), "ambient": names(&ambient),
        }),
    );
    let r = ctx.report();
    let b = cap_mask(&[
        CAP_CHOWN,
        CAP_DAC_OVERRIDE,
        CAP_KILL,
        CAP_SETGID,
        CAP_SETUID,
        CAP_NET_BIND_SERVICE,
        CAP_NET_RAW,
    ]);
    let i = cap_mask(&[CAP_KILL, CAP_NET_BIND_SERVICE, CAP_NET_RAW]);
    let a = cap_mask(&[CAP_KILL, CAP_NET_BIND_SERVICE]);
    assert_eq!(r["caps"]["bounding"], b);
    assert_eq!(r["caps"]["inheritable"], i);
    assert_eq!(r["caps"]["permitted"], a);
    assert_eq!(r["caps"]["effective"], a);
    assert_eq!(r["caps"]["ambient"], a);
    assert_eq!(r["uid"], 1000);
}

#[test]
fn oom_score_adj() {
    let Some(mut ctx) = Ctx::new("oom_score_adj") else {
        return;
    };
    ctx.process().insert("oomScoreAdj".into(), json!(500));
    assert_eq!(ctx.report()["oom_score_adj"], "500");

    let host: i64 = fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if host <= -1000 {
        return common::skip(
            "oom_score_adj (lowering)",
            "the host value is already -1000",
        );
    }
    ctx.process()
        .insert("oomScoreAdj".into(), json!(host - 100));
    let out = ctx.run();
    let line = out.one_line_error();
    assert!(line.contains("oomScoreAdj"), "{line}");
    assert!(line.contains("CAP_SYS_RESOURCE"), "{line}");
}

#[test]
fn sysctl_in_a_new_network_namespace() {
    let Some(mut ctx) = Ctx::new("sysctl_netns") else {
        return;
    };
    let host_before = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let want = if host_before.trim() == "1" { "0" } else { "1" };
    ctx.linux()
        .insert("sysctl".into(), json!({"net.ipv4.ip_forward": want}));
    ctx.args(&["/probe", "read", "/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(ctx.run().ok().stdout.trim(), want);
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_before
    );
}

fn seccomp_denying_mkdir(action: &str) -> Value {
    let mut rule = json!({"names": ["mkdir", "mkdirat"], "action": action});
    if action == "SCMP_ACT_ERRNO" {
        rule["errnoRet"] = json!(libc::EPERM);
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [rule]
    })
}

#[test]
fn seccomp_errno() {
    let Some(mut ctx) = Ctx::new("seccomp_errno") else {
        return;
    };
    ctx.config["root"]["readonly"] = json!(false);
    ctx.linux()
        .insert("seccomp".into(), seccomp_denying_mkdir("SCMP_ACT_ERRNO"));
    ctx.sh("/probe try mkdir /tmp/d; /probe try open-write /etc/passwd; /probe report");
    let out = ctx.run().ok().stdout;
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("EPERM"));
    assert_eq!(lines.next(), Some("ok"), "other syscalls are allowed");
    let r: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(r["seccomp"], "2", "seccomp filter mode");
}

#[test]
fn seccomp_kill_process() {
    let Some(mut ctx) = Ctx::new("seccomp_kill") else {
        return;
    };
    ctx.linux().insert(
        "seccomp".into(),
        seccomp_denying_mkdir("SCMP_ACT_KILL_PROCESS"),
    );
    ctx.args(&["/probe", "try", "mkdir", "/tmp/d"]);
    let out = ctx.run();
    assert_eq!(out.code, 128 + libc::SIGSYS, "{out:#?}");
}

const HOOKS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

#[test]
fn hooks_run_in_order_with_the_state_on_stdin() {
    let Some(mut ctx) = Ctx::new("hooks") else {
        return;
    };
    let log = ctx.path("hooklog");
    fs::create_dir(&log).unwrap();
    ctx.mount(json!({"destination": "/hooklog", "type": "bind", "source": log, "options": ["rbind", "rw"]}));
    let mut hooks = serde_json::Map::new();
    for name in HOOKS {
        // Runtime-namespace hooks see the host path; startContainer runs in the container and sees
        // the bind mount.
        let script = format!(
            "d={}; [ -d \"$d\" ] || d=/hooklog; echo {name} >> \"$d/order\"; cat > \"$d/{name}.json\"",
            log.display()
        );
        hooks.insert(
            name.into(),
            json!([{"path": "/bin/sh", "args": ["sh", "-c", script]}]),
        );
    }
    ctx.config["hooks"] = Value::Object(hooks);
    // The process outlives poststart, so that hook sees it running.
    ctx.args(&["/probe", "sleep", "1"]);
    ctx.run().ok();
    let order = fs::read_to_string(log.join("order")).unwrap_or_default();
    assert_eq!(order.lines().collect::<Vec<_>>(), HOOKS, "hook order");
    for name in HOOKS {
        let text = fs::read_to_string(log.join(format!("{name}.json"))).unwrap();
        let st: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"));
        assert_eq!(st["id"], ctx.id.as_str(), "{name}: {st}");
        assert_eq!(st["bundle"], ctx.bundle.to_str().unwrap(), "{name}: {st}");
        assert!(st["ociVersion"].is_string(), "{name}: {st}");
        assert!(st["status"].is_string(), "{name}: {st}");
        if name != "poststop" {
            assert!(st["pid"].as_i64().unwrap_or(0) > 0, "{name}: {st}");
        }
        let want: &[&str] = match name {
            "poststart" => &["running"],
            "poststop" => &["stopped"],
            "startContainer" => &["created", "running"],
            _ => &["creating", "created"],
        };
        assert!(want.iter().any(|w| st["status"] == *w), "{name}: {st}");
    }
}

#[test]
fn a_failing_hook_fails_create_and_names_it() {
    let Some(mut ctx) = Ctx::new("hook_fails") else {
        return;
    };
    ctx.config["hooks"] = json!({"createRuntime": [{"path": "/bin/false", "args": ["false"]}]});
    let out = ctx.create(&[]);
    let line = out.one_line_error();
    assert!(line.contains("createRuntime"), "{line}");
}

#[test]
fn exit_code_propagates() {
    let Some(mut ctx) = Ctx::new("exit_code") else {
        return;
    };
    ctx.args(&["/probe", "exit", "3"]);
    assert_eq!(ctx.run().code, 3);
    ctx.args(&["/probe", "exit", "0"]);
    assert_eq!(ctx.run().code, 0);
}

#[test]
fn command_not_found_exits_127_naming_it() {
    let Some(mut ctx) = Ctx::new("exit_not_found") else {
        return;
    };
    ctx.args(&["/no/such/command"]);
    let out = ctx.run();
    assert_eq!(out.code, 127, "{out:#?}");
    assert!(out.stderr.contains("/no/such/command"), "{out:#?}");

    ctx.args(&["no-such-command-on-path"]);
    let out = ctx.run();
    assert_eq!(out.code, 127, "{out:#?}");
    assert!(out.stderr.contains("no-such-command-on-path"), "{out:#?}");
}

#[test]
fn not_executable_exits_126_naming_it() {
    let Some(mut ctx) = Ctx::new("exit_not_exec") else {
        return;
    };
    ctx.args(&["/etc/passwd"]);
    let out = ctx.run();
    assert_eq!(out.code, 126, "{out:#?}");
    assert!(out.stderr.contains("/etc/passwd"), "{out:#?}");
}
