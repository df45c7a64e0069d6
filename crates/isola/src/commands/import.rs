//! `isola import FILE [NAME[:TAG]]`.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use anyhow::Context as _;
use isola_image::import::{import, ImportOptions};
use isola_image::layer::ApplyOptions;
use isola_image::Reference;

use crate::progress::Reporter;
use crate::util::parse_size;
use crate::Context;

/// Arguments of `isola import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Root filesystem tarball (plain, gzip or zstd); `-` reads standard input.
    pub file: PathBuf,
    /// Name for the image, `NAME[:TAG]`.
    pub name: Option<String>,
    /// Dockerfile instruction applied to the image config (CMD, ENTRYPOINT, ENV, WORKDIR, USER, …).
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Commit message, recorded in the image history.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Refuse a tarball whose uncompressed size passes this many bytes (k, M, G suffixes).
    #[arg(long, env = "ISOLA_MAX_LAYER_SIZE", default_value = "32G", value_parser = parse_size)]
    pub max_layer_size: u64,
    /// Show no progress.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Imports the tarball and prints the new image ID.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let name = args.name.as_deref().map(Reference::parse).transpose()?;
    let store = super::open_store(ctx)?;
    let source = args
        .message
        .clone()
        .unwrap_or_else(|| args.file.display().to_string());
    let opts = ImportOptions {
        name,
        changes: args.changes,
        source,
        created: None,
        apply: ApplyOptions {
            max_size: args.max_layer_size,
            ..ApplyOptions::default()
        },
    };
    let progress = Reporter::new(args.quiet, "Imported");
    let loaded = if args.file.as_os_str() == "-" {
        import(&store, std::io::stdin().lock(), &opts, &progress)?
    } else {
        let file =
            File::open(&args.file).with_context(|| format!("open {}", args.file.display()))?;
        import(
            &store,
            BufReader::with_capacity(1 << 20, file),
            &opts,
            &progress,
        )?
    };
    drop(progress);
    println!("{}", loaded.id);
    Ok(())
}
