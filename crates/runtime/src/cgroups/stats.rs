//! Resource usage of a container's cgroup, read from the v1 or v2 control files.

use serde::Serialize;

use super::error::CgroupError;
use super::fs::Dir;

/// v1 reports "no limit" as the largest page-aligned counter value; anything at or above this is
/// unlimited.
const V1_UNLIMITED: u64 = 0x7FFF_FFFF_FFFF_F000;

/// Usage and limits of a container's cgroup. A section is `None` when its controller is not
/// available on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Memory (v1 `memory.*`, v2 `memory.*`).
    pub memory: Option<MemoryStats>,
    /// CPU time (v1 `cpuacct.*` and `cpu.stat`, v2 `cpu.stat`).
    pub cpu: Option<CpuStats>,
    /// Process count (`pids.current`, `pids.max`).
    pub pids: Option<PidsStats>,
}

/// Memory usage in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryStats {
    /// Current usage, bytes (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub usage_bytes: u64,
    /// Peak usage, bytes (v1 `memory.max_usage_in_bytes`, v2 `memory.peak` on kernels ≥ 5.19).
    pub max_usage_bytes: Option<u64>,
    /// The limit, bytes; `None` when unlimited (v1 `memory.limit_in_bytes`, v2 `memory.max`).
    pub limit_bytes: Option<u64>,
    /// Swap usage, bytes: v1 `memory.memsw.usage_in_bytes` minus memory usage, v2
    /// `memory.swap.current`; `None` without swap accounting.
    pub swap_usage_bytes: Option<u64>,
    /// Processes killed by the OOM killer in this cgroup (v1 `memory.oom_control` `oom_kill`,
    /// v2 `memory.events` `oom_kill`).
    pub oom_kills: u64,
}

/// CPU time in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuStats {
    /// Total CPU time, ns (v1 `cpuacct.usage`, v2 `cpu.stat` `usage_usec` × 1000).
    pub usage_ns: u64,
    /// User-mode CPU time, ns (v1 `cpuacct.usage_user`, v2 `user_usec` × 1000).
    pub user_ns: Option<u64>,
    /// Kernel-mode CPU time, ns (v1 `cpuacct.usage_sys`, v2 `system_usec` × 1000).
    pub system_ns: Option<u64>,
    /// Enforcement periods in which the cgroup was throttled (`cpu.stat` `nr_throttled`).
    pub throttled_periods: Option<u64>,
    /// Time throttled, ns (v1 `cpu.stat` `throttled_time`, v2 `throttled_usec` × 1000).
    pub throttled_ns: Option<u64>,
}

/// Process counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PidsStats {
    /// Processes (and threads) now in the cgroup (`pids.current`).
    pub current: u64,
    /// The limit (`pids.max`); `None` when unlimited.
    pub limit: Option<u64>,
}

/// v1 memory statistics from the memory hierarchy's directory.
pub(crate) fn memory_v1(dir: &Dir) -> Result<MemoryStats, CgroupError> {
    let usage = dir.read_u64("memory.usage_in_bytes")?;
    let limit = dir.read_u64("memory.limit_in_bytes")?;
    let swap = match dir.read_opt("memory.memsw.usage_in_bytes")? {
        Some(t) => {
            let total: u64 = t
                .trim()
                .parse()
                .map_err(|_| dir.parse_error("memory.memsw.usage_in_bytes", &t))?;
            Some(total.saturating_sub(usage))
        }
        None => None,
    };
    Ok(MemoryStats {
        usage_bytes: usage,
        max_usage_bytes: Some(dir.read_u64("memory.max_usage_in_bytes")?),
        limit_bytes: (limit < V1_UNLIMITED).then_some(limit),
        swap_usage_bytes: swap,
        oom_kills: oom_kills_v1(dir)?,
    })
}

/// `oom_kill` of v1 `memory.oom_control` (kernels before 4.13 lack the field: 0).
pub(crate) fn oom_kills_v1(dir: &Dir) -> Result<u64, CgroupError> {
    Ok(dir.read_key("memory.oom_control", "oom_kill")?.unwrap_or(0))
}

/// v1 CPU statistics from the cpuacct directory and, if given, the cpu one.
pub(crate) fn cpu_v1(cpuacct: &Dir, cpu: Option<&Dir>) -> Result<CpuStats, CgroupError> {
    let opt = |file: &str| -> Result<Option<u64>, CgroupError> {
        match cpuacct.read_opt(file)? {
            Some(t) => t
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| cpuacct.parse_error(file, &t)),
            None => Ok(None),
        }
    };
    let mut stats = CpuStats {
        usage_ns: cpuacct.read_u64("cpuacct.usage")?,
        user_ns: opt("cpuacct.usage_user")?,
        system_ns: opt("cpuacct.usage_sys")?,
        ..CpuStats::default()
    };
    if let Some(cpu) = cpu {
        if let Some(text) = cpu.read_opt("cpu.stat")? {
            stats.throttled_periods = cpu.parse_key("cpu.stat", &text, "nr_throttled")?;
            stats.throttled_ns = cpu.parse_key("cpu.stat", &text, "throttled_time")?;
        }
    }
    Ok(stats)
}

/// v2 memory statistics; `None` if the memory controller is not enabled for the cgroup.
pub(crate) fn memory_v2(dir: &Dir) -> Result<Option<MemoryStats>, CgroupError> {
    let Some(current) = dir.read_opt("memory.current")? else {
        return Ok(None);
    };
    let usage = current
        .trim()
        .parse()
        .map_err(|_| dir.parse_error("memory.current", &current))?;
    let optional = |file: &str| -> Result<Option<u64>, CgroupError> {
        match dir.read_opt(file)? {
            Some(t) => t
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| dir.parse_error(file, &t)),
            None => Ok(None),
        }
    };
    Ok(Some(MemoryStats {
        usage_bytes: usage,
        max_usage_bytes: optional("memory.peak")?,
        limit_bytes: dir.read_limit("memory.max")?,
        swap_usage_bytes: optional("memory.swap.current")?,
        oom_kills: match dir.read_opt("memory.events")? {
            Some(text) => dir
                .parse_key("memory.events", &text, "oom_kill")?
                .unwrap_or(0),
            None => 0,
        },
    }))
}

/// v2 CPU statistics from `cpu.stat` (present in every non-root cgroup).
pub(crate) fn cpu_v2(dir: &Dir) -> Result<Option<CpuStats>, CgroupError> {
    let Some(text) = dir.read_opt("cpu.stat")? else {
        return Ok(None);
    };
    let key = |k| dir.parse_key("cpu.stat", &text, k);
    let usage = key("usage_usec")?.ok_or_else(|| dir.parse_error("cpu.stat", &text))?;
    Ok(Some(CpuStats {
        usage_ns: usage.saturating_mul(1000),
        user_ns: key("user_usec")?.map(|v| v.saturating_mul(1000)),
        system_ns: key("system_usec")?.map(|v| v.saturating_mul(1000)),
        throttled_periods: key("nr_throttled")?,
        throttled_ns: key("throttled_usec")?.map(|v| v.saturating_mul(1000)),
    }))
}

/// Pids statistics (same files in v1 and v2); `None` if the controller is absent.
pub(crate) fn pids(dir: &Dir) -> Result<Option<PidsStats>, CgroupError> {
    if !dir.exists("pids.current") {
        return Ok(None);
    }
    Ok(Some(PidsStats {
        current: dir.read_u64("pids.current")?,
        limit: dir.read_limit("pids.max")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Dir) {
        let tmp = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(tmp.path().join(name), content).unwrap();
        }
        let dir = Dir::new("/isola/s", tmp.path().to_path_buf());
        (tmp, dir)
    }

    #[test]
    fn v1_memory_and_cpu() {
        let (_t, dir) = dir_with(&[
            ("memory.usage_in_bytes", "1000\n"),
            ("memory.max_usage_in_bytes", "4000\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.memsw.usage_in_bytes", "1500\n"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            ),
            ("cpuacct.usage", "123456\n"),
            ("cpuacct.usage_user", "100000\n"),
            ("cpuacct.usage_sys", "23456\n"),
            (
                "cpu.stat",
                "nr_periods 5\nnr_throttled 2\nthrottled_time 777\n",
            ),
        ]);
        let m = memory_v1(&dir).unwrap();
        assert_eq!(
            m,
            MemoryStats {
                usage_bytes: 1000,
                max_usage_bytes: Some(4000),
                limit_bytes: None,
                swap_usage_bytes: Some(500),
                oom_kills: 2
            }
        );
        let c = cpu_v1(&dir, Some(&dir)).unwrap();
        assert_eq!(c.usage_ns, 123_456);
        assert_eq!(c.user_ns, Some(100_000));
        assert_eq!(c.throttled_periods, Some(2));
        assert_eq!(c.throttled_ns, Some(777));
    }

    #[test]
    fn v1_oom_kill_field_absent_is_zero() {
        let (_t, dir) = dir_with(&[("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n")]);
        assert_eq!(oom_kills_v1(&dir).unwrap(), 0);
    }

    #[test]
    fn v2_sections() {
        let (_t, dir) = dir_with(&[
            ("memory.current", "2048\n"),
            ("memory.max", "max\n"),
            ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            ("cpu.stat", "usage_usec 10\nuser_usec 7\nsystem_usec 3\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"),
            ("pids.current", "3\n"),
            ("pids.max", "64\n"),
        ]);
        let m = memory_v2(&dir).unwrap().unwrap();
        assert_eq!(
            (m.usage_bytes, m.limit_bytes, m.oom_kills, m.max_usage_bytes),
            (2048, None, 1, None)
        );
        let c = cpu_v2(&dir).unwrap().unwrap();
        assert_eq!(
            (c.usage_ns, c.user_ns, c.system_ns),
            (10_000, Some(7000), Some(3000))
        );
        let p = pids(&dir).unwrap().unwrap();
        assert_eq!((p.current, p.limit), (3, Some(64)));
        let json = serde_json::to_string(&Stats {
            memory: Some(m),
            cpu: Some(c),
            pids: Some(p),
        })
        .unwrap();
        assert!(json.contains("\"usage_ns\":10000"));
    }

    #[test]
    fn v2_absent_controllers() {
        let (_t, dir) = dir_with(&[]);
        assert_eq!(memory_v2(&dir).unwrap(), None);
        assert_eq!(cpu_v2(&dir).unwrap(), None);
        assert_eq!(pids(&dir).unwrap(), None);
    }
}
