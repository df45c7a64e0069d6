//! Standard streams for PID 1. The kernel opens /dev/console as fds 0, 1, 2 for init only if
//! the initramfs has that node; otherwise they are closed, and the first files the agent opens
//! would take their numbers. After /dev is mounted, this fills any closed one with /dev/console.

use std::os::fd::AsRawFd;

/// Points each closed fd among 0, 1, 2 at /dev/console (best effort: no console, no logs).
pub fn ensure_stdio() {
    let Ok(console) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    else {
        return;
    };
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the flags of a descriptor number; no memory is involved.
        let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
        if !open && console.as_raw_fd() != fd {
            // SAFETY: dup2 onto a descriptor number that is closed (checked above), so no
            // open file owned by anything else in this process is replaced.
            unsafe { libc::dup2(console.as_raw_fd(), fd) };
        }
    }
    if console.as_raw_fd() <= 2 {
        // It landed on a closed standard fd itself: keep it open there.
        std::mem::forget(console);
    }
}
