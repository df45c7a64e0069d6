//! `isola create [OPTIONS] IMAGE [COMMAND [ARG...]]`: a container that `isola start` runs later.

use super::container_args::{self, ContainerArgs};
use crate::Context;

/// Arguments of `isola create`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub container: ContainerArgs,
}

/// Creates the container and prints its ID.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = super::open_engine(ctx)?;
    let record = container_args::create(&engine, ctx, &args.container, false)?;
    println!("{}", record.id);
    Ok(())
}
