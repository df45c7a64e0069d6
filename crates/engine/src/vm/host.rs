//! The VM host: the part of the container's monitor that owns a VM-isolated container's QEMU and
//! its agent channel.
//!
//! It multiplexes one agent channel (isola-proto over the virtio-serial port's Unix socket) between
//! the monitor itself (create, start, the container's stdio, shutdown) and any number of local
//! clients on the control socket `<run-root>/containers/<id>/vm.sock` (`exec`, `top`, `kill`,
//! `stats`, `pause`, which the CLI sends). Clients speak the same protocol; their request and
//! stream ids are their own and are rewritten to channel-wide ids here.
//!
//! Host → guest streams (the container's stdin, pumped here; an exec's stdin, sent by its client)
//! are flow controlled (see `isola_proto::message`): each has a [`SendWindow`] that the agent's
//! credits refill. The container's stdin pump waits for credit; a client's credits are forwarded
//! to it under its own stream id, and its data is checked against the same window here, so
//! neither side can queue more than one window in the agent. Whoever ends an input first (the
//! pump at end of file, the client, the guest giving it up, the client leaving) removes it and
//! sends the one host `StreamClose`; a pump or client waiting for credit wakes up when it is
//! removed or the channel ends.
//!
//! The guest is not trusted: every message from the agent is checked against what is outstanding
//! (an unknown response id or stream id is dropped with a warning), frames are bounded by the
//! protocol crate, writes to the agent time out, and a malformed frame, an unexpected message or a
//! closed channel before the container's exit ends the VM with an error that names it. Credits
//! refill a window at most to its size; a guest that never credits stalls only that input.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use isola_proto::{
    Event, ExitStatus, Message, Request, Response, SendWindow, StdioStreams, Transport,
    WindowError, WireError, WireErrorCode, STREAM_WINDOW,
};
use isola_vm::qemu::Vm;

use super::pump::{pump, PumpEnd};
use crate::error::{Error, Result};

/// Longest a write to the agent may block (a guest that stops reading fails the container).
const AGENT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client of the control socket may block a write.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most requests that may wait for an answer at once; a guest that leaves more unanswered is
/// stopped.
const MAX_PENDING: usize = 256;
/// Harmless protocol violations tolerated before the VM is stopped.
const MAX_VIOLATIONS: u32 = 64;
/// How long a guest has to end the container after SIGKILL before the VM is killed.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// First stream id the host allocates on the agent channel.
const FIRST_STREAM: u32 = 1;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A local client of the control socket.
#[derive(Debug)]
struct Conn {
    writer: Mutex<Transport<UnixStream>>,
    /// The client's stream ids → channel stream ids.
    streams: Mutex<HashMap<u32, u32>>,
    /// Exec ids this client started.
    execs: Mutex<Vec<String>>,
    alive: AtomicBool,
}

impl Conn {
    fn send(&self, m: &Message) {
        if self.alive.load(Ordering::Relaxed) && lock(&self.writer).send(m).is_err() {
            self.alive.store(false, Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
enum Pending {
    /// The monitor waits for it.
    Local(Sender<std::result::Result<Response, WireError>>),
    /// A control-socket client waits for it under its own request id; for an `Exec`, the stdin
    /// stream it names, forgotten if the agent refuses the exec.
    Client(Arc<Conn>, u64, Option<u32>),
}

/// Where bytes of a guest → host stream go.
#[derive(Debug)]
enum Route {
    /// A file descriptor of the monitor (the container's stdout/stderr pipe or terminal end).
    Fd(Arc<OwnedFd>),
    /// A control-socket client, under its own stream id.
    Client(Arc<Conn>, u32),
}

/// A host → guest stream still open.
#[derive(Debug)]
struct Input {
    window: Arc<SendWindow>,
    /// The control-socket client whose exec reads it, and its own id for the stream; `None` for
    /// the container's stdin, which the monitor pumps.
    client: Option<(Arc<Conn>, u32)>,
}

#[derive(Debug, Default)]
struct State {
    next_request: u64,
    next_stream: u32,
    pending: HashMap<u64, Pending>,
    routes: HashMap<u32, Route>,
    inputs: HashMap<u32, Input>,
    execs: HashMap<String, Arc<Conn>>,
    /// How the container's init process ended, as the agent reported it.
    init_exit: Option<ExitStatus>,
    /// Why the VM failed, when it did.
    error: Option<String>,
    /// The channel is gone.
    closed: bool,
    /// Harmless protocol violations so far.
    violations: u32,
}

/// One VM and its agent channel; shared by the monitor's threads.
#[derive(Debug)]
pub(crate) struct VmHost {
    writer: Mutex<Transport<UnixStream>>,
    state: Mutex<State>,
    vm: Mutex<Vm>,
    /// The container's ID (the only one this VM runs).
    id: String,
    /// QEMU's pidfd: SIGKILL through it can never reach a later process with QEMU's PID.
    pidfd: Option<OwnedFd>,
    /// QEMU was reaped by the monitor: it must not be signalled any more.
    reaped: AtomicBool,
}

impl VmHost {
    /// Wraps a booted VM whose agent greeted on `channel`, and starts reading the channel.
    pub(crate) fn start(id: &str, mut vm: Vm, channel: UnixStream) -> Result<Arc<VmHost>> {
        // The monitor (a subreaper with waitpid(-1)) reaps QEMU; nothing here may.
        vm.set_external_reaper();
        let io = |e| Error::io("configure", "agent channel", e);
        channel.set_read_timeout(None).map_err(io)?;
        channel
            .set_write_timeout(Some(AGENT_WRITE_TIMEOUT))
            .map_err(io)?;
        let reader = channel.try_clone().map_err(io)?;
        let host = Arc::new(VmHost {
            id: id.to_owned(),
            pidfd: vm.pidfd(),
            writer: Mutex::new(Transport::new(channel)),
            state: Mutex::new(State {
                next_request: 1,
                next_stream: FIRST_STREAM,
                ..State::default()
            }),
            vm: Mutex::new(vm),
            reaped: AtomicBool::new(false),
        });
        let h = host.clone();
        std::thread::Builder::new()
            .name("agent-reader".into())
            .spawn(move || h.read_agent(Transport::new(reader)))
            .map_err(|e| Error::io("start", "agent reader thread", e))?;
        Ok(host)
    }

    /// A fresh channel stream id.
    fn stream_id(state: &mut State) -> u32 {
        let id = state.next_stream;
        state.next_stream = state.next_stream.wrapping_add(1).max(FIRST_STREAM);
        id
    }

    fn send(&self, m: &Message) -> Result<()> {
        self.send_on(&mut lock(&self.writer), m)
    }

    /// Sends `m` on the channel `w` (the writer, locked by the caller).
    fn send_on(&self, w: &mut Transport<UnixStream>, m: &Message) -> Result<()> {
        w.send(m).map_err(|e| {
            let msg = format!("writing to the guest agent failed: {e}");
            self.fail(&msg);
            Error::Vm(msg)
        })
    }

    /// Sends `data` on input `stream` if `window` has the credit for it. The credit is taken with
    /// the writer locked, so the stream's close (sent with the writer locked too) never comes
    /// before data that was let through. `Ok(false)`: the stream is closed, the data dropped;
    /// `Err`: more data than the window allows, or the channel failed.
    fn send_input(
        &self,
        stream: u32,
        window: &SendWindow,
        data: Vec<u8>,
    ) -> std::result::Result<bool, String> {
        let mut w = lock(&self.writer);
        match window.take(data.len()) {
            Ok(()) => self
                .send_on(&mut w, &Message::Stream { stream, data })
                .map(|()| true)
                .map_err(|e| e.to_string()),
            Err(WindowError::Closed) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Removes input `stream` unless something removed it already, and closes its window (its
    /// sender wakes up and sends nothing more). The one who removed it then owes the agent the
    /// stream's `StreamClose`, which, sent after the window closed, follows any data let through.
    fn take_input(&self, stream: u32) -> Option<Input> {
        let mut st = lock(&self.state);
        if st.closed {
            return None;
        }
        let input = st.inputs.remove(&stream)?;
        input.window.close();
        Some(input)
    }

    /// Ends input `stream` (see [`VmHost::take_input`]) and sends the agent its `StreamClose`.
    /// Not on the agent reader's thread, which must never wait for the channel's writer.
    fn close_input(&self, stream: u32) -> Option<Input> {
        let input = self.take_input(stream)?;
        let _ = self.send(&Message::StreamClose { stream });
        Some(input)
    }

    /// Sends `body` and waits at most `timeout` for the answer.
    pub(crate) fn request(&self, body: Request, timeout: Duration) -> Result<Response> {
        let what = request_name(&body);
        let (id, rx) = self.submit(body)?;
        match rx.recv_timeout(timeout) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(w)) => Err(wire_error(what, w)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                lock(&self.state).pending.remove(&id);
                Err(Error::Vm(format!(
                    "the guest agent did not answer {what} within {timeout:?}"
                )))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::Vm(format!(
                "the guest agent went away before answering {what}{}",
                self.error().map(|e| format!(": {e}")).unwrap_or_default()
            ))),
        }
    }

    /// Sends `body` and does not wait for the answer (which is dropped when it comes).
    pub(crate) fn post(&self, body: Request) {
        let _ = self.submit(body);
    }

    /// Sends `body` without waiting; the answer arrives on the returned channel.
    #[allow(clippy::type_complexity)]
    fn submit(
        &self,
        body: Request,
    ) -> Result<(u64, Receiver<std::result::Result<Response, WireError>>)> {
        let (tx, rx) = mpsc::channel();
        let id = {
            let mut st = lock(&self.state);
            if st.closed {
                return Err(Error::Vm(format!(
                    "the guest agent is gone{}",
                    st.error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )));
            }
            if st.pending.len() >= MAX_PENDING {
                drop(st);
                let why = format!(
                    "the guest agent left {MAX_PENDING} requests unanswered; the VM is stopped"
                );
                self.fail(&why);
                return Err(Error::Vm(why));
            }
            let id = st.next_request;
            st.next_request += 1;
            st.pending.insert(id, Pending::Local(tx));
            id
        };
        self.send(&Message::Request { id, body })?;
        Ok((id, rx))
    }

    /// Connects the container's stdio: `input` (read here and sent to the guest once
    /// [`VmHost::open_stdin`] says the agent knows the stream; `None` when the container has no
    /// stdin), `out` and `err` (written with what the guest sends). With a terminal, `out` is the
    /// terminal end and `err` is unused. Returns the stream ids to put in `CreateContainer`.
    pub(crate) fn attach_stdio(
        self: &Arc<Self>,
        input: Option<OwnedFd>,
        out: Option<OwnedFd>,
        err: Option<OwnedFd>,
        terminal: bool,
    ) -> Result<StdioStreams> {
        let mut streams = StdioStreams {
            terminal,
            ..StdioStreams::default()
        };
        {
            let mut st = lock(&self.state);
            if let Some(fd) = out {
                let id = Self::stream_id(&mut st);
                st.routes.insert(id, Route::Fd(Arc::new(fd)));
                streams.stdout = Some(id);
            }
            if let Some(fd) = err {
                let id = Self::stream_id(&mut st);
                st.routes.insert(id, Route::Fd(Arc::new(fd)));
                streams.stderr = Some(id);
            }
            if let Some(fd) = input {
                let id = Self::stream_id(&mut st);
                // Closed until the agent has created the container (it drops earlier data).
                let window = Arc::new(SendWindow::new(0));
                st.inputs.insert(
                    id,
                    Input {
                        window: window.clone(),
                        client: None,
                    },
                );
                streams.stdin = Some(id);
                let h = self.clone();
                std::thread::Builder::new()
                    .name("stdin".into())
                    .spawn(move || h.pump_input(fd, id, &window))
                    .map_err(|e| Error::io("start", "stdin thread", e))?;
            }
        }
        Ok(streams)
    }

    /// The agent answered the `CreateContainer` that named `streams`: the container's input
    /// may flow.
    pub(crate) fn open_stdin(&self, streams: &StdioStreams) {
        let st = lock(&self.state);
        if let Some(input) = streams.stdin.and_then(|id| st.inputs.get(&id)) {
            input.window.open();
        }
    }

    /// Copies the container's input to the guest until end of file, within the stream's window,
    /// then closes the stream.
    fn pump_input(&self, fd: OwnedFd, stream: u32, window: &SendWindow) {
        let end = pump(&fd, window, |data| {
            self.send_input(stream, window, data).unwrap_or(false)
        });
        if end == PumpEnd::Eof {
            self.close_input(stream);
        }
    }

    /// Reads the agent channel until it ends.
    fn read_agent(self: Arc<Self>, mut t: Transport<UnixStream>) {
        loop {
            let m = match t.recv() {
                Ok(m) => m,
                Err(e) => {
                    let exited = lock(&self.state).init_exit.is_some();
                    if !exited {
                        let why = match e {
                            isola_proto::TransportError::Closed => {
                                "the guest agent closed its channel before the container exited"
                                    .to_owned()
                            }
                            other => format!("the guest agent's channel failed: {other}"),
                        };
                        self.fail(&why);
                    }
                    break;
                }
            };
            if let Err(why) = self.dispatch(m) {
                self.fail(&why);
                break;
            }
        }
        self.close_all();
    }

    /// Handles one message from the agent; `Err` = protocol violation (the VM is ended).
    fn dispatch(self: &Arc<Self>, m: Message) -> std::result::Result<(), String> {
        match m {
            Message::Response { id, result } => {
                let p = lock(&self.state).pending.remove(&id);
                match p {
                    Some(Pending::Local(tx)) => {
                        let _ = tx.send(result);
                    }
                    Some(Pending::Client(conn, cid, stdin)) => {
                        if let (Err(_), Some(g)) = (&result, stdin) {
                            // The agent never knew the stream: nothing to close there.
                            self.take_input(g);
                        }
                        conn.send(&Message::Response { id: cid, result });
                    }
                    None => self.violation(&format!("an answer to unknown request {id}"))?,
                }
            }
            Message::Stream { stream, data } => {
                let route = {
                    let st = lock(&self.state);
                    match st.routes.get(&stream) {
                        Some(Route::Fd(fd)) => Some(Route::Fd(fd.clone())),
                        Some(Route::Client(c, local)) => Some(Route::Client(c.clone(), *local)),
                        None => None,
                    }
                };
                match route {
                    Some(Route::Fd(fd)) => {
                        // A reader that went away (EPIPE) loses the bytes, nothing more.
                        let _ = crate::monitor::io::write_all(fd.as_fd(), &data);
                    }
                    Some(Route::Client(c, local)) => c.send(&Message::Stream {
                        stream: local,
                        data,
                    }),
                    None => {
                        self.violation(&format!("{} bytes on unknown stream {stream}", data.len()))?
                    }
                }
            }
            Message::StreamClose { stream } => {
                let route = lock(&self.state).routes.remove(&stream);
                if let Some(Route::Client(c, local)) = route {
                    c.send(&Message::StreamClose { stream: local });
                }
                // The agent gave up an input: its client is told, and the agent's close answered
                // from another thread (this one never waits for the writer, which may be waiting
                // for the agent to read).
                if let Some(input) = self.take_input(stream) {
                    let h = self.clone();
                    let _ = std::thread::Builder::new()
                        .name("stdin-close".into())
                        .spawn(move || h.send(&Message::StreamClose { stream }));
                    if let Some((c, local)) = input.client {
                        c.send(&Message::StreamClose { stream: local });
                    }
                }
            }
            Message::StreamCredit { stream, bytes } => {
                let input = lock(&self.state)
                    .inputs
                    .get(&stream)
                    .map(|i| (i.window.clone(), i.client.clone()));
                match input {
                    Some((window, client)) => {
                        window.credit(bytes);
                        if let Some((c, local)) = client {
                            c.send(&Message::StreamCredit {
                                stream: local,
                                bytes,
                            });
                        }
                    }
                    None => tracing::debug!("guest credited unknown stream {stream}"),
                }
            }
            Message::Event(Event::Exited {
                exec_id: None,
                status,
                id,
            }) => {
                check_status(&status)?;
                if id != self.id {
                    return Err(format!(
                        "the guest agent reported the exit of another container ({})",
                        sanitize(&id, 80)
                    ));
                }
                let first = {
                    let mut st = lock(&self.state);
                    let first = st.init_exit.is_none();
                    st.init_exit.get_or_insert(status);
                    first
                };
                if first {
                    // The container is over: power the VM off (the monitor sees QEMU exit).
                    let h = self.clone();
                    let _ = std::thread::Builder::new()
                        .name("shutdown".into())
                        .spawn(move || h.shutdown(Duration::from_secs(5)));
                }
            }
            Message::Event(Event::Exited {
                exec_id: Some(exec),
                id,
                status,
            }) => {
                check_status(&status)?;
                let conn = lock(&self.state).execs.remove(&exec);
                if let Some(c) = conn {
                    c.send(&Message::Event(Event::Exited {
                        id,
                        exec_id: Some(exec),
                        status,
                    }));
                }
            }
            Message::Event(Event::ProtocolError { message }) => {
                self.violation(&format!(
                    "a report that it could not decode a message: {}",
                    sanitize(&message, 200)
                ))?;
            }
            Message::Event(Event::AgentPanic { message }) => {
                return Err(format!(
                    "the guest agent panicked: {}",
                    sanitize(&message, 500)
                ));
            }
            Message::Hello { .. } | Message::Request { .. } => {
                return Err(format!(
                    "the guest agent sent an unexpected {}",
                    if matches!(m, Message::Hello { .. }) {
                        "second Hello"
                    } else {
                        "request"
                    }
                ));
            }
        }
        Ok(())
    }

    /// Records `why` as the VM's failure (the first one wins) and ends the VM.
    fn fail(&self, why: &str) {
        {
            let mut st = lock(&self.state);
            if st.error.is_none() && st.init_exit.is_none() {
                tracing::error!("{why}");
                st.error = Some(why.to_owned());
            }
        }
        self.kill();
    }

    /// Drops every route and pending request (readers see EOF, waiters an error).
    fn close_all(&self) {
        let mut st = lock(&self.state);
        st.closed = true;
        st.pending.clear();
        st.routes.clear();
        for (_, input) in st.inputs.drain() {
            input.window.close();
        }
        for (_, c) in st.execs.drain() {
            c.alive.store(false, Ordering::Relaxed);
        }
    }

    /// Why the VM failed, if it did.
    pub(crate) fn error(&self) -> Option<String> {
        lock(&self.state).error.clone()
    }

    /// How the container's init process ended, if the agent said.
    pub(crate) fn init_exit(&self) -> Option<ExitStatus> {
        lock(&self.state).init_exit
    }

    /// Asks the agent to power off, then QEMU to quit, then kills it; waits at most `grace` for
    /// each step.
    pub(crate) fn shutdown(&self, grace: Duration) {
        if self.reaped.load(Ordering::Relaxed) {
            return;
        }
        if let Ok((_, rx)) = self.submit(Request::Shutdown) {
            let _ = rx.recv_timeout(grace);
        }
        let mut vm = lock(&self.vm);
        if !self.reaped.load(Ordering::Relaxed) && !vm.wait_ended(grace) {
            vm.quit(grace);
        }
    }

    /// Kills QEMU at once (unless the monitor reaped it already). Never waits: the monitor reaps.
    pub(crate) fn kill(&self) {
        if let Some(fd) = &self.pidfd {
            let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
        }
    }

    /// After a SIGKILL for the container: if the guest has not reported the container's end
    /// within [`KILL_GRACE`], the VM is killed (a guest cannot keep a killed container alive).
    pub(crate) fn arm_kill(self: &Arc<Self>) {
        let h = self.clone();
        let _ = std::thread::Builder::new()
            .name("kill-grace".into())
            .spawn(move || {
                std::thread::sleep(KILL_GRACE);
                if h.init_exit().is_none() && !h.reaped.load(Ordering::Relaxed) {
                    h.fail("the guest did not end the container within 5 s of SIGKILL; the VM was killed");
                }
            });
    }

    /// Counts a message from the guest that breaks the protocol without harm (an answer nobody
    /// waits for, data for an unknown stream); too many end the VM.
    fn violation(&self, what: &str) -> std::result::Result<(), String> {
        let n = {
            let mut st = lock(&self.state);
            st.violations += 1;
            st.violations
        };
        if n <= 3 {
            tracing::warn!("guest agent sent {what}");
        }
        if n > MAX_VIOLATIONS {
            return Err(format!(
                "the guest agent broke the protocol {n} times (last: {what})"
            ));
        }
        Ok(())
    }

    /// The monitor reaped QEMU: never signal its PID again.
    pub(crate) fn reaped(&self, status: std::process::ExitStatus) {
        self.reaped.store(true, Ordering::Relaxed);
        if let Ok(mut vm) = self.vm.try_lock() {
            vm.set_reaped(status);
        }
    }

    /// Serves local clients on `listener` (the control socket), each in its own thread.
    pub(crate) fn serve_control(self: &Arc<Self>, listener: UnixListener) -> Result<()> {
        let h = self.clone();
        std::thread::Builder::new()
            .name("vm-control".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(stream) = conn else { continue };
                    let h = h.clone();
                    let _ = std::thread::Builder::new()
                        .name("vm-client".into())
                        .spawn(move || h.serve_client(stream));
                }
            })
            .map_err(|e| Error::io("start", "control socket thread", e))?;
        Ok(())
    }

    fn serve_client(self: Arc<Self>, stream: UnixStream) {
        let Ok(writer) = stream.try_clone() else {
            return;
        };
        let _ = writer.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
        let conn = Arc::new(Conn {
            writer: Mutex::new(Transport::new(writer)),
            streams: Mutex::new(HashMap::new()),
            execs: Mutex::new(Vec::new()),
            alive: AtomicBool::new(true),
        });
        let mut t = Transport::new(stream);
        while let Ok(m) = t.recv() {
            if let Err(why) = self.handle_client(&conn, m) {
                conn.send(&Message::Event(Event::ProtocolError { message: why }));
                break;
            }
        }
        conn.alive.store(false, Ordering::Relaxed);
        // The client is gone: close the input of its processes, forget its routes.
        let globals: Vec<u32> = lock(&conn.streams).values().copied().collect();
        {
            let mut st = lock(&self.state);
            for g in &globals {
                st.routes.remove(g);
            }
            for e in lock(&conn.execs).iter() {
                st.execs.remove(e);
            }
        }
        for g in globals {
            self.close_input(g);
        }
    }

    /// Forwards one message of a control-socket client to the agent.
    fn handle_client(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        m: Message,
    ) -> std::result::Result<(), String> {
        match m {
            Message::Request { id, body } => {
                let mut stdin = None;
                let body = match body {
                    Request::Exec {
                        id: cid,
                        exec_id,
                        process,
                        stdio,
                    } => {
                        let stdio = self.map_exec_stdio(conn, &exec_id, stdio)?;
                        stdin = stdio.stdin;
                        Request::Exec {
                            id: cid,
                            exec_id,
                            process,
                            stdio,
                        }
                    }
                    Request::ResizeTty { stream, rows, cols } => {
                        let Some(g) = lock(&conn.streams).get(&stream).copied() else {
                            conn.send(&Message::Response {
                                id,
                                result: Err(WireError::new(
                                    WireErrorCode::NotFound,
                                    format!("no stream {stream}"),
                                )),
                            });
                            return Ok(());
                        };
                        Request::ResizeTty {
                            stream: g,
                            rows,
                            cols,
                        }
                    }
                    Request::Signal {
                        id: cid,
                        signal,
                        all,
                    } => {
                        if signal == libc::SIGKILL {
                            self.arm_kill();
                        }
                        Request::Signal {
                            id: cid,
                            signal,
                            all,
                        }
                    }
                    Request::CreateContainer { .. } | Request::Shutdown | Request::Start { .. } => {
                        conn.send(&Message::Response {
                            id,
                            result: Err(WireError::new(
                                WireErrorCode::InvalidRequest,
                                "only the container's monitor may create, start or shut down the VM",
                            )),
                        });
                        return Ok(());
                    }
                    other => other,
                };
                let gid = {
                    let mut st = lock(&self.state);
                    if st.closed {
                        drop(st);
                        conn.send(&Message::Response {
                            id,
                            result: Err(WireError::new(
                                WireErrorCode::ShuttingDown,
                                "the VM has ended",
                            )),
                        });
                        return Ok(());
                    }
                    let gid = st.next_request;
                    st.next_request += 1;
                    st.pending
                        .insert(gid, Pending::Client(conn.clone(), id, stdin));
                    gid
                };
                self.send(&Message::Request { id: gid, body })
                    .map_err(|e| e.to_string())
            }
            Message::Stream { stream, data } => {
                let Some(g) = lock(&conn.streams).get(&stream).copied() else {
                    return Err(format!("data on unknown stream {stream}"));
                };
                // Not an input (any more): the data is dropped.
                let Some(window) = lock(&self.state).inputs.get(&g).map(|i| i.window.clone())
                else {
                    return Ok(());
                };
                self.send_input(g, &window, data)
                    .map(drop)
                    .map_err(|e| format!("stream {stream}: {e}"))
            }
            Message::StreamClose { stream } => {
                if let Some(g) = lock(&conn.streams).get(&stream).copied() {
                    self.close_input(g);
                }
                Ok(())
            }
            other => Err(format!(
                "clients may send requests and streams only, not {}",
                message_name(&other)
            )),
        }
    }

    /// Gives an exec's client-chosen stream ids channel-wide ids and routes its output back.
    fn map_exec_stdio(
        &self,
        conn: &Arc<Conn>,
        exec_id: &str,
        stdio: StdioStreams,
    ) -> std::result::Result<StdioStreams, String> {
        let mut st = lock(&self.state);
        if st.execs.contains_key(exec_id) {
            return Err(format!("exec {exec_id} exists already"));
        }
        let mut map = lock(&conn.streams);
        let mut out = StdioStreams {
            terminal: stdio.terminal,
            ..StdioStreams::default()
        };
        for (local, slot, output) in [
            (stdio.stdin, &mut out.stdin, false),
            (stdio.stdout, &mut out.stdout, true),
            (stdio.stderr, &mut out.stderr, true),
        ] {
            let Some(local) = local else { continue };
            if map.contains_key(&local) {
                return Err(format!("stream {local} is in use"));
            }
            let g = Self::stream_id(&mut st);
            map.insert(local, g);
            if output {
                st.routes.insert(g, Route::Client(conn.clone(), local));
            } else {
                // The client sends only once the agent has answered the Exec.
                let input = Input {
                    window: Arc::new(SendWindow::new(STREAM_WINDOW)),
                    client: Some((conn.clone(), local)),
                };
                st.inputs.insert(g, input);
            }
            *slot = Some(g);
        }
        st.execs.insert(exec_id.to_owned(), conn.clone());
        lock(&conn.execs).push(exec_id.to_owned());
        Ok(out)
    }
}

/// The request's name, for messages.
pub(crate) fn request_name(r: &Request) -> &'static str {
    match r {
        Request::Ping => "Ping",
        Request::CreateContainer { .. } => "CreateContainer",
        Request::Start { .. } => "Start",
        Request::Signal { .. } => "Signal",
        Request::Exec { .. } => "Exec",
        Request::ResizeTty { .. } => "ResizeTty",
        Request::Top { .. } => "Top",
        Request::Stats { .. } => "Stats",
        Request::Pause { .. } => "Pause",
        Request::Resume { .. } => "Resume",
        Request::Wait { .. } => "Wait",
        Request::Shutdown => "Shutdown",
        Request::Restored { .. } => "Restored",
    }
}

fn message_name(m: &Message) -> &'static str {
    match m {
        Message::Hello { .. } => "Hello",
        Message::Request { .. } => "Request",
        Message::Response { .. } => "Response",
        Message::Stream { .. } => "Stream",
        Message::StreamClose { .. } => "StreamClose",
        Message::StreamCredit { .. } => "StreamCredit",
        Message::Event(_) => "Event",
    }
}

/// The engine error for an agent's refusal of `what`: 126/127 when the program cannot run.
pub(crate) fn wire_error(what: &str, w: WireError) -> Error {
    let message = sanitize(&w.message, 1000);
    match w.status {
        Some(code @ (126 | 127)) => Error::StartFailed { message, code },
        _ => Error::Vm(format!("{what}: {message}")),
    }
}

/// Text from the guest made fit for a terminal, a log and the database: control characters
/// replaced by `?`, at most `max` characters.
pub(crate) fn sanitize(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// Refuses an exit status no process can have (a code outside 0..=255, a signal outside 1..=64).
fn check_status(s: &ExitStatus) -> std::result::Result<(), String> {
    let ok = match (s.code, s.signal) {
        (Some(c), None) => (0..=255).contains(&c),
        (None, Some(sig)) => (1..=64).contains(&sig),
        // Neither: ended some other way (counted as a SIGKILL).
        (None, None) => true,
        (Some(_), Some(_)) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the guest agent reported an impossible exit status {s:?}"
        ))
    }
}
