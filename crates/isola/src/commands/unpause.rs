//! `isola unpause CONTAINER...`.

use anyhow::bail;
use isola_engine::state::Status;

use crate::Context;

/// Arguments of `isola unpause`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Containers: names, IDs or ID prefixes.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Thaws each paused container, printing each name as given.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = super::open_engine(ctx)?;
    super::for_each(&args.containers, |c| {
        let r = engine.get(c)?;
        if r.state.status != Status::Paused {
            bail!("container {} is not paused", r.name);
        }
        engine.unpause(&r.id)?;
        println!("{c}");
        Ok(())
    })
}
