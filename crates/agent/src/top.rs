//! `Top`: one [`ProcessInfo`] per process of a container, read from the guest's `/proc`
//! (proc(5): `/proc/PID/stat`, `/proc/PID/status`, `/proc/PID/cmdline`).

use std::fs;

use isola_proto::ProcessInfo;

/// Fields of `/proc/PID/stat` the agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    ppid: i32,
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
    /// Start time after boot, in clock ticks.
    start_ticks: u64,
}

/// Parses a `/proc/PID/stat` line: the command (field 2) may hold spaces and parentheses, so
/// the fields are counted after its last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    // rest starts with field 3 (state).
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).copied();
    Some(Stat {
        ppid: field(4)?.parse().ok()?,
        cpu_ticks: field(14)?.parse::<u64>().ok()? + field(15)?.parse::<u64>().ok()?,
        start_ticks: field(22)?.parse().ok()?,
    })
}

/// The real UID of a `/proc/PID/status` text (`Uid:` line, first number).
fn parse_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The command line of a `/proc/PID/cmdline` content: NUL-separated arguments joined by
/// spaces; empty for kernel threads and zombies, where `[comm]` is used instead.
fn command(cmdline: &[u8], comm: &str) -> String {
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if args.is_empty() {
        format!("[{}]", comm.trim_end())
    } else {
        args.join(" ")
    }
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// The entry of `pid`, or `None` when it exited meanwhile.
pub fn process_info(pid: i32) -> Option<ProcessInfo> {
    let dir = format!("/proc/{pid}");
    let stat = parse_stat(&fs::read_to_string(format!("{dir}/stat")).ok()?)?;
    let uid = parse_uid(&fs::read_to_string(format!("{dir}/status")).ok()?)?;
    let cmdline = fs::read(format!("{dir}/cmdline")).unwrap_or_default();
    let comm = fs::read_to_string(format!("{dir}/comm")).unwrap_or_default();
    let hz = ticks_per_second();
    Some(ProcessInfo {
        pid,
        ppid: stat.ppid,
        uid,
        cpu_seconds: stat.cpu_ticks / hz,
        start_seconds: stat.start_ticks / hz,
        cmd: command(&cmdline, &comm),
    })
}

/// Entries of `pids` (sorted by PID), skipping processes that are gone.
pub fn processes(pids: &[i32]) -> Vec<ProcessInfo> {
    let mut v: Vec<ProcessInfo> = pids.iter().filter_map(|p| process_info(*p)).collect();
    v.sort_by_key(|p| p.pid);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command() {
        let line =
            "42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 1 0 1234 1000 10";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                ppid: 7,
                cpu_ticks: 400,
                start_ticks: 1234
            })
        );
        assert_eq!(parse_stat("42 (x"), None);
    }

    #[test]
    fn uid_and_command() {
        assert_eq!(
            parse_uid("Name:\tsh\nUid:\t1000\t1000\t1000\t1000\n"),
            Some(1000)
        );
        assert_eq!(command(b"sleep\x0060\x00", "sleep\n"), "sleep 60");
        assert_eq!(command(b"", "kworker\n"), "[kworker]");
    }

    #[test]
    fn own_process() {
        let me = std::process::id() as i32;
        let p = process_info(me).unwrap();
        assert_eq!(p.pid, me);
        assert!(!p.cmd.is_empty());
    }
}
