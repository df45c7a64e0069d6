//! Safe path handling beneath the layer root.
//!
//! Entry names are normalized lexically (no `..`, not absolute), and every directory is opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)` relative
//! to a directory descriptor of the layer root, so no symlink (even one pointing inside the layer) is
//! ever followed. Final components are then handled with `*at` calls that do not follow symlinks.

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Longest accepted entry or link name, in bytes (`PATH_MAX` less the NUL terminator), so that any
/// path under the layer root fits in one `openat2` call.
const MAX_PATH_LEN: usize = 4095;

/// Why an entry name is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathProblem {
    /// Empty name.
    Empty,
    /// Absolute, or has a `..` component.
    Escapes,
    /// Contains NUL or is too long.
    Invalid,
}

/// A normalized relative path beneath the layer root: no empty, `.` or `..` components.
/// No components means the layer root itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelPath {
    comps: Vec<Vec<u8>>,
}

impl RelPath {
    /// Normalize a raw tar name: strip leading `./` and trailing `/`, drop `.` and empty
    /// components; reject empty names, absolute names and `..` components.
    pub(crate) fn parse(raw: &[u8]) -> Result<RelPath, PathProblem> {
        if raw.is_empty() {
            return Err(PathProblem::Empty);
        }
        if raw.starts_with(b"/") {
            return Err(PathProblem::Escapes);
        }
        if raw.contains(&0) || raw.len() > MAX_PATH_LEN {
            return Err(PathProblem::Invalid);
        }
        let mut comps = Vec::new();
        for comp in raw.split(|b| *b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => return Err(PathProblem::Escapes),
                _ => comps.push(comp.to_vec()),
            }
        }
        Ok(RelPath { comps })
    }

    /// True for the layer root (`.`, `./`).
    pub(crate) fn is_root(&self) -> bool {
        self.comps.is_empty()
    }

    /// The components.
    pub(crate) fn comps(&self) -> &[Vec<u8>] {
        &self.comps
    }

    /// The parent path (the root's parent is the root).
    pub(crate) fn parent(&self) -> RelPath {
        let n = self.comps.len().saturating_sub(1);
        RelPath {
            comps: self.comps[..n].to_vec(),
        }
    }

    /// The last component (empty for the root).
    pub(crate) fn name(&self) -> &[u8] {
        self.comps.last().map(Vec::as_slice).unwrap_or(b"")
    }

    /// The path joined with this component.
    pub(crate) fn join(&self, name: &[u8]) -> RelPath {
        let mut comps = self.comps.clone();
        comps.push(name.to_vec());
        RelPath { comps }
    }

    /// The path as `a/b/c` (empty for the root), used as a map key and for `openat2`.
    pub(crate) fn key(&self) -> Vec<u8> {
        self.comps.join(&b'/')
    }
}

/// A byte string as an `OsStr` path argument.
pub(crate) fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// The `openat2` resolve flags used for every lookup beneath the root.
fn beneath() -> ResolveFlags {
    ResolveFlags::BENEATH
        | ResolveFlags::NO_SYMLINKS
        | ResolveFlags::NO_MAGICLINKS
        | ResolveFlags::NO_XDEV
}

/// `openat2` beneath `dir`, retrying the `EAGAIN` that the kernel may return when it cannot prove
/// the lookup stayed beneath `dir` because of a concurrent rename.
fn openat2_beneath(dir: BorrowedFd<'_>, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    let path = if path.is_empty() { b"." as &[u8] } else { path };
    let mut tries = 0;
    loop {
        match rfs::openat2(
            dir,
            os(path),
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            beneath(),
        ) {
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// Open directory `path` beneath `root` as an `O_PATH` descriptor, following no symlink.
/// A symlink on the way fails with `ELOOP`.
pub(crate) fn open_dir_path(root: BorrowedFd<'_>, path: &[u8]) -> io::Result<OwnedFd> {
    openat2_beneath(root, path, OFlags::PATH | OFlags::DIRECTORY)
}

/// Open directory `path` beneath `root` for reading (usable with `fchmod`, `fsetxattr`,
/// `futimens`), following no symlink.
pub(crate) fn open_dir_read(root: BorrowedFd<'_>, path: &[u8]) -> io::Result<OwnedFd> {
    openat2_beneath(
        root,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
    )
}

/// `lstat` of `name` in `dir`, or `None` if it does not exist.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<rfs::Stat>> {
    match rfs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The file type of a `stat` result.
pub(crate) fn file_type(st: &rfs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Create directory `name` in `dir` with mode 0755 (not subject to the umask) and open it.
pub(crate) fn mkdir_open(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    rfs::mkdirat(dir, os(name), Mode::from_raw_mode(0o755))?;
    let fd = openat2_beneath(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
    )?;
    rfs::fchmod(&fd, Mode::from_raw_mode(0o755))?;
    Ok(fd)
}

/// Remove `name` from `dir` whatever its type; a directory is removed with all its contents.
/// Nothing is followed: the tree is walked with `openat2(RESOLVE_NO_SYMLINKS)` and symlinks are
/// unlinked, not entered. The walk is iterative and holds no descriptor across levels.
pub(crate) fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if file_type(&st) != FileType::Directory {
        return rfs::unlinkat(dir, os(name), AtFlags::empty()).map_err(Into::into);
    }
    // `cur` is the directory being emptied, relative to `dir`.
    let mut cur: Vec<u8> = name.to_vec();
    loop {
        let fd = open_dir_read(dir, &cur)?;
        let mut subdir = None;
        for child in list_dir(fd.as_fd())? {
            let Some(cst) = lstat_at(fd.as_fd(), &child)? else {
                continue;
            };
            if file_type(&cst) == FileType::Directory {
                subdir = Some(child);
                break;
            }
            rfs::unlinkat(&fd, os(&child), AtFlags::empty())?;
        }
        drop(fd);
        if let Some(child) = subdir {
            cur.push(b'/');
            cur.extend_from_slice(&child);
            continue;
        }
        // `cur` is empty now: remove it from its parent and go back up.
        let (parent, leaf) = match cur.iter().rposition(|b| *b == b'/') {
            Some(i) => (cur[..i].to_vec(), cur[i + 1..].to_vec()),
            None => (Vec::new(), cur.clone()),
        };
        if parent.is_empty() {
            return rfs::unlinkat(dir, os(&leaf), AtFlags::REMOVEDIR).map_err(Into::into);
        }
        let pfd = open_dir_path(dir, &parent)?;
        rfs::unlinkat(&pfd, os(&leaf), AtFlags::REMOVEDIR)?;
        cur = parent;
    }
}

/// The names in a directory, without `.` and `..`.
fn list_dir(fd: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    let mut dir = rfs::Dir::read_from(fd)?;
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name: &CStr = entry.file_name();
        let name = name.to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(raw: &[u8]) -> Vec<Vec<u8>> {
        RelPath::parse(raw).unwrap().comps().to_vec()
    }

    #[test]
    fn normalizes_names() {
        assert_eq!(comps(b"./a/b/"), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(comps(b"a//./b"), vec![b"a".to_vec(), b"b".to_vec()]);
        assert!(RelPath::parse(b"./").unwrap().is_root());
        assert!(RelPath::parse(b".").unwrap().is_root());
        assert_eq!(RelPath::parse(b"a/b").unwrap().key(), b"a/b");
        assert_eq!(RelPath::parse(b"a/b").unwrap().parent().key(), b"a");
        assert_eq!(RelPath::parse(b"a/b").unwrap().name(), b"b");
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(RelPath::parse(b""), Err(PathProblem::Empty));
        assert_eq!(RelPath::parse(b"/etc/passwd"), Err(PathProblem::Escapes));
        assert_eq!(RelPath::parse(b"../x"), Err(PathProblem::Escapes));
        assert_eq!(RelPath::parse(b"a/../../x"), Err(PathProblem::Escapes));
        assert_eq!(RelPath::parse(b"a/.."), Err(PathProblem::Escapes));
        assert_eq!(RelPath::parse(b"a\0b"), Err(PathProblem::Invalid));
        assert_eq!(RelPath::parse(&[b'a'; 5000]), Err(PathProblem::Invalid));
    }

    #[test]
    fn remove_all_does_not_follow_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"x").unwrap();
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("d");
        std::fs::create_dir_all(d.join("e/f")).unwrap();
        std::fs::write(d.join("e/f/file"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), d.join("e/link")).unwrap();
        let rootfd =
            rfs::open(root.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        remove_all(rootfd.as_fd(), b"d").unwrap();
        assert!(!d.exists());
        assert!(outside.path().join("keep").exists());
    }
}
