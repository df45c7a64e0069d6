//! Small wrappers around the system calls the setup processes need that rustix and nix do not cover
//! in the shape wanted here. Each `unsafe` block is a single call with its reason.

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::unistd::{fork, ForkResult};

use crate::error::{Error, Result};

/// `prctl(PR_SET_DUMPABLE)`: a non-dumpable process's memory, `/proc/PID/exe` and fds cannot be
/// opened by other (unprivileged) processes, including those of the container it is entering.
pub fn set_dumpable(on: bool) -> Result<()> {
    let v = if on {
        rustix::process::DumpableBehavior::Dumpable
    } else {
        rustix::process::DumpableBehavior::NotDumpable
    };
    rustix::process::set_dumpable_behavior(v).map_err(|e| Error::sys("prctl(PR_SET_DUMPABLE)", e))
}

/// This process's PID as the parent's PID namespace sees it (the setup process has not left it).
pub fn getpid() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}

/// In a new user namespace: become root (UID and GID 0) of it.
pub fn become_root() -> Result<()> {
    let root_g = nix::unistd::Gid::from_raw(0);
    let root_u = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresgid(root_g, root_g, root_g)
        .map_err(|e| Error::sys("setresgid(0) in the user namespace", e))?;
    nix::unistd::setresuid(root_u, root_u, root_u)
        .map_err(|e| Error::sys("setresuid(0) in the user namespace", e))
}

/// Forks; the child runs `f`, which is meant to exec or exit (if it returns, the child exits with
/// status 1); the parent gets the child's PID.
pub fn fork_child(f: impl FnOnce()) -> Result<i32> {
    // SAFETY: the setup processes are single-threaded, so the child may run any code after fork.
    match unsafe { fork() }.map_err(|e| Error::sys("fork", e))? {
        ForkResult::Child => {
            f();
            exit(1)
        }
        ForkResult::Parent { child } => Ok(child.as_raw()),
    }
}

/// Ends the process at once, without running destructors or atexit handlers of the parent's state.
pub fn exit(code: i32) -> ! {
    // SAFETY: `_exit` ends the process immediately; nothing of this process's state is used after it.
    unsafe { libc::_exit(code) }
}

/// Brings the loopback interface of a new network namespace up (`SIOCSIFFLAGS` with `IFF_UP`).
pub fn loopback_up() -> Result<()> {
    use std::os::fd::AsRawFd;
    let sock = rustix::net::socket_with(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::sys("socket for loopback setup", e))?;
    // SAFETY: `ifreq` is a plain C struct for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags into `req`, a valid ifreq naming "lo", on a valid socket.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(Error::sys(
            "read flags of lo",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: the union member `ifru_flags` is the one SIOCGIFFLAGS filled in.
    unsafe {
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads `req`, a valid ifreq naming "lo" with its flags, on a valid socket.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(Error::sys("bring lo up", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// `chdir(cwd)`, then checks that the kernel sees the new working directory inside the current root
/// (`getcwd` fails for a directory outside it), so a working directory can never point into the host.
pub fn chdir_inside(cwd: &Path) -> Result<()> {
    rustix::process::chdir(cwd).map_err(|e| Error::io("change directory to", cwd, e))?;
    match rustix::process::getcwd(Vec::new()) {
        Ok(p) if p.to_bytes().starts_with(b"/") => Ok(()),
        _ => Err(Error::io(
            "working directory",
            cwd,
            std::io::Error::other("is outside the container root"),
        )),
    }
}

/// Restores every signal's default action and unblocks all signals, so the container program starts
/// with a clean signal state (ignored signals would otherwise stay ignored across exec).
pub fn reset_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL has no handler code to be unsafe about.
        let _ = unsafe { sigaction(sig, &dfl) };
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// The file descriptors 3 .. 3+n passed on to the container process.
pub fn preserved(n: u32) -> Vec<i32> {
    (3..3 + n as i32).collect()
}

/// Checks, in the parent before `fork`, that each of `fds` (see `CreateOptions::stdio`) is an open
/// descriptor, so that a bad one is an error naming it rather than a failure inside the child.
pub fn check_stdio(fds: [RawFd; 3]) -> Result<()> {
    for (name, fd) in ["stdin", "stdout", "stderr"].into_iter().zip(fds) {
        let ok = fd >= 0 && {
            // SAFETY: the descriptor is only borrowed for one fcntl(F_GETFD), which reads its flags.
            let b = unsafe { BorrowedFd::borrow_raw(fd) };
            rustix::io::fcntl_getfd(b).is_ok()
        };
        if !ok {
            return Err(Error::sys(
                format!("{name} descriptor {fd}"),
                std::io::Error::from_raw_os_error(libc::EBADF),
            ));
        }
    }
    Ok(())
}

/// In a child after `fork`: makes `fds` its stdin, stdout and stderr. Each is first duplicated
/// above 2 (close-on-exec), so a source that is itself 0, 1 or 2 survives until it is used, then
/// `dup2`'ed onto its number, which leaves the standard streams inheritable.
pub fn install_stdio(fds: [RawFd; 3]) -> Result<()> {
    let mut high = Vec::with_capacity(3);
    for fd in fds {
        // SAFETY: `fd` was checked open by `check_stdio` before fork and the child inherited it;
        // it is only borrowed for the duplication.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        let dup = rustix::io::fcntl_dupfd_cloexec(b, 3)
            .map_err(|e| Error::sys(format!("duplicate stdio descriptor {fd}"), e))?;
        high.push(dup);
    }
    for (target, src) in high.iter().enumerate() {
        // SAFETY: 0, 1 and 2 are the standard streams of this (single-threaded) child; replacing
        // them is the point. The temporary OwnedFd is forgotten, so nothing closes them here.
        let mut std = unsafe { OwnedFd::from_raw_fd(target as RawFd) };
        let r = rustix::io::dup2(src, &mut std);
        std::mem::forget(std);
        r.map_err(|e| Error::sys(format!("dup2 onto descriptor {target}"), e))?;
    }
    Ok(())
}
