//! `isola tag SOURCE TARGET`.

use crate::Context;

/// Arguments of `isola tag`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image: name or ID.
    pub source: String,
    /// The new name, `NAME[:TAG]`.
    pub target: String,
}

/// Points the target name at the source image.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let store = super::open_store(ctx)?;
    store.tag(&args.source, &args.target)?;
    Ok(())
}
