//! One module per command: argument struct beside its handler.

mod attach;
mod container_args;
mod create;
mod exec;
mod foreground;
mod image;
mod images;
mod import;
mod info;
mod inspect;
mod kill;
mod load;
mod logs;
pub mod monitor;
mod pause;
mod ps;
mod restart;
mod rm;
mod rmi;
mod run;
mod save;
mod start;
mod stop;
mod tag;
mod top;
mod unpause;
mod wait;

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
    /// Create and start a container.
    Run(run::Args),
    /// Create a container without starting it.
    Create(create::Args),
    /// Start created or stopped containers.
    Start(start::Args),
    /// Stop and start containers.
    Restart(restart::Args),
    /// Attach to a running container's input and output.
    Attach(attach::Args),
    /// Stop running containers (stop signal, then SIGKILL after a timeout).
    Stop(stop::Args),
    /// Send a signal to containers.
    Kill(kill::Args),
    /// Remove containers.
    Rm(rm::Args),
    /// Wait for containers to stop and print their exit codes.
    Wait(wait::Args),
    /// Freeze every process of containers.
    Pause(pause::Args),
    /// Thaw paused containers.
    Unpause(unpause::Args),
    /// List containers.
    Ps(ps::Args),
    /// Show a container's processes.
    Top(top::Args),
    /// Run a command in a running container.
    Exec(exec::Args),
    /// Show a container's output.
    Logs(logs::Args),
    /// Show containers and images as JSON.
    Inspect(inspect::Args),
    /// Show how isola is set up on this host.
    Info(info::Args),
    /// The per-container monitor (started by isola itself).
    #[command(name = "__monitor", hide = true)]
    Monitor(monitor::Args),
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
        Command::Run(a) => run::run(a, ctx),
        Command::Create(a) => create::run(a, ctx),
        Command::Start(a) => start::run(a, ctx),
        Command::Restart(a) => restart::run(a, ctx),
        Command::Attach(a) => attach::run(a, ctx),
        Command::Stop(a) => stop::run(a, ctx),
        Command::Kill(a) => kill::run(a, ctx),
        Command::Rm(a) => rm::run(a, ctx),
        Command::Wait(a) => wait::run(a, ctx),
        Command::Pause(a) => pause::run(a, ctx),
        Command::Unpause(a) => unpause::run(a, ctx),
        Command::Ps(a) => ps::run(a, ctx),
        Command::Top(a) => top::run(a, ctx),
        Command::Exec(a) => exec::run(a, ctx),
        Command::Logs(a) => logs::run(a, ctx),
        Command::Inspect(a) => inspect::run(a, ctx),
        Command::Info(a) => info::run(a, ctx),
        Command::Monitor(a) => monitor::run(a, ctx),
    }
}

/// Where the command logs instead of stderr, if anywhere: the monitor's log file.
pub fn log_file(cmd: &Command, ctx: &Context) -> Option<std::path::PathBuf> {
    match cmd {
        Command::Monitor(a) => monitor::log_path(&ctx.run_root, &a.id),
        _ => None,
    }
}

/// Opens the container engine under `--root` and `--run-root`.
pub fn open_engine(ctx: &Context) -> anyhow::Result<isola_engine::Engine> {
    Ok(isola_engine::Engine::open(isola_engine::Roots {
        root: ctx.root.clone(),
        run_root: ctx.run_root.clone(),
    })?)
}

/// Runs `f` on each container named, going on after failures as Docker does; fails with every
/// error, on one line, if any.
pub fn for_each(
    containers: &[String],
    mut f: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let failed: Vec<String> = containers
        .iter()
        .filter_map(|c| f(c).err().map(|e| crate::util::error_chain(&e)))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(failed.join("; ")))
    }
}

/// Opens the image store under `--root`.
pub fn open_store(ctx: &Context) -> anyhow::Result<isola_image::Store> {
    Ok(isola_image::Store::open(&ctx.root)?)
}
