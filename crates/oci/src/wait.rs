//! Waiting for a container or exec process in the foreground, as `runc run` and `runc exec` do:
//! become a child subreaper (the process is a grandchild), forward the usual signals to it, reap every
//! child, and return its exit status in the shell's convention (128+N for signal N).

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Signals forwarded to the foreground process.
const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Signals this process handles through a signalfd; blocked before the container is forked (the
/// container's setup unblocks them again before it execs).
pub struct Waiter {
    fd: SignalFd,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waiter")
    }
}

impl Waiter {
    /// Becomes a subreaper and blocks SIGCHLD and the forwarded signals.
    pub fn new() -> anyhow::Result<Self> {
        nix::sys::prctl::set_child_subreaper(true)?;
        let mut set = SigSet::empty();
        set.add(Signal::SIGCHLD);
        for s in FORWARDED {
            set.add(s);
        }
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)?;
        Ok(Self { fd })
    }

    /// Waits for `pid` to end, forwarding signals; returns its exit code (128+N if killed by signal N).
    pub fn wait(&mut self, pid: i32) -> anyhow::Result<u8> {
        let target = Pid::from_raw(pid);
        loop {
            if let Some(code) = reap(target) {
                return Ok(code);
            }
            let Some(info) = self.fd.read_signal()? else {
                continue;
            };
            let sig = Signal::try_from(info.ssi_signo as i32)?;
            if sig != Signal::SIGCHLD {
                let _ = kill(target, sig);
            }
        }
    }
}

/// Reaps every exited child; returns the exit code of `target` if it was among them.
fn reap(target: Pid) -> Option<u8> {
    let mut found = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == target => found = Some(code as u8),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == target => found = Some(128 + sig as u8),
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(_) => {}
        }
    }
}
