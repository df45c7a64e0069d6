//! Zombie reaping: the agent is PID 1, so every orphan in the guest becomes its child.
//!
//! SIGCHLD is blocked in every thread (threads inherit the mask from `block_sigchld`, called
//! before any thread starts); one reaper thread waits for it with sigwait(2) and collects every
//! exited child with waitpid(-1, WNOHANG).
//! Left for the engine integration: route the statuses of container processes to `Wait` / `Event::Exited`.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

/// Blocks SIGCHLD in the calling thread (and so in the threads it starts later).
///
/// # Errors
/// The errno of pthread_sigmask(2).
pub fn block_sigchld() -> nix::Result<()> {
    sigchld_set().thread_block()
}

fn sigchld_set() -> SigSet {
    let mut s = SigSet::empty();
    s.add(Signal::SIGCHLD);
    s
}

/// Collects every child that has exited; returns how many.
pub fn reap_all() -> usize {
    let mut n = 0;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return n,
            Ok(_) => n += 1,
        }
    }
}

/// Starts the reaper thread (call [`block_sigchld`] first).
///
/// # Errors
/// When the thread cannot be spawned.
pub fn spawn() -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(|| {
            let set = sigchld_set();
            loop {
                reap_all();
                if set.wait().is_err() {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        })
        .map(drop)
}
