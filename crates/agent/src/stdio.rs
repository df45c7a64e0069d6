//! A process's stdio, built from the host's [`StdioStreams`]: pipes (or one terminal) whose
//! process ends go to the runtime library (`CreateOptions::stdio` / `ExecOptions::stdio`) and
//! whose agent ends are connected to the stream threads of [`crate::streams`].
//!
//! Without a terminal: a pipe per stream given, `/dev/null` for each one not given. With a
//! terminal: the runtime makes the pseudo-terminal inside the container and sends its master
//! over a console socket the agent binds under [`CONSOLE_DIR`]; the process's 0, 1 and 2 are
//! `/dev/null` until the terminal replaces them. The terminal's output goes to the `stdout`
//! stream, host input on `stdin` is written to the master, and a `stderr` stream, which a
//! terminal never uses, is closed at once.

use std::fs::{self, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use isola_proto::{Message, StdioStreams};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

use crate::error::AgentError;
use crate::out::Outbox;
use crate::streams::{Output, Streams};

/// Where the agent binds the console sockets that receive terminals (mode 0700).
pub const CONSOLE_DIR: &str = "/run/isola/console";

/// How long the agent waits for the terminal after the runtime reports the process created.
const CONSOLE_WAIT: Duration = Duration::from_secs(10);

/// Checks that the stream ids of `s` are usable: not 0, distinct, not in use by another process.
/// `field` names the request field in errors (`stdio`).
///
/// # Errors
/// [`AgentError::Invalid`] naming the field and the id.
pub fn check_ids(s: &StdioStreams, streams: &Streams, field: &str) -> Result<(), AgentError> {
    let ids = [
        ("stdin", s.stdin),
        ("stdout", s.stdout),
        ("stderr", s.stderr),
    ];
    for (i, (name, id)) in ids.iter().enumerate() {
        let Some(id) = *id else { continue };
        let bad = |reason: String| AgentError::Invalid(format!("{field}.{name}: {reason}"));
        if id == 0 {
            return Err(bad("stream id 0 is reserved".into()));
        }
        if let Some((other, _)) = ids[..i].iter().find(|(_, o)| *o == Some(id)) {
            return Err(bad(format!("stream {id} is also {field}.{other}")));
        }
        if streams.in_use(id) {
            return Err(bad(format!("stream {id} is in use by another process")));
        }
    }
    Ok(())
}

/// The stdio of one process being created, before and after the runtime call.
#[derive(Debug)]
pub struct Plumbing {
    streams: StdioStreams,
    /// The process's 0, 1, 2 (kept open until the runtime call returns).
    child: [OwnedFd; 3],
    /// Agent ends of the pipes: stdin's write end, stdout's and stderr's read ends.
    parent: [Option<OwnedFd>; 3],
    console: Option<Console>,
}

#[derive(Debug)]
struct Console {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// What the agent keeps of a process's stdio once it runs.
#[derive(Debug, Default)]
pub struct ProcessIo {
    /// Output streams, each closed before the process's exit is reported.
    pub outputs: Vec<Arc<Output>>,
    /// The stdin stream, ended when the process exits.
    pub stdin: Option<u32>,
}

fn dev_null(write: bool) -> Result<OwnedFd, AgentError> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|source| AgentError::io("open", "/dev/null", source))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), AgentError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| AgentError::io("create", "pipe", e.into()))
}

impl Plumbing {
    /// Makes the pipes (or the console socket) for `streams`.
    ///
    /// # Errors
    /// [`AgentError::Io`] when a pipe, `/dev/null` or the console socket cannot be made.
    pub fn prepare(streams: &StdioStreams) -> Result<Plumbing, AgentError> {
        let mut parent: [Option<OwnedFd>; 3] = [None, None, None];
        if streams.terminal {
            let console = Console::bind()?;
            return Ok(Plumbing {
                streams: *streams,
                child: [dev_null(false)?, dev_null(true)?, dev_null(true)?],
                parent,
                console: Some(console),
            });
        }
        let stdin = match streams.stdin {
            Some(_) => {
                let (r, w) = pipe()?;
                parent[0] = Some(w);
                r
            }
            None => dev_null(false)?,
        };
        let mut out = |slot: usize, id: Option<u32>| -> Result<OwnedFd, AgentError> {
            match id {
                Some(_) => {
                    let (r, w) = pipe()?;
                    parent[slot] = Some(r);
                    Ok(w)
                }
                None => dev_null(true),
            }
        };
        let stdout = out(1, streams.stdout)?;
        let stderr = out(2, streams.stderr)?;
        Ok(Plumbing {
            streams: *streams,
            child: [stdin, stdout, stderr],
            parent,
            console: None,
        })
    }

    /// The descriptors for the runtime's `stdio` option.
    pub fn child_fds(&self) -> [RawFd; 3] {
        [
            self.child[0].as_raw_fd(),
            self.child[1].as_raw_fd(),
            self.child[2].as_raw_fd(),
        ]
    }

    /// The console socket for the runtime's `console_socket` option (terminal only).
    pub fn console_socket(&self) -> Option<PathBuf> {
        self.console.as_ref().map(|c| c.path.clone())
    }

    /// After the runtime created the process: closes the process's ends, receives the
    /// terminal (if any), and starts the stream threads.
    ///
    /// # Errors
    /// [`AgentError::Io`] when the terminal does not arrive or a thread cannot start; the
    /// caller then kills the process.
    pub fn connect(
        self,
        streams: &Arc<Streams>,
        outbox: &Arc<Outbox>,
    ) -> Result<ProcessIo, AgentError> {
        let Plumbing {
            streams: ids,
            child,
            parent,
            console,
        } = self;
        drop(child);
        let mut io = ProcessIo::default();
        let thread_err = |e: std::io::Error| AgentError::io("start thread for", "stream", e);
        if let Some(console) = console {
            let master = Arc::new(console.receive()?);
            let dup = |m: &OwnedFd| {
                rustix::io::fcntl_dupfd_cloexec(m, 3)
                    .map_err(|e| AgentError::io("duplicate", "terminal master", e.into()))
            };
            let reader = dup(&master)?;
            if let Some(id) = ids.stdin {
                streams.start_input(id, dup(&master)?).map_err(thread_err)?;
                io.stdin = Some(id);
            }
            let out = streams
                .start_output(ids.stdout, reader, Some(Arc::clone(&master)), outbox)
                .map_err(thread_err)?;
            io.outputs.push(out);
            if let Some(stream) = ids.stderr {
                outbox.send(&Message::StreamClose { stream });
            }
            return Ok(io);
        }
        let [stdin_w, stdout_r, stderr_r] = parent;
        if let (Some(id), Some(fd)) = (ids.stdin, stdin_w) {
            streams.start_input(id, fd).map_err(thread_err)?;
            io.stdin = Some(id);
        }
        for (id, fd) in [(ids.stdout, stdout_r), (ids.stderr, stderr_r)] {
            if let (Some(id), Some(fd)) = (id, fd) {
                let out = streams
                    .start_output(Some(id), fd, None, outbox)
                    .map_err(thread_err)?;
                io.outputs.push(out);
            }
        }
        Ok(io)
    }
}

impl Console {
    fn bind() -> Result<Console, AgentError> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(CONSOLE_DIR)
            .map_err(|e| AgentError::io("create directory", CONSOLE_DIR, e))?;
        let path = PathBuf::from(CONSOLE_DIR)
            .join(format!("{}.sock", NEXT.fetch_add(1, Ordering::Relaxed)));
        let _ = fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .map_err(|e| AgentError::io("bind", path.display().to_string(), e))?;
        Ok(Console { listener, path })
    }

    /// Accepts the runtime's connection and receives the terminal's master over it.
    fn receive(&self) -> Result<OwnedFd, AgentError> {
        let what = self.path.display().to_string();
        let mut fds = [PollFd::new(&self.listener, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: CONSOLE_WAIT.as_secs() as i64,
            tv_nsec: 0,
        };
        let ready = poll(&mut fds, Some(&timeout))
            .map_err(|e| AgentError::io("wait for the terminal on", what.clone(), e.into()))?;
        if ready == 0 {
            return Err(AgentError::io(
                "wait for the terminal on",
                what,
                std::io::Error::from(std::io::ErrorKind::TimedOut),
            ));
        }
        let (conn, _) = self
            .listener
            .accept()
            .map_err(|e| AgentError::io("accept on", what.clone(), e))?;
        conn.set_read_timeout(Some(CONSOLE_WAIT))
            .map_err(|e| AgentError::io("set a timeout on", what.clone(), e))?;
        let (master, _name) = isola_runtime::tty::recv_fd(conn.as_fd()).map_err(|e| {
            AgentError::io(
                "receive the terminal on",
                what,
                std::io::Error::other(crate::chain(&e)),
            )
        })?;
        Ok(master)
    }
}
