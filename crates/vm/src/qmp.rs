//! A small QMP client (QEMU Machine Protocol: JSON lines over QEMU's monitor socket).
//!
//! One [`Qmp`] per QEMU; it negotiates capabilities on first use, skips the greeting and events,
//! and can hand QEMU a descriptor with a command (`SCM_RIGHTS`, for `getfd`). Every exchange has a
//! deadline: a stuck QEMU is an error, never a hang.

use std::io::{BufRead, BufReader, IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// Longest line read from QEMU (a `query-*` answer is a few KiB).
const MAX_LINE: u64 = 1 << 20;

/// A QMP connection.
#[derive(Debug)]
pub struct Qmp {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    negotiated: bool,
}

impl Qmp {
    /// Wraps isola's end of QEMU's QMP channel (nothing is exchanged yet).
    ///
    /// # Errors
    /// [`Error::Io`] when the socket cannot be duplicated for reading.
    pub fn new(stream: UnixStream) -> Result<Qmp> {
        let reader = stream
            .try_clone()
            .map_err(|e| Error::io("duplicate", "QMP socket", e))?;
        Ok(Qmp {
            stream,
            reader: BufReader::new(reader),
            negotiated: false,
        })
    }

    /// Runs `command` with `arguments` (`Value::Null` for none) and returns its `return` value.
    /// Waits at most `timeout` for each read and write.
    ///
    /// # Errors
    /// [`Error::Io`] when the channel fails, times out or closes; [`Error::Boot`] when QEMU
    /// answers with an error (the message names the command and QEMU's reason).
    pub fn execute(&mut self, command: &str, arguments: Value, timeout: Duration) -> Result<Value> {
        self.execute_inner(command, arguments, None, timeout)
    }

    /// Like [`Qmp::execute`], and passes `fd` to QEMU with the command (for `getfd`).
    ///
    /// # Errors
    /// As [`Qmp::execute`].
    pub fn execute_with_fd(
        &mut self,
        command: &str,
        arguments: Value,
        fd: BorrowedFd<'_>,
        timeout: Duration,
    ) -> Result<Value> {
        self.execute_inner(command, arguments, Some(fd), timeout)
    }

    fn execute_inner(
        &mut self,
        command: &str,
        arguments: Value,
        fd: Option<BorrowedFd<'_>>,
        timeout: Duration,
    ) -> Result<Value> {
        let io = |e| Error::io("talk QMP to", "QEMU", e);
        self.stream.set_read_timeout(Some(timeout)).map_err(io)?;
        self.stream.set_write_timeout(Some(timeout)).map_err(io)?;
        if !self.negotiated {
            self.send("qmp_capabilities", Value::Null, None)?;
            self.answer("qmp_capabilities")?;
            self.negotiated = true;
        }
        self.send(command, arguments, fd)?;
        self.answer(command)
    }

    fn send(&mut self, command: &str, arguments: Value, fd: Option<BorrowedFd<'_>>) -> Result<()> {
        let io = |e| Error::io("write QMP to", "QEMU", e);
        let mut msg = json!({ "execute": command });
        if !arguments.is_null() {
            msg["arguments"] = arguments;
        }
        let mut line = msg.to_string();
        line.push('\n');
        match fd {
            None => self.stream.write_all(line.as_bytes()).map_err(io),
            Some(fd) => send_with_fd(&self.stream, line.as_bytes(), fd).map_err(io),
        }
    }

    /// Reads lines until the answer: the greeting (`{"QMP": ...}`) and events are skipped.
    fn answer(&mut self, command: &str) -> Result<Value> {
        let io = |e| Error::io("read QMP from", "QEMU", e);
        let mut line = String::new();
        loop {
            line.clear();
            let n = Read::take(&mut self.reader, MAX_LINE)
                .read_line(&mut line)
                .map_err(io)?;
            if n == 0 {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("QEMU closed its monitor before answering {command}"),
                )));
            }
            let v: Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(ret) = v.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = v.get("error") {
                let desc = err
                    .get("desc")
                    .and_then(Value::as_str)
                    .map_or_else(|| err.to_string(), str::to_owned);
                return Err(Error::Boot(format!("QMP {command}: {desc}")));
            }
        }
    }
}

/// Writes all of `data` with `fd` attached to its first byte (`SCM_RIGHTS`).
fn send_with_fd(stream: &UnixStream, data: &[u8], fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(std::io::Error::other("control message does not fit"));
    }
    let sent = rustix::net::sendmsg(
        stream,
        &[IoSlice::new(data)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    let mut w = stream;
    w.write_all(&data[sent..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// A fake QEMU: greets, then answers each line with `reply(line)`.
    fn fake(reply: fn(&Value) -> Value) -> (Qmp, std::thread::JoinHandle<Vec<Value>>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let mut w = theirs.try_clone().unwrap();
            w.write_all(b"{\"QMP\": {\"version\": {}}}\n").unwrap();
            let mut seen = Vec::new();
            for line in BufReader::new(theirs).lines() {
                let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
                w.write_all(b"{\"event\": \"NOISE\"}\n").unwrap();
                let mut out = reply(&v).to_string();
                out.push('\n');
                w.write_all(out.as_bytes()).unwrap();
                seen.push(v);
            }
            seen
        });
        (Qmp::new(ours).unwrap(), t)
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn negotiates_once_and_passes_arguments() {
        let (mut q, t) = fake(|v| match v["execute"].as_str() {
            Some("query-status") => json!({"return": {"status": "running"}}),
            Some("bad") => json!({"error": {"class": "GenericError", "desc": "no way"}}),
            _ => json!({"return": {}}),
        });
        let r = q.execute("query-status", Value::Null, T).unwrap();
        assert_eq!(r["status"], "running");
        q.execute("migrate", json!({"uri": "fd:x"}), T).unwrap();
        let e = q.execute("bad", Value::Null, T).unwrap_err().to_string();
        assert_eq!(e, "QMP bad: no way");
        drop(q);
        let seen = t.join().unwrap();
        let names: Vec<_> = seen.iter().map(|v| v["execute"].clone()).collect();
        assert_eq!(
            names,
            ["qmp_capabilities", "query-status", "migrate", "bad"]
        );
        assert_eq!(seen[2]["arguments"]["uri"], "fd:x");
        assert!(seen[1].get("arguments").is_none());
    }

    #[test]
    fn hands_over_a_descriptor() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        send_with_fd(&ours, b"hello\n", file.as_fd()).unwrap();
        let mut buf = [0u8; 16];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let r = rustix::net::recvmsg(
            &theirs,
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut control,
            rustix::net::RecvFlags::empty(),
        )
        .unwrap();
        assert_eq!(&buf[..r.bytes], b"hello\n");
        let got: Vec<_> = control
            .drain()
            .filter_map(|m| match m {
                rustix::net::RecvAncillaryMessage::ScmRights(fds) => Some(fds.count()),
                _ => None,
            })
            .collect();
        assert_eq!(got, [1]);
        let mut rest = String::new();
        drop(ours);
        (&theirs).read_to_string(&mut rest).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn a_closed_monitor_is_an_error() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        let mut q = Qmp::new(ours).unwrap();
        assert!(q.execute("stop", Value::Null, T).is_err());
    }
}
