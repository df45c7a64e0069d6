//! `isola stop [-t SECONDS] CONTAINER...`.

use crate::Context;

/// Arguments of `isola stop`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds to wait for the stop signal to work before killing (default: the container's stop
    /// timeout, 10).
    #[arg(short = 't', long = "time", value_name = "SECONDS")]
    pub time: Option<u32>,
    /// Containers: names, IDs or ID prefixes.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Sends each container its stop signal, then SIGKILL after the timeout; prints each name as given.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = super::open_engine(ctx)?;
    super::for_each(&args.containers, |c| {
        engine.stop(c, args.time)?;
        println!("{c}");
        Ok(())
    })
}
