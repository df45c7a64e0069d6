//! `isola exec`: a new process in a running container, from the container's own process settings
//! (its config.json) with the command, environment, user, working directory and terminal asked for.
//! The CLI is the parent: it waits for the process (as a child subreaper) and returns its exit code.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use isola_runtime::oci::Process;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::isolation::Console;

/// What `isola exec` asks for.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// Command and arguments.
    pub cmd: Vec<String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`: the process reads the CLI's stdin (otherwise /dev/null).
    pub interactive: bool,
    /// `-d`: return at once.
    pub detach: bool,
    /// `-e KEY=VALUE` (a bare KEY takes the CLI's value).
    pub env: Vec<String>,
    /// `-u USER[:GROUP]`.
    pub user: Option<String>,
    /// `-w DIR`.
    pub workdir: Option<String>,
}

impl Engine {
    /// Runs the command in the container; returns its exit code (0 with `detach`). Docker's codes:
    /// 126 cannot invoke, 127 not found, 128+N killed by signal N.
    pub fn exec(&self, key: &str, req: &ExecRequest) -> Result<i32> {
        let r = self.running(key)?;
        if req.cmd.is_empty() {
            return Err(Error::StartFailed {
                message: "exec needs a command".into(),
                code: 125,
            });
        }
        let spec = self.bundle_spec(&r)?;
        let mut p: Process = spec.process().clone().unwrap_or_default();
        p.set_args(Some(req.cmd.clone()));
        p.set_terminal(Some(req.tty));
        p.set_console_size(None);
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &req.env {
            let (key, value) = match kv.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => match std::env::var(kv) {
                    Ok(v) => (kv.clone(), v),
                    Err(_) => continue,
                },
            };
            env.retain(|e| e.split('=').next() != Some(key.as_str()));
            env.push(format!("{key}={value}"));
        }
        p.set_env(Some(env));
        if let Some(w) = &req.workdir {
            if !w.starts_with('/') {
                return Err(Error::StartFailed {
                    message: format!("-w {w:?}: the working directory must be absolute"),
                    code: 125,
                });
            }
            p.set_cwd(PathBuf::from(w));
        }
        if let Some(u) = &req.user {
            let resolved = crate::spec::user::resolve(&self.rootfs(&r), "-u", u)?;
            let mut user = p.user().clone();
            user.set_uid(resolved.uid);
            user.set_gid(resolved.gid);
            user.set_additional_gids(Some(resolved.additional_gids));
            p.set_user(user);
        }
        if r.host_config.isolation == crate::config::Isolation::Vm {
            return crate::vm::exec::run(self.roots(), &r.id, &p, req.interactive, req.detach);
        }
        let mode = self.mode(&r);
        if !req.detach {
            nix::sys::prctl::set_child_subreaper(true)
                .map_err(|e| Error::io("become subreaper", "", e.into()))?;
        }
        let pid = if req.tty {
            let dir = self.roots().run_dir(&r.id);
            let path = dir.join(format!("exec-{}.sock", std::process::id()));
            let listener =
                crate::paths::bind_unix(&path).map_err(|e| Error::io("listen on", &path, e))?;
            let console = Console {
                socket: Some(path.clone()),
            };
            let pid = mode.exec(&r.id, &p, &console);
            let master = pid.as_ref().ok().map(|_| {
                listener
                    .accept()
                    .and_then(|(c, _)| crate::monitor::io::recv_fd(c.as_fd()))
                    .map_err(|e| Error::io("receive terminal from", &path, e))
            });
            let _ = std::fs::remove_file(&path);
            let pid = pid?;
            if let Some(master) = master {
                let master = master?;
                if req.detach {
                    return Ok(0);
                }
                return proxy_terminal(master, pid);
            }
            pid
        } else if req.detach {
            // Nothing of the CLI's: a detached process must not hold its pipes open.
            with_null_stdio(&[0, 1, 2], || mode.exec(&r.id, &p, &Console::default()))?
        } else if req.interactive {
            mode.exec(&r.id, &p, &Console::default())?
        } else {
            with_null_stdio(&[0], || mode.exec(&r.id, &p, &Console::default()))?
        };
        if req.detach {
            return Ok(0);
        }
        Ok(wait_code(pid))
    }
}

/// Waits for `pid` (a child, or a grandchild of a subreaper) and returns Docker's exit code.
fn wait_code(pid: i32) -> i32 {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return 125,
        }
    }
}

/// Runs `f` with /dev/null as this process's standard streams `fds` (0: stdin, 1: stdout,
/// 2: stderr), so that what it starts does not use the CLI's; restores them afterwards.
fn with_null_stdio<T>(fds: &[i32], f: impl FnOnce() -> Result<T>) -> Result<T> {
    use std::os::fd::FromRawFd;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| Error::io("open", "/dev/null", e))?;
    let mut saved = Vec::with_capacity(fds.len());
    for &fd in fds {
        // SAFETY: the standard streams are open in the CLI; each is saved and restored around `f`.
        let copy = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .map_err(|e| Error::io("save", "standard streams", e))?;
        saved.push((fd, copy));
    }
    let set = |target: i32, from: &OwnedFd| {
        // SAFETY: dup2 onto a standard stream number; the wrapper is forgotten so it stays open.
        let mut std = unsafe { OwnedFd::from_raw_fd(target) };
        let r = rustix::io::dup2(from, &mut std);
        std::mem::forget(std);
        r
    };
    for &fd in fds {
        set(fd, &null).map_err(|e| Error::io("redirect", "standard streams", e.into()))?;
    }
    let out = f();
    for (fd, copy) in &saved {
        let _ = set(*fd, copy);
    }
    out
}

/// Copies between the CLI's terminal (in raw mode) and the exec'd process's terminal until the
/// process ends; returns its exit code.
fn proxy_terminal(master: OwnedFd, pid: i32) -> Result<i32> {
    let raw = RawTerminal::enter();
    if let Ok(ws) = rustix::termios::tcgetwinsize(std::io::stdout()) {
        let _ = rustix::termios::tcsetwinsize(&master, ws);
    }
    // The window size follows the CLI's terminal (SIGWINCH).
    let resized = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if signal_hook::flag::register(signal_hook::consts::SIGWINCH, resized.clone()).is_ok() {
        let sizer = master
            .try_clone()
            .map_err(|e| Error::io("duplicate", "terminal", e))?;
        std::thread::spawn(move || loop {
            if resized.swap(false, std::sync::atomic::Ordering::Relaxed) {
                if let Ok(ws) = rustix::termios::tcgetwinsize(std::io::stdout()) {
                    if rustix::termios::tcsetwinsize(&sizer, ws).is_err() {
                        return;
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        });
    }
    let input = master
        .try_clone()
        .map_err(|e| Error::io("duplicate", "terminal", e))?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match rustix::io::read(std::io::stdin(), &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if crate::monitor::io::write_all(&input, &buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut buf = [0u8; 8192];
    loop {
        match rustix::io::read(&master, &mut buf) {
            Ok(0) | Err(rustix::io::Errno::IO) => break,
            Ok(n) => {
                let _ = crate::monitor::io::write_all(std::io::stdout(), &buf[..n]);
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
    }
    drop(raw);
    Ok(wait_code(pid))
}

pub(crate) struct RawTerminal(Option<rustix::termios::Termios>);

impl RawTerminal {
    pub(crate) fn enter() -> Self {
        let stdin = std::io::stdin();
        let Ok(saved) = rustix::termios::tcgetattr(&stdin) else {
            return Self(None);
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
        Self(Some(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}
