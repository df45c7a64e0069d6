//! `isola logs [-f] [-t] [--since TIME] [--tail N|all] CONTAINER`.

use anyhow::{anyhow, bail};
use chrono::{DateTime, Utc};
use isola_engine::logs::{self, ReadOptions};

use crate::Context;

/// Arguments of `isola logs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep printing new output until the container stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Prefix each line with its time.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Only output since this time: RFC 3339 (2024-01-02T15:04:05Z), Unix seconds, or a
    /// duration ago (30s, 10m, 1h30m).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only the last N lines ("all" for every line).
    #[arg(short = 'n', long, value_name = "N", default_value = "all")]
    pub tail: String,
    /// The container: name, ID or ID prefix.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// Prints the container's output: stdout to stdout, stderr to stderr.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, Utc::now()))
        .transpose()?;
    let tail = parse_tail(&args.tail)?;
    let engine = super::open_engine(ctx)?;
    let record = engine.get(&args.container)?;
    let opts = ReadOptions {
        follow: args.follow,
        timestamps: args.timestamps,
        since,
        tail,
    };
    let id = record.id.clone();
    let running = || engine.is_running(&id);
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    logs::read(
        &engine.log_path(&record),
        &opts,
        &mut out,
        &mut err,
        &running,
    )?;
    Ok(())
}

fn parse_tail(s: &str) -> anyhow::Result<Option<usize>> {
    match s.trim() {
        "all" | "-1" => Ok(None),
        n => n
            .parse()
            .map(Some)
            .map_err(|_| anyhow!("--tail {s:?}: expected a number of lines or \"all\"")),
    }
}

/// `--since`: RFC 3339, Unix seconds (with fractions), or a Go-style duration before `now`.
pub fn parse_since(s: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    let t = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    if let Ok(secs) = t.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            let nanos = ((secs.fract()) * 1e9) as u32;
            if let Some(d) = DateTime::from_timestamp(secs.trunc() as i64, nanos) {
                return Ok(d);
            }
        }
    }
    match parse_duration(t) {
        Some(d) => Ok(now - d),
        None => bail!(
            "--since {s:?}: expected an RFC 3339 time, Unix seconds, or a duration such as 10m"
        ),
    }
}

/// Go's duration syntax: one or more NUMBER UNIT pairs, units ns, us, ms, s, m, h.
fn parse_duration(s: &str) -> Option<chrono::Duration> {
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * factor;
    }
    if !total.is_finite() || total > 1e12 {
        return None;
    }
    Some(chrono::Duration::nanoseconds((total * 1e9) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since() {
        let now = DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: &str| parse_since(s, now).unwrap().to_rfc3339();
        assert_eq!(at("10m"), "2024-05-01T11:50:00+00:00");
        assert_eq!(at("1h30m"), "2024-05-01T10:30:00+00:00");
        assert_eq!(at("30s"), "2024-05-01T11:59:30+00:00");
        assert_eq!(at("2024-05-01T11:00:00Z"), "2024-05-01T11:00:00+00:00");
        assert_eq!(at("1714564800"), "2024-05-01T12:00:00+00:00");
        for bad in ["", "10x", "yesterday", "m"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn tail() {
        assert_eq!(parse_tail("all").unwrap(), None);
        assert_eq!(parse_tail("5").unwrap(), Some(5));
        assert!(parse_tail("x").is_err());
    }
}
