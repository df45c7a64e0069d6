//! Resource limits: `linux.resources` from `--memory`, `--cpus` and `--pids-limit`, and
//! `process.rlimits` from `--ulimit`, with Docker's defaults and range checks.

use std::path::Path;

use oci_spec::runtime::{
    LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxPids, LinuxResources, PosixRlimit,
    PosixRlimitBuilder, PosixRlimitType,
};

use super::error::SpecError;
use crate::config::{HostConfig, Ulimit};

/// The smallest `--memory` Docker accepts (6 MiB).
pub const MIN_MEMORY: i64 = 6 << 20;

/// The CFS period `--cpus` is expressed in, in microseconds (Docker's).
pub const CPU_PERIOD: u64 = 100_000;

/// The smallest CFS quota the kernel accepts, in microseconds (so `--cpus` ≥ 0.01).
const MIN_CPU_QUOTA: i64 = 1_000;

/// Whether the host accounts swap in the memory cgroup, so that a memory+swap limit can be
/// set: cgroup v1 `memory.memsw.limit_in_bytes`, or cgroup v2 `memory.swap.max` in this process's
/// cgroup (or, for a process in the root cgroup, in any child of it).
pub fn host_has_swap_accounting() -> bool {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("memory/memory.memsw.limit_in_bytes").exists() {
        return true;
    }
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        });
    for base in [root.to_path_buf(), root.join("unified")] {
        if let Some(own) = own.as_deref() {
            let rel = own.trim_start_matches('/');
            if !rel.is_empty() && base.join(rel).join("memory.swap.max").exists() {
                return true;
            }
        }
        let any_child = std::fs::read_dir(&base).ok().is_some_and(|dir| {
            dir.flatten()
                .any(|e| e.path().join("memory.swap.max").exists())
        });
        if any_child {
            return true;
        }
    }
    false
}

/// The number of CPUs this process may run on (what Docker checks `--cpus` against).
pub fn host_cpus() -> usize {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&i| set.is_set(i).unwrap_or(false))
                .count()
        })
        .ok()
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

/// `--cpus` as the user wrote it (nanocpus back to a decimal).
fn cpus_text(nano: i64) -> String {
    let whole = nano / 1_000_000_000;
    let frac = (nano % 1_000_000_000).abs();
    if frac == 0 {
        whole.to_string()
    } else {
        let f = format!("{frac:09}");
        format!("{whole}.{}", f.trim_end_matches('0'))
    }
}

/// `linux.resources`: the device rules start with "deny everything" (the runtime appends the
/// rules for the devices every container gets); `--memory` sets the limit, and memory+swap to
/// twice the limit (Docker's default `--memory-swap`) when `swap_accounting`; `--cpus` sets a CFS
/// quota over a 100 ms period; `--pids-limit` above 0 sets the pids limit (0 or less is
/// unlimited, as in Docker).
pub fn linux_resources(
    host: &HostConfig,
    swap_accounting: bool,
    cpus: usize,
) -> Result<LinuxResources, SpecError> {
    let mut res = LinuxResources::default();
    let mut deny_all = LinuxDeviceCgroup::default();
    deny_all.set_allow(false);
    deny_all.set_access(Some("rwm".into()));
    res.set_devices(Some(vec![deny_all]));

    if let Some(limit) = host.memory.filter(|&m| m != 0) {
        if limit < MIN_MEMORY {
            return Err(SpecError::invalid(
                "--memory",
                limit.to_string(),
                "the minimum memory limit is 6 MiB",
            ));
        }
        let mut mem = LinuxMemory::default();
        mem.set_limit(Some(limit));
        if swap_accounting {
            mem.set_swap(Some(limit.saturating_mul(2)));
        }
        res.set_memory(Some(mem));
    }

    if let Some(nano) = host.nano_cpus.filter(|&n| n != 0) {
        let quota = i128::from(nano) * i128::from(CPU_PERIOD) / 1_000_000_000;
        if quota < i128::from(MIN_CPU_QUOTA) {
            return Err(SpecError::invalid(
                "--cpus",
                cpus_text(nano),
                "must be at least 0.01",
            ));
        }
        if nano > (cpus as i64).saturating_mul(1_000_000_000) {
            return Err(SpecError::invalid(
                "--cpus",
                cpus_text(nano),
                format!("this host has only {cpus} CPUs"),
            ));
        }
        let mut cpu = LinuxCpu::default();
        cpu.set_period(Some(CPU_PERIOD));
        cpu.set_quota(i64::try_from(quota).ok());
        res.set_cpu(Some(cpu));
    }

    if let Some(limit) = host.pids_limit.filter(|&l| l > 0) {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        res.set_pids(Some(pids));
    }
    Ok(res)
}

/// The rlimit type of a `--ulimit` name.
fn rlimit_type(name: &str) -> Option<PosixRlimitType> {
    use PosixRlimitType as T;
    Some(match name {
        "as" => T::RlimitAs,
        "core" => T::RlimitCore,
        "cpu" => T::RlimitCpu,
        "data" => T::RlimitData,
        "fsize" => T::RlimitFsize,
        "locks" => T::RlimitLocks,
        "memlock" => T::RlimitMemlock,
        "msgqueue" => T::RlimitMsgqueue,
        "nice" => T::RlimitNice,
        "nofile" => T::RlimitNofile,
        "nproc" => T::RlimitNproc,
        "rss" => T::RlimitRss,
        "rtprio" => T::RlimitRtprio,
        "rttime" => T::RlimitRttime,
        "sigpending" => T::RlimitSigpending,
        "stack" => T::RlimitStack,
        _ => return None,
    })
}

/// `process.rlimits` from `--ulimit NAME=SOFT[:HARD]`; none given → none set (the container
/// inherits isola's limits, as Docker's containers inherit the daemon's). A name given twice
/// keeps the last value, as Docker's CLI does.
pub fn rlimits(ulimits: &[Ulimit]) -> Result<Vec<PosixRlimit>, SpecError> {
    let mut out: Vec<PosixRlimit> = Vec::new();
    for u in ulimits {
        let shown = || format!("{}={}:{}", u.name, u.soft, u.hard);
        let typ = rlimit_type(&u.name.to_ascii_lowercase())
            .ok_or_else(|| SpecError::invalid("--ulimit", shown(), "unknown limit"))?;
        if u.soft > u.hard {
            return Err(SpecError::invalid(
                "--ulimit",
                shown(),
                "soft limit above hard",
            ));
        }
        let rl = PosixRlimitBuilder::default()
            .typ(typ)
            .soft(u.soft)
            .hard(u.hard)
            .build()?;
        match out.iter_mut().find(|r| r.typ() == typ) {
            Some(prev) => *prev = rl,
            None => out.push(rl),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulimit(name: &str, soft: u64, hard: u64) -> Ulimit {
        Ulimit {
            name: name.into(),
            soft,
            hard,
        }
    }

    #[test]
    fn ulimits_map_to_rlimits() {
        let rl = rlimits(&[
            ulimit("nofile", 1024, 2048),
            ulimit("core", 0, 0),
            ulimit("NPROC", 10, 20),
            ulimit("nofile", 100, 200),
        ])
        .unwrap();
        let json = serde_json::to_value(&rl).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
                {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
                {"type": "RLIMIT_NPROC", "soft": 10, "hard": 20},
            ])
        );
        for name in [
            "as",
            "core",
            "cpu",
            "data",
            "fsize",
            "locks",
            "memlock",
            "msgqueue",
            "nice",
            "nofile",
            "nproc",
            "rss",
            "rtprio",
            "rttime",
            "sigpending",
            "stack",
        ] {
            assert!(rlimits(&[ulimit(name, 1, 1)]).is_ok(), "{name}");
        }
        assert!(rlimits(&[]).unwrap().is_empty());
    }

    #[test]
    fn ulimit_errors() {
        assert_eq!(
            rlimits(&[ulimit("nofile", 10, 5)]).unwrap_err().to_string(),
            r#"--ulimit "nofile=10:5": soft limit above hard"#
        );
        assert_eq!(
            rlimits(&[ulimit("bogus", 1, 1)]).unwrap_err().to_string(),
            r#"--ulimit "bogus=1:1": unknown limit"#
        );
    }

    #[test]
    fn memory_cpu_pids_and_devices() {
        let host = HostConfig {
            memory: Some(64 << 20),
            nano_cpus: Some(1_500_000_000),
            pids_limit: Some(100),
            ..Default::default()
        };
        let res = linux_resources(&host, true, 2).unwrap();
        let json = serde_json::to_value(&res).unwrap();
        assert_eq!(
            json["devices"],
            serde_json::json!([{"allow": false, "access": "rwm"}])
        );
        assert_eq!(json["memory"]["limit"], 64 << 20);
        assert_eq!(json["memory"]["swap"], 128 << 20);
        assert_eq!(json["cpu"]["quota"], 150_000);
        assert_eq!(json["cpu"]["period"], 100_000);
        assert_eq!(json["pids"]["limit"], 100);
        let res = linux_resources(&host, false, 2).unwrap();
        assert_eq!(res.memory().unwrap().swap(), None);
    }

    #[test]
    fn unset_and_unlimited() {
        let res = linux_resources(&HostConfig::default(), true, 2).unwrap();
        assert!(res.memory().is_none() && res.cpu().is_none() && res.pids().is_none());
        let host = HostConfig {
            pids_limit: Some(-1),
            ..Default::default()
        };
        assert!(linux_resources(&host, true, 2).unwrap().pids().is_none());
    }

    #[test]
    fn resource_errors() {
        let mem = HostConfig {
            memory: Some(1 << 20),
            ..Default::default()
        };
        assert_eq!(
            linux_resources(&mem, true, 2).unwrap_err().to_string(),
            r#"--memory "1048576": the minimum memory limit is 6 MiB"#
        );
        let cpus = |n| HostConfig {
            nano_cpus: Some(n),
            ..Default::default()
        };
        assert_eq!(
            linux_resources(&cpus(5_000_000), true, 2)
                .unwrap_err()
                .to_string(),
            r#"--cpus "0.005": must be at least 0.01"#
        );
        assert_eq!(
            linux_resources(&cpus(3_000_000_000), true, 2)
                .unwrap_err()
                .to_string(),
            r#"--cpus "3": this host has only 2 CPUs"#
        );
        assert!(linux_resources(&cpus(10_000_000), true, 2).is_ok());
    }

    #[test]
    fn host_probes_answer() {
        assert!(host_cpus() >= 1);
        // This project's hosts have cgroup v1 swap accounting; elsewhere just exercise the probe.
        let _ = host_has_swap_accounting();
    }
}
