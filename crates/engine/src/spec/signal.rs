//! Signal names and numbers as Docker parses them (`--stop-signal`, the image's StopSignal,
//! `kill -s`): a number, or a name with or without `SIG`, in any case, including `RTMIN+N` and
//! `RTMAX-N`.

use oci_spec::image::ImageConfiguration;

use super::error::SpecError;
use crate::config::ContainerConfig;

/// Linux signal names (without `SIG`) and numbers, aliases included.
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
    ("CLD", libc::SIGCHLD),
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

/// The first real-time signal as Docker numbers it (glibc reserves 32 and 33).
const RTMIN: i32 = 34;
/// The last signal number.
const RTMAX: i32 = 64;

/// Parses a signal: `15`, `TERM`, `SIGTERM`, `sigterm`, `RTMIN+3`, `SIGRTMAX-1`. `None` for
/// anything else, including 0 and numbers above 64.
pub fn parse_signal(text: &str) -> Option<i32> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i32>() {
        return (1..=RTMAX).contains(&n).then_some(n);
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = SIGNALS.iter().find(|(s, _)| *s == name) {
        return Some(n);
    }
    let rt = |base: i32, rest: &str, sign: i32| -> Option<i32> {
        let offset = if rest.is_empty() {
            0
        } else {
            rest.parse::<i32>().ok()?
        };
        let n = base + sign * offset;
        (RTMIN..=RTMAX).contains(&n).then_some(n)
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return match rest.strip_prefix('+') {
            Some(r) if !r.is_empty() => rt(RTMIN, r, 1),
            None if rest.is_empty() => Some(RTMIN),
            _ => None,
        };
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return match rest.strip_prefix('-') {
            Some(r) if !r.is_empty() => rt(RTMAX, r, -1),
            None if rest.is_empty() => Some(RTMAX),
            _ => None,
        };
    }
    None
}

/// The stop signal: `--stop-signal`, else the image's StopSignal, else SIGTERM.
pub fn stop_signal(image: &ImageConfiguration, config: &ContainerConfig) -> Result<i32, SpecError> {
    let image_signal = image
        .config()
        .as_ref()
        .and_then(|c| c.stop_signal().as_deref());
    let (flag, text) = match (config.stop_signal.as_deref(), image_signal) {
        (Some(s), _) if !s.is_empty() => ("--stop-signal", s),
        (_, Some(s)) if !s.is_empty() => ("image StopSignal", s),
        _ => return Ok(libc::SIGTERM),
    };
    parse_signal(text).ok_or_else(|| SpecError::invalid(flag, text, "unknown signal"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_realtime() {
        assert_eq!(parse_signal("15"), Some(15));
        assert_eq!(parse_signal("TERM"), Some(15));
        assert_eq!(parse_signal("sigkill"), Some(9));
        assert_eq!(parse_signal("SIGQUIT"), Some(3));
        assert_eq!(parse_signal("SIGWINCH"), Some(28));
        assert_eq!(parse_signal("RTMIN"), Some(34));
        assert_eq!(parse_signal("SIGRTMIN+3"), Some(37));
        assert_eq!(parse_signal("RTMAX-1"), Some(63));
        assert_eq!(parse_signal("RTMAX"), Some(64));
        for bad in [
            "0", "65", "-1", "SIGFOO", "RTMIN+31", "RTMIN-1", "RTMIN+", "",
        ] {
            assert_eq!(parse_signal(bad), None, "{bad}");
        }
    }

    #[test]
    fn stop_signal_precedence() {
        let image: ImageConfiguration =
            serde_json::from_str(r#"{"architecture":"amd64","os":"linux","config":{"StopSignal":"SIGQUIT"},"rootfs":{"type":"layers","diff_ids":[]}}"#)
                .unwrap();
        let mut c = ContainerConfig::default();
        assert_eq!(stop_signal(&image, &c).unwrap(), libc::SIGQUIT);
        c.stop_signal = Some("USR1".into());
        assert_eq!(stop_signal(&image, &c).unwrap(), libc::SIGUSR1);
        assert_eq!(
            stop_signal(&ImageConfiguration::default(), &ContainerConfig::default()).unwrap(),
            libc::SIGTERM
        );
        c.stop_signal = Some("SIGNOPE".into());
        assert_eq!(
            stop_signal(&image, &c).unwrap_err().to_string(),
            r#"--stop-signal "SIGNOPE": unknown signal"#
        );
    }
}
