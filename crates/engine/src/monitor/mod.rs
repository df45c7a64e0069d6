//! The per-container monitor: the isola binary re-executed (`isola __monitor ID`), detached in its own
//! session, like conmon. It mounts the container's root filesystem, writes the bundle, creates and
//! starts the container through its isolation mode, holds the container's stdio (pipes, or the
//! terminal's master), writes the log, serves attach clients on a Unix socket, reaps the container,
//! records its exit status and OOM state, and removes it for `--rm`. The CLI may exit at any time.

pub mod io;
pub mod proto;
mod serve;

use std::fs::File;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::db::{Db, Record};
use crate::error::{Error, Result};
use crate::isolation::{self, Console, IsolationMode};
use crate::paths::Roots;
use crate::state::{now, Status};

/// What the monitor tells the process that spawned it, as one JSON line on the readiness pipe.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ready {
    /// Whether the container was created (and, unless the monitor waits for a client, started).
    pub ok: bool,
    /// The error, one line, when not ok.
    pub error: String,
    /// Docker's exit status for the failure: 125, or 126/127 when the program cannot run.
    pub code: i32,
    /// Host PID standing for the container.
    pub pid: i32,
}

/// How the monitor was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The container ID.
    pub id: String,
    /// Wait for the first attach client before starting the program (foreground `run`, `start -a`),
    /// so no output is missed.
    pub wait_attach: bool,
    /// Inherited pipe to report readiness on.
    pub ready_fd: Option<RawFd>,
}

/// Where the container's output comes from and its input goes.
pub(crate) struct Stdio {
    /// Terminal master (tty) or stdout pipe.
    pub out: Option<OwnedFd>,
    /// stderr pipe (none with a tty).
    pub err: Option<OwnedFd>,
    /// Where stdin bytes go: the stdin pipe, or the terminal master (a copy).
    pub input: Option<OwnedFd>,
    /// Whether `out` is a terminal master.
    pub tty: bool,
}

fn report(fd: &mut Option<File>, ready: &Ready) {
    if let Some(f) = fd.take() {
        let mut line = serde_json::to_vec(ready).expect("ready serializes");
        line.push(b'\n');
        let _ = std::io::Write::write_all(&mut { f }, &line);
    }
}

/// Runs the monitor for one container; returns the monitor's exit status.
pub fn run(roots: &Roots, opts: &Options) -> i32 {
    // SAFETY: the fd was passed by the spawning CLI for exactly this purpose and is used only here.
    let mut ready = opts.ready_fd.map(|fd| unsafe { File::from_raw_fd(fd) });
    if let Some(f) = &ready {
        // Not to be inherited by anything the monitor starts.
        let _ = rustix::io::fcntl_setfd(f, rustix::io::FdFlags::CLOEXEC);
    }
    let db = match Db::open(&roots.root) {
        Ok(db) => db,
        Err(e) => {
            report(
                &mut ready,
                &Ready {
                    ok: false,
                    error: line(&e),
                    code: 125,
                    pid: 0,
                },
            );
            return 1;
        }
    };
    let record = match db.get(&opts.id) {
        Ok(Some(r)) => r,
        Ok(None) => {
            report(
                &mut ready,
                &Ready {
                    ok: false,
                    error: format!("no such container: {}", opts.id),
                    code: 125,
                    pid: 0,
                },
            );
            return 1;
        }
        Err(e) => {
            report(
                &mut ready,
                &Ready {
                    ok: false,
                    error: line(&e),
                    code: 125,
                    pid: 0,
                },
            );
            return 1;
        }
    };
    let mode = isolation::mode(record.host_config.isolation, roots);
    let mut m = Monitor {
        roots,
        db: &db,
        record,
        mode,
        ready,
    };
    let code = match m.run(opts.wait_attach) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{}", line(&e));
            1
        }
    };
    code
}

/// An error and its causes on one line.
pub fn line(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        let m = e.to_string();
        if !s.ends_with(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = e.source();
    }
    s
}

struct Monitor<'a> {
    roots: &'a Roots,
    db: &'a Db,
    record: Record,
    mode: Box<dyn IsolationMode>,
    ready: Option<File>,
}

impl Monitor<'_> {
    fn id(&self) -> String {
        self.record.id.clone()
    }

    fn run(&mut self, wait_attach: bool) -> Result<()> {
        let id = self.id();
        // The container's processes are our grandchildren: become their reaper.
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| Error::io("become subreaper", "", e.into()))?;
        // SAFETY: ignoring SIGPIPE only affects this process (the container's setup restores every
        // signal's default before it execs); writes to departed clients then fail with EPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        let run_dir = self.roots.run_dir(&id);
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| Error::io("create directory", &run_dir, e))?;
        let sigfd = serve::child_signals().map_err(|e| Error::io("block", "SIGCHLD", e))?;
        let (stdio, pid) = match self.create() {
            Ok(v) => v,
            Err(e) => {
                let code = match &e {
                    Error::StartFailed { code, .. } => *code,
                    _ => 125,
                };
                self.fail_before_start(&e, code);
                return Err(e);
            }
        };
        let socket_path = self.roots.socket(&id);
        let server = crate::paths::bind_unix(&socket_path)
            .map_err(|e| Error::io("listen on", &socket_path, e))
            .and_then(|listener| serve::Server::new(listener, stdio, self.roots.log(&id), sigfd));
        let mut server = match server {
            Ok(s) => s,
            Err(e) => {
                // The container exists but cannot be served: remove it rather than leave it waiting.
                self.fail_before_start(&e, 125);
                return Err(e);
            }
        };
        // Before any client: the first window size may come with the first client's hello.
        if let Some(hook) = self.mode.resize_hook(&id) {
            server.set_resize_hook(hook);
        }
        if wait_attach {
            report(
                &mut self.ready,
                &Ready {
                    ok: true,
                    error: String::new(),
                    code: 0,
                    pid,
                },
            );
            server.wait_first_client(Duration::from_secs(60));
        }
        if let Err(e) = self.mode.start(&id) {
            let code = match &e {
                Error::StartFailed { code, .. } => *code,
                _ => 125,
            };
            let msg = line(&e);
            // The process that failed to exec is our child's child: reap it.
            server.reap_all();
            self.after_exit(code, false, &msg);
            server.finish(&proto::Exit {
                code,
                error: msg.clone(),
            });
            report(
                &mut self.ready,
                &Ready {
                    ok: false,
                    error: msg,
                    code,
                    pid: 0,
                },
            );
            return Ok(());
        }
        let (mpid, mstart) = own_pid();
        let state = self.db.update_state(&id, |s| {
            s.status = Status::Running;
            s.pid = pid;
            s.exit_code = 0;
            s.oom_killed = false;
            s.error.clear();
            s.started_at = Some(now());
            s.finished_at = None;
            s.monitor_pid = mpid;
            s.monitor_start = mstart;
        })?;
        let _ = state;
        report(
            &mut self.ready,
            &Ready {
                ok: true,
                error: String::new(),
                code: 0,
                pid,
            },
        );
        server.started();
        let status = server.serve(pid);
        let out = self.mode.outcome(&id, status);
        // Everything is cleaned up and recorded before clients hear of the exit, so a command that
        // follows at once (rm, inspect, start) finds the container stopped.
        self.after_exit(out.code, out.oom, &out.error);
        server.finish(&proto::Exit {
            code: out.code,
            error: out.error,
        });
        Ok(())
    }

    /// Mounts the root filesystem, writes the bundle, sets up stdio and creates the container.
    fn create(&mut self) -> Result<(Stdio, i32)> {
        let id = self.id();
        let store = isola_image::Store::open(&self.roots.root)?;
        crate::rootfs::mount_rootfs(self.roots, &store, &id, &self.record.image_id)?;
        let image_id =
            isola_image::Digest::parse(&self.record.image_id).map_err(isola_image::Error::from)?;
        let image_config: oci_spec::image::ImageConfiguration = {
            let v = store.config_json(&image_id)?;
            serde_json::from_value(v).map_err(|e| Error::Corrupt {
                id: id.clone(),
                reason: format!("image config: {e}"),
            })?
        };
        // The store lock must not be held while the container runs.
        drop(store);
        let dir = self.roots.dir(&id);
        let hostname = crate::spec::hostname(&self.record.config, &id);
        let (hosts, hostname_file, resolv) =
            crate::spec::write_etc_files(&dir, &hostname, self.record.host_config.network_mode)?;
        let init = std::path::Path::new("/usr/bin/tini-static");
        let paths = crate::spec::BundlePaths {
            rootfs: self.roots.rootfs(&id),
            hosts,
            hostname: hostname_file,
            resolv_conf: resolv,
            init: init.exists().then(|| init.to_path_buf()),
        };
        let spec = crate::spec::build(
            &image_config,
            &self.record.config,
            &self.record.host_config,
            &id,
            &paths,
        )?;
        let config_path = dir.join("config.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&spec).expect("spec serializes"),
        )
        .map_err(|e| Error::io("write", &config_path, e))?;
        let tty = self.record.config.tty;
        let (stdio, console, console_listener) = if tty {
            let path = self.roots.run_dir(&id).join("console.sock");
            let l = crate::paths::bind_unix(&path).map_err(|e| Error::io("listen on", &path, e))?;
            (None, Console { socket: Some(path) }, Some(l))
        } else {
            (Some(self.pipes()?), Console::default(), None)
        };
        let pid = match stdio.as_ref() {
            Some((child_ends, _)) => {
                with_stdio(child_ends, || self.mode.create(&id, &dir, &console))?
            }
            None => self.mode.create(&id, &dir, &console)?,
        };
        let stdio = match (stdio, console_listener) {
            (Some((_, ours)), _) => ours,
            (None, Some(l)) => {
                let (conn, _) = l
                    .accept()
                    .map_err(|e| Error::io("accept on", "console socket", e))?;
                let master = io::recv_fd(conn.as_fd())
                    .map_err(|e| Error::io("receive terminal", "console socket", e))?;
                let input = master
                    .try_clone()
                    .map_err(|e| Error::io("duplicate", "terminal", e))?;
                if let Some(path) = &console.socket {
                    let _ = std::fs::remove_file(path);
                }
                Stdio {
                    out: Some(master),
                    err: None,
                    input: Some(input),
                    tty: true,
                }
            }
            (None, None) => unreachable!("a terminal always has a console listener"),
        };
        Ok((stdio, pid))
    }

    /// Pipes for a container without a terminal: (the container's ends as stdin, stdout, stderr; ours).
    fn pipes(&self) -> Result<([OwnedFd; 3], Stdio)> {
        let err = |e| Error::io("create pipe", "", e);
        let (out_r, out_w) = io::pipe().map_err(err)?;
        let (err_r, err_w) = io::pipe().map_err(err)?;
        let (in_r, in_w) = if self.record.config.open_stdin {
            let (r, w) = io::pipe().map_err(err)?;
            (r, Some(w))
        } else {
            let null = File::open("/dev/null").map_err(|e| Error::io("open", "/dev/null", e))?;
            (OwnedFd::from(null), None)
        };
        Ok((
            [in_r, out_w, err_w],
            Stdio {
                out: Some(out_r),
                err: Some(err_r),
                input: in_w,
                tty: false,
            },
        ))
    }

    fn fail_before_start(&mut self, e: &Error, code: i32) {
        let msg = line(e);
        let _ = self.mode.delete(&self.id());
        let _ = crate::rootfs::unmount_rootfs(self.roots, &self.id());
        let _ = self.db.update_state(&self.id(), |s| {
            s.status = if s.started_at.is_some() {
                Status::Exited
            } else {
                Status::Created
            };
            s.error = msg.clone();
            s.exit_code = code;
            s.pid = 0;
            s.monitor_pid = 0;
        });
        report(
            &mut self.ready,
            &Ready {
                ok: false,
                error: msg,
                code,
                pid: 0,
            },
        );
    }

    /// Records the end of the run, removes the isolation state and unmounts; removes the container
    /// entirely for `--rm`.
    fn after_exit(&mut self, code: i32, oom: bool, error: &str) {
        let id = self.id();
        if let Err(e) = self.mode.delete(&id) {
            tracing::warn!("removing isolation state: {}", line(&e));
        }
        if let Err(e) = crate::rootfs::unmount_rootfs(self.roots, &id) {
            tracing::warn!("{}", line(&e));
        }
        let _ = std::fs::remove_file(self.roots.socket(&id));
        let res = self.db.update_state(&id, |s| {
            s.status = Status::Exited;
            s.pid = 0;
            s.exit_code = code;
            s.oom_killed = oom;
            s.error = error.to_owned();
            s.finished_at = Some(now());
            s.monitor_pid = 0;
            s.monitor_start = 0;
        });
        if let Err(e) = res {
            tracing::error!("recording the exit: {}", line(&e));
        }
        if self.record.host_config.auto_remove {
            if let Err(e) =
                crate::rootfs::remove_files(self.roots, &id).and_then(|()| self.db.delete(&id))
            {
                tracing::error!("removing the container (--rm): {}", line(&e));
            }
        }
    }
}

/// Runs `f` with the container's ends of the pipes as this process's stdin, stdout and stderr (the
/// container process inherits them), then puts the monitor's own back.
fn with_stdio<T>(ends: &[OwnedFd; 3], f: impl FnOnce() -> Result<T>) -> Result<T> {
    let saved: Vec<OwnedFd> = (0..3)
        .map(|fd| {
            // SAFETY: 0, 1 and 2 are open in the monitor (the CLI gave it /dev/null).
            let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            b.try_clone_to_owned()
        })
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io("save", "standard streams", e))?;
    let set = |fds: &[&OwnedFd]| -> Result<()> {
        for (target, fd) in fds.iter().enumerate() {
            // SAFETY: dup2 onto the standard stream numbers; the OwnedFd wrappers are forgotten so
            // the streams stay open.
            let mut std = unsafe { OwnedFd::from_raw_fd(target as RawFd) };
            let r = rustix::io::dup2(fd, &mut std);
            std::mem::forget(std);
            r.map_err(|e| Error::io("set up", "standard streams", e.into()))?;
        }
        Ok(())
    };
    set(&[&ends[0], &ends[1], &ends[2]])?;
    let out = f();
    set(&[&saved[0], &saved[1], &saved[2]])?;
    out
}

fn own_pid() -> (i32, u64) {
    let pid = std::process::id() as i32;
    (pid, isola_runtime::state::pid_start_time(pid).unwrap_or(0))
}
