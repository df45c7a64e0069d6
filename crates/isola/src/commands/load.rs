//! `isola load -i PATH`.

use std::path::PathBuf;

use isola_image::layer::ApplyOptions;
use isola_image::load::{load, LoadOptions};
use isola_image::platform::Platform;

use crate::progress::Reporter;
use crate::util::parse_size;
use crate::Context;

/// Arguments of `isola load`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive: docker-archive tar, OCI image layout directory or tar (gzip or zstd allowed).
    #[arg(short, long, value_name = "PATH")]
    pub input: PathBuf,
    /// Platform to pick from multi-platform images (os/arch[/variant]); default: the host's.
    #[arg(long, value_parser = |s: &str| Platform::parse(s).map_err(|e| e.to_string()))]
    pub platform: Option<Platform>,
    /// Refuse layers whose uncompressed size passes this many bytes (k, M, G suffixes).
    #[arg(long, env = "ISOLA_MAX_LAYER_SIZE", default_value = "32G", value_parser = parse_size)]
    pub max_layer_size: u64,
    /// Print only the loaded image names.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Loads the archive and prints what it loaded, one line per name (or ID for unnamed images).
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let store = super::open_store(ctx)?;
    let opts = LoadOptions {
        platform: args.platform,
        apply: ApplyOptions {
            max_size: args.max_layer_size,
            ..ApplyOptions::default()
        },
    };
    let loaded = {
        let progress = Reporter::new(args.quiet, "Loaded");
        load(&store, &args.input, &opts, &progress)?
    };
    for image in loaded {
        if image.names.is_empty() {
            println!("Loaded image ID: {}", image.id);
        }
        for name in image.names {
            println!("Loaded image: {name}");
        }
    }
    Ok(())
}
