//! The default seccomp profile.
//!
//! Docker's default profile is an allow-list: about 350 syscalls are allowed, some only with a
//! capability, and everything else fails with `EPERM`. This is a **deny-list approximation** of
//! it: the default action allows, and the syscalls Docker's profile refuses to an ordinary
//! container fail with `EPERM` (`errnoRet` 1). Like Docker's, the profile follows the container's
//! capabilities: a syscall Docker allows with a capability (e.g. `mount` with `CAP_SYS_ADMIN`,
//! `reboot` with `CAP_SYS_BOOT`) is left out of the deny list when the container has that
//! capability, so `--cap-add SYS_ADMIN` (and `--cap-add ALL`) lift those rules as they do in
//! Docker; the rules without a capability stay even with `--cap-add ALL` (Docker lifts them only
//! with `--privileged`, which isola does not have).
//!
//! Where this differs from Docker: syscalls newer than this list are allowed rather than refused;
//! `personality` is not restricted to Docker's personas. `ptrace` is allowed, as in Docker's
//! profile on kernels 4.8 and later. As in Docker, `clone` with a namespace flag fails with
//! `EPERM` and `clone3` with `ENOSYS` (so that libc falls back to `clone`) without
//! `CAP_SYS_ADMIN`.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

use super::error::SpecError;

/// Syscalls refused unless the container has the capability (Docker's `includes.caps` blocks); a
/// syscall listed under two capabilities is allowed with either. Names are the x86_64 ones.
const CAP_GATED: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "swapoff",
            "swapon",
            "umount2",
            "unshare",
            "pivot_root",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot", "kexec_file_load", "kexec_load"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "userfaultfd",
        ],
    ),
    ("CAP_SYS_RAWIO", &["ioperm", "iopl"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "clock_settime", "clock_adjtime"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &["get_mempolicy", "mbind", "set_mempolicy", "move_pages"],
    ),
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Syscalls refused whatever the capabilities: obsolete, or not namespaced (keyrings, userfaultfd,
/// io_uring, which Docker also refuses).
const ALWAYS_DENIED: &[&str] = &[
    "_sysctl",
    "add_key",
    "create_module",
    "get_kernel_syms",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "keyctl",
    "nfsservctl",
    "query_module",
    "request_key",
    "sysfs",
    "uselib",
    "ustat",
];

/// The namespace flags of `clone(2)` that need `CAP_SYS_ADMIN` in Docker's profile: NEWNS,
/// NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET.
const CLONE_NS_FLAGS: [u64; 7] = [
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

const EPERM: u32 = libc::EPERM as u32;
const ENOSYS: u32 = libc::ENOSYS as u32;

fn rule(names: Vec<String>, errno: u32, args: Option<Vec<LinuxSeccompArg>>) -> LinuxSyscall {
    let mut sc = LinuxSyscall::default();
    sc.set_names(names);
    sc.set_action(LinuxSeccompAction::ScmpActErrno);
    sc.set_errno_ret(Some(errno));
    sc.set_args(args);
    sc
}

/// The syscalls the profile refuses with `EPERM` for a container with capabilities `caps`,
/// sorted.
pub fn denied_syscalls(caps: &[&str]) -> Vec<&'static str> {
    let allowed = |call: &str| {
        CAP_GATED
            .iter()
            .any(|(cap, calls)| caps.contains(cap) && calls.contains(&call))
    };
    let mut names: Vec<&'static str> = ALWAYS_DENIED.to_vec();
    for (_, calls) in CAP_GATED {
        names.extend(calls.iter().copied().filter(|c| !allowed(c)));
    }
    names.sort_unstable();
    names.dedup();
    names
}

/// The default profile for a container with capabilities `caps` (see the module docs).
pub fn default_profile(caps: &[&str]) -> Result<LinuxSeccomp, SpecError> {
    let mut syscalls = vec![rule(
        denied_syscalls(caps)
            .into_iter()
            .map(str::to_owned)
            .collect(),
        EPERM,
        None,
    )];
    if !caps.contains(&"CAP_SYS_ADMIN") {
        // One argument index repeated: each condition is a rule of its own (ORed).
        let args = CLONE_NS_FLAGS
            .iter()
            .map(|&flag| {
                LinuxSeccompArgBuilder::default()
                    .index(0usize)
                    .value(flag)
                    .value_two(flag)
                    .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                    .build()
            })
            .collect::<Result<_, _>>()?;
        syscalls.push(rule(vec!["clone".into()], EPERM, Some(args)));
        syscalls.push(rule(vec!["clone3".into()], ENOSYS, None));
    }
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActAllow);
    profile.set_architectures(Some(vec![
        Arch::ScmpArchX86_64,
        Arch::ScmpArchX86,
        Arch::ScmpArchX32,
    ]));
    profile.set_syscalls(Some(syscalls));
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::caps::{DEFAULT_CAPS, KERNEL_CAPS};

    #[test]
    fn default_caps_deny_the_dangerous_calls() {
        let denied = denied_syscalls(&DEFAULT_CAPS);
        for name in [
            "mount", "unshare", "setns", "keyctl", "bpf", "reboot", "umount2",
        ] {
            assert!(denied.contains(&name), "{name} is allowed");
        }
        assert!(!denied.contains(&"ptrace"));
        assert!(!denied.contains(&"chroot"));
        let p = default_profile(&DEFAULT_CAPS).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(p.syscalls().as_ref().unwrap().len(), 3);
    }

    #[test]
    fn capabilities_lift_their_rules() {
        let mut caps = DEFAULT_CAPS.to_vec();
        caps.push("CAP_SYS_ADMIN");
        let denied = denied_syscalls(&caps);
        assert!(!denied.contains(&"mount") && !denied.contains(&"unshare"));
        assert!(denied.contains(&"reboot") && denied.contains(&"keyctl"));
        // bpf is allowed with CAP_SYS_ADMIN or CAP_BPF.
        assert!(!denied.contains(&"bpf"));
        assert_eq!(
            default_profile(&caps)
                .unwrap()
                .syscalls()
                .as_ref()
                .unwrap()
                .len(),
            1
        );
        let mut caps = DEFAULT_CAPS.to_vec();
        caps.push("CAP_BPF");
        assert!(!denied_syscalls(&caps).contains(&"bpf"));
        assert!(denied_syscalls(&caps).contains(&"mount"));
        assert_eq!(denied_syscalls(&KERNEL_CAPS), ALWAYS_DENIED);
    }

    #[test]
    fn compiles_with_the_runtime_and_knows_every_name() {
        for caps in [&DEFAULT_CAPS[..], &KERNEL_CAPS[..], &[]] {
            let prog =
                isola_runtime::process::compile_seccomp(&default_profile(caps).unwrap()).unwrap();
            assert!(!prog.filters().is_empty());
            assert_eq!(prog.skipped_syscalls(), &[] as &[String], "unknown names");
        }
        let json = serde_json::to_value(default_profile(&DEFAULT_CAPS).unwrap()).unwrap();
        assert_eq!(json["syscalls"][0]["errnoRet"], 1);
        assert_eq!(json["syscalls"][2]["names"][0], "clone3");
        assert_eq!(json["syscalls"][2]["errnoRet"], 38);
        assert_eq!(
            json["architectures"],
            serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
    }
}
