//! Process setup: what the container's init does to itself just before it execs the container
//! process (config.md "Process", "User"; config-linux.md "Sysctl", "Seccomp").
//!
//! The init calls these in order, single-threaded, after `pivot_root`:
//! [`set_rlimits`], [`set_oom_score_adj`], [`write_sysctls`], [`apply_lsm`], [`set_umask`],
//! [`compile_seccomp`] (early, so that a bad profile fails before anything irreversible),
//! [`switch_user`], [`apply_capabilities`], [`set_no_new_privs`], [`find_executable`],
//! [`load_seccomp`], [`cloexec_from`], [`exec`]. The filter goes in as late as possible, so that
//! the profile only has to allow what the container process needs and `execve`; without
//! `noNewPrivileges` it must go in before the capabilities are dropped, since it then needs
//! `CAP_SYS_ADMIN`. `create` calls [`check_names`] on the raw config.json and [`validate`] on the
//! parsed one before anything is set up.
//!
//! Guards: sysctls are opened beneath `/proc/sys` without following symlinks and only namespaced
//! ones the container has a namespace for are accepted; no descriptor of the runtime survives the
//! exec unless asked for; a request beyond what the host allows (an rlimit above the host's hard
//! limit, a capability outside its bounding set) fails with an error naming the limit or capability.

mod caps;
mod error;
mod exec;
mod lsm;
mod names;
mod rlimits;
mod seccomp;
#[cfg(target_arch = "x86_64")]
mod syscalls_x86_64;
mod sysctl;
mod user;

#[cfg(test)]
mod privileged_tests;

use oci_spec::runtime::{Linux, Process};

pub use self::caps::{apply_capabilities, known_capabilities};
pub use self::error::ProcessError;
pub use self::exec::{cloexec_from, exec, find_executable, DEFAULT_PATH};
pub use self::lsm::apply_lsm;
pub use self::names::check_names;
pub use self::rlimits::{set_oom_score_adj, set_rlimits};
pub use self::seccomp::{compile_seccomp, load_seccomp, SeccompProgram};
pub use self::sysctl::write_sysctls;
pub use self::user::{set_no_new_privs, set_umask, switch_user, DEFAULT_UMASK};

/// Validates the process part of a bundle without side effects (config.md "Process", "User";
/// config-linux.md "Sysctl", "Seccomp"), so that `create` fails early with an error naming the
/// field. Checks: `args` present and non-empty; capabilities representable and effective ⊆
/// permitted; rlimits without duplicates and soft ≤ hard; `oomScoreAdj` in range; umask a mode;
/// sysctl names beneath `/proc/sys` and namespaced in a namespace the container has; the seccomp
/// profile's actions, `errnoRet`, argument indexes and names.
///
/// Returns warnings, for the caller to show: capabilities the running kernel does not know,
/// ambient capabilities that cannot be raised, seccomp syscall names the host architecture does
/// not have (skipped, as runc does).
pub fn validate(process: &Process, linux: Option<&Linux>) -> Result<Vec<String>, ProcessError> {
    let mut warnings = Vec::new();
    match process.args().as_deref() {
        None | Some([]) => {
            return Err(ProcessError::invalid(
                "process.args",
                "[]",
                "at least one entry is required",
            ))
        }
        Some([first, ..]) if first.is_empty() => {
            return Err(ProcessError::invalid(
                "process.args[0]",
                "",
                "empty program name",
            ))
        }
        Some(_) => {}
    }
    if let Some(caps) = process.capabilities() {
        warnings.extend(caps::validate(caps)?);
    }
    if let Some(rlimits) = process.rlimits() {
        rlimits::validate(rlimits)?;
    }
    if let Some(adj) = process.oom_score_adj() {
        rlimits::validate_oom_score_adj(adj)?;
    }
    user::validate(process.user())?;
    if let Some(linux) = linux {
        sysctl::validate(linux)?;
        if let Some(seccomp) = linux.seccomp() {
            warnings.extend(seccomp::validate(seccomp)?);
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(process: &str, linux: &str) -> (Process, Linux) {
        (
            serde_json::from_str(process).unwrap(),
            serde_json::from_str(linux).unwrap(),
        )
    }

    #[test]
    fn a_typical_config_validates() {
        let (p, l) = parse(
            r#"{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0,"umask":18},
                "capabilities":{"bounding":["CAP_CHOWN","CAP_KILL"],"effective":["CAP_CHOWN"],
                                "permitted":["CAP_CHOWN"],"inheritable":[],"ambient":[]},
                "rlimits":[{"type":"RLIMIT_NOFILE","soft":1024,"hard":1024}],"oomScoreAdj":100}"#,
            r#"{"namespaces":[{"type":"network"}],"sysctl":{"net.ipv4.ip_forward":"1"},
                "seccomp":{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"}]}}"#,
        );
        assert_eq!(validate(&p, Some(&l)).unwrap(), Vec::<String>::new());
        validate(&p, None).unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        let err = |process: &str, linux: &str| {
            let (p, l) = parse(process, linux);
            validate(&p, Some(&l)).unwrap_err().to_string()
        };
        assert_eq!(
            err(r#"{"args":[],"cwd":"/","user":{"uid":0,"gid":0}}"#, "{}"),
            "process.args \"[]\": at least one entry is required"
        );
        assert_eq!(
            err(
                r#"{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0},"oomScoreAdj":-2000}"#,
                "{}"
            ),
            "process.oomScoreAdj \"-2000\": must be between -1000 and 1000"
        );
        assert_eq!(
            err(
                r#"{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}"#,
                r#"{"sysctl":{"kernel.panic":"1"}}"#
            ),
            "linux.sysctl \"kernel.panic\": not a namespaced sysctl; writing it would change the host"
        );
        assert_eq!(
            err(
                r#"{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}"#,
                r#"{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_NOTIFY"}]}}"#
            ),
            "linux.seccomp.syscalls[0].action \"SCMP_ACT_NOTIFY\": seccomp user notification is not supported (no listener)"
        );
    }

    #[test]
    fn foreign_syscall_names_are_not_warnings() {
        let (p, l) = parse(
            r#"{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}"#,
            r#"{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","socketcall"],"action":"SCMP_ACT_ALLOW"}]}}"#,
        );
        let warnings = validate(&p, Some(&l)).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
