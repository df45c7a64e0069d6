//! The agent's side of the channel towards the host, shared by every thread that reports
//! something: the request loop (answers), the stream forwarders (output bytes, closes), the exit
//! notifiers (events, late `Wait` answers) and the panic path.
//!
//! One mutex around one [`Transport`] keeps frames whole: a frame is written with a single
//! `write_all` while the lock is held, so frames of different threads never interleave. A write
//! blocks while the host does not read (virtio-serial backpressure); that stalls the writer, not
//! the request loop's reading.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use isola_proto::{Message, Transport};

/// The write half of the channel.
#[derive(Debug)]
pub struct Outbox {
    transport: Mutex<Transport<File>>,
    broken: AtomicBool,
}

impl Outbox {
    /// Wraps the channel (a duplicate of the port's descriptor, so reading stays independent).
    pub fn new(port: File) -> Outbox {
        Outbox {
            transport: Mutex::new(Transport::new(port)),
            broken: AtomicBool::new(false),
        }
    }

    /// Sends one message. Returns false when the channel is broken (reported once on the
    /// console); the request loop then sees the host gone and powers the VM off.
    pub fn send(&self, msg: &Message) -> bool {
        if self.broken.load(Ordering::Relaxed) {
            return false;
        }
        let mut t = match self.transport.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        match t.send(msg) {
            Ok(()) => true,
            Err(e) => {
                if !self.broken.swap(true, Ordering::Relaxed) {
                    crate::log!("channel to the host failed: {}", crate::chain(&e));
                }
                false
            }
        }
    }

    /// Like [`Outbox::send`], but gives up at once if another thread holds the channel (the
    /// panic path must not wait for a lock the panicking thread may hold itself).
    pub fn try_send(&self, msg: &Message) -> bool {
        match self.transport.try_lock() {
            Ok(mut t) => t.send(msg).is_ok(),
            Err(_) => false,
        }
    }
}
