//! Messages between the runtime (parent) and the container's setup processes (children) over a
//! `SOCK_SEQPACKET` socket pair: one JSON message per packet, so boundaries are kept and a child that
//! dies shows up as end-of-file rather than a hang.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::net::{
    recv, send, socketpair, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType,
};
use serde::{Deserialize, Serialize};

/// Largest message, in bytes.
const MAX_MESSAGE: usize = 64 * 1024;

/// What the processes tell each other while a container or exec process is set up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Parent → child: carry on (the child was put in its cgroup, maps written, hooks run, …).
    Go,
    /// Child → parent: a new user namespace exists; write uid_map/gid_map of this PID.
    MapIds {
        /// The PID whose maps to write (host view).
        pid: i32,
    },
    /// Intermediate child → parent: the process that will exec, as the parent sees its PID.
    Pid {
        /// Host PID.
        pid: i32,
    },
    /// Init → parent: namespaces and mounts are in place; run the createRuntime hooks now.
    CreateRuntimeHooks,
    /// Parent → init: the createRuntime hooks ran; here is the state for the container's own hooks.
    State {
        /// The runtime-spec state JSON.
        json: String,
    },
    /// Init → parent: everything is set up; the container is created and waits for start.
    Ready,
    /// Start command → init: exec the container process.
    Start,
    /// Any → peer: setup failed; the process exits with `code`.
    Error {
        /// The error chain, one line.
        message: String,
        /// Exit status meant for the process: 126 cannot invoke, 127 not found, 1 otherwise.
        code: i32,
    },
}

/// A name for the Unix socket at `path` that fits the 108-byte limit of socket addresses whatever
/// the length of `path`: the socket's directory is opened (`O_PATH`) and named through
/// `/proc/self/fd/N`. The returned descriptor must stay open while the name is used.
pub fn short_socket_path(path: &std::path::Path) -> io::Result<(OwnedFd, std::path::PathBuf)> {
    use std::os::fd::AsRawFd;
    let dir = path.parent().unwrap_or(std::path::Path::new("/"));
    let fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let short = std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .join(path.file_name().unwrap_or_default());
    Ok((fd, short))
}

/// One end of a message channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// A connected pair of channels (close-on-exec).
pub fn pair() -> io::Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    /// Wraps a connected SEQPACKET (or STREAM, for the start socket: one message per connection) socket.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Self { fd }
    }

    /// The socket.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Sends one message.
    pub fn send(&self, msg: &Message) -> io::Result<()> {
        let data = serde_json::to_vec(msg).map_err(io::Error::other)?;
        send(&self.fd, &data, SendFlags::NOSIGNAL)?;
        Ok(())
    }

    /// Receives one message; `Ok(None)` on end-of-file (the peer closed or exec'd), an error after
    /// `timeout` without one.
    pub fn recv(&self, timeout: Option<Duration>) -> io::Result<Option<Message>> {
        if let Some(t) = timeout {
            let ts = Timespec::try_from(t).map_err(io::Error::other)?;
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            loop {
                match poll(&mut fds, Some(&ts)) {
                    Ok(0) => {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))
                    }
                    Ok(_) => break,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = loop {
            match recv(self.fd.as_fd(), &mut buf, RecvFlags::empty()) {
                Ok((n, _)) => break n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf[..n]).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("malformed message: {e}"),
            )
        })
    }

    /// Receives a message and insists it is `want`; an `Error` message becomes the returned error.
    pub fn expect(&self, want: &Message, timeout: Option<Duration>) -> Result<(), Message> {
        match self.recv(timeout) {
            Ok(Some(m)) if m == *want => Ok(()),
            Ok(Some(m @ Message::Error { .. })) => Err(m),
            Ok(Some(other)) => Err(Message::Error {
                message: format!("protocol error: expected {want:?}, got {other:?}"),
                code: 1,
            }),
            Ok(None) => Err(Message::Error {
                message: "setup process exited unexpectedly".into(),
                code: 1,
            }),
            Err(e) => Err(Message::Error {
                message: format!("waiting for setup process: {e}"),
                code: 1,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_eof() {
        let (a, b) = pair().unwrap();
        a.send(&Message::Pid { pid: 42 }).unwrap();
        assert_eq!(
            b.recv(Some(Duration::from_secs(1))).unwrap(),
            Some(Message::Pid { pid: 42 })
        );
        drop(a);
        assert_eq!(b.recv(Some(Duration::from_secs(1))).unwrap(), None);
    }

    #[test]
    fn times_out() {
        let (_a, b) = pair().unwrap();
        let e = b.recv(Some(Duration::from_millis(20))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
