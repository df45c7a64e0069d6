//! isola-agent: PID 1 of a VM-isolated container's guest.
//!
//! It mounts the kernel filesystems, opens the virtio-serial port named
//! [`isola_proto::AGENT_PORT_NAME`], greets the host, answers its requests, reaps every zombie,
//! and powers the VM off on `Shutdown`, when the host closes the channel, or when anything
//! fails. A panic is caught, reported over the channel as `Event::AgentPanic`, and ends the VM
//! the same way: PID 1 must never die by accident (the kernel would panic).
//!
//! Power-off: with ACPI off the guest cannot power the machine off; the agent reboots it, and
//! QEMU runs with `-no-reboot` and the guest with `reboot=t` (triple fault), so QEMU exits.
//!
//! Threat model: the host is trusted; the agent checks every message anyway (the protocol crate
//! bounds frame sizes) because a confused host must not crash PID 1.

mod console;
mod mounts;
mod port;
mod reaper;
mod serve;

use std::fs::File;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use isola_proto::{Event, Message, Transport};

/// How long to wait for the agent's port to show up in sysfs.
const PORT_WAIT: Duration = Duration::from_secs(10);

/// The channel, kept where the panic path can reach it.
static PORT: OnceLock<File> = OnceLock::new();
/// Guest uptime when the agent started, in milliseconds (read once /proc is mounted).
pub static INIT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// The last panic's message and location, set by the panic hook.
static PANIC: Mutex<Option<String>> = Mutex::new(None);

macro_rules! log {
    ($($a:tt)*) => { eprintln!("isola-agent: {}", format_args!($($a)*)) };
}

fn main() {
    if std::process::id() != 1 {
        eprintln!("isola-agent: must run as PID 1 inside an isola guest VM (it mounts filesystems and reboots the machine)");
        std::process::exit(2);
    }
    panic::set_hook(Box::new(|info| {
        let msg = info.to_string();
        eprintln!("isola-agent: {msg}");
        if let Ok(mut slot) = PANIC.lock() {
            *slot = Some(msg);
        }
    }));
    let outcome = panic::catch_unwind(AssertUnwindSafe(run));
    match outcome {
        Ok(Ok(end)) => log!("{end}; powering off"),
        Ok(Err(e)) => log!("error: {}; powering off", chain(&*e)),
        Err(_) => {
            let message = PANIC
                .lock()
                .ok()
                .and_then(|mut s| s.take())
                .unwrap_or_else(|| "panic without a message".into());
            if let Some(port) = PORT.get() {
                // Best effort: if the panic came in the middle of a write, the host sees a bad frame.
                let _ = Transport::new(port).send(&Message::Event(Event::AgentPanic { message }));
            }
        }
    }
    power_off();
}

/// Everything PID 1 does until it is time to end the VM. Returns why it ended.
fn run() -> Result<String, Box<dyn std::error::Error>> {
    reaper::block_sigchld()?;
    let mount_errors = mounts::mount_early();
    INIT_MS.store(serve::uptime_ms(), std::sync::atomic::Ordering::Relaxed);
    console::ensure_stdio();
    for e in &mount_errors {
        log!("warning: {}", chain(e));
    }
    reaper::spawn()?;
    let port = port::open_port(isola_proto::AGENT_PORT_NAME, PORT_WAIT)?;
    let port = PORT.get_or_init(|| port);
    let end = serve::serve(&mut Transport::new(port))?;
    Ok(end.to_string())
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Ends the VM: kill every other process, sync, reboot (QEMU exits, see the crate docs).
fn power_off() -> ! {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    // kill(-1) from PID 1 signals every process but itself.
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    nix::unistd::sync();
    let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    log!("reboot failed: {e}");
    // Last resort: PID 1 exiting makes the kernel panic; with panic=-1 it reboots at once.
    std::process::exit(1);
}
