//! Where a container's files live.
//!
//! ```text
//! <root>/containers/<id>/upper, work   overlayfs upper and work directories (the writable layer)
//! <root>/containers/<id>/rootfs        the overlay mount point while the container runs
//! <root>/containers/<id>/config.json   the OCI bundle's spec (the bundle is this directory)
//! <root>/containers/<id>/hosts, hostname, resolv.conf
//! <root>/containers/<id>/container.log the log, one JSON object per line (Docker's json-file shape)
//! <run-root>/containers/<id>/monitor.sock, console.sock, monitor.log
//! <run-root>/runtime/                  the runtime library's state root (process isolation)
//! ```

use std::path::{Path, PathBuf};

/// The engine's two roots.
#[derive(Debug, Clone)]
pub struct Roots {
    /// `--root`: persistent state.
    pub root: PathBuf,
    /// `--run-root`: state that does not survive a reboot.
    pub run_root: PathBuf,
}

impl Roots {
    /// `<root>/containers/<id>`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }
    /// `<run-root>/containers/<id>`.
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.run_root.join("containers").join(id)
    }
    /// The merged root filesystem mount point.
    pub fn rootfs(&self, id: &str) -> PathBuf {
        self.dir(id).join("rootfs")
    }
    /// The log file.
    pub fn log(&self, id: &str) -> PathBuf {
        self.dir(id).join("container.log")
    }
    /// The monitor's control and attach socket.
    pub fn socket(&self, id: &str) -> PathBuf {
        self.run_dir(id).join("monitor.sock")
    }
    /// The runtime library's state root.
    pub fn runtime_root(&self) -> PathBuf {
        self.run_root.join("runtime")
    }
}

/// Whether `path` is a mount point (its device differs from its parent's, or it is listed in
/// /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| unescape(m) == want))
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Binds a listening Unix socket at `path` (any length).
pub fn bind_unix(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    let _ = std::fs::remove_file(path);
    let (_dir, short) = isola_runtime::sync::short_socket_path(path)?;
    std::os::unix::net::UnixListener::bind(short)
}

/// Connects to a Unix socket at `path` (any length).
pub fn connect_unix(path: &Path) -> std::io::Result<std::os::unix::net::UnixStream> {
    let (_dir, short) = isola_runtime::sync::short_socket_path(path)?;
    std::os::unix::net::UnixStream::connect(short)
}
