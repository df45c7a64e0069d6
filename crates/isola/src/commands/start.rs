//! `isola start [-a] [-i] CONTAINER...`.

use anyhow::bail;

use crate::Context;

/// Arguments of `isola start`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Attach to the container's output and end with its exit status.
    #[arg(short, long)]
    pub attach: bool,
    /// Attach stdin too (for a container created with -i).
    #[arg(short, long)]
    pub interactive: bool,
    /// Containers: names, IDs or ID prefixes.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Starts each container (printing its name as given); with `-a` or `-i`, attaches to the one.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = super::open_engine(ctx)?;
    if args.attach || args.interactive {
        if args.containers.len() > 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        let record = engine.start(&args.containers[0], true)?;
        let stdin = args.interactive && record.config.open_stdin;
        return super::foreground::attach(&engine, &record, stdin);
    }
    super::for_each(&args.containers, |c| {
        engine.start(c, false)?;
        println!("{c}");
        Ok(())
    })
}
