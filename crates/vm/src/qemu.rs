//! The VMM driver: one QEMU `microvm` per VM-isolated container.
//!
//! The machine (measured on our hosts, see vm/README.md and DESIGN.md): `microvm` with ACPI off,
//! the legacy PIC, PIT and RTC on, direct boot of the uncompressed `vmlinux` through its PVH entry
//! note, no firmware, no option ROMs, `-nodefaults`; virtio-mmio devices only: one virtio-serial
//! port named [`isola_proto::AGENT_PORT_NAME`] for the agent and one `virtio-9p-device` per shared
//! directory. The guest is told the host's TSC frequency (`tsc_early_khz`): without it about one
//! TCG boot in five hangs calibrating the TSC against the PIT.
//!
//! Guest RAM is QEMU's anonymous memory, or a file ([`GuestMemory::File`]): a template VM's RAM
//! lives in a file mapped shared, and its clones map the same file private (copy-on-write), so
//! pages no clone has written stay shared in the page cache (see [`crate::template`]). A clone
//! starts from the template's saved device state (`-incoming defer`, [`VmConfig::incoming`])
//! instead of booting the kernel. Both files reach QEMU as inherited descriptors opened here
//! without following symlinks; QEMU names the RAM file `/proc/self/fd/N`.
//!
//! Lifetime: QEMU gets `PR_SET_PDEATHSIG(SIGKILL)`, so it dies with the thread that spawned it
//! (spawn it from a thread that lives as long as the VM should, normally the main thread); it runs
//! with `-no-reboot`, and the guest with `reboot=t`, so a guest reboot (the agent's power-off)
//! ends QEMU. [`Vm::quit`] asks QEMU over QMP to quit and kills it when it does not.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::qmp::Qmp;

/// Longest process name Linux keeps (`comm`, 16 bytes with the NUL).
pub const MAX_NAME: usize = 15;

/// QEMU's descriptor for its end of the agent channel (a connected socket pair).
const AGENT_FD: i32 = 3;
/// QEMU's descriptor for its end of the QMP channel.
const QMP_FD: i32 = 4;
/// QEMU's descriptor for the guest RAM file ([`GuestMemory::File`]).
const MEMORY_FD: i32 = 5;
/// QEMU's descriptor for the saved device state it starts from ([`VmConfig::incoming`]).
pub const INCOMING_FD: i32 = 6;

/// Most directories one VM can share: microvm has 8 virtio-mmio slots and the agent's
/// virtio-serial device takes one.
pub const MAX_SHARES: usize = 7;

/// How the guest's CPU is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
    /// QEMU's Tiny Code Generator: CPU emulation, works everywhere, several times slower.
    Tcg,
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// A host directory shared into the guest over 9p (virtio-9p, `9P2000.L`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The 9p mount tag the guest mounts it by (at most 31 bytes, `[A-Za-z0-9_-]`).
    pub tag: String,
    /// The host directory.
    pub path: PathBuf,
    /// Refuse writes from the guest.
    pub readonly: bool,
}

/// Where the guest's RAM lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum GuestMemory {
    /// QEMU's own anonymous memory.
    #[default]
    Anonymous,
    /// A regular file of exactly the guest's size (a template's RAM).
    File {
        /// The file; it is opened without following symlinks.
        path: PathBuf,
        /// Map it shared: the guest's writes land in the file (the template VM). Otherwise
        /// private copy-on-write: the guest sees the file's contents, and its writes stay in
        /// this QEMU (the clones).
        shared: bool,
    },
}

/// Everything needed to start one VM.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Process name of QEMU on the host (`ps -o comm=`), at most [`MAX_NAME`] bytes.
    pub name: String,
    /// `qemu-system-x86_64`.
    pub qemu: PathBuf,
    /// Uncompressed guest kernel with a PVH note (`vmlinux`).
    pub kernel: PathBuf,
    /// newc cpio initramfs holding the agent as `/init`.
    pub initramfs: PathBuf,
    /// KVM or TCG.
    pub accel: Accel,
    /// vCPUs, at least 1.
    pub vcpus: u32,
    /// Guest RAM, in MiB.
    pub memory_mib: u64,
    /// Directories shared into the guest, at most [`MAX_SHARES`].
    pub shares: Vec<Share>,
    /// File that receives the guest's serial console and QEMU's own messages.
    pub log: PathBuf,
    /// Extra guest kernel parameters.
    pub kernel_args: Vec<String>,
    /// Where guest RAM lives.
    pub memory: GuestMemory,
    /// Start from this saved device state (a template's, see [`crate::template`]) instead of
    /// booting the kernel: QEMU waits (`-incoming defer`) until told over QMP to load it from
    /// descriptor [`INCOMING_FD`]. Needs [`GuestMemory::File`] holding the saved RAM.
    pub incoming: Option<PathBuf>,
}

/// The host TSC frequency in kHz, from `/proc/cpuinfo` (`cpu MHz` of the first CPU); the
/// `ISOLA_TSC_KHZ` environment variable overrides it.
pub fn tsc_khz() -> Option<u64> {
    if let Some(k) = std::env::var("ISOLA_TSC_KHZ")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Some(k);
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|mhz| (mhz * 1000.0).round() as u64)
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 31
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// QEMU's option syntax: commas in a value are doubled.
fn opt_value(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

impl VmConfig {
    /// Checks the settings QEMU would otherwise reject with a less clear message.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the setting.
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() || self.name.len() > MAX_NAME || self.name.contains(',') {
            return Err(Error::Invalid(format!(
                "VM process name {:?}: must be 1 to {MAX_NAME} bytes without commas",
                self.name
            )));
        }
        if self.vcpus == 0 || self.vcpus > 64 {
            return Err(Error::Invalid(format!(
                "{} vCPUs: the guest kernel supports 1 to 64",
                self.vcpus
            )));
        }
        if self.memory_mib < 64 {
            return Err(Error::Invalid(format!(
                "{} MiB of guest memory: at least 64 MiB are needed",
                self.memory_mib
            )));
        }
        if self.shares.len() > MAX_SHARES {
            return Err(Error::Invalid(format!(
                "{} shared directories: a VM can share at most {MAX_SHARES} (volumes plus the root filesystem)",
                self.shares.len()
            )));
        }
        for s in &self.shares {
            if !valid_tag(&s.tag) {
                return Err(Error::Invalid(format!("9p tag {:?} is not valid", s.tag)));
            }
        }
        if self.incoming.is_some() && !matches!(self.memory, GuestMemory::File { .. }) {
            return Err(Error::Invalid(
                "a VM restored from saved state needs its RAM from the saved RAM file".into(),
            ));
        }
        Ok(())
    }

    /// The guest kernel command line.
    pub fn append(&self) -> String {
        let mut a = vec![
            "console=ttyS0".to_owned(),
            "reboot=t".into(),
            "panic=-1".into(),
            "quiet".into(),
            "cryptomgr.notests".into(),
        ];
        if let Some(k) = tsc_khz() {
            a.push(format!("tsc_early_khz={k}"));
            a.push("tsc=reliable".into());
        }
        a.extend(self.kernel_args.iter().cloned());
        a.join(" ")
    }

    /// The QEMU command (not started).
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.qemu);
        let mut machine = "microvm,acpi=off,pic=on,pit=on,rtc=on".to_owned();
        if let GuestMemory::File { shared, .. } = &self.memory {
            machine.push_str(",memory-backend=ram");
            c.arg("-object").arg(format!(
                "memory-backend-file,id=ram,size={}M,mem-path=/proc/self/fd/{MEMORY_FD},share={}",
                self.memory_mib,
                if *shared { "on" } else { "off" }
            ));
        }
        c.arg("-name")
            .arg(format!("{0},process={0}", self.name))
            .arg("-M")
            .arg(machine);
        match self.accel {
            Accel::Kvm => c.args(["-accel", "kvm", "-cpu", "host"]),
            Accel::Tcg => c.args(["-accel", "tcg", "-cpu", "max"]),
        };
        c.arg("-m")
            .arg(self.memory_mib.to_string())
            .arg("-smp")
            .arg(self.vcpus.to_string())
            .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
            .args(["-serial", "stdio"]);
        if self.incoming.is_none() {
            // A restored guest runs the kernel already in its RAM.
            c.arg("-kernel")
                .arg(&self.kernel)
                .arg("-initrd")
                .arg(&self.initramfs)
                .arg("-append")
                .arg(self.append());
        }
        c.args(["-device", "virtio-serial-device"])
            .arg("-chardev")
            .arg(format!("socket,id=agent,fd={AGENT_FD}"))
            .arg("-device")
            .arg(format!(
                "virtserialport,chardev=agent,name={}",
                isola_proto::AGENT_PORT_NAME
            ));
        for (i, s) in self.shares.iter().enumerate() {
            c.arg("-fsdev").arg(format!(
                "local,id=fs{i},path={},security_model=passthrough,multidevs=remap{}",
                opt_value(&s.path),
                if s.readonly { ",readonly=on" } else { "" }
            ));
            c.arg("-device")
                .arg(format!("virtio-9p-device,fsdev=fs{i},mount_tag={}", s.tag));
        }
        c.arg("-chardev")
            .arg(format!("socket,id=qmp,fd={QMP_FD}"))
            .args(["-mon", "chardev=qmp,mode=control"]);
        if self.incoming.is_some() {
            c.args(["-incoming", "defer"]);
        }
        c.args([
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        ]);
        c
    }
}

/// Opens `path` for QEMU: no symlink is followed at the last component, and it must be a regular
/// file of `size` bytes (when given).
fn open_for_qemu(path: &Path, write: bool, size: Option<u64>) -> Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    let meta = f.metadata().map_err(|e| Error::io("stat", path, e))?;
    if !meta.is_file() {
        return Err(Error::Invalid(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    if let Some(want) = size {
        if meta.len() != want {
            return Err(Error::Invalid(format!(
                "{} holds {} bytes, the guest's RAM is {want}",
                path.display(),
                meta.len()
            )));
        }
    }
    Ok(OwnedFd::from(f))
}

/// A running QEMU.
#[derive(Debug)]
pub struct Vm {
    child: Child,
    /// The thread copying QEMU's output into the log; it ends at QEMU's exit.
    copier: Option<std::thread::JoinHandle<()>>,
    /// QEMU's pidfd: a signal through it reaches this process, never a later one with its PID.
    pidfd: Option<std::os::fd::OwnedFd>,
    /// isola's end of the agent channel, until [`Vm::agent`] takes it.
    agent: Option<UnixStream>,
    /// isola's end of QMP.
    qmp: Qmp,
    log: PathBuf,
    status: Option<ExitStatus>,
    /// Reaped elsewhere: the PID is not ours any more.
    gone: bool,
    /// Another process reaps QEMU: never wait for it here.
    external_reaper: bool,
}

impl Vm {
    /// Starts QEMU. The agent's channel and QMP are socket pairs whose other ends QEMU inherits
    /// (no socket paths, so no path-length limit, nothing to clean up). QEMU's stdin is
    /// `/dev/null`; its stdout (the guest console) and stderr go to `config.log`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for bad settings, [`Error::Io`] when the log, the sockets or QEMU cannot
    /// be made.
    pub fn spawn(config: &VmConfig) -> Result<Vm> {
        config.validate()?;
        // The guest console and QEMU's messages reach the log through a pipe copied with a cap:
        // a guest printing forever cannot fill the host's disk.
        let log = {
            let _ = std::fs::remove_file(&config.log);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&config.log)
                .map_err(|e| Error::io("create", &config.log, e))?
        };
        let (log_r, log_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| Error::io("create", "console pipe", e.into()))?;
        let log2 = log_w
            .try_clone()
            .map_err(|e| Error::io("create", "console pipe", e))?;
        let pair =
            |what: &'static str| UnixStream::pair().map_err(|e| Error::io("create", what, e));
        let (agent, agent_qemu) = pair("agent socket pair")?;
        let (qmp, qmp_qemu) = pair("QMP socket pair")?;
        let memory = match &config.memory {
            GuestMemory::Anonymous => None,
            GuestMemory::File { path, shared } => {
                Some(open_for_qemu(path, *shared, Some(config.memory_mib << 20))?)
            }
        };
        let incoming = match &config.incoming {
            Some(path) => Some(open_for_qemu(path, false, None)?),
            None => None,
        };
        let mut fds = vec![
            (agent_qemu.as_raw_fd(), AGENT_FD),
            (qmp_qemu.as_raw_fd(), QMP_FD),
        ];
        fds.extend(memory.as_ref().map(|f| (f.as_raw_fd(), MEMORY_FD)));
        fds.extend(incoming.as_ref().map(|f| (f.as_raw_fd(), INCOMING_FD)));
        let mut cmd = config.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log_w))
            .stderr(Stdio::from(log2));
        // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
        // functions (prctl, getppid, fcntl, dup2) on descriptors this process owns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl: then nobody owns this VM.
                if libc::getppid() == 1 {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                // Move QEMU's descriptors out of the way first, then onto their numbers (dup2
                // clears CLOEXEC).
                let mut high = [0; 4];
                for (i, (src, _)) in fds.iter().enumerate() {
                    let fd = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, 100);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    high[i] = fd;
                }
                for (i, (_, target)) in fds.iter().enumerate() {
                    if libc::dup2(high[i], *target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::io("start", &config.qemu, e))?;
        drop((agent_qemu, qmp_qemu, memory, incoming));
        // Dropping `cmd` closes the pipe's write ends here: the copier sees EOF when QEMU exits.
        drop(cmd);
        let copier = std::thread::Builder::new()
            .name("vm-console".into())
            .spawn(move || copy_capped(log_r, log, MAX_LOG))
            .ok();
        let pidfd = rustix::process::Pid::from_raw(child.id() as i32).and_then(|pid| {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
        });
        Ok(Vm {
            child,
            copier,
            pidfd,
            agent: Some(agent),
            qmp: Qmp::new(qmp)?,
            log: config.log.clone(),
            status: None,
            gone: false,
            external_reaper: false,
        })
    }

    /// QEMU's host PID.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// QEMU's exit status if it has ended and was reaped here. With another reaper
    /// ([`Vm::set_external_reaper`]) nothing is reaped here and this stays `None`; see
    /// [`Vm::ended`].
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.gone || self.status.is_some() {
            return self.status;
        }
        if self.external_reaper {
            if !alive(self.pid()) {
                self.gone = true;
            }
            return None;
        }
        match self.child.try_wait() {
            Ok(s) => self.status = s,
            // Reaped by someone else after all: gone, status unknown.
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => self.gone = true,
            Err(_) => {}
        }
        self.status
    }

    /// Another reaper collects QEMU (the container's monitor, a subreaper that calls
    /// `waitpid(-1)`): from now on this never waits for it, and tells its end from `/proc`.
    pub fn set_external_reaper(&mut self) {
        self.external_reaper = true;
    }

    /// Records that someone else reaped QEMU: its PID is never signalled again.
    pub fn set_reaped(&mut self, status: ExitStatus) {
        self.status = Some(status);
        self.gone = true;
    }

    /// Whether QEMU has ended (exited, a zombie, or reaped).
    pub fn ended(&mut self) -> bool {
        self.try_wait().is_some() || self.gone
    }

    /// Waits at most `timeout` for QEMU to end; whether it did.
    pub fn wait_ended(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.ended() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits at most `timeout` for QEMU to end; its exit status when it was reaped here.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.wait_ended(timeout);
        self.status
    }

    /// Kills QEMU (SIGKILL) and, unless another process reaps it, reaps it.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if !self.ended() {
            if self.external_reaper {
                self.signal_kill();
            } else {
                let _ = self.child.kill();
                self.status = self.child.wait().ok();
            }
        }
        self.status
    }

    /// Sends SIGKILL through the pidfd (a no-op once QEMU is gone, whoever reaped it).
    pub fn signal_kill(&self) {
        if let Some(fd) = &self.pidfd {
            let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
        }
    }

    /// A duplicate of QEMU's pidfd, to signal it from elsewhere without racing PID reuse.
    pub fn pidfd(&self) -> Option<std::os::fd::OwnedFd> {
        self.pidfd.as_ref().and_then(|f| f.try_clone().ok())
    }

    /// Asks QEMU to quit over QMP, waits at most `grace`, then kills it.
    pub fn quit(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.ended() {
            return self.status;
        }
        if self
            .qmp
            .execute("quit", serde_json::Value::Null, Duration::from_millis(500))
            .is_ok()
            && self.wait_ended(grace)
        {
            return self.status;
        }
        self.kill()
    }

    /// QEMU's monitor.
    pub fn qmp(&mut self) -> &mut Qmp {
        &mut self.qmp
    }

    /// The last `max` bytes of the console log, as text (for error messages). Once QEMU has
    /// ended, waits (at most 1 s) for its last output to reach the log.
    pub fn log_tail(&mut self, max: usize) -> String {
        if self.ended() {
            if let Some(h) = self.copier.take() {
                let deadline = Instant::now() + Duration::from_secs(1);
                while !h.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if h.is_finished() {
                    let _ = h.join();
                }
            }
        }
        log_tail(&self.log, max)
    }

    /// isola's end of the agent's channel (the virtio-serial port `isola.agent`), once: the agent
    /// greets on it when the guest is up. QEMU exiting closes it.
    ///
    /// # Errors
    /// [`Error::Boot`] when it was taken already.
    pub fn agent(&mut self) -> Result<UnixStream> {
        self.agent
            .take()
            .ok_or_else(|| Error::Boot("the agent channel was taken already".into()))
    }
}

/// Whether `pid` is alive: it exists and is not a zombie.
fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    match stat.rsplit_once(')') {
        Some((_, rest)) => !matches!(rest.trim_start().chars().next(), Some('Z' | 'X') | None),
        None => false,
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `max` bytes of a log file, trimmed, on one line, control characters replaced.
pub fn log_tail(path: &Path, max: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut data = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let len = f.metadata().map_or(0, |m| m.len());
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(max as u64)));
        let _ = f.take(max as u64).read_to_end(&mut data);
    }
    let text = String::from_utf8_lossy(&data);
    let line = text
        .lines()
        .map(|l| {
            l.chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect::<String>()
        })
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    if line.is_empty() {
        "(no console output)".into()
    } else {
        line
    }
}

/// Most bytes of console output kept in a VM's log (1 MiB); the rest is counted and dropped.
pub const MAX_LOG: u64 = 1 << 20;

/// Copies `from` to `to` until EOF, keeping at most `cap` bytes.
fn copy_capped(from: std::os::fd::OwnedFd, mut to: std::fs::File, cap: u64) {
    let mut buf = [0u8; 8192];
    let mut kept = 0u64;
    let mut dropped = 0u64;
    loop {
        match rustix::io::read(&from, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept).min(n as u64) as usize;
                if room > 0 && to.write_all(&buf[..room]).is_ok() {
                    kept += room as u64;
                }
                dropped += (n - room) as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
    }
    if dropped > 0 {
        let _ = writeln!(
            to,
            "[isola: {dropped} more bytes of console output dropped]"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> VmConfig {
        VmConfig {
            name: "isola-vm-abc123".into(),
            qemu: "qemu-system-x86_64".into(),
            kernel: "/k/vmlinux".into(),
            initramfs: "/k/initramfs".into(),
            accel: Accel::Tcg,
            vcpus: 2,
            memory_mib: 256,
            shares: vec![Share {
                tag: "rootfs".into(),
                path: "/var/lib/isola/a,b".into(),
                readonly: false,
            }],
            log: "/run/isola/x/console.log".into(),
            kernel_args: vec![],
            memory: Default::default(),
            incoming: None,
        }
    }

    #[test]
    fn command_line() {
        let c = config();
        c.validate().unwrap();
        let args: Vec<String> = c
            .command()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("-name isola-vm-abc123,process=isola-vm-abc123"));
        assert!(joined.contains("-accel tcg"));
        assert!(joined.contains("-m 256 -smp 2"));
        assert!(joined.contains("path=/var/lib/isola/a,,b,security_model=passthrough"));
        assert!(joined.contains("mount_tag=rootfs"));
        assert!(joined.contains("name=isola.agent"));
        assert!(joined.contains("socket,id=agent,fd=3"));
        assert!(joined.contains("socket,id=qmp,fd=4"));
        assert!(c.append().contains("reboot=t"));
    }

    #[test]
    fn template_and_clone_command_lines() {
        let args = |c: &VmConfig| -> String {
            c.command()
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let plain = args(&config());
        assert!(!plain.contains("memory-backend") && !plain.contains("-incoming"));
        let mut t = config();
        t.memory = GuestMemory::File {
            path: "/store/t/memory".into(),
            shared: true,
        };
        let a = args(&t);
        assert!(
            a.contains("memory-backend-file,id=ram,size=256M,mem-path=/proc/self/fd/5,share=on")
        );
        assert!(a.contains("microvm,acpi=off,pic=on,pit=on,rtc=on,memory-backend=ram"));
        assert!(a.contains("-kernel /k/vmlinux"));
        let mut c = t.clone();
        c.memory = GuestMemory::File {
            path: "/store/t/memory".into(),
            shared: false,
        };
        c.incoming = Some("/store/t/state".into());
        c.validate().unwrap();
        let a = args(&c);
        assert!(
            a.contains("share=off"),
            "clones must map the template's RAM private"
        );
        assert!(a.contains("-incoming defer"));
        assert!(!a.contains("-kernel") && !a.contains("-initrd") && !a.contains("-append"));
        assert!(a.contains("-sandbox on,"), "{a}");
        let mut bad = config();
        bad.incoming = Some("/store/t/state".into());
        assert!(bad.validate().is_err());
    }

    #[test]
    fn memory_files_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("memory");
        std::fs::write(&f, vec![0u8; 4096]).unwrap();
        open_for_qemu(&f, false, Some(4096)).unwrap();
        let e = open_for_qemu(&f, false, Some(8192)).unwrap_err();
        assert!(e.to_string().contains("holds 4096 bytes"), "{e}");
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(open_for_qemu(&link, false, None).is_err());
        assert!(open_for_qemu(d.path(), false, None).is_err());
    }

    #[test]
    fn refuses_bad_settings() {
        let mut c = config();
        c.name = "isola-vm-0123456789".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("process name"));
        let mut c = config();
        c.vcpus = 0;
        assert!(c.validate().is_err());
        let mut c = config();
        c.shares[0].tag = "a b".into();
        assert!(c.validate().unwrap_err().to_string().contains("9p tag"));
        let mut c = config();
        c.shares = (0..8)
            .map(|i| Share {
                tag: format!("v{i}"),
                path: "/tmp".into(),
                readonly: true,
            })
            .collect();
        assert!(c.validate().unwrap_err().to_string().contains("at most"));
    }
}
