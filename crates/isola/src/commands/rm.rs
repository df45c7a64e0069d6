//! `isola rm [-f] CONTAINER...`.

use crate::Context;

/// Arguments of `isola rm`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kill and remove a running container.
    #[arg(short, long)]
    pub force: bool,
    /// Accepted for Docker compatibility: isola makes no anonymous volumes.
    #[arg(short, long)]
    pub volumes: bool,
    /// Containers: names, IDs or ID prefixes.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Removes each container (its writable layer, log and record), printing each name as given.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = super::open_engine(ctx)?;
    super::for_each(&args.containers, |c| {
        engine.remove(c, args.force)?;
        println!("{c}");
        Ok(())
    })
}
