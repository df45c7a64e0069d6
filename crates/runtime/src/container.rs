//! The container lifecycle as the runtime-spec defines it (runtime.md "Lifecycle", "Operations"):
//! create, start, state, kill, delete, plus pause/resume, ps and exec. This is the parent side; the
//! processes that become the container are set up in [`crate::init`].

use std::fs;
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::{LinuxNamespaceType, Process, State};

use crate::cgroups::Cgroup;
use crate::error::{Error, Result};
use crate::init::{self, ExecSetup, InitSetup};
use crate::namespaces::{self, ToJoin};
use crate::spec::{check_id, load_bundle, Bundle};
use crate::state::{self, pid_start_time, Record, Status};
use crate::sync::{self, Channel, Message};
use crate::{hooks, process};

/// How long the runtime waits for a setup step of the container's processes (hooks included).
const SETUP_TIMEOUT: Duration = Duration::from_secs(300);

/// Options of [`Runtime::create`].
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Unix socket that receives the terminal's master with `SCM_RIGHTS` when `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
    /// File to write the container process's host PID to.
    pub pid_file: Option<PathBuf>,
    /// Use `MS_MOVE` + `chroot` instead of `pivot_root` (rootfs on ramfs or an initramfs).
    pub no_pivot: bool,
    /// Number of file descriptors after stdio (3, 4, …) passed on to the container process.
    pub preserve_fds: u32,
    /// The container process's stdin, stdout and stderr: these descriptors of the caller are
    /// duplicated onto 0, 1 and 2 in the container's setup process, right after `fork`, so the
    /// container (and its createContainer/startContainer hooks) use them. `None`: the container
    /// inherits the caller's own 0, 1 and 2 (what a single-threaded caller such as the CLI or the
    /// monitor wants). A multi-threaded caller (the guest agent) must pass them explicitly, since
    /// it cannot point its own 0, 1 and 2 at one container's pipes. The descriptors must stay open
    /// until [`Runtime::create`] returns; the caller closes its copies afterwards. With
    /// `process.terminal` the terminal replaces them once it is set up.
    pub stdio: Option<[RawFd; 3]>,
}

/// Options of [`Container::exec`].
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Console socket, when the process asks for a terminal.
    pub console_socket: Option<PathBuf>,
    /// File to write the process's host PID to.
    pub pid_file: Option<PathBuf>,
    /// Number of file descriptors after stdio passed on.
    pub preserve_fds: u32,
    /// The process's stdin, stdout and stderr, duplicated onto 0, 1 and 2 in the child right
    /// after `fork`; `None` inherits the caller's (see [`CreateOptions::stdio`]).
    pub stdio: Option<[RawFd; 3]>,
}

/// A runtime state root: one directory per container.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
}

/// A container known to the runtime.
#[derive(Debug)]
pub struct Container {
    root: PathBuf,
    record: Record,
    cgroup: Cgroup,
}

impl Runtime {
    /// Uses (and creates, mode 0700) the state root `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| Error::io("create directory", &root, e))?;
        Ok(Self { root })
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every container in the state root, sorted by ID. Unreadable entries are skipped.
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        let entries =
            fs::read_dir(&self.root).map_err(|e| Error::io("read directory", &self.root, e))?;
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if let Ok(c) = self.container(&id) {
                out.push(c);
            }
        }
        out.sort_by(|a, b| a.record.id.cmp(&b.record.id));
        Ok(out)
    }

    /// Loads a container by ID.
    pub fn container(&self, id: &str) -> Result<Container> {
        check_id(id)?;
        let record = Record::load(&self.root, id)?;
        let cgroup = Cgroup::new(Some(&record.cgroup_path), id)?;
        Ok(Container {
            root: self.root.clone(),
            record,
            cgroup,
        })
    }

    /// Creates container `id` from the bundle at `bundle` (runtime.md "create"): the container process
    /// exists, isolated and set up, and waits for [`Container::start`]. On error nothing is left: no
    /// process, cgroup, mount or state directory. Returns the container and the warnings collected.
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        opts: &CreateOptions,
    ) -> Result<(Container, Vec<String>)> {
        check_id(id)?;
        let bundle = load_bundle(bundle)?;
        let dir = state::dir(&self.root, id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.into()))
            }
            Err(e) => return Err(Error::io("create directory", &dir, e)),
        }
        let mut pids = Vec::new();
        let mut cgroup_made = None;
        let result = self.create_in(id, &bundle, opts, &mut pids, &mut cgroup_made);
        if result.is_err() {
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            if let Some(cg) = cgroup_made {
                let _ = cg.kill_all(libc::SIGKILL);
                wait_cgroup_empty(&cg, Duration::from_secs(2));
                if let Err(e) = cg.destroy() {
                    tracing::warn!("cleanup after failed create: {e}");
                }
            }
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    fn create_in(
        &self,
        id: &str,
        bundle: &Bundle,
        opts: &CreateOptions,
        pids: &mut Vec<i32>,
        cgroup_made: &mut Option<Cgroup>,
    ) -> Result<(Container, Vec<String>)> {
        let spec = &bundle.spec;
        let linux = spec.linux().clone().unwrap_or_default();
        let process = spec.process().clone().ok_or_else(|| Error::Config {
            path: bundle.dir.join("config.json"),
            reason: "process: missing".into(),
        })?;
        let mut warnings = bundle.warnings.clone();
        let namespaces = linux.namespaces().clone().unwrap_or_default();
        let cg_path = linux
            .cgroups_path()
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned());
        let cgroup = Cgroup::new(cg_path.as_deref(), id)?;
        let record = Record {
            id: id.to_owned(),
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            pid: None,
            pid_start: None,
            cgroup_path: cgroup.path().to_owned(),
            started: false,
            created: now_rfc3339(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            own_pid_ns: namespaces
                .iter()
                .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none()),
        };
        record.save(&self.root)?;
        cgroup.create()?;
        *cgroup_made = Some(cgroup.clone());
        warnings.extend(cgroup.apply(&effective_resources(&linux))?);
        let seccomp = linux
            .seccomp()
            .as_ref()
            .map(process::compile_seccomp)
            .transpose()?;
        if let Some(fds) = opts.stdio {
            crate::syscall::check_stdio(fds)?;
        }
        let console = crate::tty::console_for(&process, opts.console_socket.as_deref())?;
        let start_listener = listen_start(&state::start_socket(&self.root, id))?;
        let joins = ToJoin::open(&namespaces)?;
        let (parent, child) = sync::pair().map_err(|e| Error::sys("create socket pair", e))?;
        let setup = InitSetup {
            spec: spec.clone(),
            rootfs: bundle.rootfs.clone(),
            no_pivot: opts.no_pivot,
            preserve_fds: opts.preserve_fds,
            stdio: opts.stdio,
            seccomp,
            console,
            start_listener,
            joins,
            cgroup: cgroup.clone(),
        };
        // SAFETY: the child runs only the runtime's setup code and then execs or `_exit`s. The CLI
        // and the monitor are single-threaded here. A multi-threaded caller (the guest agent) is
        // safe too: glibc's fork leaves malloc usable in the child, and the setup code takes no lock
        // another thread could hold at fork time (it never writes to std's stdout/stderr, and its
        // `tracing` calls go nowhere in a caller without a subscriber).
        let child_pid = match unsafe { fork() }.map_err(|e| Error::sys("fork", e))? {
            ForkResult::Child => {
                drop(parent);
                init::stage1(child, setup)
            }
            ForkResult::Parent { child: pid } => pid,
        };
        drop(child);
        drop(setup);
        pids.push(child_pid.as_raw());
        let init_pid = self.drive_setup(&parent, child_pid, &record, spec, &linux)?;
        pids.push(init_pid);
        let mut record = record;
        record.pid = Some(init_pid);
        record.pid_start = pid_start_time(init_pid);
        record.save(&self.root)?;
        if let Some(pid_file) = &opts.pid_file {
            write_pid_file(pid_file, init_pid)?;
        }
        Ok((
            Container {
                root: self.root.clone(),
                record,
                cgroup,
            },
            warnings,
        ))
    }

    /// Answers the setup processes until the container reports ready; returns the container's PID.
    fn drive_setup(
        &self,
        chan: &Channel,
        child: Pid,
        record: &Record,
        spec: &oci_spec::runtime::Spec,
        linux: &oci_spec::runtime::Linux,
    ) -> Result<i32> {
        let fail = |m: Message| match m {
            Message::Error { message, code } => Error::Init {
                id: record.id.clone(),
                message,
                code,
            },
            other => Error::Init {
                id: record.id.clone(),
                message: format!("unexpected {other:?}"),
                code: 1,
            },
        };
        // The child joins its cgroup itself (writing "0" to `tasks` is far cheaper than moving
        // another process through `cgroup.procs`); the parent only lets it go on.
        chan.send(&Message::Go)
            .map_err(|e| Error::sys("talk to setup process", e))?;
        let mut init_pid = None;
        loop {
            let msg = chan
                .recv(Some(SETUP_TIMEOUT))
                .map_err(|e| Error::sys("wait for setup process", e))?;
            match msg {
                Some(Message::MapIds { pid }) => {
                    namespaces::write_id_maps(
                        pid,
                        linux.uid_mappings().as_deref().unwrap_or_default(),
                        linux.gid_mappings().as_deref().unwrap_or_default(),
                    )?;
                    chan.send(&Message::Go)
                        .map_err(|e| Error::sys("talk to setup process", e))?;
                }
                Some(Message::Pid { pid }) => {
                    init_pid = Some(pid);
                    let _ = waitpid(child, None);
                }
                Some(Message::CreateRuntimeHooks) => {
                    let mut rec = record.clone();
                    rec.pid = init_pid;
                    rec.pid_start = init_pid.and_then(pid_start_time);
                    rec.save(&self.root)?;
                    let state = rec.spec_state(Status::Creating);
                    let hooks = spec.hooks().as_ref();
                    #[allow(deprecated)]
                    hooks::run(
                        "prestart",
                        hooks.and_then(|h| h.prestart().as_ref()),
                        &state,
                    )?;
                    hooks::run(
                        "createRuntime",
                        hooks.and_then(|h| h.create_runtime().as_ref()),
                        &state,
                    )?;
                    let json = serde_json::to_string(&state).expect("state serializes");
                    chan.send(&Message::State { json })
                        .map_err(|e| Error::sys("talk to container", e))?;
                }
                Some(Message::Ready) => break,
                Some(m @ Message::Error { .. }) => {
                    let _ = waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
                    return Err(fail(m));
                }
                Some(other) => return Err(fail(other)),
                None => {
                    let _ = waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
                    return Err(Error::Init {
                        id: record.id.clone(),
                        message: "container process exited during setup".into(),
                        code: 1,
                    });
                }
            }
        }
        init_pid.ok_or_else(|| Error::Init {
            id: record.id.clone(),
            message: "setup finished without reporting the container PID".into(),
            code: 1,
        })
    }
}

impl Container {
    /// The container ID.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// Host PID of the container process, when it exists.
    pub fn pid(&self) -> Option<i32> {
        self.record.pid
    }

    /// The persisted record.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The container's cgroup.
    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }

    /// The current status (runtime.md "State": creating, created, running, paused, stopped).
    pub fn status(&self) -> Status {
        let frozen = self.record.alive() && self.cgroup.is_frozen().unwrap_or(false);
        self.record.status(frozen)
    }

    /// The runtime-spec `state` object.
    pub fn state(&self) -> State {
        self.record.spec_state(self.status())
    }

    fn require(&self, op: &'static str, allowed: &[Status]) -> Result<Status> {
        let status = self.status();
        if allowed.contains(&status) {
            Ok(status)
        } else {
            Err(Error::BadStatus {
                id: self.record.id.clone(),
                status: status.to_string(),
                op,
            })
        }
    }

    /// Starts the created container (runtime.md "start"): the waiting process execs the user program.
    /// Errors the exec step reports (program not found: code 127; not executable: 126) are returned.
    pub fn start(&mut self) -> Result<()> {
        self.require("start", &[Status::Created])?;
        let path = state::start_socket(&self.root, &self.record.id);
        let conn = connect_start(&path)?;
        conn.send(&Message::Start)
            .map_err(|e| Error::io("send start", &path, e))?;
        let reply = conn
            .recv(Some(SETUP_TIMEOUT))
            .map_err(|e| Error::io("wait for start", &path, e))?;
        let _ = fs::remove_file(&path);
        match reply {
            None => {}
            Some(Message::Error { message, code }) => {
                return Err(Error::Init {
                    id: self.record.id.clone(),
                    message,
                    code,
                })
            }
            Some(other) => {
                return Err(Error::Init {
                    id: self.record.id.clone(),
                    message: format!("unexpected reply to start: {other:?}"),
                    code: 1,
                })
            }
        }
        self.record.started = true;
        self.record.save(&self.root)?;
        if let Ok(bundle) = load_bundle(&self.record.bundle) {
            let hooks = bundle.spec.hooks().clone();
            let state = self.state();
            if let Err(e) = hooks::run(
                "poststart",
                hooks.as_ref().and_then(|h| h.poststart().as_ref()),
                &state,
            ) {
                tracing::warn!("{e}");
            }
        }
        Ok(())
    }

    /// Sends `signal` to the container process, or with `all` to every process in its cgroup.
    pub fn kill(&self, signal: i32, all: bool) -> Result<()> {
        if all {
            return Ok(self.cgroup.kill_all(signal)?);
        }
        self.require("kill", &[Status::Created, Status::Running, Status::Paused])?;
        let pid = self.record.pid.expect("live container has a pid");
        let sig =
            Signal::try_from(signal).map_err(|e| Error::sys(format!("signal {signal}"), e))?;
        kill(Pid::from_raw(pid), sig).map_err(|e| Error::sys(format!("kill {pid}"), e))
    }

    /// Freezes every process of the container (cgroup freezer).
    pub fn pause(&self) -> Result<()> {
        self.require("pause", &[Status::Running, Status::Created])?;
        Ok(self.cgroup.freeze()?)
    }

    /// Thaws a paused container.
    pub fn resume(&self) -> Result<()> {
        self.require("resume", &[Status::Paused])?;
        Ok(self.cgroup.thaw()?)
    }

    /// Host PIDs of every process in the container's cgroup.
    pub fn processes(&self) -> Result<Vec<i32>> {
        Ok(self.cgroup.pids()?)
    }

    /// Deletes the container (runtime.md "delete"): refuses a running or paused one unless `force`,
    /// which kills every process first; then removes the cgroup, runs poststop hooks and removes the
    /// state directory.
    pub fn delete(self, force: bool) -> Result<()> {
        let status = self.status();
        match status {
            Status::Running | Status::Paused if !force => {
                return Err(Error::BadStatus {
                    id: self.record.id.clone(),
                    status: status.to_string(),
                    op: "delete (use --force)",
                })
            }
            Status::Stopped => {}
            _ => {
                if status == Status::Paused {
                    let _ = self.cgroup.thaw();
                }
                let _ = self.cgroup.kill_all(libc::SIGKILL);
                if let Some(pid) = self.record.pid.filter(|_| self.record.alive()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                let deadline = Instant::now() + Duration::from_secs(10);
                while self.record.alive() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        wait_cgroup_empty(&self.cgroup, Duration::from_secs(5));
        self.cgroup.destroy()?;
        if let Ok(bundle) = load_bundle(&self.record.bundle) {
            let state = self.record.spec_state(Status::Stopped);
            let hooks = bundle.spec.hooks().clone();
            if let Err(e) = hooks::run(
                "poststop",
                hooks.as_ref().and_then(|h| h.poststop().as_ref()),
                &state,
            ) {
                tracing::warn!("{e}");
            }
        }
        let dir = state::dir(&self.root, &self.record.id);
        fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", &dir, e))
    }

    /// Runs `process` inside the running container (joining its namespaces and cgroup, with its own
    /// process settings and the container's seccomp profile). Returns the new process's host PID once
    /// it has exec'd. The caller reaps it: it must be a child subreaper (`PR_SET_CHILD_SUBREAPER`),
    /// since the process is a grandchild.
    pub fn exec(&self, process: &Process, opts: &ExecOptions) -> Result<i32> {
        self.require("exec", &[Status::Running, Status::Created])?;
        let bundle = load_bundle(&self.record.bundle)?;
        let linux = bundle.spec.linux().clone().unwrap_or_default();
        let path = bundle.dir.join("config.json");
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::Config {
                path,
                reason: "process.args: must name the program to run".into(),
            });
        }
        let warnings = process::validate(process, Some(&linux)).map_err(|e| Error::Config {
            path,
            reason: e.to_string(),
        })?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        let init_pid = self.record.pid.expect("running container has a pid");
        let types: Vec<LinuxNamespaceType> = linux
            .namespaces()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|n| n.typ())
            .filter(|t| *t != LinuxNamespaceType::User || differs_from_ours(init_pid, "user"))
            .collect();
        let joins = ToJoin::of_process(init_pid, &types)?;
        let seccomp = linux
            .seccomp()
            .as_ref()
            .map(process::compile_seccomp)
            .transpose()?;
        if let Some(fds) = opts.stdio {
            crate::syscall::check_stdio(fds)?;
        }
        let console = crate::tty::console_for(process, opts.console_socket.as_deref())?;
        let (parent, child) = sync::pair().map_err(|e| Error::sys("create socket pair", e))?;
        let setup = ExecSetup {
            stdio: opts.stdio,
            cgroup: self.cgroup.clone(),
            process: process.clone(),
            seccomp,
            console,
            joins,
            preserve_fds: opts.preserve_fds,
        };
        // SAFETY: as in `create_in`: the child runs only the runtime's setup code, which takes no
        // lock another thread of the caller could hold at fork time.
        let child_pid = match unsafe { fork() }.map_err(|e| Error::sys("fork", e))? {
            ForkResult::Child => {
                drop(parent);
                init::exec_stage1(child, setup)
            }
            ForkResult::Parent { child: pid } => pid,
        };
        drop(child);
        drop(setup);
        let id = self.record.id.clone();
        let run = || -> Result<i32> {
            parent
                .send(&Message::Go)
                .map_err(|e| Error::sys("talk to exec process", e))?;
            let pid = match parent
                .recv(Some(SETUP_TIMEOUT))
                .map_err(|e| Error::sys("wait for exec process", e))?
            {
                Some(Message::Pid { pid }) => pid,
                Some(Message::Error { message, code }) => {
                    return Err(Error::Init {
                        id: id.clone(),
                        message,
                        code,
                    })
                }
                other => {
                    return Err(Error::Init {
                        id: id.clone(),
                        message: format!("exec setup failed: {other:?}"),
                        code: 1,
                    })
                }
            };
            let _ = waitpid(child_pid, None);
            match parent
                .recv(Some(SETUP_TIMEOUT))
                .map_err(|e| Error::sys("wait for exec process", e))?
            {
                None => Ok(pid),
                Some(Message::Error { message, code }) => Err(Error::Init {
                    id: id.clone(),
                    message,
                    code,
                }),
                Some(other) => Err(Error::Init {
                    id: id.clone(),
                    message: format!("unexpected {other:?}"),
                    code: 1,
                }),
            }
        };
        let result = run();
        if result.is_err() {
            let _ = kill(child_pid, Signal::SIGKILL);
            let _ = waitpid(child_pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        }
        let pid = result?;
        if let Some(pid_file) = &opts.pid_file {
            write_pid_file(pid_file, pid)?;
        }
        Ok(pid)
    }
}

/// `linux.resources` with the device rules completed as runc does: the config's rules, then the
/// devices every container needs (null, zero, full, random, urandom, tty, console, ptmx, pts), then an
/// allow rule for each device in `linux.devices`.
fn effective_resources(linux: &oci_spec::runtime::Linux) -> oci_spec::runtime::LinuxResources {
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
    let mut res = linux.resources().clone().unwrap_or_default();
    let mut rules = res.devices().clone().unwrap_or_default();
    rules.extend(crate::cgroups::default_device_rules());
    for d in linux.devices().as_deref().unwrap_or_default() {
        let typ = match d.typ() {
            LinuxDeviceType::B => LinuxDeviceType::B,
            LinuxDeviceType::C | LinuxDeviceType::U => LinuxDeviceType::C,
            // FIFOs are not device nodes the cgroup controls.
            _ => continue,
        };
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(typ));
        rule.set_major(Some(d.major()));
        rule.set_minor(Some(d.minor()));
        rule.set_access(Some("rwm".into()));
        rules.push(rule);
    }
    res.set_devices(Some(rules));
    res
}

fn differs_from_ours(pid: i32, ns: &str) -> bool {
    let theirs = fs::read_link(format!("/proc/{pid}/ns/{ns}"));
    let ours = fs::read_link(format!("/proc/self/ns/{ns}"));
    match (theirs, ours) {
        (Ok(a), Ok(b)) => a != b,
        _ => true,
    }
}

fn wait_cgroup_empty(cg: &Cgroup, max: Duration) {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        match cg.pids() {
            Ok(p) if !p.is_empty() => std::thread::sleep(Duration::from_millis(5)),
            _ => return,
        }
    }
}

fn listen_start(path: &Path) -> Result<OwnedFd> {
    use rustix::net::{
        bind, listen, socket_with, AddressFamily, SocketAddrUnix, SocketFlags, SocketType,
    };
    let fd = socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::io("create socket", path, e))?;
    let (_dir, short) =
        sync::short_socket_path(path).map_err(|e| Error::io("open directory of", path, e))?;
    let addr = SocketAddrUnix::new(&short).map_err(|e| Error::io("socket address", path, e))?;
    bind(&fd, &addr).map_err(|e| Error::io("bind", path, e))?;
    listen(&fd, 1).map_err(|e| Error::io("listen", path, e))?;
    Ok(fd)
}

fn connect_start(path: &Path) -> Result<Channel> {
    use rustix::net::{
        connect, socket_with, AddressFamily, SocketAddrUnix, SocketFlags, SocketType,
    };
    let fd = socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::io("create socket", path, e))?;
    let (_dir, short) =
        sync::short_socket_path(path).map_err(|e| Error::io("open directory of", path, e))?;
    let addr = SocketAddrUnix::new(&short).map_err(|e| Error::io("socket address", path, e))?;
    connect(&fd, &addr).map_err(|e| Error::io("connect", path, e))?;
    Ok(Channel::from_fd(fd))
}

/// Writes a PID file atomically (temporary file in the same directory, then rename).
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension(format!("isola-tmp-{}", std::process::id()));
    fs::write(&tmp, pid.to_string()).map_err(|e| Error::io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))
}

fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_nanos()
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(19_723), (2024, 1, 1));
    }
}
