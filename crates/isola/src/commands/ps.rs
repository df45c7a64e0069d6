//! `isola ps [-a] [-q] [--no-trunc] [--format table|json]`: containers as `docker ps` lists them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use isola_engine::db::Record;
use isola_engine::state::Status;
use serde_json::{json, Value};

use crate::Context;

/// Output format of `isola ps`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// A JSON array of {ID, Image, Command, Created, Status, State, Names, Isolation, ExitCode}.
    Json,
}

/// Arguments of `isola ps`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show every container (default: only running ones).
    #[arg(short, long)]
    pub all: bool,
    /// Only container IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate IDs and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Lists containers, newest first.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = super::open_engine(ctx)?;
    let records = engine.list(args.all)?;
    let id = |r: &Record| {
        if args.no_trunc {
            r.id.clone()
        } else {
            r.id[..12.min(r.id.len())].to_owned()
        }
    };
    if args.quiet {
        for r in &records {
            println!("{}", id(r));
        }
        return Ok(());
    }
    let mut images = ImageCommands::new(ctx);
    let now = Utc::now();
    match args.format {
        Format::Json => {
            let out: Vec<Value> = records
                .iter()
                .map(|r| {
                    json!({
                        "ID": id(r),
                        "Image": r.config.image,
                        "Command": images.command(r).join(" "),
                        "Created": r.created,
                        "Status": status(r, now),
                        "State": r.state.status.to_string(),
                        "Names": r.name,
                        "Isolation": r.host_config.isolation.to_string(),
                        "ExitCode": r.state.exit_code,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Table => {
            let mut rows = vec![[
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "NAMES",
            ]
            .map(String::from)];
            for r in &records {
                let cmd = images.command(r).join(" ");
                let cmd = if args.no_trunc {
                    cmd
                } else {
                    ellipsis(&cmd, 20)
                };
                rows.push([
                    id(r),
                    r.config.image.clone(),
                    format!("{cmd:?}"),
                    created(&r.created, now),
                    status(r, now),
                    String::new(),
                    r.name.clone(),
                ]);
            }
            print!("{}", super::top::align(&rows, 10, 3));
        }
    }
    Ok(())
}

/// The command a container runs as Docker shows it: the entrypoint and cmd it was created with,
/// else its image's (image configs read once per image).
struct ImageCommands {
    store: Option<isola_image::Store>,
    cache: HashMap<String, (Vec<String>, Vec<String>)>,
}

impl ImageCommands {
    fn new(ctx: &Context) -> Self {
        Self {
            store: super::open_store(ctx).ok(),
            cache: HashMap::new(),
        }
    }

    fn image(&mut self, image_id: &str) -> (Vec<String>, Vec<String>) {
        let store = &self.store;
        self.cache
            .entry(image_id.to_owned())
            .or_insert_with(|| {
                let config = store.as_ref().and_then(|s| {
                    let id = isola_image::Digest::parse(image_id).ok()?;
                    s.config_json(&id).ok()
                });
                let list = |key: &str| -> Vec<String> {
                    config
                        .as_ref()
                        .and_then(|c| serde_json::from_value(c["config"][key].clone()).ok())
                        .unwrap_or_default()
                };
                (list("Entrypoint"), list("Cmd"))
            })
            .clone()
    }

    fn command(&mut self, r: &Record) -> Vec<String> {
        let (image_entrypoint, image_cmd) = self.image(&r.image_id);
        effective_command(
            r.config.entrypoint.as_deref(),
            r.config.cmd.as_deref(),
            &image_entrypoint,
            &image_cmd,
        )
    }
}

/// Docker's rule: `--entrypoint` replaces the image's entrypoint and drops the image's Cmd; a
/// command given replaces the image's Cmd.
fn effective_command(
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
    image_entrypoint: &[String],
    image_cmd: &[String],
) -> Vec<String> {
    let mut out = entrypoint.unwrap_or(image_entrypoint).to_vec();
    match (cmd, entrypoint) {
        (Some(c), _) => out.extend_from_slice(c),
        (None, Some(_)) => {}
        (None, None) => out.extend_from_slice(image_cmd),
    }
    out
}

/// Docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn created(t: &str, now: DateTime<Utc>) -> String {
    match parse_time(t) {
        Some(t) => format!("{} ago", human_duration((now - t).num_seconds())),
        None => "N/A".into(),
    }
}

/// The STATUS column: `Up 5 seconds`, `Up 3 seconds (Paused)`, `Exited (0) 2 minutes ago`,
/// `Created`, as Docker words them.
fn status(r: &Record, now: DateTime<Utc>) -> String {
    let s = &r.state;
    let since = |t: &Option<String>| {
        let secs = t
            .as_deref()
            .and_then(parse_time)
            .map_or(0, |t| (now - t).num_seconds());
        human_duration(secs)
    };
    match s.status {
        Status::Running => format!("Up {}", since(&s.started_at)),
        Status::Paused => format!("Up {} (Paused)", since(&s.started_at)),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
        Status::Created if s.started_at.is_none() => "Created".into(),
        Status::Created | Status::Exited => {
            if s.finished_at.is_none() {
                return "Created".into();
            }
            format!("Exited ({}) {} ago", s.exit_code, since(&s.finished_at))
        }
    }
}

/// Docker's `HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let hours = (secs as f64 / 3600.0).round() as i64;
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".into(),
        s if s / 60 < 60 => format!("{} minutes", s / 60),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        s => format!("{} years", s / 3600 / 24 / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(61), "About a minute");
        assert_eq!(human_duration(150), "2 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86_400), "3 days");
        assert_eq!(human_duration(20 * 86_400), "2 weeks");
        assert_eq!(human_duration(90 * 86_400), "3 months");
        assert_eq!(human_duration(800 * 86_400), "2 years");
    }

    #[test]
    fn commands() {
        let (e, c) = (v(&["/entry"]), v(&["sh"]));
        assert_eq!(effective_command(None, None, &e, &c), v(&["/entry", "sh"]));
        let cmd = v(&["ping", "localhost"]);
        assert_eq!(effective_command(None, Some(&cmd), &[], &c), cmd);
        let ep = v(&["top"]);
        assert_eq!(effective_command(Some(&ep), None, &e, &c), v(&["top"]));
        assert_eq!(effective_command(Some(&[]), Some(&cmd), &e, &c), cmd);
        assert_eq!(ellipsis("ping localhost", 20), "ping localhost");
        assert_eq!(
            ellipsis("sh -c while true; do echo; done", 20),
            "sh -c while true; d…"
        );
        assert_eq!(
            format!("{:?}", ellipsis("ping localhost", 20)),
            "\"ping localhost\""
        );
    }

    #[test]
    fn statuses() {
        let now = Utc::now();
        let ago = |s: i64| Some((now - chrono::Duration::seconds(s)).to_rfc3339());
        let mut r = Record {
            id: "0".repeat(64),
            name: "x".into(),
            created: now.to_rfc3339(),
            image_id: String::new(),
            config: Default::default(),
            host_config: Default::default(),
            state: Default::default(),
        };
        assert_eq!(status(&r, now), "Created");
        r.state.status = Status::Running;
        r.state.started_at = ago(5);
        assert_eq!(status(&r, now), "Up 5 seconds");
        r.state.status = Status::Paused;
        assert_eq!(status(&r, now), "Up 5 seconds (Paused)");
        r.state.status = Status::Exited;
        r.state.exit_code = 137;
        r.state.finished_at = ago(130);
        assert_eq!(status(&r, now), "Exited (137) 2 minutes ago");
        assert_eq!(created(&r.created, now), "Less than a second ago");
    }
}
