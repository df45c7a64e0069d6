//! `isola exec [-d] [-i] [-t] [-e K=V]... [-u USER] [-w DIR] CONTAINER COMMAND [ARG...]`: a new
//! process in a running container; ends with its exit status.

use std::io::IsTerminal;

use anyhow::bail;
use isola_engine::exec::ExecRequest;

use crate::exit::Exit;
use crate::Context;

/// Arguments of `isola exec`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run in the background.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass isola's own value).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// User (name or UID) and optionally group.
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Working directory inside the container (absolute).
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// The container: name, ID or ID prefix.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// Command and arguments.
    #[arg(
        required = true,
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub cmd: Vec<String>,
}

/// Runs the command in the container and ends with its exit status (0 at once with -d).
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    if args.interactive && args.tty && !args.detach && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY");
    }
    if let Some(w) = &args.workdir {
        if !w.starts_with('/') {
            bail!("-w {w:?}: the working directory must be an absolute path");
        }
    }
    let engine = super::open_engine(ctx)?;
    let req = ExecRequest {
        cmd: args.cmd,
        tty: args.tty,
        interactive: args.interactive && !args.detach,
        detach: args.detach,
        env: args.env,
        user: args.user,
        workdir: args.workdir,
    };
    match engine.exec(&args.container, &req)? {
        0 => Ok(()),
        code => Err(Exit::code(code)),
    }
}
