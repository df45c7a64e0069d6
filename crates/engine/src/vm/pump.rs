//! Copying a host descriptor to a host → guest stream within its flow-control window: the
//! container's stdin in the monitor ([`super::host`]) and an exec's stdin in the CLI
//! ([`super::exec`]).

use std::os::fd::AsFd;

use isola_proto::SendWindow;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;

/// Bytes read from the source per chunk (at most one [`isola_proto::MAX_STREAM_CHUNK`]).
const READ_CHUNK: usize = 64 * 1024;
const _: () = assert!(READ_CHUNK <= isola_proto::MAX_STREAM_CHUNK);

/// Why [`pump`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PumpEnd {
    /// The source reached end of file (or failed): the stream should be closed.
    Eof,
    /// The window was closed (the guest gave the stream up, the channel ended) or `send` gave
    /// up: nothing more goes on the stream.
    Stopped,
}

/// Reads `src` and hands each chunk to `send` until end of file, never reading more than the
/// credit `window` has (so the sender never has more than a window uncredited): it waits for
/// credit before each read. `send` takes the chunk's credit from the window and sends it, both
/// under the channel's write lock so that a close of the stream cannot slip in between; it
/// returns false to stop.
pub(crate) fn pump(
    src: impl AsFd,
    window: &SendWindow,
    mut send: impl FnMut(Vec<u8>) -> bool,
) -> PumpEnd {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let Some(credit) = window.wait() else {
            return PumpEnd::Stopped;
        };
        let want = credit.min(buf.len());
        match rustix::io::read(src.as_fd(), &mut buf[..want]) {
            Ok(0) => return PumpEnd::Eof,
            Ok(n) => {
                if !send(buf[..n].to_vec()) {
                    return PumpEnd::Stopped;
                }
            }
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                let mut fds = [PollFd::new(&src, PollFlags::IN)];
                match poll(&mut fds, None) {
                    Ok(_) | Err(Errno::INTR) => {}
                    Err(_) => return PumpEnd::Eof,
                }
            }
            Err(_) => return PumpEnd::Eof,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isola_proto::{WindowError, STREAM_WINDOW};
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[test]
    fn never_more_than_the_window_in_flight() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let total = 5 * STREAM_WINDOW as usize + 12_345;
        let input: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        let writer = {
            let input = input.clone();
            std::thread::spawn(move || std::fs::File::from(w).write_all(&input).unwrap())
        };
        let window = Arc::new(SendWindow::new(0));
        // The "guest": credits what it got, a little at a time, some time after it got it.
        let in_flight = Arc::new(Mutex::new((0usize, 0usize, Vec::new())));
        let guest = {
            let (window, in_flight) = (Arc::clone(&window), Arc::clone(&in_flight));
            std::thread::spawn(move || loop {
                std::thread::sleep(Duration::from_millis(1));
                let (ref mut now, _, ref got) = *in_flight.lock().unwrap();
                let n = (*now).min(100_000);
                *now -= n;
                window.credit(n as u32);
                if got.len() == total && *now == 0 {
                    return;
                }
            })
        };
        window.open();
        let end = pump(&r, &window, |data| {
            let taken = window.take(data.len());
            assert_eq!(taken, Ok(()));
            let (ref mut now, ref mut most, ref mut got) = *in_flight.lock().unwrap();
            *now += data.len();
            *most = (*most).max(*now);
            got.extend_from_slice(&data);
            true
        });
        assert_eq!(end, PumpEnd::Eof);
        writer.join().unwrap();
        guest.join().unwrap();
        let (_, most, got) = &*in_flight.lock().unwrap();
        assert!(*most <= STREAM_WINDOW as usize, "{most} bytes in flight");
        assert!(got == &input, "the bytes arrived changed");
    }

    #[test]
    fn a_sender_waiting_for_credit_stops_when_the_window_closes() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        std::fs::File::from(w).write_all(&[1; 1000]).unwrap();
        let window = Arc::new(SendWindow::new(10));
        let closer = {
            let window = Arc::clone(&window);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                window.close();
            })
        };
        let mut sent = 0;
        let end = pump(&r, &window, |data| {
            sent += data.len();
            window.take(data.len()).is_ok()
        });
        closer.join().unwrap();
        assert_eq!((end, sent), (PumpEnd::Stopped, 10));
        assert_eq!(window.take(1), Err(WindowError::Closed));
    }
}
