//! Byte streams between the host and the processes' stdio.
//!
//! Guest → host: one forwarder thread per output (a pipe's read end or a terminal's master)
//! reads, sends [`Message::Stream`] chunks of at most [`MAX_STREAM_CHUNK`] bytes, and ends with
//! [`Message::StreamClose`] at end of file (for a terminal, `EIO` once the last slave is closed
//! is end of file). The exit notifier can close an output itself when a descendant keeps it open
//! past the grace period ([`Output::force_close`]); nothing of that stream is sent afterwards.
//!
//! Host → guest: one writer thread per stdin stream, fed through an unbounded queue, so a
//! process that does not read its stdin never blocks the request loop. The queue holds at most
//! [`STDIN_QUEUE_MAX`] bytes: past that the input is dropped and the process's stdin closed
//! (and the console says so), rather than the agent's memory growing without bound.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use isola_proto::{Message, MAX_STREAM_CHUNK};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;

use crate::out::Outbox;

/// Most bytes of host input queued for one stdin stream (16 MiB).
pub const STDIN_QUEUE_MAX: usize = 16 << 20;

/// Bytes read from an output per [`Message::Stream`] (a pipe holds 64 KiB by default).
const READ_CHUNK: usize = 64 * 1024;
const _: () = assert!(READ_CHUNK <= MAX_STREAM_CHUNK);

/// The live streams, by host-chosen id.
#[derive(Debug, Default)]
pub struct Streams {
    map: Mutex<HashMap<u32, Entry>>,
    dropped: AtomicUsize,
}

#[derive(Debug)]
enum Entry {
    Stdin(Stdin),
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

    /// Host → guest bytes on `id`: queued for its stdin writer; dropped (and counted, see
    /// [`Streams::note_dropped`]) when `id` is not a live stdin stream.
    pub fn input(&self, id: u32, data: Vec<u8>) {
        let mut m = self.lock();
        let Some(Entry::Stdin(s)) = m.get(&id) else {
            drop(m);
            self.note_dropped(id, "data");
            return;
        };
        if s.queue(data).is_err() {
            crate::log!(
                "stdin stream {id}: more than {STDIN_QUEUE_MAX} bytes queued (the process does not read); input dropped and its stdin closed"
            );
            m.remove(&id);
        }
    }

    /// The host closed stream `id`: the process's stdin gets end of file once the queued bytes
    /// are written. Unknown ids are dropped.
    pub fn close_input(&self, id: u32) {
        let removed = {
            let mut m = self.lock();
            match m.get(&id) {
                Some(Entry::Stdin(_)) => m.remove(&id),
                _ => None,
            }
        };
        match removed {
            Some(Entry::Stdin(s)) => s.close(),
            _ => self.note_dropped(id, "close"),
        }
    }

    /// Ends a process's stdin stream without the host asking (the process exited).
    pub fn end_input(&self, id: u32) {
        let removed = {
            let mut m = self.lock();
            match m.get(&id) {
                Some(Entry::Stdin(_)) => m.remove(&id),
                _ => None,
            }
        };
        if let Some(Entry::Stdin(s)) = removed {
            s.close();
        }
    }

    /// Sets the window size of the terminal whose output is stream `id` (`TIOCSWINSZ`).
    ///
    /// # Errors
    /// See [`ResizeError`].
    pub fn resize(&self, id: u32, rows: u16, cols: u16) -> Result<(), ResizeError> {
        let pty = match self.lock().get(&id) {
            None | Some(Entry::Stdin(_)) => return Err(ResizeError::Unknown),
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
    pub fn start_input(&self, id: u32, fd: OwnedFd) -> std::io::Result<()> {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let queued = Arc::new(AtomicUsize::new(0));
        let q = Arc::clone(&queued);
        std::thread::Builder::new()
            .name(format!("stdin-{id}"))
            .spawn(move || write_input(id, fd, rx, &q))?;
        self.insert(id, Entry::Stdin(Stdin { tx, queued }));
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

/// The request loop's handle on one stdin writer.
#[derive(Debug)]
struct Stdin {
    tx: Sender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
}

impl Stdin {
    /// Queues `data`; `Err` when the queue would exceed [`STDIN_QUEUE_MAX`].
    fn queue(&self, data: Vec<u8>) -> Result<(), ()> {
        let len = data.len();
        if self.queued.fetch_add(len, Ordering::Relaxed) + len > STDIN_QUEUE_MAX {
            return Err(());
        }
        // A writer that has ended (its process closed stdin) just drops the bytes.
        let _ = self.tx.send(data);
        Ok(())
    }

    /// Dropping the sender ends the writer once it has written what is queued.
    fn close(self) {}
}

fn write_input(id: u32, fd: OwnedFd, rx: mpsc::Receiver<Vec<u8>>, queued: &AtomicUsize) {
    let mut broken = false;
    for data in rx {
        queued.fetch_sub(data.len(), Ordering::Relaxed);
        if broken {
            continue;
        }
        let mut rest = &data[..];
        while !rest.is_empty() {
            match rustix::io::write(&fd, rest) {
                Ok(n) => rest = &rest[n..],
                Err(Errno::INTR) => {}
                // The process closed its stdin (EPIPE; SIGPIPE is ignored in the agent) or the
                // terminal hung up: drop the rest, keep draining the queue.
                Err(e) => {
                    if e != Errno::PIPE && e != Errno::IO {
                        crate::log!("stdin stream {id}: write failed: {e}");
                    }
                    broken = true;
                    break;
                }
            }
        }
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
