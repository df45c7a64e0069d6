//! The child side of create and exec: the processes that enter the namespaces, set up the root
//! filesystem and the process, and finally exec the container's program. They run right after `fork`
//! in a single-threaded process and never return: they exit or exec.
//!
//! create: `stage1` (joins and creates namespaces, forks so that a new PID namespace applies) →
//! `container_init` (mounts, pivot_root, terminal, rlimits; reports ready; waits on the start socket;
//! switches user, drops capabilities, loads seccomp, execs).
//! exec: `exec_stage1` (joins the container's namespaces, forks) → `exec_process`.

use std::ffi::CString;
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use rustix::net::{accept_with, SocketFlags};

use crate::cgroups::Cgroup;
use crate::error::{Error, Result};
use crate::namespaces::{self, ToJoin};
use crate::process::{self, SeccompProgram};
use crate::rootfs::{self, CgroupMountSource, RootfsOptions};
use crate::sync::{Channel, Message};
use crate::{hooks, syscall};

/// Everything the container's setup processes need, prepared by the parent before `fork`.
#[derive(Debug)]
pub(crate) struct InitSetup {
    pub spec: Spec,
    pub rootfs: PathBuf,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    pub stdio: Option<[RawFd; 3]>,
    pub seccomp: Option<SeccompProgram>,
    pub console: Option<OwnedFd>,
    pub start_listener: OwnedFd,
    pub joins: ToJoin,
    pub cgroup: Cgroup,
}

/// What an exec'd process needs, prepared by the parent before `fork`.
#[derive(Debug)]
pub(crate) struct ExecSetup {
    pub cgroup: Cgroup,
    pub process: Process,
    pub seccomp: Option<SeccompProgram>,
    pub console: Option<OwnedFd>,
    pub joins: ToJoin,
    pub preserve_fds: u32,
    pub stdio: Option<[RawFd; 3]>,
}

/// Exit status meaning "the program could not be found".
const EXIT_NOT_FOUND: i32 = 127;
/// Exit status meaning "the program could not be invoked".
const EXIT_CANNOT_INVOKE: i32 = 126;

fn fail(chan: &Channel, err: &Error) -> ! {
    let code = match err {
        Error::Process(p) if p.is_not_found() => EXIT_NOT_FOUND,
        Error::Process(p) if p.is_not_executable() => EXIT_CANNOT_INVOKE,
        _ => 1,
    };
    let _ = chan.send(&Message::Error {
        message: error_line(err),
        code,
    });
    syscall::exit(code)
}

/// An error and its causes as one line.
pub(crate) fn error_line(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        let m = e.to_string();
        if !s.ends_with(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = e.source();
    }
    s
}

fn expect_go(chan: &Channel) -> Result<()> {
    chan.expect(&Message::Go, None).map_err(|m| match m {
        Message::Error { message, .. } => {
            Error::sys("waiting for the runtime", std::io::Error::other(message))
        }
        _ => Error::sys(
            "waiting for the runtime",
            std::io::Error::other("protocol error"),
        ),
    })
}

/// First child of create: joins existing namespaces, creates the new ones, and forks the container
/// init so that a new PID namespace applies to it.
pub(crate) fn stage1(chan: Channel, setup: InitSetup) -> ! {
    match stage1_inner(&chan, &setup) {
        Ok(init_pid) => {
            if chan.send(&Message::Pid { pid: init_pid }).is_err() {
                syscall::exit(1)
            }
            syscall::exit(0)
        }
        Err(e) => fail(&chan, &e),
    }
}

fn stage1_inner(chan: &Channel, setup: &InitSetup) -> Result<i32> {
    // Until the container program execs, no process in the container may open our memory or binary.
    syscall::set_dumpable(false)?;
    if let Some(fds) = setup.stdio {
        syscall::install_stdio(fds)?;
    }
    setup.cgroup.join_self()?;
    expect_go(chan)?;
    let namespaces = setup
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    setup.joins.join(None)?;
    let (new, _) = namespaces::split(&namespaces);
    if new.contains(&LinuxNamespaceType::User) {
        namespaces::unshare(&[LinuxNamespaceType::User])?;
        chan.send(&Message::MapIds {
            pid: syscall::getpid(),
        })
        .map_err(|e| Error::sys("ask for ID maps", e))?;
        expect_go(chan)?;
        syscall::become_root()?;
    }
    let rest: Vec<LinuxNamespaceType> = new
        .iter()
        .copied()
        .filter(|t| !matches!(t, LinuxNamespaceType::User | LinuxNamespaceType::Pid))
        .collect();
    namespaces::unshare(&rest)?;
    if new.contains(&LinuxNamespaceType::Pid) {
        namespaces::unshare(&[LinuxNamespaceType::Pid])?;
    }
    syscall::fork_child(|| container_init(chan, setup))
}

/// The container's init: sets up the root filesystem and process, reports ready, waits for start,
/// then execs the container program.
fn container_init(chan: &Channel, setup: &InitSetup) -> ! {
    let conn = match init_setup(chan, setup) {
        Ok(conn) => conn,
        Err(e) => fail(chan, &e),
    };
    let err = match init_exec(&conn, setup) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    fail(&conn, &err)
}

fn init_setup(chan: &Channel, setup: &InitSetup) -> Result<Channel> {
    let spec = &setup.spec;
    let linux = spec.linux().clone().unwrap_or_default();
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let (new, _) = namespaces::split(&namespaces);
    let has = |t| namespaces.iter().any(|n| n.typ() == t);
    if new.contains(&LinuxNamespaceType::Network) {
        syscall::loopback_up()?;
    }
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        rustix::system::sethostname(h.as_bytes())
            .map_err(|e| Error::sys(format!("set hostname {h:?}"), e))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        rustix::system::setdomainname(d.as_bytes())
            .map_err(|e| Error::sys(format!("set domain name {d:?}"), e))?;
    }
    if !has(LinuxNamespaceType::Mount) {
        return Err(Error::Unsupported(
            "linux.namespaces: a mount namespace is required".into(),
        ));
    }
    let opts = RootfsOptions {
        no_pivot: setup.no_pivot,
        in_user_ns: has(LinuxNamespaceType::User),
        cgroup_hierarchies: setup
            .cgroup
            .hierarchies()
            .into_iter()
            .map(|h| CgroupMountSource {
                name: h.name,
                host_dir: h.host_dir,
            })
            .collect(),
        cgroup_v2: setup.cgroup.mode() == crate::cgroups::CgroupMode::V2,
    };
    let prepared = rootfs::prepare(spec, &setup.rootfs, &opts, None)?;
    chan.send(&Message::CreateRuntimeHooks)
        .map_err(|e| Error::sys("ask for createRuntime hooks", e))?;
    let state_json = match chan
        .recv(None)
        .map_err(|e| Error::sys("wait for createRuntime hooks", e))?
    {
        Some(Message::State { json }) => json,
        Some(Message::Error { message, .. }) => {
            return Err(Error::sys(
                "createRuntime hooks",
                std::io::Error::other(message),
            ))
        }
        _ => {
            return Err(Error::sys(
                "wait for createRuntime hooks",
                std::io::Error::other("protocol error"),
            ))
        }
    };
    let state: oci_spec::runtime::State = serde_json::from_str(&state_json)
        .map_err(|e| Error::sys("read state", std::io::Error::other(e)))?;
    let hooks_cfg = spec.hooks().clone();
    hooks::run(
        "createContainer",
        hooks_cfg
            .as_ref()
            .and_then(|h| h.create_container().as_ref()),
        &state,
    )?;
    rootfs::pivot(&setup.rootfs, setup.no_pivot)?;
    if let Some(sysctl) = linux.sysctl() {
        process::write_sysctls(sysctl)?;
    }
    // The working directory is created (if missing) while the root is still writable.
    if let Some(p) = spec.process() {
        rootfs::ensure_cwd(p.cwd())?;
    }
    rootfs::finish(spec, prepared)?;
    let process = spec.process().clone().unwrap_or_default();
    if let Some(console) = &setup.console {
        crate::tty::setup(console)?;
    }
    process::set_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
    if let Some(score) = process.oom_score_adj() {
        process::set_oom_score_adj(None, score)?;
    }
    // A program that does not exist fails `create`, not `start` (callers such as podman map this
    // error to exit status 127, or 126 when it is not executable).
    let args = process.args().clone().unwrap_or_default();
    process::find_executable(&args[0], process.env().as_deref().unwrap_or_default())?;
    chan.send(&Message::Ready)
        .map_err(|e| Error::sys("report ready", e))?;
    // Wait for `start`: one connection on the start socket.
    let conn = loop {
        match accept_with(&setup.start_listener, SocketFlags::CLOEXEC) {
            Ok(fd) => break Channel::from_fd(fd),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::sys("wait for start", e)),
        }
    };
    match conn
        .recv(None)
        .map_err(|e| Error::sys("wait for start", e))?
    {
        Some(Message::Start) => {}
        _ => {
            return Err(Error::sys(
                "wait for start",
                std::io::Error::other("protocol error"),
            ))
        }
    }
    let mut state = state;
    state.set_status(oci_spec::runtime::ContainerState::Running);
    hooks::run(
        "startContainer",
        hooks_cfg
            .as_ref()
            .and_then(|h| h.start_container().as_ref()),
        &state,
    )?;
    Ok(conn)
}

fn init_exec(_conn: &Channel, setup: &InitSetup) -> Result<std::convert::Infallible> {
    let process = setup.spec.process().clone().unwrap_or_default();
    let keep = syscall::preserved(setup.preserve_fds);
    Err(finish_process(&process, setup.seccomp.as_ref(), &keep))
}

/// The last steps shared by a container's init and an exec'd process: working directory, LSM labels,
/// user, capabilities, no_new_privs, seccomp, file descriptors, exec. Returns only on error.
fn finish_process(process: &Process, seccomp: Option<&SeccompProgram>, keep: &[i32]) -> Error {
    let run = || -> Result<std::convert::Infallible> {
        let env: Vec<String> = process.env().clone().unwrap_or_default();
        let args: Vec<String> = process.args().clone().unwrap_or_default();
        rootfs::ensure_cwd(process.cwd())?;
        syscall::chdir_inside(process.cwd())?;
        for w in process::apply_lsm(process)? {
            tracing::warn!("{w}");
        }
        process::set_umask(process.user().umask());
        let nnp = process.no_new_privileges().unwrap_or(false);
        if !nnp {
            if let Some(prog) = seccomp {
                process::load_seccomp(prog)?;
            }
        }
        process::switch_user(process.user())?;
        process::apply_capabilities(process.capabilities().as_ref())?;
        let exe: CString = process::find_executable(&args[0], &env)?;
        if nnp {
            process::set_no_new_privs()?;
            if let Some(prog) = seccomp {
                process::load_seccomp(prog)?;
            }
        }
        syscall::reset_signals();
        process::cloexec_from(3, keep)?;
        Err(process::exec(&exe, &args, &env))?
    };
    match run() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// First child of exec: joins the container's namespaces, then forks the process that execs.
pub(crate) fn exec_stage1(chan: Channel, setup: ExecSetup) -> ! {
    let run = || -> Result<i32> {
        syscall::set_dumpable(false)?;
        if let Some(fds) = setup.stdio {
            syscall::install_stdio(fds)?;
        }
        setup.cgroup.join_self()?;
        expect_go(&chan)?;
        setup.joins.join(None)?;
        if setup.joins.has(LinuxNamespaceType::User) {
            syscall::become_root()?;
        }
        syscall::fork_child(|| exec_process(&chan, &setup))
    };
    match run() {
        Ok(pid) => {
            let _ = chan.send(&Message::Pid { pid });
            syscall::exit(0)
        }
        Err(e) => fail(&chan, &e),
    }
}

fn exec_process(chan: &Channel, setup: &ExecSetup) -> ! {
    let run = || -> Result<std::convert::Infallible> {
        if let Some(console) = &setup.console {
            crate::tty::setup(console)?;
        }
        process::set_rlimits(setup.process.rlimits().as_deref().unwrap_or_default())?;
        if let Some(score) = setup.process.oom_score_adj() {
            process::set_oom_score_adj(None, score)?;
        }
        let keep = syscall::preserved(setup.preserve_fds);
        Err(finish_process(
            &setup.process,
            setup.seccomp.as_ref(),
            &keep,
        ))
    };
    let err = match run() {
        Ok(never) => match never {},
        Err(e) => e,
    };
    fail(chan, &err)
}
