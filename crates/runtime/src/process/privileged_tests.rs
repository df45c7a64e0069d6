//! Tests that change process state, each in a forked child. They need root (and the capabilities a
//! root process normally has); without root each one says so and passes.

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use oci_spec::runtime::{LinuxCapabilities, LinuxSeccomp, PosixRlimit, User};

use super::*;

#[derive(Debug, PartialEq)]
enum Outcome {
    Ok,
    Failed(String),
    Exited(i32),
    Killed(Signal),
}

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        eprintln!("skipped: needs root");
        false
    }
}

/// Runs `f` in a forked child and reports how it ended: `Ok`/`Failed(message)` when `f` returned,
/// `Exited`/`Killed` when it did not (it exec'd or was killed).
fn in_child(f: impl FnOnce() -> Result<(), String>) -> Outcome {
    let (rd, wr): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    // SAFETY: the child only runs `f` and exits with `_exit`; glibc makes malloc usable after fork,
    // and the tests' closures take no lock another test thread could hold.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(rd);
            let code = match f() {
                Ok(()) => 0,
                Err(msg) => {
                    let _ = nix::unistd::write(&wr, msg.as_bytes());
                    101
                }
            };
            // SAFETY: `_exit` ends the child without running the parent's atexit handlers or
            // unwinding into the test harness.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let mut msg = String::new();
            fs::File::from(rd).read_to_string(&mut msg).unwrap();
            match waitpid(child, None).unwrap() {
                WaitStatus::Exited(_, 0) => Outcome::Ok,
                WaitStatus::Exited(_, 101) => Outcome::Failed(msg),
                WaitStatus::Exited(_, code) => Outcome::Exited(code),
                WaitStatus::Signaled(_, sig, _) => Outcome::Killed(sig),
                other => Outcome::Failed(format!("unexpected wait status {other:?}")),
            }
        }
    }
}

fn status_field(name: &str) -> String {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name}:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default()
}

fn check(cond: bool, what: impl Into<String>) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what.into())
    }
}

#[test]
fn rlimits_are_applied() {
    if !is_root() {
        return;
    }
    let outcome = in_child(|| {
        let rl: Vec<PosixRlimit> = serde_json::from_str(
            r#"[{"type":"RLIMIT_NOFILE","soft":1000,"hard":2000},{"type":"RLIMIT_CORE","soft":0,"hard":0}]"#,
        )
        .unwrap();
        set_rlimits(&rl).map_err(|e| e.to_string())?;
        let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_err(|e| e.to_string())?;
        let core = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE)
            .map_err(|e| e.to_string())?;
        check(nofile == (1000, 2000), format!("nofile {nofile:?}"))?;
        check(core == (0, 0), format!("core {core:?}"))
    });
    assert_eq!(outcome, Outcome::Ok);
}

#[test]
fn raising_a_hard_limit_without_cap_sys_resource_is_explained() {
    if !is_root() {
        return;
    }
    let outcome = in_child(|| {
        // Make sure CAP_SYS_RESOURCE is not effective, whatever the host has.
        ::caps::drop(
            None,
            ::caps::CapSet::Effective,
            ::caps::Capability::CAP_SYS_RESOURCE,
        )
        .map_err(|e| e.to_string())?;
        let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_err(|e| e.to_string())?;
        if hard == u64::MAX {
            return Ok(());
        }
        let rl: Vec<PosixRlimit> = serde_json::from_str(&format!(
            r#"[{{"type":"RLIMIT_NOFILE","soft":1024,"hard":{}}}]"#,
            hard + 1
        ))
        .unwrap();
        let err = set_rlimits(&rl)
            .expect_err("raising the hard limit worked")
            .to_string();
        check(
            err == format!(
                "process.rlimits RLIMIT_NOFILE: hard limit {} is above the host's hard limit {hard}, \
                 and raising it needs CAP_SYS_RESOURCE, which this process does not have",
                hard + 1
            ),
            err,
        )
    });
    assert_eq!(outcome, Outcome::Ok);
}

#[test]
fn oom_score_adj_raise_and_refused_lowering() {
    if !is_root() {
        return;
    }
    let outcome = in_child(|| {
        ::caps::drop(
            None,
            ::caps::CapSet::Effective,
            ::caps::Capability::CAP_SYS_RESOURCE,
        )
        .map_err(|e| e.to_string())?;
        set_oom_score_adj(None, 500).map_err(|e| e.to_string())?;
        let now = fs::read_to_string("/proc/self/oom_score_adj").unwrap();
        check(now.trim() == "500", format!("oom_score_adj {now}"))?;
        let err = set_oom_score_adj(None, -100).expect_err("lowering worked");
        check(
            matches!(
                err,
                ProcessError::OomScoreAdjDenied {
                    value: -100,
                    current: 500
                }
            ),
            err.to_string(),
        )
    });
    assert_eq!(outcome, Outcome::Ok);
}

#[test]
fn capabilities_are_reduced() {
    if !is_root() {
        return;
    }
    let outcome = in_child(|| {
        let spec: LinuxCapabilities = serde_json::from_str(
            r#"{"bounding":["CAP_CHOWN","CAP_KILL","CAP_NET_BIND_SERVICE"],
                "effective":["CAP_CHOWN","CAP_KILL"],"permitted":["CAP_CHOWN","CAP_KILL"],
                "inheritable":["CAP_KILL"],"ambient":["CAP_KILL"]}"#,
        )
        .unwrap();
        apply_capabilities(Some(&spec)).map_err(|e| e.to_string())?;
        let got = [
            status_field("CapEff"),
            status_field("CapPrm"),
            status_field("CapInh"),
            status_field("CapBnd"),
            status_field("CapAmb"),
        ];
        let want = [
            "0000000000000021",
            "0000000000000021",
            "0000000000000020",
            "0000000000000421",
            "0000000000000020",
        ];
        check(got == want, format!("got {got:?}"))
    });
    assert_eq!(outcome, Outcome::Ok);
}

#[test]
fn no_capabilities_drops_everything() {
    if !is_root() {
        return;
    }
    let outcome = in_child(|| {
        apply_capabilities(None).map_err(|e| e.to_string())?;
        let got = [
            status_field("CapEff"),
            status_field("CapBnd"),
            status_field("CapAmb"),
        ];
        check(
            got.iter().all(|v| v == "0000000000000000"),
            format!("got {got:?}"),
        )
    });
    assert_eq!(outcome, Outcome::Ok);
}

#[test]
fn switch_user_keeps_capabilities_for_apply() {
    if !is_root() {
        return;
    }
    let outcome = in_child(|| {
        let user: User =
            serde_json::from_str(r#"{"uid":1000,"gid":1000,"additionalGids":[1001,1002]}"#)
                .unwrap();
        switch_user(&user).map_err(|e| e.to_string())?;
        let uids = nix::unistd::getresuid().map_err(|e| e.to_string())?;
        let gids = nix::unistd::getresgid().map_err(|e| e.to_string())?;
        let groups: Vec<u32> = nix::unistd::getgroups()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        check(
            [uids.real, uids.effective, uids.saved]
                .iter()
                .all(|u| u.as_raw() == 1000),
            format!("uids {uids:?}"),
        )?;
        check(
            [gids.real, gids.effective, gids.saved]
                .iter()
                .all(|g| g.as_raw() == 1000),
            format!("gids {gids:?}"),
        )?;
        check(groups == [1001, 1002], format!("groups {groups:?}"))?;
        let keepcaps = nix::sys::prctl::get_keepcaps().map_err(|e| e.to_string())?;
        check(!keepcaps, "PR_SET_KEEPCAPS left on")?;
        let spec: LinuxCapabilities = serde_json::from_str(
            r#"{"bounding":["CAP_CHOWN"],"effective":["CAP_CHOWN"],"permitted":["CAP_CHOWN"]}"#,
        )
        .unwrap();
        apply_capabilities(Some(&spec)).map_err(|e| e.to_string())?;
        let eff = status_field("CapEff");
        check(eff == "0000000000000001", format!("CapEff {eff}"))
    });
    assert_eq!(outcome, Outcome::Ok);
}

#[test]
fn no_new_privs_is_set() {
    if !is_root() {
        return;
    }
    let outcome = in_child(|| {
        set_no_new_privs().map_err(|e| e.to_string())?;
        let v = status_field("NoNewPrivs");
        check(v == "1", format!("NoNewPrivs {v}"))
    });
    assert_eq!(outcome, Outcome::Ok);
}

fn load(json: &str) -> Result<(), String> {
    let seccomp: LinuxSeccomp = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let prog = compile_seccomp(&seccomp).map_err(|e| e.to_string())?;
    set_no_new_privs().map_err(|e| e.to_string())?;
    load_seccomp(&prog).map_err(|e| e.to_string())
}

#[test]
fn seccomp_errno_on_mkdir() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("x");
    let outcome = in_child(|| {
        load(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
        )?;
        let err = fs::create_dir(&target).expect_err("mkdir worked");
        check(
            err.raw_os_error() == Some(libc::EPERM),
            format!("mkdir: {err}"),
        )?;
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::syscall(libc::SYS_getpid) };
        check(pid > 0, "getpid failed")
    });
    assert_eq!(outcome, Outcome::Ok);
    assert!(!target.exists());
}

#[test]
fn seccomp_kill_process_on_getppid() {
    let outcome = in_child(|| {
        load(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["getppid"],"action":"SCMP_ACT_KILL_PROCESS"}]}"#,
        )?;
        // SAFETY: getppid has no preconditions.
        unsafe { libc::syscall(libc::SYS_getppid) };
        Err("getppid returned".into())
    });
    assert_eq!(outcome, Outcome::Killed(Signal::SIGSYS));
}

#[test]
fn umask_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = in_child(|| {
        set_umask(Some(0o077));
        let f = dir.path().join("f");
        fs::write(&f, "x").map_err(|e| e.to_string())?;
        let mode = fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        check(mode == 0o600, format!("mode {mode:o}"))?;
        set_umask(None);
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        check(old.bits() == 0o022, format!("umask {:o}", old.bits()))
    });
    assert_eq!(outcome, Outcome::Ok);
}

#[test]
fn sysctls_are_written_in_the_container_namespaces() {
    if !is_root() {
        return;
    }
    let outcome = in_child(|| {
        use nix::sched::{unshare, CloneFlags};
        unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)
            .map_err(|e| e.to_string())?;
        let sysctl = [
            ("net.ipv4.ip_forward", "1"),
            ("kernel.shmmni", "1234"),
            ("kernel.hostname", "isola-sysctl"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        write_sysctls(&sysctl).map_err(|e| e.to_string())?;
        let fwd = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
        let shm = fs::read_to_string("/proc/sys/kernel/shmmni").unwrap();
        let host = nix::unistd::gethostname().unwrap();
        check(fwd.trim() == "1", format!("ip_forward {fwd}"))?;
        check(shm.trim() == "1234", format!("shmmni {shm}"))?;
        check(host == "isola-sysctl", format!("hostname {host:?}"))?;
        let missing = [("net.ipv4.no_such".to_owned(), "1".to_owned())].into();
        let err = write_sysctls(&missing)
            .expect_err("missing sysctl written")
            .to_string();
        check(err.starts_with("linux.sysctl \"net.ipv4.no_such\""), err)
    });
    assert_eq!(outcome, Outcome::Ok);
}

#[test]
fn descriptors_become_cloexec_except_kept_ones() {
    let outcome = in_child(|| {
        let flags = |fd: i32| {
            // SAFETY: F_GETFD takes no argument.
            unsafe { libc::fcntl(fd, libc::F_GETFD) }
        };
        let file = fs::File::open("/dev/null").unwrap();
        // SAFETY: dup takes no pointers; the copy is not close-on-exec.
        let plain = unsafe { libc::dup(file.as_raw_fd()) };
        // SAFETY: as above.
        let kept = unsafe { libc::dup(file.as_raw_fd()) };
        check(flags(plain) & libc::FD_CLOEXEC == 0, "dup set FD_CLOEXEC")?;
        cloexec_from(3, &[kept, file.as_raw_fd()]).map_err(|e| e.to_string())?;
        check(
            flags(plain) & libc::FD_CLOEXEC != 0,
            "plain descriptor not cloexec",
        )?;
        check(
            flags(kept) & libc::FD_CLOEXEC == 0,
            "kept descriptor made cloexec",
        )?;
        check(
            flags(file.as_raw_fd()) & libc::FD_CLOEXEC == 0,
            "kept file still cloexec",
        )?;
        check(flags(2) & libc::FD_CLOEXEC == 0, "stderr made cloexec")
    });
    assert_eq!(outcome, Outcome::Ok);
}

#[test]
fn exec_replaces_the_process() {
    let outcome = in_child(|| {
        let env = ["PATH=/usr/bin:/bin".to_owned()];
        let path = find_executable("sh", &env).map_err(|e| e.to_string())?;
        let err = exec(&path, &["sh".into(), "-c".into(), "exit 7".into()], &env);
        Err(err.to_string())
    });
    assert_eq!(outcome, Outcome::Exited(7));
}
