//! Capabilities: Docker's default set, tweaked by `--cap-add` and `--cap-drop` exactly as Docker's
//! `TweakCapabilities` does, and limited to what this host's bounding set can give.

use std::collections::BTreeSet;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::error::SpecError;

/// The kernel's capability names, indexed by capability number (`linux/capability.h`).
pub const KERNEL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default capabilities (moby `oci/caps/defaults.go`).
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The capabilities in a `CapBnd:` mask of `/proc/<pid>/status`, in kernel order. Bits this build
/// has no name for are ignored.
pub fn caps_of_mask(mask: u64) -> Vec<&'static str> {
    KERNEL_CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .map(|(_, name)| *name)
        .collect()
}

/// This process's bounding set, from `/proc/self/status`; `None` if it cannot be read.
pub fn host_bounding_set() -> Option<Vec<&'static str>> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok().map(caps_of_mask)
}

/// Normalizes a `--cap-add`/`--cap-drop` value: case-insensitive, with or without `CAP_`.
/// Returns `None` for `ALL`.
fn normalize(flag: &'static str, value: &str) -> Result<Option<&'static str>, SpecError> {
    let upper = value.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(None);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    KERNEL_CAPS
        .iter()
        .find(|c| **c == full)
        .map(|c| Some(*c))
        .ok_or_else(|| SpecError::invalid(flag, value, "unknown capability"))
}

/// The container's capability set, as Docker's `TweakCapabilities` computes it:
/// - `--cap-add ALL`: every capability of `host` except those in `--cap-drop`;
/// - else `--cap-drop ALL`: only the `--cap-add` ones;
/// - else the defaults minus `--cap-drop`, plus `--cap-add` (an add wins over a drop).
///
/// `host` is the host's bounding set: a capability asked for by name that it lacks is an error
/// (the runtime could not grant it), a default one it lacks is left out.
pub fn capability_set(
    add: &[String],
    drop: &[String],
    host: &[&'static str],
) -> Result<Vec<&'static str>, SpecError> {
    let (mut adds, mut add_all) = (Vec::new(), false);
    for a in add {
        match normalize("--cap-add", a)? {
            Some(c) if !host.contains(&c) => {
                return Err(SpecError::invalid(
                    "--cap-add",
                    a,
                    "not in this host's capability bounding set",
                ))
            }
            Some(c) => adds.push(c),
            None => add_all = true,
        }
    }
    let (mut drops, mut drop_all) = (Vec::new(), false);
    for d in drop {
        match normalize("--cap-drop", d)? {
            Some(c) => drops.push(c),
            None => drop_all = true,
        }
    }
    let set: BTreeSet<&'static str> = if add_all {
        host.iter()
            .copied()
            .filter(|c| !drops.contains(c))
            .collect()
    } else if drop_all {
        adds.into_iter().collect()
    } else {
        DEFAULT_CAPS
            .iter()
            .copied()
            .filter(|c| host.contains(c) && !drops.contains(c))
            .chain(adds)
            .collect()
    };
    // Kernel order, for a stable config.json.
    Ok(KERNEL_CAPS
        .iter()
        .copied()
        .filter(|c| set.contains(c))
        .collect())
}

/// `process.capabilities` for `set`: bounding, effective and permitted are the set for root; a
/// non-root user keeps only the bounding set (effective and permitted empty), so that it gains
/// capabilities only through file capabilities or setuid binaries, as in Docker. Inheritable and
/// ambient are empty.
pub fn linux_capabilities(set: &[&str], root: bool) -> Result<LinuxCapabilities, SpecError> {
    let caps: Capabilities = set
        .iter()
        .map(|name| {
            serde_json::from_value::<Capability>(serde_json::Value::String((*name).to_owned()))
                .map_err(|_| SpecError::invalid("--cap-add", *name, "unknown capability"))
        })
        .collect::<Result<_, _>>()?;
    let running = if root {
        caps.clone()
    } else {
        Capabilities::new()
    };
    let mut lc = LinuxCapabilities::default();
    lc.set_bounding(Some(caps));
    lc.set_effective(Some(running.clone()));
    lc.set_permitted(Some(running));
    lc.set_inheritable(Some(Capabilities::new()));
    lc.set_ambient(Some(Capabilities::new()));
    Ok(lc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This project's hosts: every capability but CAP_SYS_RESOURCE.
    fn host() -> Vec<&'static str> {
        caps_of_mask(0x1ff_feff_ffff)
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn sorted(v: &[&'static str]) -> Vec<&'static str> {
        KERNEL_CAPS
            .iter()
            .copied()
            .filter(|c| v.contains(c))
            .collect()
    }

    #[test]
    fn mask_and_table_agree() {
        let h = host();
        assert_eq!(h.len(), 40);
        assert!(!h.contains(&"CAP_SYS_RESOURCE"));
        assert_eq!(caps_of_mask(1 << 21), ["CAP_SYS_ADMIN"]);
        assert_eq!(caps_of_mask(1 << 40), ["CAP_CHECKPOINT_RESTORE"]);
        // Every name is one oci-spec (and so the runtime) knows.
        linux_capabilities(&KERNEL_CAPS, true).unwrap();
        assert!(host_bounding_set().is_some_and(|b| !b.is_empty()));
    }

    #[test]
    fn defaults_add_and_drop() {
        let h = host();
        assert_eq!(capability_set(&[], &[], &h).unwrap(), sorted(&DEFAULT_CAPS));
        let set = capability_set(
            &s(&["net_admin", "CAP_SYS_PTRACE", "Sys_Admin"]),
            &s(&["chown", "CAP_NET_RAW"]),
            &h,
        )
        .unwrap();
        assert!(set.contains(&"CAP_NET_ADMIN") && set.contains(&"CAP_SYS_PTRACE"));
        assert!(set.contains(&"CAP_SYS_ADMIN"));
        assert!(!set.contains(&"CAP_CHOWN") && !set.contains(&"CAP_NET_RAW"));
        assert_eq!(set.len(), DEFAULT_CAPS.len() + 1);
        // An add wins over a drop of the same capability, as in Docker.
        let set = capability_set(&s(&["KILL"]), &s(&["kill"]), &h).unwrap();
        assert!(set.contains(&"CAP_KILL"));
    }

    #[test]
    fn all() {
        let h = host();
        let set = capability_set(&s(&["ALL"]), &[], &h).unwrap();
        assert_eq!(set, h);
        assert!(!set.contains(&"CAP_SYS_RESOURCE"));
        let set = capability_set(&s(&["all"]), &s(&["SYS_ADMIN"]), &h).unwrap();
        assert_eq!(set.len(), h.len() - 1);
        let set = capability_set(&s(&["CHOWN", "KILL"]), &s(&["ALL"]), &h).unwrap();
        assert_eq!(set, ["CAP_CHOWN", "CAP_KILL"]);
        assert!(capability_set(&[], &s(&["ALL"]), &h).unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_flag() {
        let h = host();
        assert_eq!(
            capability_set(&s(&["CAP_FOO"]), &[], &h)
                .unwrap_err()
                .to_string(),
            r#"--cap-add "CAP_FOO": unknown capability"#
        );
        assert_eq!(
            capability_set(&[], &s(&["bar"]), &h)
                .unwrap_err()
                .to_string(),
            r#"--cap-drop "bar": unknown capability"#
        );
        assert_eq!(
            capability_set(&s(&["sys_resource"]), &[], &h)
                .unwrap_err()
                .to_string(),
            r#"--cap-add "sys_resource": not in this host's capability bounding set"#
        );
    }

    #[test]
    fn root_and_non_root_sets() {
        let set = capability_set(&[], &[], &host()).unwrap();
        let root = linux_capabilities(&set, true).unwrap();
        assert_eq!(root.bounding().as_ref().unwrap().len(), 14);
        assert_eq!(root.effective(), root.bounding());
        assert_eq!(root.permitted(), root.bounding());
        assert!(root.inheritable().as_ref().unwrap().is_empty());
        assert!(root.ambient().as_ref().unwrap().is_empty());
        let user = linux_capabilities(&set, false).unwrap();
        assert_eq!(user.bounding(), root.bounding());
        assert!(user.effective().as_ref().unwrap().is_empty());
        assert!(user.permitted().as_ref().unwrap().is_empty());
    }
}
