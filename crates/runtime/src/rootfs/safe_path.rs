//! Resolving paths beneath the container root without ever leaving it.
//!
//! Every lookup goes through `openat2(2)` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`, always
//! from a file descriptor of the root: symlinks in the image are followed as if the rootfs were
//! `/` (so `/etc/x -> /../../host` lands inside the rootfs), `..` is clamped at the root, and
//! `/proc/<pid>/root`-style magic links are refused. Missing components are created one at a time
//! with `mkdirat(2)`/`openat(2)` relative to the descriptor of their (already resolved) parent,
//! and never on a kernel filesystem such as procfs, sysfs or cgroupfs, where creating an entry
//! would change host state.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::error::{invalid, OsError, RootfsError};

/// What [`open_in_root`] creates when the path (or part of it) is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateKind {
    /// Create nothing: a missing path is an error.
    None,
    /// Create missing directories, including the last component (mode 0755, minus the umask).
    Dir,
    /// Create missing parent directories, and the last component as an empty regular file
    /// (mode 0644, minus the umask).
    File,
}

/// Symlinks followed while creating one path before giving up with `ELOOP`, as the kernel does.
const MAX_SYMLINKS: usize = 40;
/// `openat2` returns `EAGAIN` with `RESOLVE_IN_ROOT` when a concurrent rename or mount raced the
/// lookup; it is retried this many times.
const MAX_RETRIES: usize = 16;

/// Filesystems on which isola never creates anything: an entry there is host state (a cgroup,
/// a sysfs attribute, …), not part of the container's root filesystem.
const KERNEL_FS_MAGIC: &[i64] = &[
    0x9fa0,      // proc
    0x6265_6572, // sysfs
    0x0027_e0eb, // cgroup
    0x6367_7270, // cgroup2
    0x7363_6673, // securityfs
    0x6462_6720, // debugfs
    0x7472_6163, // tracefs
    0xcafe_4a11, // bpf
    0x6165_676c, // pstore
    0xde5e_81e4, // efivarfs
    0x6265_6570, // configfs
    0x6573_5543, // fusectl
    0x4249_4e4d, // binfmt_misc
    0xf97c_ff8c, // selinuxfs
    0x4341_5d53, // smackfs
    0x6e73_6673, // nsfs
];

/// Checks a path from config.json that names a location inside the container: it must be
/// absolute (unless `allow_relative`, then it is taken relative to `/`), and it must not contain
/// `..` — a path that climbs above `/` "escapes the container root", any other `..` is refused
/// too, so that what the config says is what gets mounted. Returns the path made absolute.
pub(crate) fn check_container_path(
    field: &str,
    path: &Path,
    allow_relative: bool,
) -> Result<PathBuf, RootfsError> {
    let shown = path.display();
    if path.as_os_str().is_empty() {
        return Err(invalid(field, shown, "must not be empty"));
    }
    if path.as_os_str().as_bytes().contains(&0) {
        return Err(invalid(field, shown, "contains a NUL byte"));
    }
    if !path.is_absolute() && !allow_relative {
        return Err(invalid(field, shown, "must be an absolute path"));
    }
    let mut depth: usize = 0;
    let mut climbs = false;
    for c in path.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                if depth == 0 {
                    return Err(invalid(field, shown, "escapes the container root"));
                }
                depth -= 1;
                climbs = true;
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if climbs {
        return Err(invalid(field, shown, "must not contain \"..\""));
    }
    Ok(Path::new("/").join(path))
}

/// Resolves `path` (absolute, inside the container) beneath `root` without ever leaving it, and
/// returns an `O_PATH` descriptor of what it names.
///
/// Symlinks are followed as if `root` were `/` (`openat2(2)` with `RESOLVE_IN_ROOT |
/// RESOLVE_NO_MAGICLINKS`), including dangling ones when something must be created: their
/// target is created inside the root. With [`CreateKind::Dir`] or [`CreateKind::File`] missing
/// directories are created (mode 0755) and, for `File`, the last component as an empty regular
/// file; nothing is ever created on procfs, sysfs, cgroupfs or another kernel filesystem.
///
/// This is how every mount destination (runtime-spec config.md "Mounts"), device path
/// (config-linux.md "Devices") and masked or read-only path is found.
pub fn open_in_root(root: &Path, path: &Path, create: CreateKind) -> Result<OwnedFd, RootfsError> {
    let root_fd = rfs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RootfsError::Resolve {
        path: root.to_path_buf(),
        source: e.into(),
    })?;
    open_beneath(root_fd.as_fd(), path, create)
}

/// [`open_in_root`] with the root already open.
pub(crate) fn open_beneath(
    root: BorrowedFd<'_>,
    path: &Path,
    create: CreateKind,
) -> Result<OwnedFd, RootfsError> {
    let resolve_err = |e: Errno| RootfsError::Resolve {
        path: path.to_path_buf(),
        source: e.into(),
    };
    let fd = match resolve(root, path, false) {
        Ok(fd) => fd,
        Err(Errno::NOENT) if create != CreateKind::None => create_path(root, path, create)?,
        Err(e) => return Err(resolve_err(e)),
    };
    let is_dir = is_dir(&fd).map_err(resolve_err)?;
    match create {
        CreateKind::Dir if !is_dir => Err(RootfsError::WrongType {
            path: path.to_path_buf(),
            reason: "is not a directory",
        }),
        CreateKind::File if is_dir => Err(RootfsError::WrongType {
            path: path.to_path_buf(),
            reason: "is a directory, not a file",
        }),
        _ => Ok(fd),
    }
}

/// Resolves the parent of `path` beneath `root` (creating missing directories) and returns it
/// with the last component, for the `*at` calls that create a node (`mknodat`, `symlinkat`).
pub(crate) fn open_parent(
    root: BorrowedFd<'_>,
    path: &Path,
) -> Result<(OwnedFd, OsString), RootfsError> {
    let name = match path.components().next_back() {
        Some(Component::Normal(name)) => name.to_os_string(),
        _ => {
            return Err(RootfsError::WrongType {
                path: path.to_path_buf(),
                reason: "does not end in a file name",
            })
        }
    };
    let parent = path.parent().unwrap_or(Path::new("/"));
    let dir = open_beneath(root, parent, CreateKind::Dir)?;
    ensure_creatable(dir.as_fd(), path)?;
    Ok((dir, name))
}

/// One `openat2` lookup beneath `root`, retried on `EAGAIN`.
fn resolve(root: BorrowedFd<'_>, path: &Path, dir: bool) -> Result<OwnedFd, Errno> {
    let rel = relative(path);
    let mut flags = OFlags::PATH | OFlags::CLOEXEC;
    if dir {
        flags |= OFlags::DIRECTORY;
    }
    let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let mut tries = 0;
    loop {
        match rfs::openat2(root, rel, flags, Mode::empty(), how) {
            Err(Errno::AGAIN) if tries < MAX_RETRIES => tries += 1,
            other => return other,
        }
    }
}

/// `path` without its leading `/`, or `.` for the root itself.
fn relative(path: &Path) -> &Path {
    let rel = path.strip_prefix("/").unwrap_or(path);
    if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    }
}

fn is_dir(fd: &OwnedFd) -> Result<bool, Errno> {
    let st = rfs::fstat(fd)?;
    Ok(FileType::from_raw_mode(st.st_mode) == FileType::Directory)
}

/// Refuses to create anything in a directory that lives on a kernel filesystem.
fn ensure_creatable(dir: BorrowedFd<'_>, path: &Path) -> Result<(), RootfsError> {
    let st = rfs::fstatfs(dir).map_err(|e| RootfsError::Resolve {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    #[allow(clippy::unnecessary_cast)] // f_type is i64 on some targets, u32/i32 on others
    let magic = st.f_type as i64;
    if KERNEL_FS_MAGIC.contains(&magic) {
        return Err(RootfsError::KernelFilesystem {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Walks `path` one component at a time from the root, creating what is missing. Each prefix is
/// looked up again from the root with `RESOLVE_IN_ROOT`, so the descriptor that a component is
/// created in is always the in-root resolution of its parent. A component that exists but does
/// not resolve is a dangling symlink: its target is spliced into the remaining components
/// (absolute targets restart from the root), so the target is created, inside the root.
fn create_path(
    root: BorrowedFd<'_>,
    path: &Path,
    create: CreateKind,
) -> Result<OwnedFd, RootfsError> {
    let err = |e: Errno| RootfsError::Resolve {
        path: path.to_path_buf(),
        source: OsError(e),
    };
    let mut pending: VecDeque<OsString> = components(path).collect();
    let mut done = PathBuf::new();
    let mut cur = resolve(root, Path::new("."), true).map_err(err)?;
    let mut links = 0;
    let mut retries = 0;
    while let Some(name) = pending.pop_front() {
        let last = pending.is_empty();
        let next = done.join(&name);
        match resolve(root, &next, false) {
            Ok(fd) => {
                if !last && !is_dir(&fd).map_err(err)? {
                    return Err(err(Errno::NOTDIR));
                }
                cur = fd;
                done = next;
                continue;
            }
            Err(Errno::NOENT) => {}
            Err(e) => return Err(err(e)),
        }
        // `..` always resolves, so `name` is a plain name here: absent, or a dangling symlink.
        match rfs::readlinkat(&cur, name.as_os_str(), Vec::new()) {
            Ok(target) => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(err(Errno::LOOP));
                }
                let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                let mut spliced: VecDeque<OsString> = components(&target).collect();
                spliced.extend(pending);
                pending = spliced;
                if target.is_absolute() {
                    done = PathBuf::new();
                    cur = resolve(root, Path::new("."), true).map_err(err)?;
                }
                continue;
            }
            Err(Errno::NOENT) => {}
            // It appeared, as something other than a symlink, since the lookup: look again.
            Err(Errno::INVAL) if retries < MAX_RETRIES => {
                retries += 1;
                pending.push_front(name);
                continue;
            }
            Err(e) => return Err(err(e)),
        }
        ensure_creatable(cur.as_fd(), path)?;
        let made = if last && create == CreateKind::File {
            rfs::openat(
                &cur,
                name.as_os_str(),
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .map(drop)
        } else {
            rfs::mkdirat(&cur, name.as_os_str(), Mode::from_raw_mode(0o755))
        };
        match made {
            Ok(()) | Err(Errno::EXIST) => pending.push_front(name),
            Err(e) => return Err(err(e)),
        }
    }
    Ok(cur)
}

/// The components of `path` that move the lookup: names and `..` (`/` and `.` are dropped).
fn components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn real_path(fd: &OwnedFd) -> PathBuf {
        fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(fd)
        ))
        .unwrap()
    }

    #[test]
    fn container_paths_are_checked() {
        let ok = |p: &str| check_container_path("f", Path::new(p), true).unwrap();
        assert_eq!(ok("/proc"), Path::new("/proc"));
        assert_eq!(ok("run/x"), Path::new("/run/x"));
        assert_eq!(ok("/a/./b/"), Path::new("/a/b"));
        let err = |p: &str, rel| {
            check_container_path("mounts[3].destination", Path::new(p), rel)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("../../etc", true),
            r#"mounts[3].destination "../../etc": escapes the container root"#
        );
        assert!(err("/a/../../b", true).contains("escapes the container root"));
        assert!(err("/a/../b", true).contains("must not contain"));
        assert!(err("etc", false).contains("must be an absolute path"));
        assert!(err("", true).contains("must not be empty"));
    }

    #[test]
    fn relative_strips_root() {
        assert_eq!(relative(Path::new("/")), Path::new("."));
        assert_eq!(relative(Path::new("/a/b")), Path::new("a/b"));
    }

    #[test]
    fn creates_missing_dirs_and_files() {
        let t = tempfile::tempdir().unwrap();
        let fd = open_in_root(t.path(), Path::new("/a/b/c"), CreateKind::Dir).unwrap();
        assert_eq!(real_path(&fd), t.path().join("a/b/c"));
        let mode = fs::metadata(t.path().join("a/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o700, 0o700);
        let fd = open_in_root(t.path(), Path::new("/x/y/file"), CreateKind::File).unwrap();
        assert_eq!(real_path(&fd), t.path().join("x/y/file"));
        assert!(fs::metadata(t.path().join("x/y/file")).unwrap().is_file());
        // Existing paths are returned as they are.
        open_in_root(t.path(), Path::new("/x/y/file"), CreateKind::File).unwrap();
        open_in_root(t.path(), Path::new("/x/y/file"), CreateKind::None).unwrap();
    }

    #[test]
    fn missing_path_without_create_is_enoent() {
        let t = tempfile::tempdir().unwrap();
        let e = open_in_root(t.path(), Path::new("/nope"), CreateKind::None).unwrap_err();
        assert!(matches!(
            e,
            RootfsError::Resolve {
                source: OsError(Errno::NOENT),
                ..
            }
        ));
    }

    #[test]
    fn wrong_kind_is_refused() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("f"), b"").unwrap();
        fs::create_dir(t.path().join("d")).unwrap();
        let e = open_in_root(t.path(), Path::new("/f"), CreateKind::Dir).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        let e = open_in_root(t.path(), Path::new("/d"), CreateKind::File).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        let e = open_in_root(t.path(), Path::new("/f/sub"), CreateKind::Dir).unwrap_err();
        assert!(matches!(e, RootfsError::Resolve { .. }), "{e}");
    }

    #[test]
    fn hostile_symlinks_stay_inside_the_root() {
        let canary = tempfile::tempdir().unwrap();
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("rootfs");
        fs::create_dir_all(root.join("etc")).unwrap();
        let up = format!("/../../../..{}", canary.path().display());
        symlink(&up, root.join("etc/evil")).unwrap();
        symlink(
            format!("../../..{}/file", canary.path().display()),
            root.join("etc/evil-file"),
        )
        .unwrap();
        symlink("../../../../", root.join("etc/up")).unwrap();

        let fd = open_in_root(&root, Path::new("/etc/evil/sub"), CreateKind::Dir).unwrap();
        let inside = root.join(canary.path().strip_prefix("/").unwrap());
        assert_eq!(real_path(&fd), inside.join("sub"));
        let fd = open_in_root(&root, Path::new("/etc/evil-file"), CreateKind::File).unwrap();
        assert_eq!(real_path(&fd), inside.join("file"));
        let fd = open_in_root(&root, Path::new("/etc/up/z"), CreateKind::Dir).unwrap();
        assert_eq!(real_path(&fd), root.join("z"));
        assert_eq!(
            fs::read_dir(canary.path()).unwrap().count(),
            0,
            "canary touched"
        );
    }

    #[test]
    fn magic_links_and_loops_are_refused() {
        let t = tempfile::tempdir().unwrap();
        symlink("loop", t.path().join("loop")).unwrap();
        let e = open_in_root(t.path(), Path::new("/loop/x"), CreateKind::Dir).unwrap_err();
        assert!(
            matches!(
                e,
                RootfsError::Resolve {
                    source: OsError(Errno::LOOP),
                    ..
                }
            ),
            "{e}"
        );
        // /proc/self/root is a magic link.
        let e = open_in_root(
            Path::new("/"),
            Path::new("/proc/self/root/etc"),
            CreateKind::None,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                RootfsError::Resolve {
                    source: OsError(Errno::LOOP),
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn nothing_is_created_on_kernel_filesystems() {
        let e = open_in_root(
            Path::new("/"),
            Path::new("/proc/isola-test/x"),
            CreateKind::Dir,
        )
        .unwrap_err();
        assert!(matches!(e, RootfsError::KernelFilesystem { .. }), "{e}");
    }

    #[test]
    fn open_parent_splits_the_name() {
        let t = tempfile::tempdir().unwrap();
        let root = rfs::open(t.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let (dir, name) = open_parent(root.as_fd(), Path::new("/dev/net/tun")).unwrap();
        assert_eq!(name, "tun");
        assert_eq!(real_path(&dir), t.path().join("dev/net"));
        assert!(open_parent(root.as_fd(), Path::new("/")).is_err());
    }
}
