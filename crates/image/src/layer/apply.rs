//! Applying decoded entries to the layer directory, in overlayfs form.
//!
//! Entries are created with `*at` calls on a parent directory descriptor obtained by
//! [`path::open_dir_path`] (never following a symlink), and the final component is never followed
//! either. Whiteouts become `0:0` character devices and opaque markers become the
//! `trusted.overlay.opaque=y` xattr, the form overlayfs reads from its lower directories.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::attrs::{self, XattrTarget};
use super::entry::{Kind, Meta};
use super::error::{EntryName, LayerError, LinkProblem};
use super::path::{self, os, PathProblem, RelPath};

/// Prefix of whiteout names (OCI image-spec `layer.md`, "Whiteouts").
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Name of the opaque whiteout marker.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Prefix of aufs metadata names (`.wh..wh.plnk`, `.wh..wh.aufs`), which are skipped.
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";

/// How an entry name is to be handled.
#[derive(Debug)]
enum Action {
    /// Create or update an object at the path.
    Object(RelPath),
    /// Hide this path of the lower layers.
    Whiteout(RelPath),
    /// Make this directory opaque.
    Opaque(RelPath),
    /// Skip (aufs metadata).
    Skip,
}

/// Classify a normalized entry path; `None` for an invalid whiteout name.
fn classify(rel: &RelPath) -> Option<Action> {
    if rel
        .comps()
        .iter()
        .any(|c| c.starts_with(AUFS_META_PREFIX) && c != OPAQUE_MARKER)
    {
        return Some(Action::Skip);
    }
    let parent = rel.parent();
    if parent
        .comps()
        .iter()
        .any(|c| c.starts_with(WHITEOUT_PREFIX))
    {
        return None;
    }
    let name = rel.name();
    if name == OPAQUE_MARKER {
        return Some(Action::Opaque(parent));
    }
    match name.strip_prefix(WHITEOUT_PREFIX) {
        Some(b"" | b"." | b"..") => None,
        Some(hidden) => Some(Action::Whiteout(parent.join(hidden))),
        None => Some(Action::Object(rel.clone())),
    }
}

/// Whether the parent of an entry exists before it is created.
enum Prepared {
    /// An existing directory is kept (only its attributes change).
    KeepDir,
    /// The path is free.
    Free,
}

/// The state of one layer being unpacked.
pub(crate) struct Applier {
    root: OwnedFd,
    /// Whiteout devices created by this layer (path keys).
    whiteouts: BTreeSet<Vec<u8>>,
    /// Directories to mark opaque in the final pass: path key → entry name.
    opaque: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Directories whose mode and mtime are set in the final pass: path key → metadata.
    dirs: BTreeMap<Vec<u8>, attrs::DirMeta>,
    /// Entries applied.
    entries: u64,
    /// Counts of skipped xattrs, for the log.
    xattr_log: attrs::XattrLog,
}

impl Applier {
    /// Start unpacking into the directory open as `root`.
    pub(crate) fn new(root: OwnedFd) -> Applier {
        Applier {
            root,
            whiteouts: BTreeSet::new(),
            opaque: BTreeMap::new(),
            dirs: BTreeMap::new(),
            entries: 0,
            xattr_log: attrs::XattrLog::default(),
        }
    }

    /// Number of entries applied so far.
    pub(crate) fn entries(&self) -> u64 {
        self.entries
    }

    /// Apply one entry; `data` is its content (read only for regular files).
    /// Returns the number of regular-file content bytes written.
    pub(crate) fn apply(&mut self, meta: &Meta, data: &mut dyn Read) -> Result<u64, LayerError> {
        self.entries += 1;
        let rel = RelPath::parse(&meta.name).map_err(|p| path_error(p, meta))?;
        let action =
            classify(&rel).ok_or_else(|| LayerError::InvalidWhiteout { entry: name(meta) })?;
        match action {
            Action::Skip => {
                tracing::debug!(entry = %name(meta), "skipping aufs metadata");
                Ok(0)
            }
            Action::Opaque(dir) => {
                self.ensure_dir(&dir, meta)?;
                self.opaque.insert(dir.key(), meta.name.clone());
                Ok(0)
            }
            Action::Whiteout(hidden) => self.whiteout(&hidden, meta).map(|()| 0),
            Action::Object(rel) => match &meta.kind {
                Kind::Dir => self.dir(&rel, meta).map(|()| 0),
                _ if rel.is_root() => Err(LayerError::RootNotDir { entry: name(meta) }),
                Kind::File { size } => self.file(&rel, meta, *size, data),
                Kind::Symlink { target } => self.symlink(&rel, meta, target).map(|()| 0),
                Kind::HardLink { target } => self.hard_link(&rel, meta, target).map(|()| 0),
                Kind::Char { major, minor } => {
                    let dev = rfs::makedev(*major, *minor);
                    self.node(&rel, meta, FileType::CharacterDevice, dev)
                        .map(|()| 0)
                }
                Kind::Block { major, minor } => {
                    let dev = rfs::makedev(*major, *minor);
                    self.node(&rel, meta, FileType::BlockDevice, dev)
                        .map(|()| 0)
                }
                Kind::Fifo => self.node(&rel, meta, FileType::Fifo, 0).map(|()| 0),
            },
        }
    }

    /// The final pass: mark opaque directories, then set directory modes and mtimes, deepest
    /// first (creating entries in a directory changes its mtime).
    pub(crate) fn finish(self) -> Result<(), LayerError> {
        let root = self.root.as_fd();
        for (key, entry) in &self.opaque {
            let Some(fd) = open_final_dir(root, key, entry)? else {
                tracing::debug!(entry = %EntryName(entry.clone()), "opaque directory was replaced");
                continue;
            };
            attrs::set_opaque(fd.as_fd(), entry)?;
        }
        let mut dirs: Vec<_> = self.dirs.iter().collect();
        let depth = |key: &[u8]| match key {
            b"" => 0,
            _ => key.split(|b| *b == b'/').count(),
        };
        dirs.sort_by_key(|(key, _)| std::cmp::Reverse(depth(key)));
        for (key, meta) in dirs {
            let Some(fd) = open_final_dir(root, key, &meta.entry)? else {
                continue;
            };
            attrs::set_dir_meta(fd.as_fd(), meta)?;
        }
        self.xattr_log.summarize();
        Ok(())
    }

    /// Open (creating it and its parents if missing) the directory `rel`, as a descriptor usable
    /// as the `dirfd` of `*at` calls. Missing directories get mode 0755 and the caller's owner,
    /// like Docker does. A whiteout of this layer in the way is replaced by an opaque directory.
    fn ensure_dir(&mut self, rel: &RelPath, meta: &Meta) -> Result<OwnedFd, LayerError> {
        match path::open_dir_path(self.root.as_fd(), &rel.key()) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
                return Err(LayerError::ThroughSymlink { entry: name(meta) })
            }
            Err(e) if is_missing(&e) => {}
            Err(source) => return Err(io_error(meta, "open parent directory", source)),
        }
        // Slow path: walk one component at a time, creating what is missing.
        let mut fd = path::open_dir_path(self.root.as_fd(), b"")
            .map_err(|e| io_error(meta, "open the layer root", e))?;
        let mut so_far = RelPath::parse(b".").expect("\".\" is a valid path");
        for comp in rel.comps() {
            so_far = so_far.join(comp);
            let st =
                path::lstat_at(fd.as_fd(), comp).map_err(|e| io_error(meta, "stat parent", e))?;
            let create = match st.as_ref().map(path::file_type) {
                None => true,
                Some(FileType::Directory) => false,
                Some(FileType::Symlink) => {
                    return Err(LayerError::ThroughSymlink { entry: name(meta) })
                }
                Some(_) if self.is_whiteout(&so_far.key(), st.as_ref()) => {
                    rfs::unlinkat(&fd, os(comp), AtFlags::empty())
                        .map_err(|e| io_error(meta, "remove whiteout", e.into()))?;
                    self.whiteouts.remove(&so_far.key());
                    self.opaque.insert(so_far.key(), meta.name.clone());
                    true
                }
                Some(_) => return Err(LayerError::ParentNotDir { entry: name(meta) }),
            };
            if create {
                path::mkdir_open(fd.as_fd(), comp)
                    .map_err(|e| io_error(meta, "create parent directory", e))?;
            }
            fd = path::open_dir_path(fd.as_fd(), comp).map_err(|e| match e.raw_os_error() {
                Some(c) if c == Errno::LOOP.raw_os_error() => {
                    LayerError::ThroughSymlink { entry: name(meta) }
                }
                _ => io_error(meta, "open parent directory", e),
            })?;
        }
        Ok(fd)
    }

    /// Make the final component of `rel` (in `parent`) free for a new object, or keep it if both
    /// the old and new objects are directories. A replaced whiteout of this layer turns a new
    /// directory opaque (the layer both deletes and re-creates it).
    fn prepare(
        &mut self,
        parent: BorrowedFd<'_>,
        rel: &RelPath,
        meta: &Meta,
        new_is_dir: bool,
    ) -> Result<Prepared, LayerError> {
        let st = path::lstat_at(parent, rel.name()).map_err(|e| io_error(meta, "stat path", e))?;
        let Some(st) = st else {
            return Ok(Prepared::Free);
        };
        let old_is_dir = path::file_type(&st) == FileType::Directory;
        if old_is_dir && new_is_dir {
            return Ok(Prepared::KeepDir);
        }
        let key = rel.key();
        let was_whiteout = self.is_whiteout(&key, Some(&st));
        path::remove_all(parent, rel.name())
            .map_err(|e| io_error(meta, "remove existing path", e))?;
        self.forget(&key);
        if was_whiteout && new_is_dir {
            self.opaque.insert(key, meta.name.clone());
        }
        Ok(Prepared::Free)
    }

    /// Drop the bookkeeping of `key` and everything beneath it (after it was removed).
    fn forget(&mut self, key: &[u8]) {
        let mut prefix = key.to_vec();
        prefix.push(b'/');
        for k in below(self.whiteouts.range(prefix.clone()..), key) {
            self.whiteouts.remove(&k);
        }
        for k in below(self.opaque.range(prefix.clone()..).map(|(k, _)| k), key) {
            self.opaque.remove(&k);
        }
        for k in below(self.dirs.range(prefix..).map(|(k, _)| k), key) {
            self.dirs.remove(&k);
        }
    }

    /// Whether `st` (at `key`) is a whiteout device created by this layer.
    fn is_whiteout(&self, key: &[u8], st: Option<&rfs::Stat>) -> bool {
        st.is_some_and(|st| path::file_type(st) == FileType::CharacterDevice && st.st_rdev == 0)
            && self.whiteouts.contains(key)
    }

    /// `DIR/.wh.NAME`: hide `DIR/NAME` of the lower layers with a `0:0` character device.
    ///
    /// Whiteouts apply only to lower layers (`layer.md`): if this layer has its own `DIR/NAME`,
    /// whatever the entry order, it stays; a directory is then made opaque so that the lower
    /// directory's contents stay hidden.
    fn whiteout(&mut self, hidden: &RelPath, meta: &Meta) -> Result<(), LayerError> {
        let parent = self.ensure_dir(&hidden.parent(), meta)?;
        let key = hidden.key();
        let st = path::lstat_at(parent.as_fd(), hidden.name())
            .map_err(|e| io_error(meta, "stat path", e))?;
        match st {
            None => {
                rfs::mknodat(
                    &parent,
                    os(hidden.name()),
                    FileType::CharacterDevice,
                    Mode::empty(),
                    0,
                )
                .map_err(|e| io_error(meta, "create whiteout device", e.into()))?;
                self.whiteouts.insert(key);
            }
            Some(st) if self.is_whiteout(&key, Some(&st)) => {}
            Some(st) if path::file_type(&st) == FileType::Directory => {
                self.opaque.insert(key, meta.name.clone());
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn dir(&mut self, rel: &RelPath, meta: &Meta) -> Result<(), LayerError> {
        let fd = if rel.is_root() {
            path::open_dir_read(self.root.as_fd(), b"")
                .map_err(|e| io_error(meta, "open the layer root", e))?
        } else {
            let parent = self.ensure_dir(&rel.parent(), meta)?;
            match self.prepare(parent.as_fd(), rel, meta, true)? {
                Prepared::KeepDir => path::open_dir_read(parent.as_fd(), rel.name())
                    .map_err(|e| io_error(meta, "open directory", e))?,
                Prepared::Free => path::mkdir_open(parent.as_fd(), rel.name())
                    .map_err(|e| io_error(meta, "create directory", e))?,
            }
        };
        attrs::set_owner(XattrTarget::Fd(fd.as_fd()), meta)?;
        attrs::set_xattrs(XattrTarget::Fd(fd.as_fd()), meta, &mut self.xattr_log)?;
        self.dirs.insert(rel.key(), attrs::DirMeta::new(meta));
        Ok(())
    }

    fn file(
        &mut self,
        rel: &RelPath,
        meta: &Meta,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<u64, LayerError> {
        let parent = self.ensure_dir(&rel.parent(), meta)?;
        self.prepare(parent.as_fd(), rel, meta, false)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(&parent, os(rel.name()), flags, Mode::from_raw_mode(0o600))
            .map_err(|e| io_error(meta, "create file", e.into()))?;
        let mut file = std::fs::File::from(fd);
        copy_exact(data, &mut file, size, meta)?;
        let fd = file.as_fd();
        attrs::set_owner(XattrTarget::Fd(fd), meta)?;
        attrs::set_xattrs(XattrTarget::Fd(fd), meta, &mut self.xattr_log)?;
        rfs::fchmod(fd, Mode::from_raw_mode(meta.mode))
            .map_err(|e| io_error(meta, "set mode", e.into()))?;
        rfs::futimens(fd, &attrs::timestamps(meta))
            .map_err(|e| io_error(meta, "set mtime", e.into()))?;
        Ok(size)
    }

    fn symlink(&mut self, rel: &RelPath, meta: &Meta, target: &[u8]) -> Result<(), LayerError> {
        let parent = self.ensure_dir(&rel.parent(), meta)?;
        self.prepare(parent.as_fd(), rel, meta, false)?;
        // The target is stored verbatim and never resolved.
        rfs::symlinkat(os(target), &parent, os(rel.name()))
            .map_err(|e| io_error(meta, "create symlink", e.into()))?;
        let at = XattrTarget::At(parent.as_fd(), rel.name());
        attrs::set_owner(at, meta)?;
        attrs::set_xattrs(at, meta, &mut self.xattr_log)?;
        attrs::set_mtime_at(parent.as_fd(), rel.name(), meta)
    }

    /// A hard link to an earlier entry of this layer. Its header attributes are not applied: the
    /// link shares the target's inode.
    fn hard_link(&mut self, rel: &RelPath, meta: &Meta, target: &[u8]) -> Result<(), LayerError> {
        let fail = |problem| LayerError::HardLink {
            entry: name(meta),
            target: EntryName(target.to_vec()),
            problem,
        };
        let trel = RelPath::parse(target).map_err(|p| match p {
            PathProblem::Escapes => fail(LinkProblem::Escapes),
            PathProblem::Empty | PathProblem::Invalid => fail(LinkProblem::Invalid),
        })?;
        if trel.is_root() {
            return Err(fail(LinkProblem::IsDirectory));
        }
        let tparent = match path::open_dir_path(self.root.as_fd(), &trel.parent().key()) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
                return Err(fail(LinkProblem::ThroughSymlink))
            }
            Err(e) if is_missing(&e) => return Err(fail(LinkProblem::NotFound)),
            Err(e) => return Err(io_error(meta, "open hard link target directory", e)),
        };
        let st = path::lstat_at(tparent.as_fd(), trel.name())
            .map_err(|e| io_error(meta, "stat hard link target", e))?;
        match &st {
            None => return Err(fail(LinkProblem::NotFound)),
            Some(s) if path::file_type(s) == FileType::Directory => {
                return Err(fail(LinkProblem::IsDirectory))
            }
            Some(_) if self.is_whiteout(&trel.key(), st.as_ref()) => {
                return Err(fail(LinkProblem::NotFound))
            }
            Some(_) => {}
        }
        if trel == *rel {
            return Ok(());
        }
        let parent = self.ensure_dir(&rel.parent(), meta)?;
        self.prepare(parent.as_fd(), rel, meta, false)?;
        // No AT_SYMLINK_FOLLOW: a symlink target is linked itself, never followed.
        match rfs::linkat(
            &tparent,
            os(trel.name()),
            &parent,
            os(rel.name()),
            AtFlags::empty(),
        ) {
            Ok(()) => Ok(()),
            Err(Errno::NOENT) => Err(fail(LinkProblem::NotFound)),
            Err(e) => Err(io_error(meta, "create hard link", e.into())),
        }
    }

    /// A character or block device or a FIFO.
    fn node(
        &mut self,
        rel: &RelPath,
        meta: &Meta,
        kind: FileType,
        dev: rfs::Dev,
    ) -> Result<(), LayerError> {
        let parent = self.ensure_dir(&rel.parent(), meta)?;
        self.prepare(parent.as_fd(), rel, meta, false)?;
        let op = if kind == FileType::Fifo {
            "create fifo"
        } else {
            "create device"
        };
        rfs::mknodat(
            &parent,
            os(rel.name()),
            kind,
            Mode::from_raw_mode(meta.mode & 0o777),
            dev,
        )
        .map_err(|e| io_error(meta, op, e.into()))?;
        let at = XattrTarget::At(parent.as_fd(), rel.name());
        attrs::set_owner(at, meta)?;
        attrs::set_xattrs(at, meta, &mut self.xattr_log)?;
        // The node was just created by this call, so it is not a symlink and fchmodat (which has
        // no working AT_SYMLINK_NOFOLLOW on Linux) acts on it. Mode is set after chown, which
        // clears setuid/setgid.
        rfs::chmodat(
            &parent,
            os(rel.name()),
            Mode::from_raw_mode(meta.mode),
            AtFlags::empty(),
        )
        .map_err(|e| io_error(meta, "set mode", e.into()))?;
        attrs::set_mtime_at(parent.as_fd(), rel.name(), meta)
    }
}

/// Copy exactly `size` bytes of entry data into `file`. A short read means the stream ended
/// inside the entry's data.
fn copy_exact(
    data: &mut dyn Read,
    file: &mut std::fs::File,
    size: u64,
    meta: &Meta,
) -> Result<(), LayerError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match data.read(&mut buf[..want]) {
            Ok(0) => {
                let msg = format!(
                    "data of \"{}\" ends after {} of {size} bytes",
                    name(meta),
                    size - left
                );
                return Err(LayerError::Corrupt(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    msg,
                )));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LayerError::Corrupt(e)),
        };
        file.write_all(&buf[..n])
            .map_err(|e| io_error(meta, "write file content", e))?;
        left -= n as u64;
    }
    Ok(())
}

/// Open the directory at `key` for the final pass; `None` if it no longer is a directory
/// reachable without symlinks (it was replaced later in the layer).
fn open_final_dir(
    root: BorrowedFd<'_>,
    key: &[u8],
    entry: &[u8],
) -> Result<Option<OwnedFd>, LayerError> {
    match path::open_dir_read(root, key) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if is_missing(&e) || e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
            Ok(None)
        }
        Err(source) => Err(LayerError::Io {
            entry: EntryName(entry.to_vec()),
            op: "open directory",
            source,
        }),
    }
}

/// `key` and the keys beneath it, from `from_prefix`: sorted keys starting at `key/`.
fn below<'a>(from_prefix: impl Iterator<Item = &'a Vec<u8>>, key: &[u8]) -> Vec<Vec<u8>> {
    let is_below = |k: &&Vec<u8>| {
        k.strip_prefix(key)
            .is_some_and(|rest| rest.first() == Some(&b'/'))
    };
    let mut keys: Vec<Vec<u8>> = from_prefix.take_while(is_below).cloned().collect();
    keys.push(key.to_vec());
    keys
}

/// `ENOENT` or `ENOTDIR`.
fn is_missing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(c) if c == Errno::NOENT.raw_os_error() || c == Errno::NOTDIR.raw_os_error())
}

fn name(meta: &Meta) -> EntryName {
    EntryName(meta.name.clone())
}

fn path_error(problem: PathProblem, meta: &Meta) -> LayerError {
    let entry = name(meta);
    match problem {
        PathProblem::Empty => LayerError::EmptyPath { entry },
        PathProblem::Escapes => LayerError::Escapes { entry },
        PathProblem::Invalid => LayerError::InvalidPath { entry },
    }
}

pub(crate) fn io_error(meta: &Meta, op: &'static str, source: io::Error) -> LayerError {
    LayerError::Io {
        entry: name(meta),
        op,
        source,
    }
}
