//! Conversions from runtime-spec `linux.resources` values to control-file contents
//! (config-linux.md "Control groups"; the v1→v2 mappings follow the kernel's cgroup-v2.rst and
//! the runtime-spec's cgroup v2 conversion notes).

use oci_spec::runtime::LinuxRdma;

use super::error::CgroupError;
use super::fs::Dir;

/// Spec `cpu.shares` (v1, 2–262144) to v2 `cpu.weight` (1–10000), linearly:
/// `1 + ((shares - 2) * 9999) / 262142`. Out-of-range shares are clamped first, as the kernel
/// clamps `cpu.shares`.
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// v1 `blkio.weight` (10–1000) to v2 `io.weight` (1–10000), linearly.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + ((w - 10) * 9999) / 990
}

/// A memory byte count for v1 files: `-1` is unlimited, `0` means "not set" (`None`), anything
/// below `-1` is invalid.
pub fn memory_v1(field: &'static str, value: i64) -> Result<Option<String>, CgroupError> {
    match value {
        0 => Ok(None),
        -1 => Ok(Some("-1".into())),
        v if v > 0 => Ok(Some(v.to_string())),
        v => Err(negative(field, v)),
    }
}

/// A memory byte count for v2 files: `-1` is `max`, `0` means "not set", below `-1` invalid.
pub fn memory_v2(field: &'static str, value: i64) -> Result<Option<String>, CgroupError> {
    Ok(memory_v1(field, value)?.map(|v| if v == "-1" { "max".into() } else { v }))
}

/// The spec's `memory.swap` is the memory+swap total; v2's `memory.swap.max` is the swap alone,
/// so it is `swap - limit`. `-1` is unlimited, `0` is "not set".
pub fn swap_v2(limit: Option<i64>, swap: i64) -> Result<Option<String>, CgroupError> {
    match swap {
        0 => return Ok(None),
        -1 => return Ok(Some("max".into())),
        s if s < -1 => return Err(negative("memory.swap", s)),
        _ => {}
    }
    match limit {
        Some(l) if l > 0 => {
            check_swap_not_below_limit(l, swap)?;
            Ok(Some((swap - l).to_string()))
        }
        _ => Err(CgroupError::InvalidValue {
            field: "memory.swap",
            value: swap.to_string(),
            reason: "a memory+swap limit needs a memory limit on cgroup v2".into(),
        }),
    }
}

/// The spec requires memory+swap ≥ memory whenever both are finite.
pub fn check_swap_not_below_limit(limit: i64, swap: i64) -> Result<(), CgroupError> {
    if limit > 0 && swap > 0 && swap < limit {
        return Err(CgroupError::InvalidValue {
            field: "memory.swap",
            value: swap.to_string(),
            reason: format!("memory+swap must not be below memory.limit ({limit})"),
        });
    }
    Ok(())
}

/// v2 `cpu.max`: `"$QUOTA $PERIOD"`, `max` for no quota (quota ≤ 0). When only the period is
/// given, the current quota (first word of the current `cpu.max`) is kept.
pub fn cpu_max(quota: Option<i64>, period: Option<u64>, current: Option<&str>) -> Option<String> {
    let quota = match quota {
        Some(q) if q > 0 => q.to_string(),
        Some(_) => "max".to_string(),
        None => {
            period?;
            current
                .and_then(|c| c.split_whitespace().next())
                .unwrap_or("max")
                .to_string()
        }
    };
    Some(match period {
        Some(p) => format!("{quota} {p}"),
        None => quota,
    })
}

/// `pids.max`: a limit ≤ 0 is unlimited (`max`).
pub fn pids_max(limit: i64) -> String {
    if limit <= 0 {
        "max".into()
    } else {
        limit.to_string()
    }
}

/// Checks a `hugepageLimits[].pageSize` such as `2MB` or `1GB` (digits then `KB`, `MB`, `GB`, `TB`
/// or `PB`), so it can be used in a file name.
pub fn check_page_size(size: &str) -> Result<(), CgroupError> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && ["KB", "MB", "GB", "TB", "PB"].contains(&unit);
    if ok {
        Ok(())
    } else {
        Err(CgroupError::InvalidValue {
            field: "hugepageLimits.pageSize",
            value: size.to_string(),
            reason: "expected a size such as 2MB or 1GB".into(),
        })
    }
}

/// Checks a key of `linux.resources.unified`: a plain file name in the cgroup directory.
pub fn check_unified_key(key: &str) -> Result<(), CgroupError> {
    let bad = key.is_empty()
        || key == "."
        || key == ".."
        || key.contains('/')
        || key.contains('\0')
        || !key.contains('.');
    if bad {
        return Err(CgroupError::InvalidValue {
            field: "unified",
            value: format!("{key:?}"),
            reason: "keys must be control file names such as memory.high".into(),
        });
    }
    Ok(())
}

/// A device number from a spec rule: `None` or `-1` is a wildcard; other negatives are invalid.
pub fn device_number(field: &'static str, value: Option<i64>) -> Result<Option<u32>, CgroupError> {
    match value {
        None | Some(-1) => Ok(None),
        Some(v) => u32::try_from(v)
            .map(Some)
            .map_err(|_| CgroupError::InvalidValue {
                field,
                value: v.to_string(),
                reason: "device numbers are -1 (any) or 0 to 4294967295".into(),
            }),
    }
}

/// One `rdma.max` line: `<device> hca_handle=<n> hca_object=<n>` with the limits given;
/// `None` when the entry sets neither.
pub fn rdma_line(device: &str, limits: &LinuxRdma) -> Option<String> {
    let mut line = device.to_string();
    if let Some(h) = limits.hca_handles() {
        line.push_str(&format!(" hca_handle={h}"));
    }
    if let Some(o) = limits.hca_objects() {
        line.push_str(&format!(" hca_object={o}"));
    }
    (line.len() > device.len()).then_some(line)
}

/// `memory.checkBeforeUpdate`: refuse a limit below the cgroup's current usage (`usage_file`).
pub fn check_before_update(dir: &Dir, usage_file: &str, limit: i64) -> Result<(), CgroupError> {
    let Ok(limit_bytes) = u64::try_from(limit) else {
        return Ok(());
    };
    if limit_bytes == 0 || !dir.exists(usage_file) {
        return Ok(());
    }
    let usage = dir.read_u64(usage_file)?;
    if usage > limit_bytes {
        return Err(CgroupError::InvalidValue {
            field: "memory.limit",
            value: limit.to_string(),
            reason: format!("below the current usage of {usage} bytes (checkBeforeUpdate)"),
        });
    }
    Ok(())
}

fn negative(field: &'static str, v: i64) -> CgroupError {
    CgroupError::InvalidValue {
        field,
        value: v.to_string(),
        reason: "must be positive, or -1 for unlimited".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(1 << 40), 10_000);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
    }

    #[test]
    fn memory_values() {
        assert_eq!(memory_v1("memory.limit", 0).unwrap(), None);
        assert_eq!(memory_v1("memory.limit", -1).unwrap().unwrap(), "-1");
        assert_eq!(memory_v1("memory.limit", 4096).unwrap().unwrap(), "4096");
        assert_eq!(memory_v2("memory.limit", -1).unwrap().unwrap(), "max");
        let e = memory_v1("memory.limit", -2).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cgroup: invalid linux.resources.memory.limit -2: must be positive, or -1 for unlimited"
        );
    }

    #[test]
    fn swap_conversion() {
        assert_eq!(swap_v2(Some(100), 300).unwrap().unwrap(), "200");
        assert_eq!(swap_v2(Some(100), 100).unwrap().unwrap(), "0");
        assert_eq!(swap_v2(None, -1).unwrap().unwrap(), "max");
        assert_eq!(swap_v2(Some(100), 0).unwrap(), None);
        assert!(swap_v2(Some(100), 50).is_err());
        assert!(swap_v2(None, 50).is_err());
        assert!(swap_v2(Some(-1), 50).is_err());
        assert!(swap_v2(Some(100), -5).is_err());
        assert!(check_swap_not_below_limit(100, -1).is_ok());
        assert!(check_swap_not_below_limit(100, 99).is_err());
    }

    #[test]
    fn cpu_max_forms() {
        assert_eq!(
            cpu_max(Some(50_000), Some(100_000), None).unwrap(),
            "50000 100000"
        );
        assert_eq!(
            cpu_max(Some(-1), Some(100_000), None).unwrap(),
            "max 100000"
        );
        assert_eq!(cpu_max(Some(20_000), None, None).unwrap(), "20000");
        assert_eq!(
            cpu_max(None, Some(50_000), Some("30000 100000\n")).unwrap(),
            "30000 50000"
        );
        assert_eq!(cpu_max(None, Some(50_000), None).unwrap(), "max 50000");
        assert_eq!(cpu_max(None, None, Some("max 100000")), None);
    }

    #[test]
    fn small_values() {
        assert_eq!(pids_max(0), "max");
        assert_eq!(pids_max(-1), "max");
        assert_eq!(pids_max(32), "32");
        check_page_size("2MB").unwrap();
        check_page_size("1GB").unwrap();
        check_page_size("64KB").unwrap();
        for bad in ["", "MB", "2mb", "2MB/../x", "2", "x2MB"] {
            assert!(check_page_size(bad).is_err(), "{bad}");
        }
        check_unified_key("memory.high").unwrap();
        for bad in ["", "..", "../memory.max", "a/b.c", "nodot"] {
            assert!(check_unified_key(bad).is_err(), "{bad}");
        }
        assert_eq!(device_number("devices.major", Some(-1)).unwrap(), None);
        assert_eq!(
            device_number("devices.major", Some(136)).unwrap(),
            Some(136)
        );
        assert!(device_number("devices.major", Some(-7)).is_err());
    }

    #[test]
    fn rdma_and_check_before_update() {
        let r: LinuxRdma = serde_json::from_str(r#"{"hcaHandles":3,"hcaObjects":1000}"#).unwrap();
        assert_eq!(
            rdma_line("mlx5_1", &r).unwrap(),
            "mlx5_1 hca_handle=3 hca_object=1000"
        );
        assert_eq!(rdma_line("mlx5_1", &LinuxRdma::default()), None);
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("memory.current"), "5000\n").unwrap();
        let dir = Dir::new("/c", tmp.path().to_path_buf());
        check_before_update(&dir, "memory.current", 6000).unwrap();
        check_before_update(&dir, "memory.current", -1).unwrap();
        let e = check_before_update(&dir, "memory.current", 4096).unwrap_err();
        assert!(
            e.to_string()
                .contains("below the current usage of 5000 bytes"),
            "{e}"
        );
    }
}
