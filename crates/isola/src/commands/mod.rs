//! One module per command: argument struct beside its handler.

mod image;
mod images;
mod import;
mod load;
mod rmi;
mod save;
mod tag;

use clap::Subcommand;

use crate::Context;

/// Every isola command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load images from a docker-archive or an OCI image layout (directory or tar).
    Load(load::Args),
    /// Import a root filesystem tarball as a one-layer image.
    Import(import::Args),
    /// Save images to an OCI image layout tar (readable by `isola load`, skopeo, podman, docker).
    Save(save::Args),
    /// List images.
    #[command(alias = "image-ls")]
    Images(images::Args),
    /// Remove images.
    Rmi(rmi::Args),
    /// Give an image another name.
    Tag(tag::Args),
    /// Manage images.
    #[command(subcommand)]
    Image(image::Command),
}

/// Runs a command.
pub fn run(cmd: Command, ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        Command::Load(a) => load::run(a, ctx),
        Command::Import(a) => import::run(a, ctx),
        Command::Save(a) => save::run(a, ctx),
        Command::Images(a) => images::run(a, ctx),
        Command::Rmi(a) => rmi::run(a, ctx),
        Command::Tag(a) => tag::run(a, ctx),
        Command::Image(c) => image::run(c, ctx),
    }
}

/// Opens the image store under `--root`.
pub fn open_store(ctx: &Context) -> anyhow::Result<isola_image::Store> {
    Ok(isola_image::Store::open(&ctx.root)?)
}
