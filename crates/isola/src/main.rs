//! `isola`: the command-line interface. Thin: it parses arguments, sets up logging, opens the store and
//! calls the library; errors are printed once, as one line with their whole cause chain.

mod commands;
mod exit;
mod progress;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Exit status when isola itself fails, as Docker uses it.
const EXIT_ISOLA_FAILED: u8 = exit::ISOLA_FAILED;

/// isola — run OCI containers with process or VM isolation.
#[derive(Debug, Parser)]
#[command(name = "isola", version, about, propagate_version = true)]
pub struct Cli {
    /// Directory for persistent state: images, layers, containers.
    #[arg(
        long,
        global = true,
        env = "ISOLA_ROOT",
        default_value = "/var/lib/isola",
        value_name = "DIR"
    )]
    root: PathBuf,
    /// Directory for runtime state (sockets, per-boot state).
    #[arg(
        long,
        global = true,
        env = "ISOLA_RUN_ROOT",
        default_value = "/run/isola",
        value_name = "DIR"
    )]
    run_root: PathBuf,
    /// Log level: error, warn, info, debug or trace.
    #[arg(
        long,
        global = true,
        env = "ISOLA_LOG_LEVEL",
        default_value = "warn",
        value_name = "LEVEL"
    )]
    log_level: tracing::Level,
    #[command(subcommand)]
    command: commands::Command,
}

/// What every command handler gets besides its own arguments.
#[derive(Debug)]
pub struct Context {
    /// `--root`.
    pub root: PathBuf,
    /// `--run-root`.
    pub run_root: PathBuf,
}

fn main() -> ExitCode {
    // SAFETY: called first thing, before any thread exists; restores the default action so that a
    // closed pipe (`isola images | head`) ends isola quietly instead of failing a print.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_ISOLA_FAILED);
        }
    };
    // Absolute roots: bundles, mounts and the monitor (which may run elsewhere) depend on them.
    let ctx = Context {
        root: std::path::absolute(&cli.root).unwrap_or(cli.root),
        run_root: std::path::absolute(&cli.run_root).unwrap_or(cli.run_root),
    };
    // Monitors started by this command log at the same level.
    std::env::set_var("ISOLA_LOG_LEVEL", cli.log_level.as_str());
    init_logging(cli.log_level, commands::log_file(&cli.command, &ctx));
    match commands::run(cli.command, &ctx) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let (code, print) = exit::status(&err);
            if print {
                eprintln!("Error: {}", util::error_chain(&err));
            }
            ExitCode::from(code)
        }
    }
}

/// Logs to stderr, or (for the monitor, whose stderr is /dev/null) appends to `file` with times.
fn init_logging(level: tracing::Level, file: Option<PathBuf>) {
    let opened = file.and_then(|path| {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).ok()?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false);
    match opened {
        Some(f) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .init(),
        None => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .without_time()
            .init(),
    }
}
