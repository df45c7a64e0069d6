//! `isola image …`: image management subcommands (`inspect`, `builtin`, and aliases of the top-level
//! image commands).

use std::path::PathBuf;

use isola_image::builtin::{create_busybox, DEFAULT_BUSYBOX};

use crate::progress::Reporter;
use crate::Context;

/// `isola image` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show image details as JSON (Docker's `image inspect` shape).
    Inspect(InspectArgs),
    /// Create the built-in default image `busybox:latest` from the host's static busybox.
    Builtin(BuiltinArgs),
    /// Same as `isola load`.
    Load(super::load::Args),
    /// Same as `isola import`.
    Import(super::import::Args),
    /// Same as `isola save`.
    Save(super::save::Args),
    /// Same as `isola images`.
    #[command(alias = "list")]
    Ls(super::images::Args),
    /// Same as `isola rmi`.
    #[command(alias = "remove")]
    Rm(super::rmi::Args),
    /// Same as `isola tag`.
    Tag(super::tag::Args),
}

/// Arguments of `isola image inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Images: names or IDs.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// Arguments of `isola image builtin`.
#[derive(Debug, clap::Args)]
pub struct BuiltinArgs {
    /// The static busybox binary to build the image from.
    #[arg(long, default_value = DEFAULT_BUSYBOX)]
    pub busybox: PathBuf,
}

/// Runs an `isola image` subcommand.
pub fn run(cmd: Command, ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        Command::Inspect(a) => inspect(a, ctx),
        Command::Builtin(a) => builtin(a, ctx),
        Command::Load(a) => super::load::run(a, ctx),
        Command::Import(a) => super::import::run(a, ctx),
        Command::Save(a) => super::save::run(a, ctx),
        Command::Ls(a) => super::images::run(a, ctx),
        Command::Rm(a) => super::rmi::run(a, ctx),
        Command::Tag(a) => super::tag::run(a, ctx),
    }
}

fn inspect(args: InspectArgs, ctx: &Context) -> anyhow::Result<()> {
    let store = super::open_store(ctx)?;
    let mut out = Vec::new();
    for name in &args.images {
        let id = store.resolve(name)?;
        out.push(store.inspect(&id)?);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn builtin(args: BuiltinArgs, ctx: &Context) -> anyhow::Result<()> {
    let store = super::open_store(ctx)?;
    let loaded = create_busybox(&store, &args.busybox, &Reporter::new(true, "Created"))?;
    for name in loaded.names {
        println!("Created image: {name}");
    }
    println!("{}", loaded.id);
    Ok(())
}
