//! Kernel parameters (config-linux.md "Sysctl").
//!
//! A sysctl write lands in whatever namespace the writer is in, and most sysctls are not
//! namespaced at all: only those the kernel scopes to a namespace the container has are accepted
//! (the same list runc accepts), so that config.json cannot change the host's kernel.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;

use oci_spec::runtime::{Linux, LinuxNamespaceType};
use rustix::fs::{openat, openat2, Mode, OFlags, ResolveFlags, CWD, PROC_SUPER_MAGIC};

use super::error::ProcessError;

/// The path below `/proc/sys` of a sysctl name: `a.b.c` becomes `a/b/c`; a name containing `/`
/// is already a path (so `net/ipv4/conf/eth0.100/forwarding` keeps the dot of the interface name,
/// as sysctl(8) reads it). Refuses names that would leave `/proc/sys`: absolute, empty components,
/// `.` or `..`.
pub(super) fn sysctl_path(name: &str) -> Result<String, &'static str> {
    let path = if name.contains('/') {
        name.to_owned()
    } else {
        name.replace('.', "/")
    };
    if path.is_empty() {
        return Err("empty sysctl name");
    }
    if path.starts_with('/') {
        return Err("absolute sysctl path");
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == ".." || c.contains('\0'))
    {
        return Err("not a sysctl name (empty, \".\" or \"..\" component)");
    }
    Ok(path)
}

/// The namespace a sysctl belongs to, if it is namespaced at all.
fn namespace_of(path: &str) -> Option<LinuxNamespaceType> {
    const IPC: &[&str] = &[
        "kernel/msgmax",
        "kernel/msgmnb",
        "kernel/msgmni",
        "kernel/sem",
        "kernel/shmall",
        "kernel/shmmax",
        "kernel/shmmni",
        "kernel/shm_rmid_forced",
    ];
    if path.starts_with("net/") {
        Some(LinuxNamespaceType::Network)
    } else if path.starts_with("fs/mqueue/") || IPC.contains(&path) {
        Some(LinuxNamespaceType::Ipc)
    } else if path == "kernel/hostname" || path == "kernel/domainname" {
        Some(LinuxNamespaceType::Uts)
    } else {
        None
    }
}

/// Checks `linux.sysctl`: names stay beneath `/proc/sys` and are namespaced in a namespace the
/// container has (a `net.*` sysctl needs a network namespace, and so on).
pub(super) fn validate(linux: &Linux) -> Result<(), ProcessError> {
    let Some(sysctl) = linux.sysctl() else {
        return Ok(());
    };
    let has = |t: LinuxNamespaceType| linux.namespaces().iter().flatten().any(|ns| ns.typ() == t);
    let mut names: Vec<&String> = sysctl.keys().collect();
    names.sort();
    for name in names {
        let path = sysctl_path(name)
            .map_err(|reason| ProcessError::invalid("linux.sysctl", name.as_str(), reason))?;
        match namespace_of(&path) {
            None => {
                return Err(ProcessError::invalid(
                    "linux.sysctl",
                    name.as_str(),
                    "not a namespaced sysctl; writing it would change the host",
                ))
            }
            Some(t) if !has(t) => {
                return Err(ProcessError::invalid(
                    "linux.sysctl",
                    name.as_str(),
                    format!("needs a private {t} namespace, which linux.namespaces lacks"),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Opens `/proc/sys/<path>` for writing, beneath `/proc/sys`, following no symlink, after checking
/// that `/proc/sys` is on procfs.
fn open_sysctl(path: &str) -> io::Result<File> {
    let root = openat(
        CWD,
        "/proc/sys",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if rustix::fs::fstatfs(&root)?.f_type != PROC_SUPER_MAGIC {
        return Err(io::Error::other("/proc/sys is not on procfs"));
    }
    let flags = OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOCTTY;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match openat2(&root, path, flags, Mode::empty(), resolve) {
        Ok(fd) => Ok(File::from(fd)),
        Err(rustix::io::Errno::NOSYS) => open_by_components(root, path, flags),
        Err(e) => Err(e.into()),
    }
}

/// Without `openat2` (Linux < 5.6): one component at a time, each with `O_NOFOLLOW`.
fn open_by_components(root: OwnedFd, path: &str, flags: OFlags) -> io::Result<File> {
    let mut dir = root;
    let mut components = path.split('/').peekable();
    while let Some(component) = components.next() {
        if components.peek().is_none() {
            let fd = openat(&dir, component, flags | OFlags::NOFOLLOW, Mode::empty())?;
            return Ok(File::from(fd));
        }
        dir = openat(
            &dir,
            component,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
    }
    Err(io::Error::from(io::ErrorKind::InvalidInput))
}

/// Writes `linux.sysctl` (config-linux.md "Sysctl") to `/proc/sys`, in name order. Each name is
/// mapped by dots to a path (a name containing `/` is already one) and opened beneath `/proc/sys`
/// without following symlinks; call it after the container's namespaces and `/proc` are set up.
pub fn write_sysctls(sysctl: &HashMap<String, String>) -> Result<(), ProcessError> {
    let mut names: Vec<&String> = sysctl.keys().collect();
    names.sort();
    for name in names {
        let value = &sysctl[name];
        let path = sysctl_path(name)
            .map_err(|reason| ProcessError::invalid("linux.sysctl", name.as_str(), reason))?;
        let err = |source| ProcessError::Sysctl {
            name: name.clone(),
            value: value.clone(),
            path: path.clone(),
            source,
        };
        let mut file = open_sysctl(&path).map_err(err)?;
        file.write_all(value.as_bytes()).map_err(err)?;
        tracing::debug!(%name, %value, "sysctl written");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            "net/ipv4/ip_forward"
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.100/forwarding").unwrap(),
            "net/ipv4/conf/eth0.100/forwarding"
        );
        assert_eq!(sysctl_path("kernel.shmmax").unwrap(), "kernel/shmmax");
        for bad in [
            "",
            ".net",
            "net..ipv4",
            "net.",
            "/net/ipv4",
            "net/../../etc",
            "net/./x",
        ] {
            assert!(sysctl_path(bad).is_err(), "{bad:?}");
        }
    }

    fn linux(json: &str) -> Linux {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn sysctls_must_be_namespaced_in_a_namespace_the_container_has() {
        let ok = linux(
            r#"{"namespaces":[{"type":"network"},{"type":"ipc"},{"type":"uts"}],
                "sysctl":{"net.ipv4.ip_forward":"1","kernel.shmmax":"1","fs.mqueue.msg_max":"20",
                          "kernel.hostname":"x"}}"#,
        );
        validate(&ok).unwrap();

        let host = linux(r#"{"namespaces":[{"type":"network"}],"sysctl":{"vm.swappiness":"1"}}"#);
        assert_eq!(
            validate(&host).unwrap_err().to_string(),
            "linux.sysctl \"vm.swappiness\": not a namespaced sysctl; writing it would change the host"
        );

        let no_netns =
            linux(r#"{"namespaces":[{"type":"ipc"}],"sysctl":{"net.core.somaxconn":"1"}}"#);
        assert_eq!(
            validate(&no_netns).unwrap_err().to_string(),
            "linux.sysctl \"net.core.somaxconn\": needs a private net namespace, which linux.namespaces lacks"
        );

        let escape =
            linux(r#"{"namespaces":[{"type":"network"}],"sysctl":{"net/../kernel/x":"1"}}"#);
        assert!(validate(&escape).is_err());
    }
}
