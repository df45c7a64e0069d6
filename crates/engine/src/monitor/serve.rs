//! The monitor's event loop: container output to the log and to attached clients, client input to
//! the container, and the container's exit.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::io::{read_some, set_nonblocking, set_winsize};
use super::proto::{parse_frame, write_frame, Exit, Hello, Kind};
use super::Stdio;
use crate::error::{Error, Result};
use crate::logs;

/// Longest a client may take to accept a frame before it is dropped.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Unwritten container input above which clients are no longer read, in bytes.
const MAX_PENDING: usize = 4 << 20;
/// How long output is still read after the container's process ended.
const DRAIN: Duration = Duration::from_secs(2);

struct Client {
    stream: UnixStream,
    hello: Option<Hello>,
    inbuf: Vec<u8>,
}

/// The monitor's state while the container runs.
pub(crate) struct Server {
    listener: UnixListener,
    stdio: Stdio,
    log: logs::Writer,
    clients: Vec<Client>,
    sigfd: SignalFd,
    status: Option<WaitStatus>,
    pid: i32,
    /// Input for the container not yet written (its stdin is non-blocking, so a container that does
    /// not read, or has not started yet, never blocks the monitor).
    pending: Vec<u8>,
    /// Close the container's stdin once `pending` is written.
    close_input: bool,
    /// Told of every window-size change (rows, columns), besides the terminal's own resize.
    resize_hook: Option<Box<dyn Fn(u16, u16) + Send>>,
}

/// Blocks SIGCHLD (before the container exists, so its exit cannot be missed) and returns a
/// signalfd for it.
pub(crate) fn child_signals() -> std::io::Result<SignalFd> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    Ok(SignalFd::with_flags(
        &set,
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )?)
}

impl Server {
    pub(crate) fn new(
        listener: UnixListener,
        stdio: Stdio,
        log: PathBuf,
        sigfd: SignalFd,
    ) -> Result<Self> {
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("configure", "monitor socket", e))?;
        for fd in [&stdio.out, &stdio.err, &stdio.input].into_iter().flatten() {
            set_nonblocking(fd.as_fd())
                .map_err(|e| Error::io("configure", "container output", e))?;
        }
        Ok(Self {
            listener,
            stdio,
            log: logs::Writer::open(&log)?,
            clients: Vec::new(),
            sigfd,
            status: None,
            pid: 0,
            pending: Vec::new(),
            close_input: false,
            resize_hook: None,
        })
    }

    /// Waits (at most `timeout`) for a first client and its hello, so that it sees all output.
    pub(crate) fn wait_first_client(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.clients.iter().all(|c| c.hello.is_none()) && Instant::now() < deadline {
            self.accept();
            for i in 0..self.clients.len() {
                self.read_client(i);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Calls `hook` with every window-size change a client asks for.
    pub(crate) fn set_resize_hook(&mut self, hook: Box<dyn Fn(u16, u16) + Send>) {
        self.resize_hook = Some(hook);
    }

    /// Tells the clients the program started.
    pub(crate) fn started(&mut self) {
        self.broadcast(Kind::Started, &[], |_| true);
    }

    /// Reaps any exited children (after a failed start).
    pub(crate) fn reap_all(&mut self) {
        while let Ok(s) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            if matches!(s, WaitStatus::StillAlive) {
                break;
            }
        }
    }

    /// Serves until process `pid` has ended and its output is drained; returns its wait status.
    pub(crate) fn serve(&mut self, pid: i32) -> WaitStatus {
        self.pid = pid;
        self.reap();
        let mut drain_until: Option<Instant> = None;
        loop {
            if self.status.is_some() && drain_until.is_none() {
                drain_until = Some(Instant::now() + DRAIN);
            }
            let outputs_open = self.stdio.out.is_some() || self.stdio.err.is_some();
            if let Some(t) = drain_until {
                if !outputs_open || Instant::now() >= t {
                    break;
                }
            }
            self.poll_once(Duration::from_millis(200));
        }
        self.log.flush();
        self.status
            .unwrap_or(WaitStatus::Exited(Pid::from_raw(pid), 0))
    }

    fn poll_once(&mut self, timeout: Duration) {
        let ts = Timespec::try_from(timeout).unwrap_or_default();
        let mut writable = false;
        let (ready_out, ready_err, ready_listen, ready_sig, ready_clients) = {
            let mut fds: Vec<PollFd<'_>> = Vec::new();
            let out_i = self.stdio.out.as_ref().map(|fd| {
                fds.push(PollFd::new(fd, PollFlags::IN));
                fds.len() - 1
            });
            let err_i = self.stdio.err.as_ref().map(|fd| {
                fds.push(PollFd::new(fd, PollFlags::IN));
                fds.len() - 1
            });
            fds.push(PollFd::new(&self.listener, PollFlags::IN));
            let listen_i = fds.len() - 1;
            fds.push(PollFd::new(&self.sigfd, PollFlags::IN));
            let sig_i = fds.len() - 1;
            let input_i = match (&self.stdio.input, self.pending.is_empty()) {
                (Some(fd), false) => {
                    fds.push(PollFd::new(fd, PollFlags::OUT));
                    Some(fds.len() - 1)
                }
                _ => None,
            };
            // With much input still unwritten, clients are not read: their sockets fill up and
            // the attached CLI waits (backpressure instead of unbounded memory).
            let first_client = fds.len();
            let read_clients = self.pending.len() < MAX_PENDING;
            for c in &self.clients {
                let flags = if read_clients {
                    PollFlags::IN
                } else {
                    PollFlags::empty()
                };
                fds.push(PollFd::new(&c.stream, flags));
            }
            if poll(&mut fds, Some(&ts)).is_err() {
                return;
            }
            let hit = |i: usize| !fds[i].revents().is_empty();
            if input_i.is_some_and(hit) {
                writable = true;
            }
            (
                out_i.is_some_and(hit),
                err_i.is_some_and(hit),
                hit(listen_i),
                hit(sig_i),
                (0..self.clients.len())
                    .filter(|c| hit(first_client + c))
                    .collect::<Vec<_>>(),
            )
        };
        if writable {
            self.flush_input();
        }
        if ready_out {
            self.pump(1);
        }
        if ready_err {
            self.pump(2);
        }
        if ready_listen {
            self.accept();
        }
        if ready_sig {
            while let Ok(Some(_)) = self.sigfd.read_signal() {}
        }
        // Exits are checked every round: a SIGCHLD that came before the signalfd existed is not lost.
        self.reap();
        for i in ready_clients.into_iter().rev() {
            self.read_client(i);
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(s @ (WaitStatus::Exited(p, _) | WaitStatus::Signaled(p, _, _)))
                    if p.as_raw() == self.pid =>
                {
                    self.status = Some(s);
                }
                Ok(_) => {}
            }
        }
    }

    /// Moves available output of stream 1 or 2 to the log and the clients.
    fn pump(&mut self, stream: u8) {
        let mut buf = [0u8; 32 * 1024];
        for _ in 0..16 {
            let fd = if stream == 1 {
                &self.stdio.out
            } else {
                &self.stdio.err
            };
            let Some(fd) = fd else { return };
            match read_some(fd.as_fd(), &mut buf) {
                Ok(Some(0)) => return,
                Ok(Some(n)) => {
                    let data = buf[..n].to_vec();
                    self.log.write(stream, &data);
                    let kind = if stream == 2 {
                        Kind::Stderr
                    } else {
                        Kind::Stdout
                    };
                    self.broadcast(
                        kind,
                        &data,
                        |h| if stream == 2 { h.stderr } else { h.stdout },
                    );
                }
                Ok(None) | Err(_) => {
                    if stream == 1 {
                        self.stdio.out = None;
                        if self.stdio.tty {
                            self.stdio.input = None;
                        }
                    } else {
                        self.stdio.err = None;
                    }
                    return;
                }
            }
        }
    }

    fn broadcast(&mut self, kind: Kind, data: &[u8], wants: impl Fn(&Hello) -> bool) {
        self.clients.retain_mut(|c| match &c.hello {
            Some(h) if wants(h) || matches!(kind, Kind::Started | Kind::Exit) => {
                write_frame(&mut c.stream, kind, data).is_ok()
            }
            _ => true,
        });
    }

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            let _ = stream.set_nonblocking(true);
            let _ = stream.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
            self.clients.push(Client {
                stream,
                hello: None,
                inbuf: Vec::new(),
            });
        }
    }

    /// Reads and handles what client `i` sent; drops it on end of stream or a protocol error.
    fn read_client(&mut self, i: usize) {
        let mut buf = [0u8; 32 * 1024];
        let mut keep = true;
        loop {
            match self.clients[i].stream.read(&mut buf) {
                Ok(0) => {
                    keep = false;
                    break;
                }
                Ok(n) => self.clients[i].inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    keep = false;
                    break;
                }
            }
            // Enough for a whole frame: handle it first, read the rest on the next round (a
            // client that writes as fast as this loop reads must not grow the buffer).
            if self.clients[i].inbuf.len() >= super::proto::HEADER_LEN + super::proto::MAX_FRAME {
                break;
            }
        }
        if keep {
            keep = self.handle_input(i);
        }
        if !keep {
            let gone = self.clients.remove(i);
            // A client that owned stdin and left: the container sees end of file, as with docker.
            if gone.hello.is_some_and(|h| h.stdin) && !self.stdio.tty {
                self.stdio.input = None;
            }
        }
    }

    fn handle_input(&mut self, i: usize) -> bool {
        if self.clients[i].hello.is_none() {
            let Some(nl) = self.clients[i].inbuf.iter().position(|b| *b == b'\n') else {
                return self.clients[i].inbuf.len() < 4096;
            };
            let line: Vec<u8> = self.clients[i].inbuf.drain(..=nl).collect();
            match serde_json::from_slice::<Hello>(&line) {
                Ok(h) => self.clients[i].hello = Some(h),
                Err(_) => return false,
            }
        }
        loop {
            let parsed = parse_frame(&self.clients[i].inbuf);
            let (kind, payload, used) = match parsed {
                Ok(Some(f)) => f,
                Ok(None) => return true,
                Err(_) => return false,
            };
            self.clients[i].inbuf.drain(..used);
            let may_write = self.clients[i].hello.as_ref().is_some_and(|h| h.stdin);
            match kind {
                Kind::Stdin if may_write && self.stdio.input.is_some() => {
                    self.pending.extend_from_slice(&payload);
                    self.flush_input();
                }
                Kind::StdinClose if may_write => {
                    if self.stdio.tty {
                        // End of input on a terminal is the EOF character.
                        self.pending.push(4);
                    } else {
                        self.close_input = true;
                    }
                    self.flush_input();
                }
                Kind::Resize if payload.len() == 4 => {
                    if let (true, Some(fd)) = (self.stdio.tty, &self.stdio.out) {
                        let rows = u16::from_be_bytes([payload[0], payload[1]]);
                        let cols = u16::from_be_bytes([payload[2], payload[3]]);
                        let _ = set_winsize(fd.as_fd(), rows, cols);
                        if let Some(hook) = &self.resize_hook {
                            hook(rows, cols);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Writes as much pending input as the container's stdin takes now; closes it when asked and
    /// everything is written.
    fn flush_input(&mut self) {
        let Some(fd) = &self.stdio.input else {
            self.pending.clear();
            return;
        };
        while !self.pending.is_empty() {
            match rustix::io::write(fd, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(rustix::io::Errno::AGAIN) => return,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => {
                    // The container closed its stdin: what is left cannot be delivered.
                    self.pending.clear();
                    self.stdio.input = None;
                    return;
                }
            }
        }
        if self.close_input && !self.stdio.tty {
            self.stdio.input = None;
        }
    }

    /// Sends the exit to every client and closes the container's input.
    pub(crate) fn finish(&mut self, exit: &Exit) {
        self.log.flush();
        let payload = serde_json::to_vec(exit).expect("exit serializes");
        for c in &mut self.clients {
            let _ = c.stream.set_nonblocking(false);
            let _ = write_frame(&mut c.stream, Kind::Exit, &payload);
            let _ = c.stream.flush();
        }
        self.clients.clear();
        self.stdio.input = None;
    }
}
