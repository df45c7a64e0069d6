//! `isola wait CONTAINER...`.

use crate::Context;

/// Arguments of `isola wait`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Containers: names, IDs or ID prefixes.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Waits for each container to stop and prints its exit code.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = super::open_engine(ctx)?;
    super::for_each(&args.containers, |c| {
        println!("{}", engine.wait(c)?);
        Ok(())
    })
}
