//! `isola pause CONTAINER...`.

use crate::Context;

/// Arguments of `isola pause`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Containers: names, IDs or ID prefixes.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Freezes every process of each container, printing each name as given.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = super::open_engine(ctx)?;
    super::for_each(&args.containers, |c| {
        engine.pause(c)?;
        println!("{c}");
        Ok(())
    })
}
