//! The container's terminal (config.md `process.terminal`): a pseudo-terminal made inside the
//! container, whose master is handed to the caller over its `--console-socket` with `SCM_RIGHTS`
//! (the convention runc, conmon and containerd share), and whose slave becomes the process's stdio
//! and controlling terminal.

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};

use crate::error::{Error, Result};

/// Connects to the caller's console socket (before pivot_root, while the host path resolves).
pub fn connect(path: &Path) -> Result<OwnedFd> {
    // Named through its directory's descriptor, so a path longer than a socket address allows works.
    let err = |e| Error::io("connect to console socket", path, e);
    let (_dir, short) = crate::sync::short_socket_path(path).map_err(err)?;
    let s = UnixStream::connect(short).map_err(err)?;
    Ok(OwnedFd::from(s))
}

/// The console connection a process needs: `None` without `process.terminal`; with it, a connection
/// to `socket`, which must then be given.
pub fn console_for(
    process: &oci_spec::runtime::Process,
    socket: Option<&Path>,
) -> Result<Option<OwnedFd>> {
    match (process.terminal().unwrap_or(false), socket) {
        (true, Some(path)) => connect(path).map(Some),
        (true, None) => Err(Error::Unsupported(
            "process.terminal is set: a --console-socket is needed to receive the terminal".into(),
        )),
        (false, _) => Ok(None),
    }
}

/// Sends `fd` over `socket` with `SCM_RIGHTS`, with `name` as the payload.
pub fn send_fd(socket: BorrowedFd<'_>, name: &str, fd: BorrowedFd<'_>) -> Result<()> {
    let fds = [fd];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(Error::sys(
            "send terminal",
            std::io::Error::other("control buffer too small"),
        ));
    }
    sendmsg(
        socket,
        &[IoSlice::new(name.as_bytes())],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .map_err(|e| Error::sys("send terminal over the console socket", e))?;
    Ok(())
}

/// The receiving side of [`send_fd`] (what a `--console-socket` listener does with each
/// connection): reads one message from `socket` and returns the descriptor it carries
/// (close-on-exec) and its payload (the sender's name for it, e.g. `/dev/ptmx`, at most 256 bytes).
///
/// # Errors
/// The errno of recvmsg(2); end of file or a message without a descriptor is an error too.
pub fn recv_fd(socket: BorrowedFd<'_>) -> Result<(OwnedFd, String)> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut payload = [0u8; 256];
    let got = recvmsg(
        socket,
        &mut [std::io::IoSliceMut::new(&mut payload)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| Error::sys("receive terminal from the console socket", e))?;
    let name = String::from_utf8_lossy(&payload[..got.bytes.min(payload.len())]).into_owned();
    let mut found = None;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = msg {
            // Keep the first; any others are closed as the iterator drops them.
            for fd in fds {
                found.get_or_insert(fd);
            }
        }
    }
    found.map(|fd| (fd, name)).ok_or_else(|| {
        Error::sys(
            "receive terminal from the console socket",
            std::io::Error::other("message carries no file descriptor"),
        )
    })
}

/// Inside the container (after pivot_root and the devpts mount): makes a pseudo-terminal, sends its
/// master over `socket`, binds the slave onto `/dev/console`, and makes the slave this process's
/// stdin, stdout, stderr and controlling terminal (in a new session).
pub fn setup(socket: &OwnedFd) -> Result<()> {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        .map_err(|e| Error::io("open", "/dev/ptmx", e))?;
    grantpt(&master).map_err(|e| Error::sys("grantpt", e))?;
    unlockpt(&master).map_err(|e| Error::sys("unlockpt", e))?;
    let name = ptsname(&master, Vec::new()).map_err(|e| Error::sys("ptsname", e))?;
    let name = name.to_string_lossy().into_owned();
    let slave = rustix::fs::open(
        &name,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open", &name, e))?;
    bind_console(&name);
    send_fd(socket.as_fd(), "/dev/ptmx", master.as_fd())?;
    drop(master);
    rustix::process::setsid().map_err(|e| Error::sys("setsid", e))?;
    for target in 0..3 {
        // SAFETY: 0, 1 and 2 are the standard streams; replacing them with the terminal is the point.
        let mut std = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(target) };
        rustix::io::dup2(&slave, &mut std).map_err(|e| Error::sys("dup2 terminal", e))?;
        std::mem::forget(std);
    }
    rustix::process::ioctl_tiocsctty(&slave)
        .map_err(|e| Error::sys("set controlling terminal", e))?;
    Ok(())
}

/// Bind-mounts the terminal onto /dev/console, as the spec asks for containers with a terminal.
/// Best effort: a container without /dev/console keeps working.
fn bind_console(slave: &str) {
    let console = Path::new("/dev/console");
    if !console.exists() {
        let _ = std::fs::File::create(console);
    }
    if let Err(e) = rustix::mount::mount_bind(slave, console) {
        tracing::debug!("bind {slave} onto /dev/console: {e}");
    }
}
