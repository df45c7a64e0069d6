//! Namespaces (config-linux.md "Namespaces", "User namespace mappings"): creating new ones with
//! `unshare(2)`, joining existing ones by path with `setns(2)`, and writing ID maps.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespace, LinuxNamespaceType};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use crate::error::{Error, Result};

/// Order in which existing namespaces are joined: the user namespace first (it grants the
/// capabilities the others need), the mount namespace last (it changes root and working directory).
const JOIN_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Mount,
];

/// The `/proc/PID/ns/<name>` file name of a namespace type.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

fn unshare_flag(t: LinuxNamespaceType) -> UnshareFlags {
    match t {
        LinuxNamespaceType::Mount => UnshareFlags::NEWNS,
        LinuxNamespaceType::Cgroup => UnshareFlags::NEWCGROUP,
        LinuxNamespaceType::Uts => UnshareFlags::NEWUTS,
        LinuxNamespaceType::Ipc => UnshareFlags::NEWIPC,
        LinuxNamespaceType::User => UnshareFlags::NEWUSER,
        LinuxNamespaceType::Pid => UnshareFlags::NEWPID,
        LinuxNamespaceType::Network => UnshareFlags::NEWNET,
        LinuxNamespaceType::Time => UnshareFlags::NEWTIME,
    }
}

fn link_type(t: LinuxNamespaceType) -> LinkNameSpaceType {
    match t {
        LinuxNamespaceType::Mount => LinkNameSpaceType::Mount,
        LinuxNamespaceType::Cgroup => LinkNameSpaceType::ControlGroup,
        LinuxNamespaceType::Uts => LinkNameSpaceType::HostNameAndNISDomainName,
        LinuxNamespaceType::Ipc => LinkNameSpaceType::InterProcessCommunication,
        LinuxNamespaceType::User => LinkNameSpaceType::User,
        LinuxNamespaceType::Pid => LinkNameSpaceType::ProcessID,
        LinuxNamespaceType::Network => LinkNameSpaceType::Network,
        LinuxNamespaceType::Time => LinkNameSpaceType::Time,
    }
}

/// Namespaces to join, opened up front (before any of them is entered, so every path still resolves).
#[derive(Debug, Default)]
pub struct ToJoin(Vec<(LinuxNamespaceType, PathBuf, OwnedFd)>);

impl ToJoin {
    /// Opens the `path` of every namespace entry that has one.
    pub fn open(namespaces: &[LinuxNamespace]) -> Result<Self> {
        let mut out = Vec::new();
        for ns in namespaces {
            if let Some(path) = ns.path() {
                let f = File::open(path).map_err(|e| Error::io("open namespace", path, e))?;
                out.push((ns.typ(), path.clone(), OwnedFd::from(f)));
            }
        }
        Ok(Self(out))
    }

    /// Opens every namespace of process `pid` listed in `types`, for `exec` into a running container.
    pub fn of_process(pid: i32, types: &[LinuxNamespaceType]) -> Result<Self> {
        let mut out = Vec::new();
        for &t in types {
            let path = PathBuf::from(format!("/proc/{pid}/ns/{}", proc_name(t)));
            let f = File::open(&path).map_err(|e| Error::io("open namespace", &path, e))?;
            out.push((t, path, OwnedFd::from(f)));
        }
        Ok(Self(out))
    }

    /// Whether a namespace of this type is to be joined.
    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.0.iter().any(|(typ, _, _)| *typ == t)
    }

    /// Joins the namespaces of the given types (all when `only` is `None`), in [`JOIN_ORDER`].
    pub fn join(&self, only: Option<&[LinuxNamespaceType]>) -> Result<()> {
        for t in JOIN_ORDER {
            if only.is_some_and(|o| !o.contains(&t)) {
                continue;
            }
            for (typ, path, fd) in self.0.iter().filter(|(typ, _, _)| *typ == t) {
                rustix::thread::move_into_link_name_space(fd.as_fd(), Some(link_type(*typ)))
                    .map_err(|e| Error::io("join namespace", path, e))?;
            }
        }
        Ok(())
    }
}

/// Creates new namespaces of the given types with one `unshare(2)`.
pub fn unshare(types: &[LinuxNamespaceType]) -> Result<()> {
    if types.is_empty() {
        return Ok(());
    }
    let flags = types
        .iter()
        .fold(UnshareFlags::empty(), |f, t| f | unshare_flag(*t));
    let names: Vec<&str> = types.iter().map(|t| proc_name(*t)).collect();
    // SAFETY: unshare is called from a single-threaded setup process; the new namespaces take effect
    // for this process only (the PID namespace for its future children), which is what is wanted.
    unsafe { rustix::thread::unshare_unsafe(flags) }
        .map_err(|e| Error::sys(format!("create namespaces ({})", names.join(", ")), e))
}

/// Writes `/proc/PID/uid_map` and `gid_map` (config-linux.md "User namespace mappings").
pub fn write_id_maps(pid: i32, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<()> {
    let render = |maps: &[LinuxIdMapping]| {
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    for (file, maps) in [("uid_map", uids), ("gid_map", gids)] {
        let path = Path::new("/proc").join(pid.to_string()).join(file);
        std::fs::write(&path, render(maps)).map_err(|e| Error::io("write", &path, e))?;
    }
    Ok(())
}

/// Which namespace types of `namespaces` are new (no path) and which are joined.
pub fn split(namespaces: &[LinuxNamespace]) -> (Vec<LinuxNamespaceType>, Vec<LinuxNamespaceType>) {
    let new = namespaces
        .iter()
        .filter(|n| n.path().is_none())
        .map(|n| n.typ())
        .collect();
    let joined = namespaces
        .iter()
        .filter(|n| n.path().is_some())
        .map(|n| n.typ())
        .collect();
    (new, joined)
}

/// Brings the loopback interface (`lo`) of the caller's network namespace up, as the runtime does
/// in every new network namespace. The guest agent calls it for the guest's own namespace.
///
/// # Errors
/// The failing ioctl (`SIOCGIFFLAGS` / `SIOCSIFFLAGS` on `lo`).
pub fn loopback_up() -> Result<()> {
    crate::syscall::loopback_up()
}
