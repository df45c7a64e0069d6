//! Finding the agent's virtio-serial port (virtio-console multiport) in the guest.
//!
//! The host names the port (`-device virtserialport,name=isola.agent`); the guest kernel shows
//! the name in `/sys/class/virtio-ports/vportNpM/name` and devtmpfs creates `/dev/vportNpM`.
//! The name arrives over virtio-console's control queue, possibly a little after the device,
//! so the lookup retries until a deadline.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const PORTS_DIR: &str = "/sys/class/virtio-ports";

/// The port could not be found or opened.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// No port with the name appeared in time.
    #[error("no virtio-serial port named {name:?} within {waited:?} (ports seen: {seen:?})")]
    NotFound {
        /// The name looked for.
        name: String,
        /// How long the agent waited.
        waited: Duration,
        /// `vportNpM=name` of the ports present.
        seen: Vec<String>,
    },
    /// Opening the device failed.
    #[error("open {path}")]
    Open {
        /// The device node.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn scan(name: &str, seen: &mut Vec<String>) -> Option<PathBuf> {
    seen.clear();
    for entry in fs::read_dir(PORTS_DIR).ok()?.flatten() {
        let dev = entry.file_name().to_string_lossy().into_owned();
        let port_name = fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        let port_name = port_name.trim_end_matches('\n');
        seen.push(format!("{dev}={port_name}"));
        if port_name == name {
            return Some(PathBuf::from("/dev").join(dev));
        }
    }
    None
}

/// Waits up to `wait` for the port named `name` and opens it read-write (close-on-exec).
///
/// # Errors
/// [`PortError::NotFound`] after `wait`; [`PortError::Open`].
pub fn open_port(name: &str, wait: Duration) -> Result<File, PortError> {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        if let Some(path) = scan(name, &mut seen) {
            if path.exists() {
                return OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(&path)
                    .map_err(|source| PortError::Open { path, source });
            }
        }
        if start.elapsed() >= wait {
            return Err(PortError::NotFound {
                name: name.to_owned(),
                waited: start.elapsed(),
                seen,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
