//! VM isolation (`--isolation=vm`, alias `hyperv`): each container in its own QEMU microvm with
//! isola's guest kernel; the guest agent runs the same bundle with the same runtime library as
//! process isolation (DESIGN.md, "one runtime library, run in two places").
//!
//! In the monitor, [`VmMode::create`] boots the VM (QEMU is the monitor's child, so the monitor
//! reaps it and QEMU dies with it: parent-death signal), shares the root filesystem and volumes
//! over 9p, connects the container's stdio to streams of the agent channel and serves the
//! control socket `<run-root>/containers/<id>/vm.sock`. Everywhere else (the CLI's `top`, `kill`,
//! `exec`, ...) the mode is a client of that socket. `State.Pid` is QEMU's PID: on the host, the
//! VM is the container's only process, named `isola-vm-<start of the ID>`.

pub mod exec;
pub mod guest;
pub(crate) mod host;
mod pump;
pub mod start;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use isola_proto::{Client, Request, Response};
use isola_runtime::oci::Process;
use isola_vm::qemu::VmConfig;
use nix::sys::wait::WaitStatus;
use serde::{Deserialize, Serialize};

use crate::config::Isolation;
use crate::error::{Error, Result};
use crate::isolation::{Console, IsolationMode, Outcome, Table};
use crate::paths::Roots;
use host::VmHost;

/// Longest the agent may take to create the container.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest any other request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The VM's process name on the host: `isola-vm-` and the first 6 characters of the ID (15 bytes,
/// the most `comm` holds).
pub fn process_name(id: &str) -> String {
    let n = isola_vm::qemu::MAX_NAME - "isola-vm-".len();
    format!("isola-vm-{}", &id[..id.len().min(n)])
}

/// What isola records about a container's VM (`<root>/containers/<id>/vm.json`), shown by
/// `isola inspect` as `VM`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VmInfo {
    /// QEMU's host PID.
    pub pid: i32,
    /// QEMU's start time (clock ticks after boot, /proc/PID/stat field 22), to recognise it.
    pub pid_start: u64,
    /// `kvm` or `tcg`.
    pub accelerator: String,
    /// Why that accelerator.
    pub accelerator_reason: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest RAM, in MiB.
    pub memory_mib: u64,
    /// The guest kernel.
    pub kernel: PathBuf,
    /// Where the boot went, in milliseconds.
    pub boot: Boot,
    /// Wall-clock time of the guest's boot, in milliseconds since the Unix epoch (to show guest
    /// process start times).
    pub guest_boot_epoch_ms: u64,
}

/// The boot broken down, in milliseconds. A VM restored from a template has a `Restore`; its
/// `VmMs` ends when QEMU was told to load the template, `KernelMs` is 0 and `AgentMs` counts
/// from the guest running again to the agent's answer to `Restored`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Boot {
    /// QEMU started until the guest kernel started (VMM set-up).
    pub vmm_ms: u64,
    /// Guest kernel start until the agent (`/init`) ran.
    pub kernel_ms: u64,
    /// Agent start until its Hello.
    pub agent_ms: u64,
    /// Set when the VM was restored from a VM template: which, and the time it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<start::Restore>,
    /// Why the VM booted its kernel although templates are on (the template could not be made
    /// or restored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_error: Option<String>,
    /// Hello until the container's process was created.
    pub create_ms: u64,
    /// Creation until the container's program was started.
    pub start_ms: u64,
    /// QEMU started until the program was started.
    pub total_ms: u64,
}

fn info_path(roots: &Roots, id: &str) -> PathBuf {
    roots.dir(id).join("vm.json")
}

/// Reads a container's [`VmInfo`], if it ever ran in a VM.
pub fn read_info(roots: &Roots, id: &str) -> Option<VmInfo> {
    let data = std::fs::read(info_path(roots, id)).ok()?;
    serde_json::from_slice(&data).ok()
}

fn write_info(roots: &Roots, id: &str, info: &VmInfo) {
    let path = info_path(roots, id);
    let tmp = path.with_extension("json.tmp");
    let ok = (|| {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(info).unwrap_or_default())?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = ok {
        tracing::warn!("writing {}: {e}", path.display());
    }
}

fn now_epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The control socket of a container's VM.
pub fn control_socket(roots: &Roots, id: &str) -> PathBuf {
    roots.run_dir(id).join("vm.sock")
}

/// Connects to the control socket (served by the container's monitor).
pub(crate) fn connect(roots: &Roots, id: &str) -> Result<UnixStream> {
    let path = control_socket(roots, id);
    crate::paths::connect_unix(&path).map_err(|e| {
        Error::Vm(format!(
            "container {id}: cannot reach its VM's control socket {}: {e}",
            path.display()
        ))
    })
}

/// Checks, before a VM-isolated container is created, that its flags can apply to a VM and that
/// QEMU, the guest kernel and the agent are there.
///
/// # Errors
/// [`Error::NotAvailable`] naming the flag or the missing asset.
pub fn check_create(roots: &Roots, host: &crate::config::HostConfig) -> Result<()> {
    if host.network_mode == crate::config::NetworkMode::Host {
        return Err(Error::NotAvailable(
            "--network=host cannot apply to --isolation=vm: the container runs in its own kernel; use --network=none".into(),
        ));
    }
    if host.binds.len() > isola_vm::qemu::MAX_SHARES - 2 {
        return Err(Error::NotAvailable(format!(
            "{} volumes: a VM-isolated container can have at most {}",
            host.binds.len(),
            isola_vm::qemu::MAX_SHARES - 2
        )));
    }
    let settings = crate::settings::Settings::load()?;
    isola_vm::assets::locate(&settings.vm, &roots.root.join("vm"))
        .map_err(|e| Error::NotAvailable(format!("--isolation=vm: {e}")))?;
    Ok(())
}

/// VM isolation.
#[derive(Debug)]
pub struct VmMode {
    roots: Roots,
    /// The VM, in the monitor that booted it.
    host: Mutex<Option<Arc<VmHost>>>,
    /// The container's terminal stream, for window-size changes.
    tty_stream: Mutex<Option<u32>>,
    created: Mutex<Option<(Instant, VmInfo)>>,
}

impl VmMode {
    /// The mode for containers under `roots`.
    pub fn new(roots: &Roots) -> Self {
        Self {
            roots: roots.clone(),
            host: Mutex::new(None),
            tty_stream: Mutex::new(None),
            created: Mutex::new(None),
        }
    }

    fn host(&self) -> Option<Arc<VmHost>> {
        self.host.lock().ok().and_then(|h| h.clone())
    }

    /// Sends `body` to the container's agent: directly in the monitor, else over the control
    /// socket.
    fn ask(&self, id: &str, body: Request) -> Result<Response> {
        if let Some(h) = self.host() {
            return h.request(body, REQUEST_TIMEOUT);
        }
        let what = host::request_name(&body);
        let stream = connect(&self.roots, id)?;
        let mut c = Client::new(stream);
        c.request(body, REQUEST_TIMEOUT).map_err(|e| match e {
            isola_proto::ClientError::Agent { source, .. } => host::wire_error(what, source),
            other => Error::Vm(format!("container {id}: {what}: {other}")),
        })
    }

    /// Kills the container's QEMU by the PID recorded in vm.json, if that process is still it.
    fn kill_recorded(&self, id: &str) {
        if let Some(info) = read_info(&self.roots, id) {
            if info.pid > 0
                && isola_runtime::state::pid_start_time(info.pid) == Some(info.pid_start)
            {
                // SAFETY: kill(2) on a PID whose start time matches the QEMU we recorded.
                unsafe {
                    libc::kill(info.pid, libc::SIGKILL);
                }
            }
        }
    }

    fn boot(&self, id: &str, bundle: &Path, console: &Console) -> Result<i32> {
        let settings = crate::settings::Settings::load()?;
        let state_dir = self.roots.root.join("vm");
        let assets = isola_vm::assets::locate(&settings.vm, &state_dir)?;
        let decision = isola_vm::accel::decide(
            settings.vm.accelerator.unwrap_or_default(),
            &assets,
            Path::new(isola_vm::accel::HOST_STATE_DIR),
        );
        let config_path = bundle.join("config.json");
        let spec: serde_json::Value = std::fs::read(&config_path)
            .map_err(|e| Error::io("read", &config_path, e))
            .and_then(|d| {
                serde_json::from_slice(&d)
                    .map_err(|e| Error::Vm(format!("{}: {e}", config_path.display())))
            })?;
        let prepared = guest::prepare(bundle, &self.roots.rootfs(id), spec)?;
        let config = VmConfig {
            name: process_name(id),
            qemu: assets.qemu.clone(),
            kernel: assets.kernel.clone(),
            initramfs: assets.initramfs.clone(),
            accel: decision.accel,
            vcpus: guest::vcpus(&prepared.spec),
            memory_mib: guest::memory_mib(&prepared.spec),
            shares: prepared.shares,
            log: bundle.join("vm-console.log"),
            kernel_args: Vec::new(),
            memory: Default::default(),
            incoming: None,
        };
        let _ = std::fs::remove_file(&config.log);
        let t0 = Instant::now();
        let started = start::start(id, &settings.vm, &assets, &state_dir, &config)?;
        let t_ready = t0.elapsed();
        let (vm, channel) = (started.vm, started.channel);
        let pid = vm.pid();
        let host = VmHost::start(id, vm, channel)?;
        // From here on, a failure must end the VM.
        let result = self.create_in_guest(id, &host, console, prepared.spec, prepared.mounts);
        let created = match result {
            Ok(()) => t0.elapsed(),
            Err(e) => {
                host.kill();
                return Err(e);
            }
        };
        let control = control_socket(&self.roots, id);
        let listener =
            crate::paths::bind_unix(&control).map_err(|e| Error::io("listen on", &control, e));
        let listener = match listener {
            Ok(l) => l,
            Err(e) => {
                host.kill();
                return Err(e);
            }
        };
        host.serve_control(listener)?;
        let info = VmInfo {
            pid,
            pid_start: isola_runtime::state::pid_start_time(pid).unwrap_or(0),
            accelerator: decision.accel.to_string(),
            accelerator_reason: decision.reason,
            vcpus: config.vcpus,
            memory_mib: config.memory_mib,
            kernel: assets.kernel,
            boot: Boot {
                vmm_ms: started.vmm_ms,
                kernel_ms: started.kernel_ms,
                agent_ms: started.agent_ms,
                restore: started.restore,
                template_error: started.template_error,
                create_ms: (created - t_ready).as_millis() as u64,
                start_ms: 0,
                total_ms: 0,
            },
            guest_boot_epoch_ms: now_epoch_ms()
                .saturating_sub((created - t_ready).as_millis() as u64)
                .saturating_sub(started.guest_uptime_ms),
        };
        write_info(&self.roots, id, &info);
        *self.created.lock().unwrap_or_else(|p| p.into_inner()) = Some((t0, info));
        *self.host.lock().unwrap_or_else(|p| p.into_inner()) = Some(host);
        Ok(pid)
    }

    /// Connects stdio and sends `CreateContainer`.
    fn create_in_guest(
        &self,
        id: &str,
        host: &Arc<VmHost>,
        console: &Console,
        spec: serde_json::Value,
        mounts: Vec<isola_proto::GuestMount>,
    ) -> Result<()> {
        let dup = |fd: i32| -> Result<OwnedFd> {
            // SAFETY: 0, 1 and 2 are open in the monitor while it creates the container (it set
            // them to the container's ends of its pipes).
            let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            b.try_clone_to_owned()
                .map_err(|e| Error::io("duplicate", "standard streams", e))
        };
        let stdio = if let Some(socket) = &console.socket {
            // The container's terminal lives in the guest; the monitor gets one end of a socket
            // pair that carries its bytes, and resizes go to the agent (resize_hook).
            let (ours, theirs) =
                UnixStream::pair().map_err(|e| Error::io("create", "terminal socket pair", e))?;
            let conn = isola_runtime::tty::connect(socket)?;
            isola_runtime::tty::send_fd(conn.as_fd(), "vm-terminal", theirs.as_fd())?;
            drop(theirs);
            let input = OwnedFd::from(
                ours.try_clone()
                    .map_err(|e| Error::io("duplicate", "terminal socket", e))?,
            );
            let streams = host.attach_stdio(Some(input), Some(OwnedFd::from(ours)), None, true)?;
            *self.tty_stream.lock().unwrap_or_else(|p| p.into_inner()) = streams.stdout;
            streams
        } else {
            let input = dup(0)?;
            let input = (!is_dev_null(&input)).then_some(input);
            host.attach_stdio(input, Some(dup(1)?), Some(dup(2)?), false)?
        };
        let r = host.request(
            Request::CreateContainer {
                id: id.to_owned(),
                spec,
                mounts,
                stdio,
            },
            CREATE_TIMEOUT,
        )?;
        match r {
            Response::Process { .. } => {
                host.open_stdin(&stdio);
                Ok(())
            }
            other => Err(Error::Vm(format!(
                "CreateContainer: unexpected answer {other:?}"
            ))),
        }
    }
}

fn is_dev_null(fd: &OwnedFd) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::CharacterDevice
            && st.st_rdev == rustix::fs::makedev(1, 3)
    })
}

impl IsolationMode for VmMode {
    fn kind(&self) -> Isolation {
        Isolation::Vm
    }

    fn create(&self, id: &str, bundle: &Path, console: &Console) -> Result<i32> {
        self.boot(id, bundle, console)
    }

    fn start(&self, id: &str) -> Result<()> {
        let h = self
            .host()
            .ok_or_else(|| Error::Vm("start: this process did not boot the VM".into()))?;
        h.request(Request::Start { id: id.to_owned() }, REQUEST_TIMEOUT)?;
        if let Some((t0, mut info)) = self.created.lock().ok().and_then(|c| c.clone()) {
            let total = t0.elapsed().as_millis() as u64;
            let b = &info.boot;
            let restore = b.restore.as_ref().map_or(0, |r| r.make_ms + r.load_ms);
            info.boot.start_ms =
                total.saturating_sub(b.vmm_ms + b.kernel_ms + b.agent_ms + restore + b.create_ms);
            info.boot.total_ms = total;
            write_info(&self.roots, id, &info);
        }
        Ok(())
    }

    fn signal(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        if signal == libc::SIGKILL {
            if let Some(h) = self.host() {
                h.arm_kill();
            }
        }
        let r = self.ask(
            id,
            Request::Signal {
                id: id.to_owned(),
                signal,
                all,
            },
        );
        match r {
            Ok(_) => Ok(()),
            // The agent cannot be reached or does not answer: a SIGKILL still ends the
            // container, by ending its VM.
            Err(e) if signal == libc::SIGKILL => {
                tracing::debug!("SIGKILL through the agent failed ({e}); killing the VM");
                match self.host() {
                    Some(h) => h.kill(),
                    None => self.kill_recorded(id),
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn exec(&self, id: &str, _: &Process, _: &Console) -> Result<i32> {
        Err(Error::Vm(format!(
            "container {id}: a VM-isolated exec runs through the VM's control socket (vm::exec)"
        )))
    }

    fn top(&self, id: &str) -> Result<Table> {
        let r = self.ask(id, Request::Top { id: id.to_owned() })?;
        let Response::Top { processes } = r else {
            return Err(Error::Vm(format!("Top: unexpected answer {r:?}")));
        };
        let boot = read_info(&self.roots, id).map_or(0, |i| i.guest_boot_epoch_ms);
        Ok(top_table(&processes, boot))
    }

    fn stats(&self, id: &str) -> Result<serde_json::Value> {
        match self.ask(id, Request::Stats { id: id.to_owned() })? {
            Response::Stats(v) => Ok(v),
            other => Err(Error::Vm(format!("Stats: unexpected answer {other:?}"))),
        }
    }

    fn oom_killed(&self, _: &str) -> bool {
        self.host()
            .and_then(|h| h.init_exit())
            .is_some_and(|s| s.oom_killed)
    }

    fn outcome(&self, id: &str, status: WaitStatus) -> Outcome {
        let Some(h) = self.host() else {
            return crate::isolation::default_outcome(self, id, status);
        };
        let qemu = match status {
            WaitStatus::Exited(_, c) => std::os::unix::process::ExitStatusExt::from_raw(c << 8),
            WaitStatus::Signaled(_, s, _) => {
                std::os::unix::process::ExitStatusExt::from_raw(s as i32)
            }
            _ => std::os::unix::process::ExitStatusExt::from_raw(0),
        };
        h.reaped(qemu);
        match h.init_exit() {
            Some(s) => {
                let code = match (s.code, s.signal) {
                    (Some(c), _) => c,
                    (None, Some(sig)) => 128 + sig,
                    (None, None) => 128 + libc::SIGKILL,
                };
                Outcome {
                    code: if s.oom_killed && s.code.is_none() {
                        137
                    } else {
                        code
                    },
                    oom: s.oom_killed,
                    error: String::new(),
                }
            }
            None => {
                let how = match status {
                    WaitStatus::Exited(_, c) => format!("exited with status {c}"),
                    WaitStatus::Signaled(_, s, _) => format!("was killed by {s}"),
                    other => format!("ended ({other:?})"),
                };
                let why = h.error().unwrap_or_else(|| {
                    "the VM ended before the container's process exited".to_owned()
                });
                Outcome {
                    code: match status {
                        WaitStatus::Signaled(_, s, _) => 128 + s as i32,
                        _ => 125,
                    },
                    oom: false,
                    error: format!("{why} (QEMU {how})"),
                }
            }
        }
    }

    fn resize_hook(&self, _: &str) -> Option<Box<dyn Fn(u16, u16) + Send>> {
        let h = self.host()?;
        let stream = (*self.tty_stream.lock().ok()?)?;
        Some(Box::new(move |rows, cols| {
            h.post(Request::ResizeTty { stream, rows, cols });
        }))
    }

    fn pause(&self, id: &str) -> Result<()> {
        self.ask(id, Request::Pause { id: id.to_owned() }).map(drop)
    }

    fn resume(&self, id: &str) -> Result<()> {
        self.ask(id, Request::Resume { id: id.to_owned() })
            .map(drop)
    }

    fn delete(&self, id: &str) -> Result<()> {
        match self.host() {
            Some(h) => h.shutdown(Duration::from_secs(2)),
            None => self.kill_recorded(id),
        }
        guest::release(&self.roots.dir(id));
        let run_dir = self.roots.run_dir(id);
        let _ = std::fs::remove_file(run_dir.join("vm.sock"));
        Ok(())
    }
}

/// `ps -ef`-style rows from the guest's process list; start times are wall-clock times computed
/// from `boot_epoch_ms` (the guest's boot).
pub fn top_table(processes: &[isola_proto::ProcessInfo], boot_epoch_ms: u64) -> Table {
    let titles = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let rows = processes
        .iter()
        .map(|p| {
            let start = (boot_epoch_ms / 1000).saturating_add(p.start_seconds);
            let stime = i64::try_from(start)
                .ok()
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                .map(|t| t.with_timezone(&chrono::Local).format("%H:%M").to_string())
                .unwrap_or_else(|| "?".into());
            let t = p.cpu_seconds;
            vec![
                if p.uid == 0 {
                    "root".into()
                } else {
                    p.uid.to_string()
                },
                p.pid.to_string(),
                p.ppid.to_string(),
                "0".into(),
                stime,
                "?".into(),
                format!("{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60),
                host::sanitize(&p.cmd, 4096),
            ]
        })
        .collect();
    Table { titles, rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_name_fits_comm() {
        let n = process_name("0123456789abcdef0123");
        assert_eq!(n, "isola-vm-012345");
        assert!(n.len() <= 15);
        assert_eq!(process_name("ab"), "isola-vm-ab");
    }

    #[test]
    fn top_rows() {
        let t = top_table(
            &[isola_proto::ProcessInfo {
                pid: 1,
                ppid: 0,
                uid: 0,
                cpu_seconds: 3661,
                start_seconds: 2,
                cmd: "ping localhost".into(),
            }],
            0,
        );
        assert_eq!(t.titles[1], "PID");
        assert_eq!(t.rows[0][1], "1");
        assert_eq!(t.rows[0][6], "01:01:01");
        assert_eq!(t.rows[0][7], "ping localhost");
    }
}
