//! `isola rmi [-f] IMAGE...`.

use isola_image::images::Removed;

use crate::Context;

/// Arguments of `isola rmi`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove an image that has several names, or that containers use.
    #[arg(short, long)]
    pub force: bool,
    /// Images to remove: names or IDs.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// Removes each image, printing what was untagged and deleted; fails if any could not be removed.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let store = super::open_store(ctx)?;
    // Without a container database there are no containers (and none is made just to look).
    let engine = if ctx.root.join("containers.db").exists() {
        Some(super::open_engine(ctx)?)
    } else {
        None
    };
    let users = |id: &isola_image::Digest| -> Vec<String> {
        engine
            .as_ref()
            .map(|e| e.image_users(&id.to_string()).unwrap_or_default())
            .unwrap_or_default()
    };
    let mut failed = Vec::new();
    for name in &args.images {
        match store.remove_image(name, args.force, &users) {
            Ok(done) => {
                for d in done {
                    match d {
                        Removed::Untagged(t) => println!("Untagged: {t}"),
                        Removed::Deleted(id) => println!("Deleted: {id}"),
                    }
                }
            }
            Err(e) => failed.push(crate::util::error_chain(&e.into())),
        }
    }
    match failed.len() {
        0 => Ok(()),
        1 => Err(anyhow::anyhow!(failed.remove(0))),
        _ => Err(anyhow::anyhow!(failed.join("; "))),
    }
}
