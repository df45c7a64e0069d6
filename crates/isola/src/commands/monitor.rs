//! `isola __monitor ID [--ready-fd N] [--wait-attach]` (hidden): the per-container monitor, which
//! the engine starts by re-executing isola. Its stderr is /dev/null, so it logs to
//! `<run-root>/containers/<ID>/monitor.log`.

use std::path::{Path, PathBuf};

use isola_engine::{monitor, Roots};

use crate::Context;

/// Arguments of `isola __monitor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container ID.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Inherited pipe to report readiness on.
    #[arg(long, value_name = "FD")]
    pub ready_fd: Option<i32>,
    /// Wait for the first attach client before starting the program.
    #[arg(long)]
    pub wait_attach: bool,
}

/// Runs the monitor and exits with its status.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let roots = Roots {
        root: ctx.root.clone(),
        run_root: ctx.run_root.clone(),
    };
    let opts = monitor::Options {
        id: args.id,
        wait_attach: args.wait_attach,
        ready_fd: args.ready_fd,
    };
    std::process::exit(monitor::run(&roots, &opts))
}

/// Where the monitor of container `id` logs, under `run_root`; `None` for an ID that is not one.
pub fn log_path(run_root: &Path, id: &str) -> Option<PathBuf> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let roots = Roots {
        root: PathBuf::new(),
        run_root: run_root.to_path_buf(),
    };
    Some(roots.run_dir(id).join("monitor.log"))
}
