//! exec: run a new process in a running container, built from `--process` JSON or from the
//! container's own process with the flags' changes, as runc does.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use isola_runtime::oci::{Capability, Process};
use isola_runtime::{ExecOptions, Runtime};

use crate::wait::Waiter;

/// Arguments of `exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// A process.json (runtime-spec `process` object) to run instead of COMMAND.
    #[arg(short, long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Allocate a terminal (its master goes to --console-socket).
    #[arg(short, long)]
    pub tty: bool,
    /// Return once the process runs, without waiting for it.
    #[arg(short, long)]
    pub detach: bool,
    /// Write the process's PID to this file.
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the terminal's master.
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Extra environment variable, KEY=VALUE.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// User as UID[:GID].
    #[arg(short, long)]
    pub user: Option<String>,
    /// Extra group IDs.
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Extra capability (e.g. CAP_NET_ADMIN).
    #[arg(short, long = "cap")]
    pub caps: Vec<String>,
    /// Set no_new_privs.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass this many extra file descriptors (3, 4, …).
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// AppArmor profile.
    #[arg(long)]
    pub apparmor: Option<String>,
    /// SELinux label.
    #[arg(long)]
    pub process_label: Option<String>,
    /// The container ID.
    pub id: String,
    /// Command and arguments (unless --process is given).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn build_process(args: &ExecArgs, base: Option<Process>) -> anyhow::Result<Process> {
    if let Some(path) = &args.process {
        let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        let mut de = serde_json::Deserializer::from_slice(&data);
        let p: Process = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            anyhow::anyhow!("invalid {}: {}: {}", path.display(), e.path(), e.inner())
        })?;
        return Ok(p);
    }
    if args.command.is_empty() {
        anyhow::bail!("exec needs a command, or --process FILE");
    }
    let mut p = base.unwrap_or_default();
    p.set_args(Some(args.command.clone()));
    p.set_terminal(Some(args.tty));
    p.set_console_size(None);
    if let Some(cwd) = &args.cwd {
        p.set_cwd(cwd.clone());
    }
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &args.env {
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(u) = &args.user {
        let (uid, gid) = match u.split_once(':') {
            Some((a, b)) => (a.parse()?, b.parse()?),
            None => (u.parse()?, 0),
        };
        let mut user = p.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        p.set_user(user);
    }
    if !args.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(args.additional_gids.clone()));
        p.set_user(user);
    }
    if !args.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &args.caps {
            let cap: Capability =
                serde_json::from_value(serde_json::Value::String(name.to_ascii_uppercase()))
                    .map_err(|_| anyhow::anyhow!("--cap {name:?}: unknown capability"))?;
            for set in [
                caps.bounding().clone(),
                caps.effective().clone(),
                caps.permitted().clone(),
                caps.inheritable().clone(),
                caps.ambient().clone(),
            ]
            .iter()
            .enumerate()
            {
                let mut s = set.1.clone().unwrap_or_default();
                s.insert(cap);
                match set.0 {
                    0 => caps.set_bounding(Some(s)),
                    1 => caps.set_effective(Some(s)),
                    2 => caps.set_permitted(Some(s)),
                    3 => caps.set_inheritable(Some(s)),
                    _ => caps.set_ambient(Some(s)),
                };
            }
        }
        p.set_capabilities(Some(caps));
    }
    if args.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(a) = &args.apparmor {
        p.set_apparmor_profile(Some(a.clone()));
    }
    if let Some(l) = &args.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    Ok(p)
}

pub fn exec(args: ExecArgs, root: &Path) -> anyhow::Result<u8> {
    let rt = Runtime::new(root)?;
    let c = rt.container(&args.id)?;
    let base = isola_runtime::spec::load_bundle(&c.record().bundle)
        .ok()
        .and_then(|b| b.spec.process().clone());
    let process = build_process(&args, base)?;
    let opts = ExecOptions {
        console_socket: args.console_socket.clone(),
        pid_file: args.pid_file.clone(),
        preserve_fds: args.preserve_fds,
        stdio: None,
    };
    let mut waiter = if args.detach {
        None
    } else {
        Some(Waiter::new()?)
    };
    let pid = c.exec(&process, &opts)?;
    match waiter.as_mut() {
        Some(w) => w.wait(pid),
        None => Ok(0),
    }
}
