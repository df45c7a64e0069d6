//! Ending the VM: at once ([`power_off`]), or after a delay once no container's init process is
//! left ([`PowerTimer`]): the protocol says the agent powers off 30 s after the container's init
//! exited if no `Shutdown` came by then, so a host that lost track of the VM does not leave it
//! running forever. With several containers (tests), the timer runs once the last init has
//! exited, and a new `CreateContainer` stops it.
//!
//! Power-off: with ACPI off the guest cannot power the machine off; the agent reboots it, and
//! QEMU runs with `-no-reboot` and the guest with `reboot=t` (triple fault), so QEMU exits.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long after the last init exited the agent powers off without a `Shutdown`.
pub const AFTER_LAST_EXIT: Duration = Duration::from_secs(30);

/// Ends the VM: kill every other process, sync, reboot (QEMU exits, see the module docs).
pub fn power_off() -> ! {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    // kill(-1) from PID 1 signals every process but itself.
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    nix::unistd::sync();
    let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    crate::log!("reboot failed: {e}");
    // Last resort: PID 1 exiting makes the kernel panic; with panic=-1 it reboots at once.
    std::process::exit(1);
}

/// A one-shot deadline after which the VM powers off, unless disarmed first.
#[derive(Debug, Default)]
pub struct PowerTimer {
    deadline: Mutex<Option<Instant>>,
    cv: Condvar,
}

impl PowerTimer {
    /// A timer and its thread, which calls `fire` (normally [`power_off`]) at the deadline.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(fire: impl Fn() + Send + 'static) -> std::io::Result<Arc<PowerTimer>> {
        let t = Arc::new(PowerTimer::default());
        let t2 = Arc::clone(&t);
        std::thread::Builder::new()
            .name("power-timer".into())
            .spawn(move || t2.run(&fire))?;
        Ok(t)
    }

    /// Powers off `after` from now (replacing any earlier deadline).
    pub fn arm(&self, after: Duration) {
        *self.lock() = Some(Instant::now() + after);
        self.cv.notify_all();
    }

    /// Cancels the deadline.
    pub fn disarm(&self) {
        *self.lock() = None;
        self.cv.notify_all();
    }

    /// Whether a deadline is set.
    #[cfg(test)]
    pub fn armed(&self) -> bool {
        self.lock().is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        match self.deadline.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn run(&self, fire: &dyn Fn()) {
        let mut d = self.lock();
        loop {
            match *d {
                None => {
                    d = match self.cv.wait(d) {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    }
                }
                Some(at) if Instant::now() >= at => {
                    *d = None;
                    drop(d);
                    fire();
                    d = self.lock();
                }
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    d = match self.cv.wait_timeout(d, left) {
                        Ok((g, _)) => g,
                        Err(p) => p.into_inner().0,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn fires_once_unless_disarmed() {
        let n = Arc::new(AtomicU32::new(0));
        let n2 = Arc::clone(&n);
        let t = PowerTimer::start(move || {
            n2.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        t.arm(Duration::from_millis(300));
        t.disarm();
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(n.load(Ordering::SeqCst), 0);
        t.arm(Duration::from_millis(50));
        assert!(t.armed());
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert!(!t.armed());
    }
}
