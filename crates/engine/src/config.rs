//! What a user asked for when creating a container (Docker's `Config` and `HostConfig`, in isola's
//! own validated types), and the container's recorded state. Stored as JSON in the engine database.

use serde::{Deserialize, Serialize};

/// The isolation mode of a container (`--isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Host kernel; namespaces, cgroups, capabilities, seccomp.
    #[default]
    Process,
    /// A guest kernel in a virtual machine.
    Vm,
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isolation::Process => "process",
            Isolation::Vm => "vm",
        })
    }
}

/// `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// A private network namespace with only loopback, up.
    #[default]
    None,
    /// The host's network namespace.
    Host,
}

/// `-v HOST:CTR[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bind {
    /// Absolute host path.
    pub source: String,
    /// Absolute path in the container.
    pub destination: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// `--tmpfs CTR[:OPTIONS]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tmpfs {
    /// Absolute path in the container.
    pub destination: String,
    /// Mount options, comma-separated as given (e.g. `size=64m,mode=1777`).
    pub options: String,
}

/// `--ulimit NAME=SOFT[:HARD]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ulimit {
    /// Lower-case name as Docker takes it: `nofile`, `nproc`, `core`, …
    pub name: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// The process and identity part of a container's configuration (Docker's `Config`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerConfig {
    /// The image as the user named it.
    pub image: String,
    /// `CMD` given on the command line (replaces the image's Cmd); `None` = the image's.
    pub cmd: Option<Vec<String>>,
    /// `--entrypoint` (replaces the image's Entrypoint, and then the image's Cmd is not used);
    /// `Some(vec![])` for `--entrypoint ""`.
    pub entrypoint: Option<Vec<String>>,
    /// `-e` and `--env-file` entries, `KEY=VALUE`, in order (a bare `KEY` takes the CLI's value).
    pub env: Vec<String>,
    /// `-w`.
    pub working_dir: Option<String>,
    /// `-u USER[:GROUP]` (names or numbers).
    pub user: Option<String>,
    /// `--hostname`; default: the first 12 characters of the ID.
    pub hostname: Option<String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub open_stdin: bool,
    /// `--stop-signal` (name or number); default: the image's StopSignal, else SIGTERM.
    pub stop_signal: Option<String>,
    /// `--stop-timeout` in seconds; default 10.
    pub stop_timeout: Option<u32>,
}

/// The resources and mounts part (Docker's `HostConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// `--isolation`.
    pub isolation: Isolation,
    /// `-v`.
    pub binds: Vec<Bind>,
    /// `--tmpfs`.
    pub tmpfs: Vec<Tmpfs>,
    /// `--read-only`.
    pub read_only: bool,
    /// `--memory` in bytes.
    pub memory: Option<i64>,
    /// `--cpus` × 10⁹.
    pub nano_cpus: Option<i64>,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
    /// `--shm-size` in bytes (default 64 MiB).
    pub shm_size: Option<u64>,
    /// `--ulimit`.
    pub ulimits: Vec<Ulimit>,
    /// `--cap-add` (names with or without `CAP_`, or `ALL`).
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--init`: run a minimal init as PID 1 that reaps zombies and forwards signals.
    pub init: bool,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--network`.
    pub network_mode: NetworkMode,
}
