//! The containers of this guest and their processes: the `do_*` handlers of the container
//! requests, on top of the runtime library, and what happens when one of the processes exits.
//!
//! Paths: the bundle of container `ID` is [`BUNDLES`]`/ID/config.json` (the spec as the host sent
//! it); the runtime's state lives under [`RUNTIME_ROOT`]. Both are on the guest's tmpfs `/run`.
//!
//! Exit of a process (init or exec): the reaper hands its status to [`Agent::on_reaped`], which
//! lets an exit notifier thread wait (at most [`STREAM_GRACE`] after the reaping) for the
//! process's output streams to close, closes the ones still open, then sets the status, sends
//! `Event::Exited`, answers the `Wait`s pending on it, and, for the last init, arms the power-off
//! timer.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use isola_proto::{Event, ExitStatus, GuestMount, Message, Response, StdioStreams, WireError};
use isola_runtime::cgroups::Cgroup;
use isola_runtime::oci::{Process, Spec};
use isola_runtime::{CreateOptions, ExecOptions, Runtime};
use nix::sys::wait::WaitStatus;

use crate::error::AgentError;
use crate::guest_mounts;
use crate::out::Outbox;
use crate::power::{PowerTimer, AFTER_LAST_EXIT};
use crate::reaper;
use crate::stdio::{self, Plumbing, ProcessIo};
use crate::streams::Streams;

/// Bundles: `BUNDLES/<id>/config.json`.
pub const BUNDLES: &str = "/run/isola/bundles";
/// The runtime library's state root.
pub const RUNTIME_ROOT: &str = "/run/isola/runtime";
/// How long after a process was reaped the agent waits for its output streams to reach end of
/// file before it closes them itself (the protocol's 2 s).
pub const STREAM_GRACE: Duration = Duration::from_secs(2);

/// How the request loop answers: now, or later from another thread (`Wait`).
#[derive(Debug)]
pub enum Reply {
    /// Answer at once.
    Now(Result<Response, AgentError>),
    /// The answer is sent when the process exits.
    Later,
}

/// Which process of which container.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    id: String,
    exec: Option<String>,
}

#[derive(Debug)]
struct Proc {
    io: ProcessIo,
    /// Set when its exit has been reported.
    status: Option<ExitStatus>,
    /// Request ids of the `Wait`s to answer when it exits.
    waiters: Vec<u64>,
    /// The cgroup's OOM-kill count when the process started.
    oom_base: u64,
}

#[derive(Debug)]
struct Ctr {
    cgroup: Cgroup,
    init: Proc,
    execs: HashMap<String, Proc>,
}

impl Ctr {
    fn proc_mut(&mut self, exec: Option<&str>) -> Option<&mut Proc> {
        match exec {
            None => Some(&mut self.init),
            Some(e) => self.execs.get_mut(e),
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    containers: HashMap<String, Ctr>,
    pids: HashMap<i32, Key>,
}

/// The agent's containers, streams and channel.
#[derive(Debug)]
pub struct Agent {
    runtime: Runtime,
    outbox: Arc<Outbox>,
    streams: Arc<Streams>,
    table: Mutex<Table>,
    power: Arc<PowerTimer>,
    no_pivot: bool,
}

fn invalid(field: &str, e: impl std::fmt::Display) -> AgentError {
    AgentError::Invalid(format!("{field}: {e}"))
}

/// Parses `value` as `T`; errors name the field path below `field` (`spec.process.args`).
fn parse<T: serde::de::DeserializeOwned>(
    field: &str,
    value: &serde_json::Value,
) -> Result<T, AgentError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            field.to_owned()
        } else {
            format!("{field}.{path}")
        };
        invalid(&at, e.into_inner())
    })
}

fn check_terminal(
    field: &str,
    process: Option<&Process>,
    stdio: &StdioStreams,
) -> Result<(), AgentError> {
    let wants = process.and_then(|p| p.terminal()).unwrap_or(false);
    if wants != stdio.terminal {
        return Err(invalid(
            &format!("{field}.terminal"),
            format!("is {wants} but stdio.terminal is {}", stdio.terminal),
        ));
    }
    Ok(())
}

fn exit_status(st: WaitStatus) -> ExitStatus {
    let (code, signal) = match st {
        WaitStatus::Exited(_, c) => (Some(c), None),
        WaitStatus::Signaled(_, s, _) => (None, Some(s as i32)),
        _ => (None, None),
    };
    ExitStatus {
        code,
        signal,
        oom_killed: false,
    }
}

impl Agent {
    /// An agent whose runtime state lives under `runtime_root` ([`RUNTIME_ROOT`] in the guest).
    /// `no_pivot` makes containers
    /// use `MS_MOVE` + `chroot` (only when the guest root could not be switched off the
    /// initramfs, where `pivot_root` fails).
    ///
    /// # Errors
    /// When the runtime's state root cannot be created.
    pub fn new(
        runtime_root: &str,
        outbox: Arc<Outbox>,
        power: Arc<PowerTimer>,
        no_pivot: bool,
    ) -> Result<Arc<Agent>, AgentError> {
        let runtime = Runtime::new(runtime_root).map_err(|e| {
            AgentError::io(
                "create the runtime state root",
                runtime_root,
                std::io::Error::other(crate::chain(&e)),
            )
        })?;
        Ok(Arc::new(Agent {
            runtime,
            streams: Arc::new(Streams::new(Arc::clone(&outbox))),
            outbox,
            table: Mutex::new(Table::default()),
            power,
            no_pivot,
        }))
    }

    /// The stream registry (host input goes there).
    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        match self.table.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        }
    }

    fn require(&self, id: &str) -> Result<(), AgentError> {
        if self.table().containers.contains_key(id) {
            Ok(())
        } else {
            Err(AgentError::NotFound(format!(
                "no container {id:?} in this guest"
            )))
        }
    }

    fn container(
        &self,
        op: &'static str,
        id: &str,
    ) -> Result<isola_runtime::Container, AgentError> {
        self.require(id)?;
        self.runtime
            .container(id)
            .map_err(|e| AgentError::runtime(op, id, e))
    }

    /// `CreateContainer`: mounts, bundle, stdio, runtime create. Answers the init's guest PID.
    ///
    /// # Errors
    /// [`AgentError::Invalid`] naming the field (`id`, `spec.<path>`, `mounts[i].target`,
    /// `stdio.stdout`, ...), [`AgentError::Exists`], mount and runtime failures. On error
    /// nothing is left: mounts are undone, the bundle is removed.
    pub fn create(
        &self,
        id: &str,
        spec: &serde_json::Value,
        mounts: &[GuestMount],
        stdio: &StdioStreams,
    ) -> Result<Response, AgentError> {
        isola_runtime::spec::check_id(id).map_err(|e| invalid("id", e))?;
        if self.table().containers.contains_key(id) {
            return Err(AgentError::Exists(format!(
                "container {id:?} exists already"
            )));
        }
        stdio::check_ids(stdio, &self.streams, "stdio")?;
        let parsed: Spec = parse("spec", spec)?;
        check_terminal("spec.process", parsed.process().as_ref(), stdio)?;
        // The root is one of the guest paths the mounts produce, never the guest's own root.
        let Some(root) = parsed.root().as_ref().map(|r| r.path()) else {
            return Err(invalid("spec.root", "missing"));
        };
        let root_ok = root
            .to_str()
            .ok_or_else(|| "is not UTF-8".to_owned())
            .and_then(guest_mounts::check_target);
        if let Err(e) = root_ok {
            return Err(invalid("spec.root.path", format!("{root:?} {e}")));
        }
        let t0 = Instant::now();
        let mounted = guest_mounts::mount_all(mounts)?;
        if !mounted.is_empty() {
            crate::log!(
                "container {id}: {} mount(s) in {} ms",
                mounted.len(),
                t0.elapsed().as_millis()
            );
        }
        let bundle = PathBuf::from(BUNDLES).join(id);
        let undo = |bundle: &PathBuf| {
            let _ = fs::remove_dir_all(bundle);
            guest_mounts::unmount_all(&mounted);
        };
        let r = self.create_in(id, spec, stdio, &bundle);
        if r.is_err() {
            undo(&bundle);
        }
        r
    }

    fn create_in(
        &self,
        id: &str,
        spec: &serde_json::Value,
        stdio: &StdioStreams,
        bundle: &PathBuf,
    ) -> Result<Response, AgentError> {
        let shown = bundle.display().to_string();
        fs::create_dir_all(bundle).map_err(|e| AgentError::io("create directory", &shown, e))?;
        let config = bundle.join("config.json");
        let bytes = serde_json::to_vec(spec).map_err(|e| invalid("spec", e))?;
        fs::write(&config, bytes)
            .map_err(|e| AgentError::io("write", config.display().to_string(), e))?;
        let plumbing = Plumbing::prepare(stdio)?;
        let opts = CreateOptions {
            console_socket: plumbing.console_socket(),
            stdio: Some(plumbing.child_fds()),
            no_pivot: self.no_pivot,
            ..Default::default()
        };
        let t0 = Instant::now();
        let guard = reaper::fork_lock();
        let (c, warnings) = self
            .runtime
            .create(id, bundle, &opts)
            .map_err(|e| AgentError::runtime("create container", id, e))?;
        let pid = c.pid().unwrap_or(0);
        let io = match plumbing.connect(&self.streams, &self.outbox) {
            Ok(io) => io,
            Err(e) => {
                let _ = c.delete(true);
                return Err(e);
            }
        };
        let cgroup = c.cgroup().clone();
        let oom_base = cgroup.oom_kills().unwrap_or(0);
        {
            let mut t = self.table();
            t.pids.insert(
                pid,
                Key {
                    id: id.to_owned(),
                    exec: None,
                },
            );
            t.containers.insert(
                id.to_owned(),
                Ctr {
                    cgroup,
                    init: Proc {
                        io,
                        status: None,
                        waiters: Vec::new(),
                        oom_base,
                    },
                    execs: HashMap::new(),
                },
            );
        }
        drop(guard);
        self.power.disarm();
        for w in warnings {
            crate::log!("container {id}: {w}");
        }
        crate::log!(
            "created container {id}: pid {pid} in {} ms",
            t0.elapsed().as_millis()
        );
        Ok(Response::Process { pid })
    }

    /// `Start`.
    ///
    /// # Errors
    /// [`AgentError::NotFound`], or the runtime's error (e.g. the program cannot be executed).
    pub fn start(&self, id: &str) -> Result<Response, AgentError> {
        let mut c = self.container("start container", id)?;
        let t0 = Instant::now();
        // Poststart hooks are children the runtime waits for by PID.
        let _g = reaper::fork_lock();
        c.start()
            .map_err(|e| AgentError::runtime("start container", id, e))?;
        crate::log!("started container {id} in {} ms", t0.elapsed().as_millis());
        Ok(Response::Done)
    }

    /// `Signal`.
    ///
    /// # Errors
    /// [`AgentError::NotFound`], the runtime's error (bad signal, container stopped).
    pub fn signal(&self, id: &str, signal: i32, all: bool) -> Result<Response, AgentError> {
        let c = self.container("signal container", id)?;
        c.kill(signal, all)
            .map_err(|e| AgentError::runtime("signal container", id, e))?;
        Ok(Response::Done)
    }

    /// `Exec`: runs `process` in container `id`. Answers the process's guest PID.
    ///
    /// # Errors
    /// [`AgentError::Invalid`] naming the field (`exec_id`, `process.<path>`, `stdio.*`),
    /// [`AgentError::NotFound`], [`AgentError::Exists`] (exec ID used before), the runtime's.
    pub fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process: &serde_json::Value,
        stdio: &StdioStreams,
    ) -> Result<Response, AgentError> {
        if exec_id.is_empty() || exec_id.len() > 1024 || exec_id.contains('\0') {
            return Err(invalid("exec_id", "must be 1 to 1024 bytes without NUL"));
        }
        self.require(id)?;
        if self
            .table()
            .containers
            .get(id)
            .is_some_and(|c| c.execs.contains_key(exec_id))
        {
            return Err(AgentError::Exists(format!(
                "exec {exec_id:?} exists already in container {id:?}"
            )));
        }
        stdio::check_ids(stdio, &self.streams, "stdio")?;
        let process: Process = parse("process", process)?;
        check_terminal("process", Some(&process), stdio)?;
        let c = self.container("exec in container", id)?;
        let plumbing = Plumbing::prepare(stdio)?;
        let opts = ExecOptions {
            console_socket: plumbing.console_socket(),
            stdio: Some(plumbing.child_fds()),
            ..Default::default()
        };
        let oom_base = c.cgroup().oom_kills().unwrap_or(0);
        let t0 = Instant::now();
        let guard = reaper::fork_lock();
        let pid = c
            .exec(&process, &opts)
            .map_err(|e| AgentError::runtime("exec in container", id, e))?;
        let io = match plumbing.connect(&self.streams, &self.outbox) {
            Ok(io) => io,
            Err(e) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                return Err(e);
            }
        };
        {
            let mut t = self.table();
            let key = Key {
                id: id.to_owned(),
                exec: Some(exec_id.to_owned()),
            };
            t.pids.insert(pid, key);
            if let Some(ctr) = t.containers.get_mut(id) {
                ctr.execs.insert(
                    exec_id.to_owned(),
                    Proc {
                        io,
                        status: None,
                        waiters: Vec::new(),
                        oom_base,
                    },
                );
            }
        }
        drop(guard);
        crate::log!(
            "exec {exec_id} in container {id}: pid {pid} in {} ms",
            t0.elapsed().as_millis()
        );
        Ok(Response::Process { pid })
    }

    /// `ResizeTty`.
    ///
    /// # Errors
    /// [`AgentError::NotFound`] for a stream that is not live, [`AgentError::Invalid`] for one
    /// that is not a terminal, [`AgentError::Io`] when the ioctl fails.
    pub fn resize(&self, stream: u32, rows: u16, cols: u16) -> Result<Response, AgentError> {
        use crate::streams::ResizeError;
        match self.streams.resize(stream, rows, cols) {
            Ok(()) => Ok(Response::Done),
            Err(ResizeError::Unknown) => Err(AgentError::NotFound(format!(
                "stream {stream} is not the output of a live process"
            ))),
            Err(ResizeError::NotTerminal) => Err(invalid(
                "stream",
                format!("stream {stream} is not a terminal"),
            )),
            Err(ResizeError::Failed(e)) => Err(AgentError::io(
                "set the window size of",
                format!("the terminal of stream {stream}"),
                e.into(),
            )),
        }
    }

    /// `Top`: the container's processes with guest PIDs.
    ///
    /// # Errors
    /// [`AgentError::NotFound`], the runtime's (cgroup unreadable).
    pub fn top(&self, id: &str) -> Result<Response, AgentError> {
        let c = self.container("list processes of", id)?;
        let pids = c
            .processes()
            .map_err(|e| AgentError::runtime("list processes of", id, e))?;
        Ok(Response::Top {
            processes: crate::top::processes(&pids),
        })
    }

    /// `Stats`: the runtime's cgroup statistics as JSON.
    ///
    /// # Errors
    /// [`AgentError::NotFound`], the runtime's.
    pub fn stats(&self, id: &str) -> Result<Response, AgentError> {
        let c = self.container("read statistics of", id)?;
        let s = c
            .cgroup()
            .stats()
            .map_err(|e| AgentError::runtime("read statistics of", id, e.into()))?;
        let v = serde_json::to_value(s).map_err(|e| invalid("stats", e))?;
        Ok(Response::Stats(v))
    }

    /// `Pause` (`resume` false) or `Resume` (`resume` true).
    ///
    /// # Errors
    /// [`AgentError::NotFound`], the runtime's (wrong status, freezer timeout).
    pub fn freeze(&self, id: &str, resume: bool) -> Result<Response, AgentError> {
        let op = if resume {
            "resume container"
        } else {
            "pause container"
        };
        let c = self.container(op, id)?;
        let r = if resume { c.resume() } else { c.pause() };
        r.map_err(|e| AgentError::runtime(op, id, e))?;
        Ok(Response::Done)
    }

    /// `Wait` with request id `req`: answered now when the process has exited, else later.
    pub fn wait(&self, req: u64, id: &str, exec_id: Option<&str>) -> Reply {
        let mut t = self.table();
        let Some(ctr) = t.containers.get_mut(id) else {
            return Reply::Now(Err(AgentError::NotFound(format!(
                "no container {id:?} in this guest"
            ))));
        };
        let Some(p) = ctr.proc_mut(exec_id) else {
            return Reply::Now(Err(AgentError::NotFound(format!(
                "no exec {:?} in container {id:?}",
                exec_id.unwrap_or_default()
            ))));
        };
        match p.status {
            Some(st) => Reply::Now(Ok(Response::Exited(st))),
            None => {
                p.waiters.push(req);
                Reply::Later
            }
        }
    }

    /// Called by the reaper (fork lock held) for every reaped child: a container process's exit
    /// is reported by a notifier thread (see the module docs); others are ignored.
    pub fn on_reaped(self: &Arc<Self>, pid: i32, st: WaitStatus) {
        let reaped = Instant::now();
        let found = {
            let mut t = self.table();
            let Some(key) = t.pids.remove(&pid) else {
                return;
            };
            t.containers
                .get_mut(&key.id)
                .and_then(|c| {
                    let cgroup = c.cgroup.clone();
                    c.proc_mut(key.exec.as_deref())
                        .map(|p| (p.io.outputs.clone(), p.io.stdin, p.oom_base, cgroup))
                })
                .map(|x| (key, x))
        };
        let Some((key, (outputs, stdin, oom_base, cgroup))) = found else {
            return;
        };
        let agent = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("exit-{pid}"))
            .spawn(move || {
                let deadline = reaped + STREAM_GRACE;
                for o in &outputs {
                    if !o.wait_closed(deadline) {
                        o.force_close(&agent.outbox);
                    }
                }
                if let Some(s) = stdin {
                    agent.streams.end_input(s);
                }
                let mut status = exit_status(st);
                let kills = cgroup.oom_kills().unwrap_or(0);
                let killed = status.signal == Some(libc::SIGKILL);
                status.oom_killed = kills > oom_base && (key.exec.is_none() || killed);
                agent.report_exit(&key, pid, status);
            });
        if let Err(e) = spawned {
            crate::log!("cannot start the exit notifier of pid {pid}: {e}");
        }
    }

    fn report_exit(&self, key: &Key, pid: i32, status: ExitStatus) {
        let (waiters, last_init) = {
            let mut t = self.table();
            let Some(p) = t
                .containers
                .get_mut(&key.id)
                .and_then(|c| c.proc_mut(key.exec.as_deref()))
            else {
                return;
            };
            p.status = Some(status);
            let waiters = std::mem::take(&mut p.waiters);
            let live_inits = t.containers.values().any(|c| c.init.status.is_none());
            (waiters, key.exec.is_none() && !live_inits)
        };
        self.outbox.send(&Message::Event(Event::Exited {
            id: key.id.clone(),
            exec_id: key.exec.clone(),
            status,
        }));
        for w in waiters {
            self.outbox.send(&Message::Response {
                id: w,
                result: Ok::<_, WireError>(Response::Exited(status)),
            });
        }
        let what = key
            .exec
            .as_ref()
            .map_or_else(|| "init".to_owned(), |e| format!("exec {e}"));
        crate::log!("container {} {what} (pid {pid}) exited: {status:?}", key.id);
        if last_init {
            self.power.arm(AFTER_LAST_EXIT);
        }
    }
}
