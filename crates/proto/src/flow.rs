//! Flow control of host → guest streams, sender side (the rules are in [`crate::message`]).
//!
//! A [`SendWindow`] counts the bytes its sender may still send on one stream. The thread that
//! reads the agent adds the agent's credits ([`SendWindow::credit`]) and closes the window when
//! the stream ends ([`SendWindow::close`]); the sender waits for credit ([`SendWindow::wait`])
//! and takes what it sends ([`SendWindow::take`]). The agent is not trusted: a credit can only
//! refill the window up to [`STREAM_WINDOW`] (a guest crediting bytes it never got does not
//! let the host queue more than the window in it), and an agent that never credits stalls this
//! stream's sender, nobody else, until the window is closed.

use std::sync::{Condvar, Mutex, MutexGuard};

use crate::message::STREAM_WINDOW;

/// Why bytes could not be taken from a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The stream has ended: nothing more may be sent on it.
    #[error("stream closed")]
    Closed,
    /// More bytes than the window allows now.
    #[error("{len} bytes exceed the {credit} bytes of credit left")]
    Exceeded {
        /// Bytes the sender wanted to send.
        len: usize,
        /// Bytes it was allowed.
        credit: u32,
    },
}

#[derive(Debug)]
struct Inner {
    credit: u32,
    closed: bool,
}

/// The send window of one host → guest stream, shared by its sender and the channel's reader.
#[derive(Debug)]
pub struct SendWindow {
    inner: Mutex<Inner>,
    cv: Condvar,
}

impl SendWindow {
    /// A window with `credit` bytes to send: [`STREAM_WINDOW`] for a stream the agent knows, 0 for
    /// one whose request has not been answered yet (then [`SendWindow::open`] it).
    pub fn new(credit: u32) -> SendWindow {
        SendWindow {
            inner: Mutex::new(Inner {
                credit: credit.min(STREAM_WINDOW),
                closed: false,
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The agent now knows the stream: the whole window may be sent.
    pub fn open(&self) {
        self.credit(STREAM_WINDOW);
    }

    /// Adds the agent's credit of `bytes` (at most up to a full window); wakes the sender.
    pub fn credit(&self, bytes: u32) {
        let mut g = self.lock();
        if !g.closed && bytes > 0 {
            g.credit = g.credit.saturating_add(bytes).min(STREAM_WINDOW);
            self.cv.notify_all();
        }
    }

    /// Ends the stream: the sender's waits return `None` and its takes fail from now on.
    pub fn close(&self) {
        let mut g = self.lock();
        g.closed = true;
        g.credit = 0;
        self.cv.notify_all();
    }

    /// Whether the window was closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits until there is credit and returns how much (`None` once the window is closed).
    pub fn wait(&self) -> Option<usize> {
        let mut g = self.lock();
        loop {
            if g.closed {
                return None;
            }
            if g.credit > 0 {
                return Some(g.credit as usize);
            }
            g = self
                .cv
                .wait(g)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Takes `len` bytes of credit for data about to be sent; never waits.
    ///
    /// # Errors
    /// [`WindowError::Closed`] once the window is closed (drop the data);
    /// [`WindowError::Exceeded`] when `len` is more than the credit left (nothing is taken).
    pub fn take(&self, len: usize) -> Result<(), WindowError> {
        let mut g = self.lock();
        if g.closed {
            return Err(WindowError::Closed);
        }
        match u32::try_from(len) {
            Ok(n) if n <= g.credit => {
                g.credit -= n;
                Ok(())
            }
            _ => Err(WindowError::Exceeded {
                len,
                credit: g.credit,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn takes_never_exceed_the_window() {
        let w = SendWindow::new(STREAM_WINDOW);
        assert_eq!(w.wait(), Some(STREAM_WINDOW as usize));
        w.take(STREAM_WINDOW as usize - 10).unwrap();
        assert_eq!(
            w.take(11),
            Err(WindowError::Exceeded {
                len: 11,
                credit: 10
            })
        );
        w.take(10).unwrap();
        assert_eq!(
            w.take(usize::MAX),
            Err(WindowError::Exceeded {
                len: usize::MAX,
                credit: 0
            })
        );
    }

    #[test]
    fn credits_saturate_at_a_full_window() {
        let w = SendWindow::new(0);
        w.credit(u32::MAX);
        w.credit(u32::MAX);
        assert_eq!(w.wait(), Some(STREAM_WINDOW as usize));
        w.take(1).unwrap();
        w.credit(5);
        assert_eq!(w.wait(), Some(STREAM_WINDOW as usize));
        assert_eq!(
            SendWindow::new(u32::MAX).wait(),
            Some(STREAM_WINDOW as usize)
        );
    }

    #[test]
    fn a_waiting_sender_wakes_on_credit_and_on_close() {
        let w = Arc::new(SendWindow::new(0));
        let w2 = Arc::clone(&w);
        let waiter = std::thread::spawn(move || w2.wait());
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "waited without credit");
        w.open();
        assert_eq!(waiter.join().unwrap(), Some(STREAM_WINDOW as usize));

        w.take(STREAM_WINDOW as usize).unwrap();
        let w2 = Arc::clone(&w);
        let waiter = std::thread::spawn(move || w2.wait());
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "waited without credit");
        w.close();
        assert_eq!(waiter.join().unwrap(), None);
    }

    #[test]
    fn a_closed_window_stays_closed() {
        let w = SendWindow::new(STREAM_WINDOW);
        w.close();
        w.credit(100);
        assert!(w.is_closed());
        assert_eq!(w.wait(), None);
        assert_eq!(w.take(0), Err(WindowError::Closed));
    }
}
