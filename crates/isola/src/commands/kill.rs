//! `isola kill [-s SIGNAL] CONTAINER...`.

use anyhow::anyhow;

use crate::Context;

/// Arguments of `isola kill`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Signal to send: a name (KILL, SIGKILL, RTMIN+3) or a number.
    #[arg(short, long, default_value = "KILL", value_name = "SIGNAL")]
    pub signal: String,
    /// Containers: names, IDs or ID prefixes.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// A signal by name or number, as `kill -s` and `--stop-signal` take it.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    isola_engine::spec::parse_signal(s).ok_or_else(|| format!("invalid signal {s:?}"))
}

/// Sends the signal to each container's main process, printing each name as given.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let signal = parse_signal(&args.signal).map_err(|e| anyhow!("--signal: {e}"))?;
    let engine = super::open_engine(ctx)?;
    super::for_each(&args.containers, |c| {
        engine.kill(c, signal)?;
        println!("{c}");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::parse_signal;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse_signal("KILL"), Ok(9));
        assert_eq!(parse_signal("SIGTERM"), Ok(15));
        assert_eq!(parse_signal("sigusr1"), Ok(10));
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal("RTMIN+3"), Ok(37));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }
}
