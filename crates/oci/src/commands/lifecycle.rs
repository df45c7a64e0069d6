//! create, start, run, kill, delete, pause, resume.

use std::path::{Path, PathBuf};

use isola_runtime::{CreateOptions, Runtime};

use crate::wait::Waiter;

/// A container ID argument.
#[derive(Debug, clap::Args)]
pub struct IdArg {
    /// The container ID.
    pub id: String,
}

/// Arguments of `create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The container ID.
    pub id: String,
    #[command(flatten)]
    pub opts: CreateFlags,
}

/// Flags shared by `create` and `run`.
#[derive(Debug, clap::Args)]
pub struct CreateFlags {
    /// Bundle directory (holds config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the terminal's master when process.terminal is set.
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Write the container process's PID to this file.
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot_root (for a rootfs on ramfs).
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility: no session keyring is created.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many extra file descriptors (3, 4, …) to the container process.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
}

impl CreateFlags {
    fn options(&self) -> CreateOptions {
        CreateOptions {
            console_socket: self.console_socket.clone(),
            pid_file: self.pid_file.clone(),
            no_pivot: self.no_pivot,
            preserve_fds: self.preserve_fds,
            stdio: None,
        }
    }
}

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The container ID.
    pub id: String,
    #[command(flatten)]
    pub opts: CreateFlags,
    /// Return once the container runs, without waiting for it.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container after it exits.
    #[arg(long)]
    pub keep: bool,
}

/// Arguments of `kill`.
#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// The container ID.
    pub id: String,
    /// Signal name or number.
    #[arg(default_value = "SIGTERM", value_parser = super::parse_signal)]
    pub signal: i32,
    /// Signal every process in the container's cgroup.
    #[arg(short, long)]
    pub all: bool,
}

/// Arguments of `delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The container ID.
    pub id: String,
    /// Kill the container first if it is still running.
    #[arg(short, long)]
    pub force: bool,
}

fn warn_all(warnings: Vec<String>) {
    for w in warnings {
        tracing::warn!("{w}");
    }
}

pub fn create(args: CreateArgs, root: &Path) -> anyhow::Result<u8> {
    let rt = Runtime::new(root)?;
    let (_, warnings) = rt.create(&args.id, &args.opts.bundle, &args.opts.options())?;
    warn_all(warnings);
    Ok(0)
}

pub fn start(args: IdArg, root: &Path) -> anyhow::Result<u8> {
    let rt = Runtime::new(root)?;
    rt.container(&args.id)?.start()?;
    Ok(0)
}

pub fn run(args: RunArgs, root: &Path) -> anyhow::Result<u8> {
    let rt = Runtime::new(root)?;
    let mut waiter = if args.detach {
        None
    } else {
        Some(Waiter::new()?)
    };
    let (mut container, warnings) = rt.create(&args.id, &args.opts.bundle, &args.opts.options())?;
    warn_all(warnings);
    if let Err(e) = container.start() {
        if let (Some(w), Some(pid)) = (waiter.as_mut(), container.pid()) {
            let _ = w.wait(pid);
        }
        let _ = rt.container(&args.id).and_then(|c| c.delete(true));
        return Err(e.into());
    }
    let Some(mut waiter) = waiter else {
        return Ok(0);
    };
    let pid = container.pid().expect("created container has a pid");
    let code = waiter.wait(pid)?;
    if let Ok(c) = rt.container(&args.id) {
        if c.cgroup().oom_kills().unwrap_or(0) > 0 {
            tracing::warn!(
                "container {}: a process was killed by the OOM killer (memory limit reached)",
                args.id
            );
        }
    }
    if !args.keep {
        rt.container(&args.id)?.delete(true)?;
    }
    Ok(code)
}

pub fn kill(args: KillArgs, root: &Path) -> anyhow::Result<u8> {
    Runtime::new(root)?
        .container(&args.id)?
        .kill(args.signal, args.all)?;
    Ok(0)
}

pub fn delete(args: DeleteArgs, root: &Path) -> anyhow::Result<u8> {
    let rt = Runtime::new(root)?;
    match rt.container(&args.id) {
        Ok(c) => c.delete(args.force)?,
        Err(isola_runtime::Error::NotFound(_)) if args.force => {}
        Err(e) => return Err(e.into()),
    }
    Ok(0)
}

pub fn pause(args: IdArg, root: &Path) -> anyhow::Result<u8> {
    Runtime::new(root)?.container(&args.id)?.pause()?;
    Ok(0)
}

pub fn resume(args: IdArg, root: &Path) -> anyhow::Result<u8> {
    Runtime::new(root)?.container(&args.id)?.resume()?;
    Ok(0)
}
