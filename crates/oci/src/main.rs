//! `isola-oci`: an OCI runtime with runc's command-line interface, over the isola runtime library, so
//! that podman (`--runtime`), conmon and containerd's runc shim can drive it.

mod commands;
mod log;
mod wait;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// isola-oci — OCI runtime (runc command-line compatible).
#[derive(Debug, Parser)]
#[command(name = "isola-oci", version, about)]
pub struct Cli {
    /// Root directory for container state.
    #[arg(
        long,
        global = true,
        default_value = "/run/isola-oci",
        value_name = "DIR"
    )]
    root: PathBuf,
    /// Write errors and debug output to this file too.
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Format of the log file: text or json.
    #[arg(long, global = true, default_value = "text", value_name = "FORMAT")]
    log_format: log::Format,
    /// Debug output.
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd to manage cgroups (refused: isola manages cgroups directly).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility; rootless mode is detected, not asked for.
    #[arg(long, global = true, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    rootless: Option<String>,
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    // SAFETY: first thing in main, before any thread exists: restore the default SIGPIPE action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let logger = log::Logger::init(cli.log.as_deref(), cli.log_format, cli.debug);
    if cli.systemd_cgroup {
        logger.error("--systemd-cgroup: this host has no systemd cgroup manager; isola-oci manages cgroups directly (cgroupfs)");
        return ExitCode::from(1);
    }
    match commands::run(cli.command, &cli.root) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            logger.error(&log::chain(&err));
            // The container program could not be started: 127 not found, 126 not executable.
            match err.downcast_ref::<isola_runtime::Error>() {
                Some(isola_runtime::Error::Init { code, .. }) => ExitCode::from(*code as u8),
                _ => ExitCode::from(1),
            }
        }
    }
}
