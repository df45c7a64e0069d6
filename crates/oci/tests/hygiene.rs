//! Hygiene: no host file descriptor reaches the container, the working directory cannot point into
//! the host (CVE-2024-21626 class), the runtime binary cannot be reached from inside (CVE-2019-5736
//! class), and masking with a hostile `/dev/null` cannot touch a host file (CVE-2025-31133 class).

mod common;

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::symlink;

use common::{host_mounts_under, Ctx};
use serde_json::{json, Value};

/// A descriptor without `FD_CLOEXEC` at a high number, as a careless caller could leak it.
struct LeakedFd(i32);

impl LeakedFd {
    fn open(path: &str, at: i32) -> Self {
        let c = CString::new(path).unwrap();
        // SAFETY: open with a valid NUL-terminated path; no O_CLOEXEC on purpose.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
        assert!(fd >= 0, "open {path}");
        // SAFETY: dup2 onto a descriptor number this test owns; the result has no FD_CLOEXEC.
        assert_eq!(unsafe { libc::dup2(fd, at) }, at);
        // SAFETY: closing the descriptor opened above.
        unsafe { libc::close(fd) };
        Self(at)
    }
}

impl Drop for LeakedFd {
    fn drop(&mut self) {
        // SAFETY: closing the descriptor this guard owns.
        unsafe { libc::close(self.0) };
    }
}

#[test]
fn no_host_file_descriptor_reaches_the_container() {
    let Some(mut ctx) = Ctx::new("no_host_fds") else {
        return;
    };
    let _leak = LeakedFd::open("/", 250);
    let r = ctx.report();
    // 0-2 and the probe's own /proc/self/fd directory.
    assert_eq!(r["fds"], json!(["0", "1", "2", "3"]), "{}", r["fds"]);

    ctx.args(&["/probe", "sleep", "120"]);
    ctx.start_detached();
    let r = ctx.oci(&["exec", &ctx.id, "/probe", "report"]).ok().json();
    assert_eq!(r["fds"], json!(["0", "1", "2", "3"]), "exec: {}", r["fds"]);
}

#[test]
fn cwd_through_a_symlink_stays_inside() {
    let Some(mut ctx) = Ctx::new("cwd_symlink") else {
        return;
    };
    symlink("/../../..", ctx.rootfs.join("escape")).unwrap();
    fs::write(ctx.rootfs.join("INSIDE"), "").unwrap();
    ctx.process().insert("cwd".into(), json!("/escape"));
    ctx.sh("pwd; ls -a; /probe report");
    let out = ctx.run().ok().stdout;
    assert!(
        out.lines().any(|l| l == "INSIDE"),
        "cwd is not the container root: {out}"
    );
    assert!(!out.lines().any(|l| l == "io-" || l == "bundle"), "{out}");
    let r: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(r["cwd"], "/", "{out}");

    symlink("/../../../tmp", ctx.rootfs.join("escape-tmp")).unwrap();
    fs::write(ctx.rootfs.join("tmp/INSIDE_TMP"), "").unwrap();
    ctx.process().insert("cwd".into(), json!("/escape-tmp"));
    ctx.sh("ls -a");
    let out = ctx.run().ok().stdout;
    assert!(out.lines().any(|l| l == "INSIDE_TMP"), "{out}");
}

#[test]
fn cwd_through_proc_self_fd_cannot_reach_the_host() {
    let Some(mut ctx) = Ctx::new("cwd_proc_fd") else {
        return;
    };
    let _leak = LeakedFd::open("/", 250);
    for fd in [3, 4, 5, 6, 7, 8, 250] {
        ctx.process()
            .insert("cwd".into(), json!(format!("/proc/self/fd/{fd}")));
        ctx.args(&["/probe", "report"]);
        let out = ctx.run();
        if out.code != 0 {
            continue;
        }
        let r = out.json();
        let cwd = r["cwd"].as_str().unwrap();
        assert!(
            cwd.starts_with('/') && !cwd.contains("unreachable") && !cwd.starts_with("/work"),
            "fd {fd}: cwd {cwd}"
        );
    }
}

#[test]
fn runtime_binary_is_not_reachable_from_the_container() {
    let Some(mut ctx) = Ctx::new("runtime_exe") else {
        return;
    };
    ctx.args(&["/probe", "sleep", "120"]);
    // While created, PID 1 is still the runtime's own process, waiting for start.
    ctx.create(&[]).ok();
    let out = ctx
        .oci(&["exec", &ctx.id, "/probe", "try", "open-read", "/proc/1/exe"])
        .ok();
    let res = out.stdout.trim();
    assert!(
        res == "EACCES" || res == "EPERM",
        "/proc/1/exe opened from the container: {res}"
    );
}

#[test]
fn masking_with_a_symlinked_dev_null_leaves_the_host_alone() {
    let Some(mut ctx) = Ctx::new("masked_dev_null") else {
        return;
    };
    let canary = ctx.path("canary");
    fs::write(&canary, "host data\n").unwrap();
    // No /dev tmpfs: the image's own /dev is used, and its null points at a host file.
    ctx.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["destination"] != "/dev");
    symlink(&canary, ctx.rootfs.join("dev/null")).unwrap();
    fs::write(ctx.rootfs.join("etc/secret"), "secret\n").unwrap();
    ctx.linux()
        .insert("maskedPaths".into(), json!(["/etc/secret"]));
    ctx.sh("echo \"[$(cat /etc/secret)]\"; /probe stat /dev/null; echo pwn > /etc/secret; echo pwn > /dev/null; echo done");
    let out = ctx.run();
    assert_eq!(
        fs::read_to_string(&canary).unwrap(),
        "host data\n",
        "{out:#?}"
    );
    assert!(host_mounts_under(&canary).is_empty());
    let out = out.ok().stdout;
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("[]"), "{out}");
    // Like runc, an existing /dev entry of the image is left as it is (no node is forced over it);
    // either way it is not the host file.
    let st: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let real_null = st["type"] == "char" && st["major"] == 1 && st["minor"] == 3;
    assert!(real_null || st["type"] == "symlink", "{st}");
    assert_eq!(lines.last(), Some("done"));
    assert_eq!(fs::read_to_string(&canary).unwrap(), "host data\n");
    assert_eq!(
        fs::read_to_string(ctx.rootfs.join("etc/secret")).unwrap(),
        "secret\n"
    );
}
