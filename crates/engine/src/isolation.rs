//! The one interface between the engine and an isolation mode (DESIGN.md, "Components"): create,
//! start, wait, signal, exec, top, stats, pause, resume, delete. Process isolation implements it with
//! the runtime library on the host; VM isolation ([`crate::vm`]) boots a VM whose agent runs the
//! same runtime library in the guest.

use std::path::{Path, PathBuf};

use isola_runtime::oci::Process;
use nix::sys::wait::WaitStatus;

use crate::config::Isolation;
use crate::error::{Error, Result};
use crate::paths::Roots;

/// `ps`-style output: column titles and rows, as `isola top` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Table {
    /// Column titles.
    #[serde(rename = "Titles")]
    pub titles: Vec<String>,
    /// One row per process.
    #[serde(rename = "Processes")]
    pub rows: Vec<Vec<String>>,
}

/// How the container process gets its terminal, if it has one.
#[derive(Debug, Clone, Default)]
pub struct Console {
    /// Unix socket that receives the terminal's master (`SCM_RIGHTS`), when `process.terminal`.
    pub socket: Option<PathBuf>,
}

/// An isolation mode.
pub trait IsolationMode: std::fmt::Debug {
    /// Which mode this is.
    fn kind(&self) -> Isolation;
    /// Creates container `id` from the bundle in `bundle` (config.json + rootfs). The container
    /// process inherits the caller's stdin, stdout and stderr. Returns the host PID that stands for
    /// the container (its process, or its VM monitor).
    fn create(&self, id: &str, bundle: &Path, console: &Console) -> Result<i32>;
    /// Starts the created container's program.
    fn start(&self, id: &str) -> Result<()>;
    /// Sends `signal` to the container's process, or with `all` to every process in it.
    fn signal(&self, id: &str, signal: i32, all: bool) -> Result<()>;
    /// Runs `process` inside the running container with the caller's stdio; returns its host PID
    /// (the caller, a child subreaper, reaps it).
    fn exec(&self, id: &str, process: &Process, console: &Console) -> Result<i32>;
    /// The container's processes, as `ps -ef` columns.
    fn top(&self, id: &str) -> Result<Table>;
    /// Resource usage as JSON (memory, CPU, PIDs).
    fn stats(&self, id: &str) -> Result<serde_json::Value>;
    /// Whether the OOM killer killed a process of the container.
    fn oom_killed(&self, id: &str) -> bool;
    /// Freezes the container.
    fn pause(&self, id: &str) -> Result<()>;
    /// Thaws it.
    fn resume(&self, id: &str) -> Result<()>;
    /// Removes the container's isolation state (cgroup, runtime state); kills what is left.
    fn delete(&self, id: &str) -> Result<()>;
    /// How the container ended, given the wait status of the PID [`IsolationMode::create`]
    /// returned (called once, by the monitor that reaped it).
    fn outcome(&self, id: &str, status: WaitStatus) -> Outcome {
        default_outcome(self, id, status)
    }
    /// What to call when the container's terminal changes size (rows, columns), when the mode
    /// needs more than the resize of the terminal's master the monitor does.
    fn resize_hook(&self, _id: &str) -> Option<Box<dyn Fn(u16, u16) + Send>> {
        None
    }
}

/// How a container ended, as the engine records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Docker's exit code: the status, 128+N for signal N, 137 for an OOM kill.
    pub code: i32,
    /// The OOM killer killed a process of the container.
    pub oom: bool,
    /// Why the container ended abnormally (empty when its process simply exited).
    pub error: String,
}

/// The outcome from the container process's own wait status (process isolation).
pub fn default_outcome<M: IsolationMode + ?Sized>(
    mode: &M,
    id: &str,
    status: WaitStatus,
) -> Outcome {
    let oom = mode.oom_killed(id);
    let code = match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        _ if oom => 137,
        _ => 128 + libc::SIGKILL,
    };
    Outcome {
        code,
        oom,
        error: String::new(),
    }
}

/// Process isolation: the runtime library on the host.
#[derive(Debug)]
pub struct ProcessMode {
    runtime_root: PathBuf,
}

impl ProcessMode {
    /// Uses the runtime state root under `<run-root>/runtime`.
    pub fn new(roots: &Roots) -> Self {
        Self {
            runtime_root: roots.runtime_root(),
        }
    }

    fn runtime(&self) -> Result<isola_runtime::Runtime> {
        Ok(isola_runtime::Runtime::new(&self.runtime_root)?)
    }

    fn container(&self, id: &str) -> Result<isola_runtime::Container> {
        Ok(self.runtime()?.container(id)?)
    }
}

fn start_error(e: isola_runtime::Error) -> Error {
    match e {
        isola_runtime::Error::Init { message, code, .. } if code == 126 || code == 127 => {
            Error::StartFailed { message, code }
        }
        other => Error::Runtime(other),
    }
}

impl IsolationMode for ProcessMode {
    fn kind(&self) -> Isolation {
        Isolation::Process
    }

    fn create(&self, id: &str, bundle: &Path, console: &Console) -> Result<i32> {
        let opts = isola_runtime::CreateOptions {
            console_socket: console.socket.clone(),
            ..Default::default()
        };
        let (c, warnings) = self
            .runtime()?
            .create(id, bundle, &opts)
            .map_err(start_error)?;
        for w in warnings {
            tracing::warn!("container {id}: {w}");
        }
        Ok(c.pid().unwrap_or(0))
    }

    fn start(&self, id: &str) -> Result<()> {
        self.container(id)?.start().map_err(start_error)
    }

    fn signal(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        Ok(self.container(id)?.kill(signal, all)?)
    }

    fn exec(&self, id: &str, process: &Process, console: &Console) -> Result<i32> {
        let opts = isola_runtime::ExecOptions {
            console_socket: console.socket.clone(),
            ..Default::default()
        };
        self.container(id)?
            .exec(process, &opts)
            .map_err(start_error)
    }

    fn top(&self, id: &str) -> Result<Table> {
        let pids = self.container(id)?.processes()?;
        ps_table(&pids)
    }

    fn stats(&self, id: &str) -> Result<serde_json::Value> {
        let stats = self
            .container(id)?
            .cgroup()
            .stats()
            .map_err(isola_runtime::Error::from)?;
        Ok(serde_json::to_value(stats).unwrap_or_default())
    }

    fn oom_killed(&self, id: &str) -> bool {
        self.container(id)
            .ok()
            .and_then(|c| c.cgroup().oom_kills().ok())
            .is_some_and(|n| n > 0)
    }

    fn pause(&self, id: &str) -> Result<()> {
        Ok(self.container(id)?.pause()?)
    }

    fn resume(&self, id: &str) -> Result<()> {
        Ok(self.container(id)?.resume()?)
    }

    fn delete(&self, id: &str) -> Result<()> {
        match self.container(id) {
            Ok(c) => Ok(c.delete(true)?),
            // The runtime's state is gone (its run root was wiped, as by a reboot) but its cgroup
            // may remain: the engine names it `/isola/<id>`, so remove it (and anything in it).
            Err(Error::Runtime(isola_runtime::Error::NotFound(_))) => {
                let cg = isola_runtime::cgroups::Cgroup::new(None, id)
                    .map_err(isola_runtime::Error::from)?;
                let _ = cg.kill_all(libc::SIGKILL);
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while cg.pids().is_ok_and(|p| !p.is_empty()) && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                cg.destroy().map_err(isola_runtime::Error::from)?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// `ps -ef` on the host, keeping the rows of `pids` (what `docker top` shows: host PIDs).
pub fn ps_table(pids: &[i32]) -> Result<Table> {
    let out = std::process::Command::new("ps")
        .arg("-ef")
        .output()
        .map_err(|e| Error::io("run", "ps", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let titles: Vec<String> = header.split_whitespace().map(str::to_owned).collect();
    let pid_col = titles.iter().position(|t| t == "PID").unwrap_or(1);
    let ncols = titles.len();
    let mut rows = Vec::new();
    for line in lines {
        // The last column (CMD) may contain spaces: split into at most `ncols` fields.
        let fields: Vec<String> = split_columns(line, ncols);
        let pid: Option<i32> = fields.get(pid_col).and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            rows.push(fields);
        }
    }
    Ok(Table { titles, rows })
}

fn split_columns(line: &str, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut rest = line.trim_start();
    while out.len() + 1 < n {
        match rest.find(char::is_whitespace) {
            Some(i) => {
                out.push(rest[..i].to_owned());
                rest = rest[i..].trim_start();
            }
            None => break,
        }
    }
    out.push(rest.to_owned());
    out
}

/// The implementation of a mode.
pub fn mode(kind: Isolation, roots: &Roots) -> Box<dyn IsolationMode> {
    match kind {
        Isolation::Process => Box::new(ProcessMode::new(roots)),
        Isolation::Vm => Box::new(crate::vm::VmMode::new(roots)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns() {
        let f = super::split_columns("root  12  1  0 10:00 ?  00:00:00 ping localhost -c 3", 8);
        assert_eq!(f[1], "12");
        assert_eq!(f[7], "ping localhost -c 3");
    }
}
