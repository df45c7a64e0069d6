//! Byte streams between the host and the processes' stdio.
//!
//! Guest → host: one forwarder thread per output (a pipe's read end or a terminal's master)
//! reads, sends [`Message::Stream`] chunks of at most [`MAX_STREAM_CHUNK`] bytes, and ends with
//! [`Message::StreamClose`] at end of file (for a terminal, `EIO` once the last slave is closed
//! is end of file). The exit notifier can close an output itself when a descendant keeps it open
//! past the grace period ([`Output::force_close`]); nothing of that stream is sent afterwards.
//!
//! Host → guest: one writer thread per stdin stream, fed through a queue, so a process that does
//! not read its stdin never blocks the request loop. Flow control (the protocol's module docs)
//! keeps the queue short: the writer credits the host with [`Message::StreamCredit`] for what it
//! wrote, every [`CREDIT_BATCH`] bytes and whenever the queue runs empty, and the host never
//! has more than [`STREAM_WINDOW`] bytes uncredited. The queue still holds at most
//! [`STDIN_QUEUE_MAX`] bytes against a host that ignores credit: past that the input is dropped
//! and the process's stdin closed (and the console says so).
//!
//! A stdin stream the agent gives up before the host closed it (the process closed its stdin or
//! exited, or the host overflowed the queue) is answered with [`Message::StreamClose`] and kept as
//! a tombstone until the host's own `StreamClose`, so that data the host had in flight is dropped
//! silently instead of being reported as sent to an unknown stream.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use isola_proto::{Message, CREDIT_BATCH, MAX_STREAM_CHUNK, STREAM_WINDOW};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;

use crate::out::Outbox;

/// Most bytes of host input queued for one stdin stream (16 MiB); a host that respects the flow
/// control window never comes near it.
pub const STDIN_QUEUE_MAX: usize = 16 << 20;
const _: () = assert!(STREAM_WINDOW as usize <= STDIN_QUEUE_MAX);

/// Bytes read from an output per [`Message::Stream`] (a pipe holds 64 KiB by default).
const READ_CHUNK: usize = 64 * 1024;
const _: () = assert!(READ_CHUNK <= MAX_STREAM_CHUNK);

/// The live streams, by host-chosen id.
#[derive(Debug)]
pub struct Streams {
    map: Mutex<HashMap<u32, Entry>>,
    dropped: AtomicUsize,
    /// Where stdin writers send their credits and the agent its closes of stdin streams.
    outbox: Arc<Outbox>,
}

#[derive(Debug)]
enum Entry {
    Stdin(Stdin),
    /// A stdin stream the agent gave up and closed towards the host, which has not closed it yet.
    Discarded,
    Output {
        /// The terminal's master, when this output is a terminal (for `ResizeTty`).
        pty: Option<Arc<OwnedFd>>,
    },
}

/// Why a stream cannot be used for a resize.
#[derive(Debug, PartialEq, Eq)]
pub enum ResizeError {
    /// No live stream with this id.
    Unknown,
    /// The stream is not a terminal's output.
    NotTerminal,
    /// `TIOCSWINSZ` failed.
    Failed(Errno),
}

impl Streams {
    /// An empty registry whose stdin writers report to `outbox`.
    pub fn new(outbox: Arc<Outbox>) -> Streams {
        Streams {
            map: Mutex::new(HashMap::new()),
            dropped: AtomicUsize::new(0),
            outbox,
        }
    }

    /// Whether `id` names a live stream.
    pub fn in_use(&self, id: u32) -> bool {
        self.lock().contains_key(&id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Entry>> {
        match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }

    fn insert(&self, id: u32, e: Entry) {
        self.lock().insert(id, e);
    }

    fn remove_output(&self, id: u32) {
        let mut m = self.lock();
        if matches!(m.get(&id), Some(Entry::Output { .. })) {
            m.remove(&id);
        }
    }

    /// Host → guest bytes on `id`: queued for its stdin writer; dropped silently when the agent
    /// gave the stream up, and dropped and counted (see [`Streams::note_dropped`]) when `id` is
    /// not a stdin stream at all.
    pub fn input(&self, id: u32, data: Vec<u8>) {
        let overflow = {
            let m = self.lock();
            match m.get(&id) {
                Some(Entry::Stdin(s)) => s.queue(data).is_err(),
                Some(Entry::Discarded) => false,
                _ => {
                    drop(m);
                    self.note_dropped(id, "data");
                    false
                }
            }
        };
        if overflow {
            crate::log!(
                "stdin stream {id}: more than {STDIN_QUEUE_MAX} bytes queued (the host ignores flow control); input dropped and the process's stdin closed"
            );
            self.discard(id);
        }
    }

    /// The host closed stream `id`: the process's stdin gets end of file once the queued bytes
    /// are written; a stream the agent gave up is forgotten. Other ids are dropped.
    pub fn close_input(&self, id: u32) {
        let removed = {
            let mut m = self.lock();
            match m.get(&id) {
                Some(Entry::Stdin(_) | Entry::Discarded) => m.remove(&id),
                _ => None,
            }
        };
        match removed {
            Some(Entry::Stdin(s)) => s.close(),
            Some(_) => {}
            None => self.note_dropped(id, "close"),
        }
    }

    /// Ends a process's stdin stream without the host asking (the process exited).
    pub fn end_input(&self, id: u32) {
        self.discard(id);
    }

    /// Gives up stdin stream `id` if the host has not closed it: its writer drops what is
    /// queued and ends, and the host is sent `StreamClose` (see the module docs).
    fn discard(&self, id: u32) {
        let stdin = {
            let mut m = self.lock();
            match m.get(&id) {
                Some(Entry::Stdin(_)) => m.insert(id, Entry::Discarded),
                _ => None,
            }
        };
        if let Some(Entry::Stdin(s)) = stdin {
            s.discard(id, &self.outbox);
        }
    }

    /// Sets the window size of the terminal whose output is stream `id` (`TIOCSWINSZ`).
    ///
    /// # Errors
    /// See [`ResizeError`].
    pub fn resize(&self, id: u32, rows: u16, cols: u16) -> Result<(), ResizeError> {
        let pty = match self.lock().get(&id) {
            None | Some(Entry::Stdin(_) | Entry::Discarded) => return Err(ResizeError::Unknown),
            Some(Entry::Output { pty: None }) => return Err(ResizeError::NotTerminal),
            Some(Entry::Output { pty: Some(p) }) => Arc::clone(p),
        };
        let ws = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(pty.as_fd(), ws).map_err(ResizeError::Failed)
    }

    /// Logs a message the host sent for a stream that is not (or no longer) a stdin stream:
    /// the first 10, then every 1000th, so a confused host cannot flood the console.
    fn note_dropped(&self, id: u32, what: &str) {
        let n = self.dropped.fetch_add(1, Ordering::Relaxed);
        if n < 10 || n.is_multiple_of(1000) {
            crate::log!(
                "dropped host {what} for unknown or closed stdin stream {id} ({} so far)",
                n + 1
            );
        }
    }

    /// Starts the writer thread of stdin stream `id`, writing into `fd` (a pipe's write end,
    /// or a duplicate of a terminal's master).
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start_input(self: &Arc<Self>, id: u32, fd: OwnedFd) -> std::io::Result<()> {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            discarded: Mutex::new(false),
        });
        let writer = Writer {
            id,
            fd,
            shared: Arc::clone(&shared),
            streams: Arc::clone(self),
        };
        // Registered before the thread runs, which may give the stream up at once.
        self.insert(id, Entry::Stdin(Stdin { tx, shared }));
        let spawned = std::thread::Builder::new()
            .name(format!("stdin-{id}"))
            .spawn(move || writer.run(&rx));
        if let Err(e) = spawned {
            let mut m = self.lock();
            if matches!(m.get(&id), Some(Entry::Stdin(_))) {
                m.remove(&id);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Starts the forwarder of output stream `id` (or, with `id` `None`, a reader that discards
    /// what it reads, so a terminal whose output nobody wants cannot fill up and block the
    /// process). `pty` is the terminal's master when `fd` is one.
    ///
    /// # Errors
    /// When the cancel pipe or the thread cannot be created.
    pub fn start_output(
        self: &Arc<Self>,
        id: Option<u32>,
        fd: OwnedFd,
        pty: Option<Arc<OwnedFd>>,
        outbox: &Arc<Outbox>,
    ) -> std::io::Result<Arc<Output>> {
        let (cancel_r, cancel_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let out = Arc::new(Output {
            id,
            closed: Mutex::new(false),
            cv: Condvar::new(),
            cancel: cancel_w,
        });
        if let Some(i) = id {
            // Registered before the thread runs, which removes it at end of file.
            self.insert(i, Entry::Output { pty });
        }
        let (o, ob, streams) = (Arc::clone(&out), Arc::clone(outbox), Arc::clone(self));
        let name = id.map_or_else(|| "drain".to_owned(), |i| format!("out-{i}"));
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            forward(&o, &fd, &cancel_r, &ob);
            o.close(&ob);
            if let Some(i) = o.id {
                streams.remove_output(i);
            }
        });
        if let Err(e) = spawned {
            if let Some(i) = id {
                self.remove_output(i);
            }
            return Err(e);
        }
        Ok(out)
    }
}

/// What the request loop and a stdin writer share.
#[derive(Debug)]
struct Shared {
    /// Bytes queued and not yet taken by the writer.
    queued: AtomicUsize,
    /// The agent gave the stream up: the writer drops the rest and credits nothing more. Credits
    /// and the close are sent with this held, so no credit follows the close.
    discarded: Mutex<bool>,
}

impl Shared {
    fn discarded(&self) -> std::sync::MutexGuard<'_, bool> {
        self.discarded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The request loop's handle on one stdin writer.
#[derive(Debug)]
struct Stdin {
    tx: Sender<Vec<u8>>,
    shared: Arc<Shared>,
}

impl Stdin {
    /// Queues `data`; `Err` when the queue would exceed [`STDIN_QUEUE_MAX`].
    fn queue(&self, data: Vec<u8>) -> Result<(), ()> {
        let len = data.len();
        if self.shared.queued.fetch_add(len, Ordering::Relaxed) + len > STDIN_QUEUE_MAX {
            return Err(());
        }
        // A writer that has ended (its process closed stdin) just drops the bytes.
        let _ = self.tx.send(data);
        Ok(())
    }

    /// Dropping the sender ends the writer once it has written what is queued.
    fn close(self) {}

    /// Ends the writer without writing what is queued, and tells the host (`StreamClose`).
    fn discard(self, id: u32, outbox: &Outbox) {
        let mut discarded = self.shared.discarded();
        *discarded = true;
        outbox.send(&Message::StreamClose { stream: id });
    }
}

/// A stdin writer thread: writes the queued chunks to the process and credits the host.
struct Writer {
    id: u32,
    fd: OwnedFd,
    shared: Arc<Shared>,
    streams: Arc<Streams>,
}

impl Writer {
    fn run(self, rx: &mpsc::Receiver<Vec<u8>>) {
        let mut uncredited: u32 = 0;
        loop {
            let data = match rx.try_recv() {
                Ok(d) => d,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    // Nothing more queued: give the host all its credit back before waiting.
                    self.credit(&mut uncredited);
                    match rx.recv() {
                        Ok(d) => d,
                        Err(_) => break,
                    }
                }
            };
            self.shared.queued.fetch_sub(data.len(), Ordering::Relaxed);
            if *self.shared.discarded() {
                continue;
            }
            if !self.write_all(&data) {
                // The process closed its stdin or hung up: tell the host, drop the rest.
                self.streams.discard(self.id);
                continue;
            }
            uncredited = uncredited.saturating_add(u32::try_from(data.len()).unwrap_or(u32::MAX));
            if uncredited >= CREDIT_BATCH {
                self.credit(&mut uncredited);
            }
        }
    }

    /// Sends the credit not sent yet, unless the stream was given up.
    fn credit(&self, uncredited: &mut u32) {
        if *uncredited > 0 {
            let discarded = self.shared.discarded();
            if !*discarded {
                self.streams.outbox.send(&Message::StreamCredit {
                    stream: self.id,
                    bytes: *uncredited,
                });
            }
        }
        *uncredited = 0;
    }

    /// Writes all of `data`; false when the process no longer takes input.
    fn write_all(&self, data: &[u8]) -> bool {
        let mut rest = data;
        while !rest.is_empty() {
            match rustix::io::write(&self.fd, rest) {
                Ok(n) => rest = &rest[n..],
                Err(Errno::INTR) => {}
                // EPIPE (SIGPIPE is ignored in the agent) or a terminal that hung up (EIO).
                Err(e) => {
                    if e != Errno::PIPE && e != Errno::IO {
                        crate::log!("stdin stream {}: write failed: {e}", self.id);
                    }
                    return false;
                }
            }
        }
        true
    }
}

/// One guest → host output stream.
#[derive(Debug)]
pub struct Output {
    id: Option<u32>,
    /// Whether its `StreamClose` has been sent (or, without an id, its reader is done).
    closed: Mutex<bool>,
    cv: Condvar,
    /// Writing a byte here stops the forwarder.
    cancel: OwnedFd,
}

impl Output {
    fn lock(&self) -> std::sync::MutexGuard<'_, bool> {
        match self.closed.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Sends `StreamClose` unless it was sent already; wakes [`Output::wait_closed`].
    fn close(&self, outbox: &Outbox) {
        let mut closed = self.lock();
        if !*closed {
            if let Some(stream) = self.id {
                outbox.send(&Message::StreamClose { stream });
            }
            *closed = true;
            self.cv.notify_all();
        }
    }

    /// Waits until the stream is closed or `deadline` passes; returns whether it is closed.
    pub fn wait_closed(&self, deadline: Instant) -> bool {
        let mut closed = self.lock();
        while !*closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            closed = match self.cv.wait_timeout(closed, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }

    /// Closes the stream now (a descendant of the exited process still holds it open): sends
    /// `StreamClose` and stops the forwarder, which sends nothing more.
    pub fn force_close(&self, outbox: &Outbox) {
        self.close(outbox);
        let _ = rustix::io::write(&self.cancel, &[1]);
    }
}

/// Reads `fd` until end of file or cancellation, sending each chunk.
fn forward(out: &Output, fd: &OwnedFd, cancel: &OwnedFd, outbox: &Outbox) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let mut fds = [
            PollFd::new(fd, PollFlags::IN),
            PollFd::new(cancel, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => {
                crate::log!("output stream {:?}: poll failed: {e}", out.id);
                return;
            }
        }
        if !fds[1].revents().is_empty() {
            return;
        }
        if fds[0].revents().is_empty() {
            continue;
        }
        let n = match rustix::io::read(fd, &mut buf) {
            Ok(0) | Err(Errno::IO) => return,
            Ok(n) => n,
            Err(Errno::INTR | Errno::AGAIN) => continue,
            Err(e) => {
                crate::log!("output stream {:?}: read failed: {e}", out.id);
                return;
            }
        };
        let Some(stream) = out.id else { continue };
        let closed = out.lock();
        if *closed {
            return;
        }
        outbox.send(&Message::Stream {
            stream,
            data: buf[..n].to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isola_proto::Transport;
    use std::fs::File;
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    /// A registry whose outbox writes to the returned host end.
    fn streams() -> (Arc<Streams>, Transport<UnixStream>) {
        let (host, guest) = UnixStream::pair().unwrap();
        let outbox = Arc::new(Outbox::new(File::from(OwnedFd::from(guest))));
        (Arc::new(Streams::new(outbox)), Transport::new(host))
    }

    fn next(host: &mut Transport<UnixStream>) -> Message {
        host.recv_deadline(Instant::now() + Duration::from_secs(10))
            .unwrap()
    }

    fn assert_silent(host: &mut Transport<UnixStream>) {
        let r = host.recv_deadline(Instant::now() + Duration::from_millis(300));
        assert!(r.is_err(), "the agent sent {r:?}");
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap()
    }

    fn chunk(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 7 + j) as u8).collect()
    }

    #[test]
    fn written_bytes_are_credited_and_arrive_in_order() {
        let (s, mut host) = streams();
        let (r, w) = pipe();
        s.start_input(5, w).unwrap();
        // The process reads slowly, in small pieces.
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut f = File::from(r);
            let mut buf = [0u8; 4096];
            loop {
                match f.read(&mut buf).unwrap() {
                    0 => return all,
                    n => all.extend_from_slice(&buf[..n]),
                }
                if all.len() % (256 * 1024) < 4096 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        // A well-behaved host: never more than the window uncredited.
        let sizes = [1, 100, MAX_STREAM_CHUNK, 70_000, MAX_STREAM_CHUNK, 3];
        let mut want = Vec::new();
        let mut window = STREAM_WINDOW as usize;
        let mut credits = Vec::new();
        for round in 0..12 {
            for (i, len) in sizes.iter().enumerate() {
                while window < *len {
                    match next(&mut host) {
                        Message::StreamCredit { stream: 5, bytes } => {
                            credits.push(bytes);
                            window += bytes as usize;
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                let data = chunk(round * 10 + i, *len);
                want.extend_from_slice(&data);
                window -= data.len();
                s.input(5, data);
            }
        }
        // Everything written is credited once the queue has drained.
        while window < STREAM_WINDOW as usize {
            match next(&mut host) {
                Message::StreamCredit { stream: 5, bytes } => {
                    credits.push(bytes);
                    window += bytes as usize;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            window, STREAM_WINDOW as usize,
            "credited more than was sent"
        );
        assert!(
            credits.len() <= want.len() / CREDIT_BATCH as usize + 12 * sizes.len(),
            "{} credits for {} bytes",
            credits.len(),
            want.len()
        );
        s.close_input(5);
        assert!(!s.in_use(5));
        assert_eq!(reader.join().unwrap(), want);
        assert_eq!(s.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_process_that_closes_stdin_closes_the_stream_towards_the_host() {
        let (s, mut host) = streams();
        let (r, w) = pipe();
        s.start_input(7, w).unwrap();
        drop(r);
        s.input(7, b"nobody reads this".to_vec());
        assert_eq!(next(&mut host), Message::StreamClose { stream: 7 });
        // Data the host had in flight, and its own close, are dropped without a word; then the
        // id is free.
        s.input(7, b"in flight".to_vec());
        assert!(s.in_use(7));
        s.close_input(7);
        assert!(!s.in_use(7));
        assert_eq!(s.dropped.load(Ordering::Relaxed), 0);
        // Nothing else was sent (no credit after the close).
        assert_silent(&mut host);
    }

    #[test]
    fn an_exited_process_closes_its_stdin_once_and_only_if_the_host_did_not() {
        let (s, mut host) = streams();
        let (_r, w) = pipe();
        s.start_input(8, w).unwrap();
        s.end_input(8);
        s.end_input(8);
        assert_eq!(next(&mut host), Message::StreamClose { stream: 8 });
        s.close_input(8);

        let (_r, w) = pipe();
        s.start_input(9, w).unwrap();
        s.close_input(9);
        s.end_input(9);
        s.input(10, vec![1]);
        assert_eq!(
            s.dropped.load(Ordering::Relaxed),
            1,
            "data for an unknown stream"
        );
        // No close for the stream the host closed.
        assert_silent(&mut host);
    }

    #[test]
    fn a_host_that_ignores_credit_loses_the_stream_not_the_agent() {
        let (s, mut host) = streams();
        // The process never reads: the pipe fills, then the queue.
        let (_r, w) = pipe();
        s.start_input(3, w).unwrap();
        let mut sent = 0;
        while sent <= STDIN_QUEUE_MAX + (1 << 20) {
            s.input(3, vec![0; MAX_STREAM_CHUNK]);
            sent += MAX_STREAM_CHUNK;
        }
        loop {
            match next(&mut host) {
                Message::StreamCredit { stream: 3, .. } => {}
                m => {
                    assert_eq!(m, Message::StreamClose { stream: 3 });
                    break;
                }
            }
        }
        assert!(s.in_use(3));
        s.close_input(3);
        assert!(!s.in_use(3));
    }
}
