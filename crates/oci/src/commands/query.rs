//! state, list, ps.

use std::path::Path;
use std::process::Command;

use isola_runtime::Runtime;
use serde_json::json;

use super::lifecycle::IdArg;

/// Output format of `list` and `ps`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Columns.
    Table,
    /// JSON.
    Json,
}

/// Arguments of `list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub format: Format,
    /// Only container IDs.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Arguments of `ps`.
#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Output format: table (runs `ps` on the host with PS_ARGS) or json (a list of PIDs).
    #[arg(short, long, value_enum, default_value = "table")]
    pub format: Format,
    /// The container ID.
    pub id: String,
    /// Arguments for ps(1) (default: -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

fn state_json(c: &isola_runtime::Container) -> serde_json::Value {
    let rec = c.record();
    let status = c.status();
    let pid = match status {
        isola_runtime::state::Status::Stopped => 0,
        _ => rec.pid.unwrap_or(0),
    };
    let mut v = json!({
        "ociVersion": isola_runtime::oci::VERSION,
        "id": rec.id,
        "pid": pid,
        "status": status.to_string(),
        "bundle": rec.bundle,
        "rootfs": rec.rootfs,
        "created": rec.created,
        "owner": "",
    });
    if !rec.annotations.is_empty() {
        v["annotations"] = json!(rec.annotations);
    }
    v
}

pub fn state(args: IdArg, root: &Path) -> anyhow::Result<u8> {
    let c = Runtime::new(root)?.container(&args.id)?;
    println!("{}", serde_json::to_string_pretty(&state_json(&c))?);
    Ok(0)
}

pub fn list(args: ListArgs, root: &Path) -> anyhow::Result<u8> {
    let all = Runtime::new(root)?.list()?;
    if args.quiet {
        for c in &all {
            println!("{}", c.id());
        }
        return Ok(0);
    }
    match args.format {
        Format::Json => {
            let v: Vec<_> = all.iter().map(state_json).collect();
            println!("{}", serde_json::to_string(&v)?);
        }
        Format::Table => {
            println!(
                "{:<20} {:<8} {:<10} {:<40} {:<30} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for c in &all {
                let s = state_json(c);
                println!(
                    "{:<20} {:<8} {:<10} {:<40} {:<30} root",
                    c.id(),
                    s["pid"],
                    c.status().to_string(),
                    c.record().bundle.display(),
                    c.record().created
                );
            }
        }
    }
    Ok(0)
}

pub fn ps(args: PsArgs, root: &Path) -> anyhow::Result<u8> {
    let c = Runtime::new(root)?.container(&args.id)?;
    let pids = c.processes()?;
    if matches!(args.format, Format::Json) {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    let ps_args = if args.ps_args.is_empty() {
        vec!["-ef".to_owned()]
    } else {
        args.ps_args
    };
    let out = Command::new("ps").args(&ps_args).output()?;
    if !out.status.success() {
        anyhow::bail!(
            "ps {}: {}",
            ps_args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| anyhow::anyhow!("ps output has no PID column"))?;
    println!("{header}");
    for line in lines {
        let pid: Option<i32> = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(0)
}
