//! The runc-compatible commands, one module per group; each handler returns the process exit code.

mod exec;
mod info;
mod lifecycle;
mod query;

use std::path::Path;

use clap::Subcommand;

/// Every `isola-oci` command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container from a bundle; it waits for `start`.
    Create(lifecycle::CreateArgs),
    /// Start a created container.
    Start(lifecycle::IdArg),
    /// Create and start a container; wait for it unless --detach.
    Run(lifecycle::RunArgs),
    /// Print a container's state as JSON.
    State(lifecycle::IdArg),
    /// Send a signal to a container's process (default SIGTERM).
    Kill(lifecycle::KillArgs),
    /// Delete a container.
    Delete(lifecycle::DeleteArgs),
    /// Freeze every process of a container.
    Pause(lifecycle::IdArg),
    /// Thaw a paused container.
    Resume(lifecycle::IdArg),
    /// Run a new process inside a running container.
    Exec(exec::ExecArgs),
    /// List the processes of a container.
    Ps(query::PsArgs),
    /// List containers.
    #[command(alias = "ls")]
    List(query::ListArgs),
    /// Write a default config.json.
    Spec(info::SpecArgs),
    /// Print the runtime-spec features this runtime supports, as JSON.
    Features,
}

/// Runs a command against the state root `root`; returns the exit code.
pub fn run(cmd: Command, root: &Path) -> anyhow::Result<u8> {
    match cmd {
        Command::Create(a) => lifecycle::create(a, root),
        Command::Start(a) => lifecycle::start(a, root),
        Command::Run(a) => lifecycle::run(a, root),
        Command::State(a) => query::state(a, root),
        Command::Kill(a) => lifecycle::kill(a, root),
        Command::Delete(a) => lifecycle::delete(a, root),
        Command::Pause(a) => lifecycle::pause(a, root),
        Command::Resume(a) => lifecycle::resume(a, root),
        Command::Exec(a) => exec::exec(a, root),
        Command::Ps(a) => query::ps(a, root),
        Command::List(a) => query::list(a, root),
        Command::Spec(a) => info::spec(a),
        Command::Features => info::features(),
    }
}

/// Parses a signal given as a name (`KILL`, `SIGKILL`, `sigkill`) or a number.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(format!("invalid signal {s:?}"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| format!("unknown signal {s:?}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn signals() {
        assert_eq!(super::parse_signal("KILL").unwrap(), 9);
        assert_eq!(super::parse_signal("sigterm").unwrap(), 15);
        assert_eq!(super::parse_signal("SIGUSR1").unwrap(), 10);
        assert_eq!(super::parse_signal("9").unwrap(), 9);
        assert!(super::parse_signal("NOPE").is_err());
        assert!(super::parse_signal("0").is_err());
    }
}
