//! Device nodes in the container's `/dev`: the default devices and links (runtime-spec
//! config-linux.md "Default Devices"), `linux.devices` (config-linux.md "Devices") and
//! `/dev/console`. Nodes are made with `mknodat(2)` in the in-root resolution of their parent
//! directory; in a user namespace, where `mknod` is not allowed, an empty file is created and the
//! host's device node is bind-mounted onto it.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode};
use rustix::io::Errno;

use super::error::{invalid, OsError, RootfsError};
use super::mount_ops as ops;
use super::safe_path::{check_container_path, open_beneath, open_parent, CreateKind};

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceNode {
    pub path: PathBuf,
    pub file_type: FileType,
    pub major: u32,
    pub minor: u32,
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// From `linux.devices`: a different file already at the path is an error (the spec says
    /// so); for default devices it is left alone with a warning.
    pub strict: bool,
}

/// The default devices every container gets (config-linux.md "Default Devices").
const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// The default links in `/dev` (`/dev/ptmx` is handled on its own).
const DEFAULT_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// Checks `linux.devices` and merges it with the default devices (an entry of `linux.devices`
/// replaces the default device at the same path). `with_defaults` is false when `/dev` is a
/// bind mount of the host's, which already has them.
pub(crate) fn plan(
    devices: &[LinuxDevice],
    with_defaults: bool,
) -> Result<Vec<DeviceNode>, RootfsError> {
    let mut out = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let path = check_container_path(&format!("linux.devices[{i}].path"), d.path(), false)?;
        let file_type = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => FileType::CharacterDevice,
            LinuxDeviceType::B => FileType::BlockDevice,
            LinuxDeviceType::P => FileType::Fifo,
            LinuxDeviceType::A => {
                return Err(invalid(
                    format!("linux.devices[{i}].type"),
                    "a",
                    "is not a device node type (use c, b, u or p)",
                ))
            }
        };
        let number = |v: i64, what: &str| {
            u32::try_from(v)
                .map_err(|_| invalid(format!("linux.devices[{i}].{what}"), v, "is out of range"))
        };
        out.push(DeviceNode {
            path,
            file_type,
            major: number(d.major(), "major")?,
            minor: number(d.minor(), "minor")?,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid(),
            gid: d.gid(),
            strict: true,
        });
    }
    if with_defaults {
        for (path, major, minor) in DEFAULT_DEVICES {
            if !out.iter().any(|d| d.path == Path::new(path)) {
                out.push(DeviceNode {
                    path: PathBuf::from(path),
                    file_type: FileType::CharacterDevice,
                    major: *major,
                    minor: *minor,
                    mode: 0o666,
                    uid: None,
                    gid: None,
                    strict: false,
                });
            }
        }
    }
    Ok(out)
}

/// Creates one device node beneath `root`.
pub(crate) fn create(
    root: BorrowedFd<'_>,
    d: &DeviceNode,
    in_user_ns: bool,
) -> Result<(), RootfsError> {
    let err = |e: Errno| RootfsError::Device {
        path: d.path.clone(),
        source: OsError(e),
    };
    // A user namespace may make FIFOs, but no device nodes.
    if in_user_ns && d.file_type != FileType::Fifo {
        return bind_host_device(root, d);
    }
    let (dir, name) = open_parent(root, &d.path)?;
    let dev = rfs::makedev(d.major, d.minor);
    match rfs::mknodat(&dir, &name, d.file_type, Mode::from_raw_mode(d.mode), dev) {
        Ok(()) => {}
        Err(Errno::EXIST) => return check_existing(dir.as_fd(), &name, d),
        Err(e) => return Err(err(e)),
    }
    // mknod applied the umask; the name was just made by us, as a device node.
    rfs::chmodat(&dir, &name, Mode::from_raw_mode(d.mode), AtFlags::empty()).map_err(err)?;
    if d.uid.is_some() || d.gid.is_some() {
        rfs::chownat(
            &dir,
            &name,
            d.uid.map(rfs::Uid::from_raw),
            d.gid.map(rfs::Gid::from_raw),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(err)?;
    }
    Ok(())
}

/// Something is already at the device path: fine if it is the same device.
fn check_existing(
    dir: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    d: &DeviceNode,
) -> Result<(), RootfsError> {
    let st =
        rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| RootfsError::Device {
            path: d.path.clone(),
            source: e.into(),
        })?;
    let same = FileType::from_raw_mode(st.st_mode) == d.file_type
        && (d.file_type == FileType::Fifo || st.st_rdev == rfs::makedev(d.major, d.minor));
    if same {
        Ok(())
    } else if d.strict {
        Err(RootfsError::DeviceExists {
            path: d.path.clone(),
        })
    } else {
        tracing::warn!(
            "{:?} already exists and is not the expected device; left as it is",
            d.path
        );
        Ok(())
    }
}

/// In a user namespace: an empty file at the path, with the host's node of the same path
/// bind-mounted onto it after checking that it is the requested device.
fn bind_host_device(root: BorrowedFd<'_>, d: &DeviceNode) -> Result<(), RootfsError> {
    let err = |e: Errno| RootfsError::Device {
        path: d.path.clone(),
        source: OsError(e),
    };
    let mnt = ops::clone_host_path(&d.path, false).map_err(err)?;
    let st = rfs::fstat(&mnt).map_err(err)?;
    if FileType::from_raw_mode(st.st_mode) != d.file_type
        || st.st_rdev != rfs::makedev(d.major, d.minor)
    {
        return Err(RootfsError::DeviceExists {
            path: d.path.clone(),
        });
    }
    let target = open_beneath(root, &d.path, CreateKind::File)?;
    ops::attach(mnt.as_fd(), target.as_fd()).map_err(err)
}

/// The default links in `/dev`: `fd`, `stdin`, `stdout`, `stderr`, `core` (when the host has
/// `/proc/kcore`) and `ptmx -> pts/ptmx`; an existing `/dev/ptmx` that is anything else is
/// replaced, so that pseudo-terminals come from the container's own devpts instance.
pub(crate) fn create_links(root: BorrowedFd<'_>) -> Result<(), RootfsError> {
    let dev = open_beneath(root, Path::new("/dev"), CreateKind::Dir)?;
    let mut links: Vec<(&str, &str)> = DEFAULT_LINKS.to_vec();
    if Path::new("/proc/kcore").exists() {
        links.push(("core", "/proc/kcore"));
    }
    for (name, target) in links {
        link(dev.as_fd(), name, target, false)?;
    }
    link(dev.as_fd(), "ptmx", "pts/ptmx", true)
}

fn link(dev: BorrowedFd<'_>, name: &str, target: &str, replace: bool) -> Result<(), RootfsError> {
    let path = Path::new("/dev").join(name);
    let err = |e: Errno| RootfsError::Device {
        path: path.clone(),
        source: OsError(e),
    };
    match rfs::symlinkat(target, dev, name) {
        Ok(()) => Ok(()),
        Err(Errno::EXIST) => {
            let same = rfs::readlinkat(dev, name, Vec::new())
                .map(|t| t.as_bytes() == target.as_bytes())
                .unwrap_or(false);
            if same {
                return Ok(());
            }
            if !replace {
                tracing::debug!("{path:?} already exists; left as it is");
                return Ok(());
            }
            match rfs::unlinkat(dev, name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(err(e)),
            }
            rfs::symlinkat(target, dev, name).map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

/// `/dev/console`: an empty file with the console (the pty slave) bind-mounted onto it.
pub(crate) fn console(root: BorrowedFd<'_>, pty: &Path) -> Result<(), RootfsError> {
    let path = Path::new("/dev/console");
    let mnt = ops::clone_host_path(pty, false).map_err(|e| RootfsError::BindSource {
        destination: path.to_path_buf(),
        source_path: pty.to_path_buf(),
        source: e.into(),
    })?;
    let target = open_beneath(root, path, CreateKind::File)?;
    ops::attach(mnt.as_fd(), target.as_fd()).map_err(|e| RootfsError::Device {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceBuilder;

    fn dev(path: &str, typ: LinuxDeviceType, major: i64) -> LinuxDevice {
        LinuxDeviceBuilder::default()
            .path(path)
            .typ(typ)
            .major(major)
            .minor(3)
            .file_mode(0o100640u32)
            .uid(1000u32)
            .build()
            .unwrap()
    }

    #[test]
    fn defaults_are_added_unless_overridden() {
        let p = plan(&[dev("/dev/null", LinuxDeviceType::C, 1)], true).unwrap();
        assert_eq!(p.len(), DEFAULT_DEVICES.len());
        assert_eq!(p[0].mode, 0o640);
        assert!(p[0].strict);
        assert_eq!(
            p.iter()
                .filter(|d| d.path == Path::new("/dev/null"))
                .count(),
            1
        );
        assert!(p
            .iter()
            .any(|d| d.path == Path::new("/dev/tty") && d.major == 5));
        assert!(plan(&[], false).unwrap().is_empty());
    }

    #[test]
    fn bad_devices_are_refused_by_field() {
        let e = plan(&[dev("/dev/x", LinuxDeviceType::A, 1)], true).unwrap_err();
        assert!(e.to_string().starts_with("linux.devices[0].type"), "{e}");
        let e = plan(&[dev("/dev/x", LinuxDeviceType::C, -1)], true).unwrap_err();
        assert!(e.to_string().starts_with("linux.devices[0].major"), "{e}");
        let e = plan(&[dev("/dev/../../x", LinuxDeviceType::C, 1)], true).unwrap_err();
        assert!(e.to_string().contains("escapes the container root"), "{e}");
        let e = plan(&[dev("dev/x", LinuxDeviceType::C, 1)], true).unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
    }
}
