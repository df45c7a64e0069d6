//! A container's lifecycle state as the engine records it (Docker's `State` object).

use serde::{Deserialize, Serialize};

/// Docker's container statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created, never started (or being started).
    #[default]
    Created,
    /// Its process runs.
    Running,
    /// Frozen.
    Paused,
    /// Its process ended; the exit code is recorded.
    Exited,
    /// Being removed.
    Removing,
    /// Its monitor vanished without recording an exit (killed, or the host rebooted).
    Dead,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Exited => "exited",
            Status::Removing => "removing",
            Status::Dead => "dead",
        })
    }
}

/// The recorded state of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Current status.
    pub status: Status,
    /// Host PID of the container's process (process isolation) or of its VM monitor (VM isolation);
    /// 0 when not running.
    pub pid: i32,
    /// Exit code of the last run (Docker's convention: 128+N for signal N, 137 for an OOM kill).
    pub exit_code: i32,
    /// Whether the last run was ended by the OOM killer.
    pub oom_killed: bool,
    /// Why the last start or run failed, if it did (one line).
    pub error: String,
    /// RFC 3339 time of the last start.
    pub started_at: Option<String>,
    /// RFC 3339 time the last run ended.
    pub finished_at: Option<String>,
    /// PID of the monitor process that owns the running container; 0 when none.
    pub monitor_pid: i32,
    /// Start time of the monitor (/proc/PID/stat field 22), to tell a live monitor from a reused PID.
    pub monitor_start: u64,
}

/// The time now as Docker writes it: RFC 3339 with nanoseconds, UTC.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
