//! `isola kill [-s SIGNAL] CONTAINER...`.

use anyhow::anyhow;

use crate::Context;

/// Arguments of `isola kill`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Signal to send: a name (KILL, SIGKILL) or a number.
    #[arg(short, long, default_value = "KILL", value_name = "SIGNAL")]
    pub signal: String,
    /// Containers: names, IDs or ID prefixes.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
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

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Real-time signals as Linux numbers them for user space (glibc reserves 32 and 33).
const RTMIN: i32 = 34;
const RTMAX: i32 = 64;

/// A signal by name (`KILL`, `SIGKILL`, `kill`, `RTMIN+3`) or number (1–64).
pub fn parse_signal(s: &str) -> Result<i32, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return if (1..=RTMAX).contains(&n) {
            Ok(n)
        } else {
            Err(format!("invalid signal {s:?}"))
        };
    }
    let upper = t.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = SIGNALS.iter().find(|(n, _)| *n == name) {
        return Ok(n);
    }
    let rt = |base: i32, rest: &str, sign: i32| -> Option<i32> {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.parse().ok()?
        };
        let n = base + sign * off;
        (RTMIN..=RTMAX).contains(&n).then_some(n)
    };
    let found = if let Some(rest) = name.strip_prefix("RTMIN") {
        rest.strip_prefix('+')
            .map_or_else(|| rt(RTMIN, rest, 1), |r| rt(RTMIN, r, 1))
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        rest.strip_prefix('-')
            .map_or_else(|| rt(RTMAX, rest, -1), |r| rt(RTMAX, r, -1))
    } else {
        None
    };
    found.ok_or_else(|| format!("invalid signal {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::parse_signal;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("KILL"), Ok(9));
        assert_eq!(parse_signal("SIGTERM"), Ok(15));
        assert_eq!(parse_signal("sigusr1"), Ok(10));
        assert_eq!(parse_signal("hup"), Ok(1));
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal("RTMIN"), Ok(34));
        assert_eq!(parse_signal("RTMIN+3"), Ok(37));
        assert_eq!(parse_signal("SIGRTMAX-1"), Ok(63));
        for bad in ["0", "65", "NOPE", "SIG", "RTMIN+40", "-1", ""] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }
}
