//! Persistent state of containers under the runtime root: `<root>/<id>/state.json`, written atomically,
//! plus the container's start socket. The runtime-spec `state` (runtime.md "State") is derived from it.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{ContainerState, State};

/// A container's status: runtime.md "State" (creating, created, running, stopped) plus `paused`, which
/// runc and its callers (podman, containerd) also use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created.
    Creating,
    /// Created, waiting for start.
    Created,
    /// The program runs.
    Running,
    /// Frozen by the cgroup freezer.
    Paused,
    /// The process has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

impl From<Status> for ContainerState {
    fn from(s: Status) -> Self {
        match s {
            Status::Creating => ContainerState::Creating,
            Status::Created => ContainerState::Created,
            Status::Running | Status::Paused => ContainerState::Running,
            Status::Stopped => ContainerState::Stopped,
        }
    }
}
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What the runtime remembers about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Container ID.
    pub id: String,
    /// Absolute bundle directory.
    pub bundle: PathBuf,
    /// Absolute rootfs directory.
    pub rootfs: PathBuf,
    /// Host PID of the container process (its init), once created.
    pub pid: Option<i32>,
    /// Start time of that PID (clock ticks since boot, /proc/PID/stat field 22), to detect PID reuse.
    pub pid_start: Option<u64>,
    /// The container's cgroup path (relative to the cgroup roots).
    pub cgroup_path: String,
    /// Whether `start` has run.
    pub started: bool,
    /// Creation time, RFC 3339.
    pub created: String,
    /// The config.json annotations.
    #[serde(default)]
    pub annotations: std::collections::HashMap<String, String>,
    /// Whether a new PID namespace was created (then killing the init ends every process).
    #[serde(default)]
    pub own_pid_ns: bool,
}

/// The container's directory under the runtime root.
pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

/// Path of the start socket that the created container's init waits on.
pub fn start_socket(root: &Path, id: &str) -> PathBuf {
    dir(root, id).join("start.sock")
}

impl Record {
    /// Reads `<root>/<id>/state.json`.
    pub fn load(root: &Path, id: &str) -> Result<Self> {
        let path = dir(root, id).join("state.json");
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_owned()))
            }
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        serde_json::from_slice(&data).map_err(|e| Error::Config {
            path,
            reason: e.to_string(),
        })
    }

    /// Writes `<root>/<id>/state.json` atomically (temporary file, then rename).
    pub fn save(&self, root: &Path) -> Result<()> {
        let path = dir(root, &self.id).join("state.json");
        let tmp = dir(root, &self.id).join(".state.json.tmp");
        let data = serde_json::to_vec_pretty(self).expect("state serializes");
        fs::write(&tmp, data).map_err(|e| Error::io("write", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))
    }

    /// Whether the recorded process still exists (and is the same process, not a reused PID).
    pub fn alive(&self) -> bool {
        match (self.pid, self.pid_start) {
            (Some(pid), Some(start)) => {
                pid_start_time(pid).is_some_and(|s| s == start) && !is_zombie(pid)
            }
            _ => false,
        }
    }

    /// The status as runtime-spec defines it; `paused` when the cgroup freezer says so.
    pub fn status(&self, frozen: bool) -> Status {
        if self.pid.is_none() {
            Status::Creating
        } else if !self.alive() {
            Status::Stopped
        } else if frozen {
            Status::Paused
        } else if self.started {
            Status::Running
        } else {
            Status::Created
        }
    }

    /// The runtime-spec `state` object.
    pub fn spec_state(&self, status: Status) -> State {
        let status = ContainerState::from(status);
        let mut s = State::default();
        s.set_version(oci_spec::runtime::VERSION.to_string());
        s.set_id(self.id.clone());
        s.set_status(status);
        s.set_pid(if status == ContainerState::Stopped {
            None
        } else {
            self.pid
        });
        s.set_bundle(self.bundle.clone());
        s.set_annotations((!self.annotations.is_empty()).then(|| self.annotations.clone()));
        s
    }
}

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot), or `None` if there is no such process.
pub fn pid_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive() {
        let pid = std::process::id() as i32;
        let start = pid_start_time(pid).unwrap();
        let rec = Record {
            id: "x".into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            pid: Some(pid),
            pid_start: Some(start),
            cgroup_path: "/isola/x".into(),
            started: true,
            created: String::new(),
            annotations: Default::default(),
            own_pid_ns: true,
        };
        assert!(rec.alive());
        assert_eq!(rec.status(false), Status::Running);
        assert_eq!(rec.status(true), Status::Paused);
        let reused = Record {
            pid_start: Some(start + 1),
            ..rec
        };
        assert!(!reused.alive());
        assert_eq!(reused.status(false), Status::Stopped);
    }
}
