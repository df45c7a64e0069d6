//! isola-agent: PID 1 of a VM-isolated container's guest.
//!
//! It moves the guest off the initramfs ([`rootswitch`]), mounts the kernel filesystems and
//! cgroup v2, opens the virtio-serial port named [`isola_proto::AGENT_PORT_NAME`], greets the
//! host and serves its requests: it mounts the shares the host names, writes the container's
//! bundle and runs it with the runtime library (`isola-runtime`, the same code process isolation
//! runs on the host), forwards the stdio streams, reaps every zombie and reports exits. A guest
//! saved as a VM template is restored right after its greeting, in every clone: the host's
//! `Restored` then makes the agent reseed the kernel's random generator and set the clock
//! ([`restore`]). It powers
//! the VM off on `Shutdown`, when the host closes the channel, 30 s after the last container's
//! init exited, or when anything fails. A panic in any thread is reported over the channel as
//! `Event::AgentPanic` and ends the VM the same way: PID 1 must never die by accident (the
//! kernel would panic).
//!
//! Threat model: the host is trusted; the agent checks every message anyway (the protocol crate
//! bounds frame sizes; mount targets, stream ids, specs and processes are validated with errors
//! naming the field) because a confused host must not crash PID 1. The containers are not
//! trusted: they run under the runtime library's isolation, and nothing they do to their stdio
//! can block the request loop.

/// Logs one line to the guest console with the agent's prefix.
macro_rules! log {
    ($($a:tt)*) => { eprintln!("isola-agent: {}", format_args!($($a)*)) };
}
pub(crate) use log;

mod console;
mod containers;
mod error;
mod guest_mounts;
mod mounts;
mod out;
mod port;
mod power;
mod reaper;
mod restore;
mod rootswitch;
mod serve;
mod stdio;
mod streams;
mod top;

use std::panic;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use isola_proto::{Event, Message};

use crate::out::Outbox;

/// How long to wait for the agent's port to show up in sysfs.
const PORT_WAIT: Duration = Duration::from_secs(10);

/// The channel's write half, kept where the panic hook can reach it.
static OUTBOX: OnceLock<Arc<Outbox>> = OnceLock::new();
/// Guest uptime when the agent started, in milliseconds (read once /proc is mounted).
pub static INIT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn main() {
    if std::process::id() != 1 {
        eprintln!("isola-agent: must run as PID 1 inside an isola guest VM (it mounts filesystems and reboots the machine)");
        std::process::exit(2);
    }
    panic::set_hook(Box::new(|info| {
        if std::process::id() != 1 {
            // A child forked by the runtime library: never touch the agent's channel or locks.
            // SAFETY: `_exit` ends this child at once; no state of it is used afterwards.
            unsafe { libc::_exit(70) }
        }
        let message = info.to_string();
        eprintln!("isola-agent: {message}");
        if let Some(outbox) = OUTBOX.get() {
            // Best effort: the channel may be held by the panicking thread itself.
            outbox.try_send(&Message::Event(Event::AgentPanic { message }));
        }
        log!("powering off after a panic");
        power::power_off();
    }));
    match run() {
        Ok(end) => log!("{end}; powering off"),
        Err(e) => log!("error: {}; powering off", chain(&*e)),
    }
    power::power_off();
}

/// Seconds since boot, from /proc/uptime (0 when unreadable).
fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Everything PID 1 does until it is time to end the VM. Returns why it ended.
fn run() -> Result<String, Box<dyn std::error::Error>> {
    reaper::block_sigchld()?;
    let switched = rootswitch::switch_root();
    let mount_errors = mounts::mount_early();
    INIT_MS.store(serve::uptime_ms(), std::sync::atomic::Ordering::Relaxed);
    console::ensure_stdio();
    // Containers pivot_root unless the guest root is still the initramfs (see rootswitch).
    let no_pivot = match switched {
        Ok(()) => false,
        Err(e) => {
            log!(
                "warning: {}; containers will use MS_MOVE + chroot",
                chain(&e)
            );
            true
        }
    };
    for e in &mount_errors {
        log!("warning: {}", chain(e));
    }
    // Containers with `--network host` share the guest's namespace: its loopback must be up.
    if let Err(e) = isola_runtime::namespaces::loopback_up() {
        log!("warning: {}", chain(&e));
    }
    let port = port::open_port(isola_proto::AGENT_PORT_NAME, PORT_WAIT)?;
    let outbox = Arc::new(Outbox::new(port.try_clone()?));
    let _ = OUTBOX.set(Arc::clone(&outbox));
    let power = power::PowerTimer::start(|| {
        log!(
            "no Shutdown within {:?} after the last container exited; powering off",
            power::AFTER_LAST_EXIT
        );
        power::power_off();
    })?;
    let agent = containers::Agent::new(
        containers::RUNTIME_ROOT,
        Arc::clone(&outbox),
        power,
        no_pivot,
    )?;
    let reaping = Arc::clone(&agent);
    reaper::spawn(move |pid, status| reaping.on_reaped(pid, status))?;
    log!("ready {:.0} ms after boot", uptime() * 1000.0);
    let end = serve::serve(port, &outbox, &agent)?;
    Ok(end.to_string())
}

/// An error and its sources on one line, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.ends_with(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}
