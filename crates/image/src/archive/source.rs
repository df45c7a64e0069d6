//! Random access to the files of an image archive, whether it is a directory or a tar file.
//!
//! Archive paths come from hostile JSON (docker-archive `manifest.json`), so a directory is only read
//! beneath its root (`openat2` with `RESOLVE_BENEATH`), and a tar file only through its own index:
//! no path of either kind can reach a file outside the archive.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags, CWD};

use crate::error::{Error, IoContext, Result};

/// Files of an archive, addressed by their path inside it (`blobs/sha256/<hex>`, `manifest.json`).
#[derive(Debug)]
pub enum Source {
    /// An unpacked directory (OCI image layout directory).
    Dir {
        /// The directory as given.
        path: PathBuf,
        /// Open handle on it; every lookup is resolved beneath it.
        fd: OwnedFd,
    },
    /// An uncompressed tar file with an index of its regular files.
    Tar {
        /// The archive path as given.
        path: PathBuf,
        /// The open file.
        file: Arc<File>,
        /// Path → (data offset, size in bytes).
        index: HashMap<String, (u64, u64)>,
    },
}

/// Normalizes an archive-internal path: no leading `./` or `/`, no empty or `.` components.
/// Returns `None` for paths with `..` components.
pub(crate) fn normalize(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

impl Source {
    /// Opens a directory archive.
    pub fn dir(path: &Path) -> Result<Self> {
        let fd = openat2(
            CWD,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::empty(),
        )
        .map_err(io::Error::from)
        .ctx("open directory", path)?;
        Ok(Self::Dir {
            path: path.to_path_buf(),
            fd,
        })
    }

    /// Indexes an uncompressed tar archive. Symbolic links inside it (docker-archive uses them for
    /// repeated layers) are resolved within the archive. A truncated or corrupt archive is an error.
    pub fn tar(path: &Path, shown_as: &Path) -> Result<Self> {
        let file = File::open(path).ctx("open", shown_as)?;
        let len = file.metadata().ctx("stat", shown_as)?.len();
        let corrupt = |reason: String| Error::Archive {
            archive: shown_as.to_path_buf(),
            reason,
        };
        // The tar reader holds long-name and PAX headers in memory whole: bound them first.
        match crate::targuard::check_tar_file(&file) {
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Err(corrupt(e.to_string())),
            checked => checked.ctx("read", shown_as)?,
        }
        let mut index = HashMap::new();
        let mut links = HashMap::new();
        let mut archive = tar::Archive::new(&file);
        let entries = archive.entries_with_seek().map_err(|e| {
            corrupt(format!(
                "truncated or corrupt tar: {}",
                e.to_string().escape_debug()
            ))
        })?;
        let mut seen_any = false;
        for entry in entries {
            let entry = entry.map_err(|e| {
                corrupt(format!(
                    "truncated or corrupt tar: {}",
                    e.to_string().escape_debug()
                ))
            })?;
            seen_any = true;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some(name) = normalize(&raw) else {
                continue;
            };
            let kind = entry.header().entry_type();
            if kind.is_file() {
                let (off, size) = (entry.raw_file_position(), entry.size());
                if off.checked_add(size).is_none_or(|end| end > len) {
                    return Err(corrupt(format!(
                        "truncated tar: entry {name:?} ends past the end"
                    )));
                }
                index.insert(name, (off, size));
            } else if kind.is_symlink() || kind.is_hard_link() {
                if let Some(target) = entry.link_name_bytes() {
                    let target = String::from_utf8_lossy(&target).into_owned();
                    links.insert(name, (kind.is_symlink(), target));
                }
            }
        }
        if !seen_any {
            return Err(corrupt("empty or not a tar archive".into()));
        }
        let resolved: Vec<(String, (u64, u64))> = links
            .keys()
            .filter_map(|n| resolve_link(n, &links, &index).map(|loc| (n.clone(), loc)))
            .collect();
        index.extend(resolved);
        Ok(Self::Tar {
            path: shown_as.to_path_buf(),
            file: Arc::new(file),
            index,
        })
    }

    /// The archive's path as the user gave it.
    pub fn path(&self) -> &Path {
        match self {
            Self::Dir { path, .. } | Self::Tar { path, .. } => path,
        }
    }

    /// Opens a file of the archive; `Ok(None)` when it is not there. Returns the reader and its size.
    pub fn open(&self, path: &str) -> Result<Option<(Box<dyn Read + Send + '_>, u64)>> {
        let Some(name) = normalize(path) else {
            return Ok(None);
        };
        match self {
            Self::Dir { fd, path: root, .. } => {
                // Resolve without opening (O_PATH), so a device or FIFO planted in the layout is
                // never opened; only a regular file is then opened for reading.
                let opened = openat2(
                    fd,
                    name.as_str(),
                    OFlags::PATH | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
                );
                let handle = match opened {
                    Ok(fd) => fd,
                    Err(rustix::io::Errno::NOENT) => return Ok(None),
                    Err(rustix::io::Errno::XDEV) => {
                        return Err(Error::Archive {
                            archive: root.clone(),
                            reason: format!("{name:?} leads outside the archive directory"),
                        })
                    }
                    Err(e) => return Err(io::Error::from(e)).ctx("open", root.join(&name)),
                };
                let stat = rustix::fs::fstat(&handle)
                    .map_err(io::Error::from)
                    .ctx("stat", root.join(&name))?;
                if rustix::fs::FileType::from_raw_mode(stat.st_mode)
                    != rustix::fs::FileType::RegularFile
                {
                    return Err(Error::Archive {
                        archive: root.clone(),
                        reason: format!("{name:?} is not a regular file"),
                    });
                }
                let reopened = rustix::fs::open(
                    format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&handle)),
                    OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io::Error::from)
                .ctx("open", root.join(&name))?;
                let file = File::from(reopened);
                let len = stat.st_size as u64;
                Ok(Some((Box::new(file), len)))
            }
            Self::Tar { file, index, .. } => Ok(index.get(&name).map(|&(offset, size)| {
                let r: Box<dyn Read + Send> = Box::new(ReadAt {
                    file: Arc::clone(file),
                    pos: offset,
                    end: offset + size,
                });
                (r, size)
            })),
        }
    }

    /// Reads a whole small file (a JSON document), at most `limit` bytes; `Ok(None)` when absent.
    pub fn read_small(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let Some((mut r, size)) = self.open(path)? else {
            return Ok(None);
        };
        if size > limit {
            return Err(Error::Archive {
                archive: self.path().to_path_buf(),
                reason: format!("{path:?} is {size} bytes, more than the {limit}-byte limit"),
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        r.read_to_end(&mut data)
            .ctx("read", self.path().join(path))?;
        Ok(Some(data))
    }
}

/// Follows a chain of at most 8 links inside a tar archive to a regular file's location.
/// A symbolic link's relative target is taken from its own directory; a hard link's from the top.
fn resolve_link(
    name: &str,
    links: &HashMap<String, (bool, String)>,
    index: &HashMap<String, (u64, u64)>,
) -> Option<(u64, u64)> {
    let mut from = name.to_owned();
    for _ in 0..8 {
        let (symlink, target) = links.get(&from)?;
        let joined = match (symlink, from.rsplit_once('/')) {
            (true, Some((dir, _))) if !target.starts_with('/') => format!("{dir}/{target}"),
            _ => target.clone(),
        };
        let resolved = resolve_dots(&joined)?;
        if let Some(&loc) = index.get(&resolved) {
            return Some(loc);
        }
        from = resolved;
    }
    None
}

/// Resolves `.` and `..` lexically inside the archive; `None` if it climbs above the top.
fn resolve_dots(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

/// A reader over a byte range of a shared file, using positioned reads.
struct ReadAt {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for ReadAt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive truncated",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_paths() {
        assert_eq!(
            normalize("./blobs//sha256/x").as_deref(),
            Some("blobs/sha256/x")
        );
        assert_eq!(
            normalize("/manifest.json").as_deref(),
            Some("manifest.json")
        );
        assert_eq!(normalize("a/../../etc/passwd"), None);
        assert_eq!(resolve_dots("a/b/../c").as_deref(), Some("a/c"));
        assert_eq!(resolve_dots("../x"), None);
    }
}
