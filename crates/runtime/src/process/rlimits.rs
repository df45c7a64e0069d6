//! Resource limits (config.md "POSIX process" → `rlimits`) and `oomScoreAdj`.

use std::collections::HashSet;
use std::fs;
use std::io;

use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

use super::caps::has_effective;
use super::error::ProcessError;

/// The `RLIMIT_*` name of a limit type, as written in config.json.
pub(super) fn rlimit_name(typ: PosixRlimitType) -> String {
    typ.to_string()
}

/// The resource that `setrlimit(2)` knows a limit type by.
pub(super) fn resource_of(typ: PosixRlimitType) -> Resource {
    match typ {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// Checks `process.rlimits`: no type twice (the spec requires an error for duplicates), soft ≤ hard.
/// Unknown `RLIMIT_*` names never get here: they fail to parse (see [`super::check_names`]).
pub(super) fn validate(rlimits: &[PosixRlimit]) -> Result<(), ProcessError> {
    let mut seen = HashSet::new();
    for (i, rl) in rlimits.iter().enumerate() {
        let name = rlimit_name(rl.typ());
        if !seen.insert(name.clone()) {
            return Err(ProcessError::invalid(
                format!("process.rlimits[{i}].type"),
                name,
                "duplicate rlimit type",
            ));
        }
        if rl.soft() > rl.hard() {
            return Err(ProcessError::invalid(
                format!("process.rlimits[{i}].soft"),
                rl.soft().to_string(),
                format!("soft limit of {name} is above its hard limit {}", rl.hard()),
            ));
        }
    }
    Ok(())
}

/// Applies `process.rlimits` with `setrlimit(2)` (config.md "POSIX process": "for each entry, the
/// runtime MUST ... call setrlimit").
///
/// Raising a hard limit above the current one needs `CAP_SYS_RESOURCE`; when that is what fails, the
/// error names the limit, the current hard limit and the missing capability instead of a bare EPERM.
pub fn set_rlimits(rlimits: &[PosixRlimit]) -> Result<(), ProcessError> {
    for rl in rlimits {
        let resource = resource_of(rl.typ());
        match setrlimit(resource, rl.soft(), rl.hard()) {
            Ok(()) => {}
            Err(Errno::EPERM) => {
                let resource_name = rlimit_name(rl.typ());
                let (_, host_hard) =
                    getrlimit(resource).map_err(|source| ProcessError::Rlimit {
                        resource: resource_name.clone(),
                        soft: rl.soft(),
                        hard: rl.hard(),
                        source,
                    })?;
                if rl.hard() > host_hard && !has_effective(caps::Capability::CAP_SYS_RESOURCE) {
                    return Err(ProcessError::RlimitAboveHostHard {
                        resource: resource_name,
                        requested: rl.hard(),
                        host_hard,
                    });
                }
                return Err(ProcessError::Rlimit {
                    resource: resource_name,
                    soft: rl.soft(),
                    hard: rl.hard(),
                    source: Errno::EPERM,
                });
            }
            Err(source) => {
                return Err(ProcessError::Rlimit {
                    resource: rlimit_name(rl.typ()),
                    soft: rl.soft(),
                    hard: rl.hard(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Checks `process.oomScoreAdj` is in the kernel's range.
pub(super) fn validate_oom_score_adj(value: i32) -> Result<(), ProcessError> {
    if !(-1000..=1000).contains(&value) {
        return Err(ProcessError::invalid(
            "process.oomScoreAdj",
            value.to_string(),
            "must be between -1000 and 1000",
        ));
    }
    Ok(())
}

/// Writes `process.oomScoreAdj` (config.md "POSIX process") to `/proc/<pid>/oom_score_adj`, or to
/// `/proc/self/oom_score_adj` when `pid` is `None`.
///
/// Lowering the value below the current one needs `CAP_SYS_RESOURCE`; when that is what fails the
/// error says so and names both values.
pub fn set_oom_score_adj(pid: Option<i32>, value: i32) -> Result<(), ProcessError> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/oom_score_adj"),
        None => "/proc/self/oom_score_adj".to_owned(),
    };
    match fs::write(&path, value.to_string()) {
        Ok(()) => Ok(()),
        Err(err) if matches!(err.kind(), io::ErrorKind::PermissionDenied) => {
            let current = fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok());
            match current {
                Some(current)
                    if value < current && !has_effective(caps::Capability::CAP_SYS_RESOURCE) =>
                {
                    Err(ProcessError::OomScoreAdjDenied { value, current })
                }
                _ => Err(ProcessError::file(path, err)),
            }
        }
        Err(err) => Err(ProcessError::file(path, err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_resources() {
        assert_eq!(rlimit_name(PosixRlimitType::RlimitNofile), "RLIMIT_NOFILE");
        assert_eq!(rlimit_name(PosixRlimitType::RlimitRttime), "RLIMIT_RTTIME");
        assert_eq!(
            rlimit_name(PosixRlimitType::RlimitMsgqueue),
            "RLIMIT_MSGQUEUE"
        );
        assert_eq!(
            resource_of(PosixRlimitType::RlimitNofile) as i32,
            libc::RLIMIT_NOFILE as i32
        );
        assert_eq!(
            resource_of(PosixRlimitType::RlimitNproc) as i32,
            libc::RLIMIT_NPROC as i32
        );
        assert_eq!(
            resource_of(PosixRlimitType::RlimitRttime) as i32,
            libc::RLIMIT_RTTIME as i32
        );
        assert_eq!(
            resource_of(PosixRlimitType::RlimitAs) as i32,
            libc::RLIMIT_AS as i32
        );
    }

    fn rl(typ: PosixRlimitType, soft: u64, hard: u64) -> PosixRlimit {
        oci_spec::runtime::PosixRlimitBuilder::default()
            .typ(typ)
            .soft(soft)
            .hard(hard)
            .build()
            .unwrap()
    }

    #[test]
    fn duplicates_and_soft_above_hard_are_refused() {
        let err = validate(&[
            rl(PosixRlimitType::RlimitNofile, 10, 10),
            rl(PosixRlimitType::RlimitNofile, 20, 20),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "process.rlimits[1].type \"RLIMIT_NOFILE\": duplicate rlimit type"
        );
        let err = validate(&[rl(PosixRlimitType::RlimitCore, 10, 5)]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("process.rlimits[0].soft \"10\""),
            "{err}"
        );
        validate(&[rl(PosixRlimitType::RlimitCore, 5, u64::MAX)]).unwrap();
    }

    #[test]
    fn oom_score_adj_range() {
        validate_oom_score_adj(-1000).unwrap();
        validate_oom_score_adj(1000).unwrap();
        assert!(validate_oom_score_adj(1001).is_err());
    }
}
