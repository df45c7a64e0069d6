//! The VMM driver: one QEMU `microvm` per VM-isolated container.
//!
//! The machine (measured on our hosts, see vm/README.md and DESIGN.md): `microvm` with ACPI off,
//! the legacy PIC, PIT and RTC on, direct boot of the uncompressed `vmlinux` through its PVH entry
//! note, no firmware, no option ROMs, `-nodefaults`; virtio-mmio devices only: one virtio-serial
//! port named [`isola_proto::AGENT_PORT_NAME`] for the agent and one `virtio-9p-device` per shared
//! directory. The guest is told the host's TSC frequency (`tsc_early_khz`): without it about one
//! TCG boot in five hangs calibrating the TSC against the PIT.
//!
//! Lifetime: QEMU gets `PR_SET_PDEATHSIG(SIGKILL)`, so it dies with the thread that spawned it
//! (spawn it from a thread that lives as long as the VM should, normally the main thread); it runs
//! with `-no-reboot`, and the guest with `reboot=t`, so a guest reboot (the agent's power-off)
//! ends QEMU. [`Vm::quit`] asks QEMU over QMP to quit and kills it when it does not.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Longest process name Linux keeps (`comm`, 16 bytes with the NUL).
pub const MAX_NAME: usize = 15;

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
    /// Unix socket the caller listens on; QEMU connects the agent's virtio-serial port to it.
    pub agent_socket: PathBuf,
    /// Unix socket QEMU listens on for QMP.
    pub qmp_socket: PathBuf,
    /// File that receives the guest's serial console and QEMU's own messages.
    pub log: PathBuf,
    /// Extra guest kernel parameters.
    pub kernel_args: Vec<String>,
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
        c.arg("-name")
            .arg(format!("{0},process={0}", self.name))
            .args(["-M", "microvm,acpi=off,pic=on,pit=on,rtc=on"]);
        match self.accel {
            Accel::Kvm => c.args(["-accel", "kvm", "-cpu", "host"]),
            Accel::Tcg => c.args(["-accel", "tcg", "-cpu", "max"]),
        };
        c.arg("-m")
            .arg(self.memory_mib.to_string())
            .arg("-smp")
            .arg(self.vcpus.to_string())
            .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
            .args(["-serial", "stdio"])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initramfs)
            .arg("-append")
            .arg(self.append())
            .args(["-device", "virtio-serial-device"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=agent,path={}",
                opt_value(&self.agent_socket)
            ))
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
        c.arg("-qmp").arg(format!(
            "unix:{},server=on,wait=off",
            opt_value(&self.qmp_socket)
        ));
        c.args([
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        ]);
        c
    }
}

/// A running QEMU.
#[derive(Debug)]
pub struct Vm {
    child: Child,
    qmp: PathBuf,
    log: PathBuf,
    status: Option<ExitStatus>,
    /// Reaped elsewhere: the PID is not ours any more.
    gone: bool,
}

impl Vm {
    /// Starts QEMU. The caller must already listen on `config.agent_socket`. QEMU's stdin is
    /// `/dev/null`; its stdout (the guest console) and stderr go to `config.log`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for bad settings, [`Error::Io`] when the log or QEMU cannot be opened.
    pub fn spawn(config: &VmConfig) -> Result<Vm> {
        config.validate()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.log)
            .map_err(|e| Error::io("open", &config.log, e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io("open", &config.log, e))?;
        let _ = std::fs::remove_file(&config.qmp_socket);
        let mut cmd = config.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
        // functions (prctl, getppid, kill/_exit are not needed: a vanished parent is checked).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl: then nobody owns this VM.
                if libc::getppid() == 1 {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::io("start", &config.qemu, e))?;
        Ok(Vm {
            child,
            qmp: config.qmp_socket.clone(),
            log: config.log.clone(),
            status: None,
            gone: false,
        })
    }

    /// QEMU's host PID.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// QEMU's exit status if it has ended (reaping it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() && !self.gone {
            match self.child.try_wait() {
                Ok(s) => self.status = s,
                // Reaped by someone else (a subreaper's waitpid(-1)): gone, status unknown.
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => self.gone = true,
                Err(_) => {}
            }
        }
        self.status
    }

    /// Waits at most `timeout` for QEMU to end.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if self.gone {
                return None;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Records that someone else reaped QEMU (a subreaper's `waitpid(-1)`): its PID is never
    /// signalled again.
    pub fn set_reaped(&mut self, status: ExitStatus) {
        self.status = Some(status);
        self.gone = true;
    }

    /// Whether QEMU has ended (reaped here or elsewhere).
    pub fn ended(&mut self) -> bool {
        self.try_wait().is_some() || self.gone
    }

    /// Kills QEMU (SIGKILL) and reaps it.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if !self.ended() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
        self.status
    }

    /// Asks QEMU to quit over QMP, waits at most `grace`, then kills it.
    pub fn quit(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.ended() {
            return self.status;
        }
        if qmp_execute(&self.qmp, "quit", Duration::from_millis(500)).is_ok() {
            if let Some(s) = self.wait_timeout(grace) {
                return Some(s);
            }
        }
        self.kill()
    }

    /// The last `max` bytes of the console log, as text (for error messages).
    pub fn log_tail(&self, max: usize) -> String {
        log_tail(&self.log, max)
    }

    /// Accepts the agent's connection on `listener` (QEMU connects at start-up). Fails when QEMU
    /// exits first or `deadline` passes; the message quotes the console's last line.
    ///
    /// # Errors
    /// [`Error::Boot`].
    pub fn accept_agent(
        &mut self,
        listener: &UnixListener,
        deadline: Instant,
    ) -> Result<UnixStream> {
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("configure", "agent socket", e))?;
        loop {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false)
                        .map_err(|e| Error::io("configure", "agent socket", e))?;
                    return Ok(s);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(Error::io("accept on", "agent socket", e)),
            }
            if let Some(s) = self.try_wait() {
                return Err(Error::Boot(format!(
                    "QEMU exited ({s}) before connecting to the agent: {}",
                    self.log_tail(300)
                )));
            }
            if Instant::now() >= deadline {
                return Err(Error::Boot(
                    "QEMU did not connect the agent channel in time".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `max` bytes of a log file, trimmed, on one line.
pub fn log_tail(path: &Path, max: usize) -> String {
    let data = std::fs::read(path).unwrap_or_default();
    let start = data.len().saturating_sub(max);
    let text = String::from_utf8_lossy(&data[start..]);
    let line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    if line.is_empty() {
        "(no console output)".into()
    } else {
        line
    }
}

/// Runs one QMP command (`{"execute": cmd}`) on the socket at `path` and returns its `return`.
///
/// # Errors
/// [`Error::Io`] when the socket cannot be used, [`Error::Boot`] when QEMU answers with an error.
pub fn qmp_execute(path: &Path, cmd: &str, timeout: Duration) -> Result<serde_json::Value> {
    let io = |e| Error::io("talk QMP on", path, e);
    let stream = UnixStream::connect(path).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut w = stream.try_clone().map_err(io)?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    // Greeting, then capabilities negotiation, then the command.
    r.read_line(&mut line).map_err(io)?;
    let mut answer = |w: &mut UnixStream, text: &str| -> Result<serde_json::Value> {
        w.write_all(text.as_bytes()).map_err(io)?;
        loop {
            line.clear();
            if r.read_line(&mut line).map_err(io)? == 0 {
                return Ok(serde_json::Value::Null);
            }
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(ret) = v.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = v.get("error") {
                return Err(Error::Boot(format!("QMP {cmd}: {err}")));
            }
            // Events ({"event": ...}) are skipped.
        }
    };
    answer(&mut w, "{\"execute\":\"qmp_capabilities\"}\n")?;
    answer(&mut w, &format!("{{\"execute\":\"{cmd}\"}}\n"))
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
            agent_socket: "/run/isola/x/agent.sock".into(),
            qmp_socket: "/run/isola/x/qmp.sock".into(),
            log: "/run/isola/x/console.log".into(),
            kernel_args: vec![],
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
        assert!(c.append().contains("reboot=t"));
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
