//! `isola run [OPTIONS] IMAGE [COMMAND [ARG...]]`: create and start a container, in the foreground
//! (attached, exiting with its status) or detached with `-d` (printing its ID).

use std::io::IsTerminal;

use anyhow::bail;

use super::container_args::{self, ContainerArgs};
use super::foreground;
use crate::Context;

/// Arguments of `isola run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run in the background and print the container ID.
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    #[command(flatten)]
    pub container: ContainerArgs,
}

/// Creates and starts the container; in the foreground, ends with the container's exit status.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let c = &args.container;
    if c.interactive && c.tty && !args.detach && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY");
    }
    let engine = super::open_engine(ctx)?;
    let record = container_args::create(&engine, ctx, c, args.rm)?;
    if let Err(e) = engine.start(&record.id, !args.detach) {
        // The container stays, with the error recorded, as Docker keeps it; --rm removes it.
        if args.rm {
            let _ = engine.remove(&record.id, true);
        }
        return Err(e.into());
    }
    if args.detach {
        println!("{}", record.id);
        return Ok(());
    }
    foreground::attach(&engine, &record, c.interactive)
}
