//! `isola save -o FILE IMAGE...`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use isola_image::save::{save, write_archive};

use crate::progress::Reporter;
use crate::Context;

/// Arguments of `isola save`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write to this file instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Images to save: names or IDs.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Show no progress.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Writes the images as one OCI layout tar.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let store = super::open_store(ctx)?;
    let items = args
        .images
        .iter()
        .map(|i| store.save_item(i))
        .collect::<Result<Vec<_>, _>>()?;
    match args.output {
        Some(path) => {
            let progress = Reporter::new(args.quiet, "Saved");
            save(&store, &items, &path, &progress)?;
        }
        None => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                anyhow::bail!(
                    "refusing to write an archive to a terminal: use -o FILE or redirect"
                );
            }
            let mut out = std::io::BufWriter::new(stdout.lock());
            write_archive(&store, &items, &mut out, &isola_image::load::NoProgress)?;
            out.flush()?;
        }
    }
    Ok(())
}
