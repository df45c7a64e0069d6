//! Zombie reaping: the agent is PID 1, so every orphan in the guest becomes its child, and so do
//! the container's init and exec'd processes once the runtime's intermediate processes exit.
//!
//! SIGCHLD is blocked in every thread (threads inherit the mask from [`block_sigchld`], called
//! before any thread starts); one reaper thread waits for it with sigwait(2) and collects every
//! exited child with waitpid(-1, WNOHANG).
//!
//! The runtime library forks its own intermediate processes and waits for them by PID, and the
//! agent must learn a new process's PID before that process can be reaped. Both hold on the
//! [`fork_lock`]: the reaper while it reaps, a create or exec from before the runtime forks until
//! the new PID is registered. A process that exits meanwhile stays a zombie until then.

use std::sync::{Mutex, MutexGuard};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

static FORK_LOCK: Mutex<()> = Mutex::new(());

/// Holds off the reaper (see the module docs) for as long as the guard lives.
pub fn fork_lock() -> MutexGuard<'static, ()> {
    match FORK_LOCK.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

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

/// Collects every child that has exited, calling `on_exit` for each with its PID and status.
pub fn reap_all(on_exit: &dyn Fn(i32, WaitStatus)) -> usize {
    let _g = fork_lock();
    let mut n = 0;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return n,
            Ok(st) => {
                n += 1;
                if let Some(pid) = st.pid() {
                    on_exit(pid.as_raw(), st);
                }
            }
        }
    }
}

/// Starts the reaper thread (call [`block_sigchld`] first). `on_exit` runs in it, with the
/// fork lock held: it must be quick and must not take the fork lock itself.
///
/// # Errors
/// When the thread cannot be spawned.
pub fn spawn(on_exit: impl Fn(i32, WaitStatus) + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || {
            let set = sigchld_set();
            loop {
                reap_all(&on_exit);
                if set.wait().is_err() {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        })
        .map(drop)
}
