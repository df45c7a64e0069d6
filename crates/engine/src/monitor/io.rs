//! Small file-descriptor helpers for the monitor: pipes, non-blocking reads, receiving the
//! terminal's master over the console socket, terminal size.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

/// A pipe whose ends are close-on-exec (the container's ends are dup'ed onto 0, 1, 2, which are not).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Makes `fd` non-blocking.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

/// Reads what is available; `Ok(None)` at end of file, `Ok(Some(0))` when nothing is ready.
pub fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match rustix::io::read(fd, buf) {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(n)),
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Ok(Some(0)),
        // A terminal whose slave side is closed reads as EIO: the same as end of file.
        Err(rustix::io::Errno::IO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Receives one file descriptor sent with `SCM_RIGHTS` on `socket`.
pub fn recv_fd(socket: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut payload = [0u8; 256];
    recvmsg(
        socket,
        &mut [io::IoSliceMut::new(&mut payload)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(io::Error::other(
        "no file descriptor received on the console socket",
    ))
}

/// Sets the terminal size of the terminal `fd` (`TIOCSWINSZ`).
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(fd, ws)?;
    Ok(())
}

/// Writes all of `data` to a blocking `fd`.
pub fn write_all(fd: impl AsFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd.as_fd(), data) {
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
