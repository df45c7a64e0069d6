//! `isola attach [--no-stdin] CONTAINER`: the running container's output (and input), until it
//! exits; ends with its exit status.

use crate::Context;

/// Arguments of `isola attach`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Do not send isola's stdin to the container.
    #[arg(long)]
    pub no_stdin: bool,
    /// The container: name, ID or ID prefix.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// Attaches to a running container; stdin goes to it when it was created with -i.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = super::open_engine(ctx)?;
    let record = engine.running(&args.container)?;
    let stdin = !args.no_stdin && record.config.open_stdin;
    super::foreground::attach(&engine, &record, stdin)
}
