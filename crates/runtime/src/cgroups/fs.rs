//! Control-file access shared by the v1 and v2 managers: one cgroup directory in one hierarchy,
//! with errors that name the cgroup, the file and the value.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::error::CgroupError;

/// How long `destroy` keeps retrying an `rmdir` that fails with `EBUSY` (a cgroup stays busy for
/// a moment after its last process exited).
const RMDIR_PATIENCE: Duration = Duration::from_millis(1000);

/// One cgroup's directory in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dir {
    /// The cgroup path shown in messages, e.g. `/isola/<id>`.
    pub cgroup: String,
    /// The directory on the host.
    pub path: PathBuf,
}

impl Dir {
    pub fn new(cgroup: &str, path: PathBuf) -> Self {
        Self {
            cgroup: cgroup.to_string(),
            path,
        }
    }

    pub fn exists(&self, file: &str) -> bool {
        self.path.join(file).exists()
    }

    /// Writes `value` to `file` in one `write(2)`. The file is never created: on cgroupfs a
    /// missing file means a missing controller, and that must be an error.
    pub fn write(&self, file: &str, value: &str) -> Result<(), CgroupError> {
        tracing::debug!(cgroup = %self.cgroup, file, value, "cgroup write");
        let result = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.path.join(file))
            .and_then(|mut f| f.write_all(value.as_bytes()));
        result.map_err(|err| CgroupError::Write {
            cgroup: self.cgroup.clone(),
            file: file.to_string(),
            value: value.to_string(),
            err,
        })
    }

    pub fn read(&self, file: &str) -> Result<String, CgroupError> {
        std::fs::read_to_string(self.path.join(file))
            .map_err(|err| self.io_error("read", file, err))
    }

    /// Like [`Dir::read`], but `None` when the file does not exist.
    pub fn read_opt(&self, file: &str) -> Result<Option<String>, CgroupError> {
        match std::fs::read_to_string(self.path.join(file)) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_error("read", file, e)),
        }
    }

    /// A file holding a single number, or `max` (returned as `None`).
    pub fn read_limit(&self, file: &str) -> Result<Option<u64>, CgroupError> {
        let text = self.read(file)?;
        let t = text.trim();
        if t == "max" {
            return Ok(None);
        }
        t.parse().map(Some).map_err(|_| self.parse_error(file, t))
    }

    /// A file holding a single unsigned number.
    pub fn read_u64(&self, file: &str) -> Result<u64, CgroupError> {
        let text = self.read(file)?;
        let t = text.trim();
        t.parse().map_err(|_| self.parse_error(file, t))
    }

    /// The value of `key` in a flat-keyed file (`key value` per line, e.g. `memory.events`);
    /// `None` if the key is absent.
    pub fn read_key(&self, file: &str, key: &str) -> Result<Option<u64>, CgroupError> {
        let text = self.read(file)?;
        self.parse_key(file, &text, key)
    }

    pub fn parse_key(&self, file: &str, text: &str, key: &str) -> Result<Option<u64>, CgroupError> {
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            if parts.next() == Some(key) {
                let value = parts.next().unwrap_or("");
                return value
                    .parse()
                    .map(Some)
                    .map_err(|_| self.parse_error(file, line));
            }
        }
        Ok(None)
    }

    /// The PIDs listed in this directory's `cgroup.procs` (not its descendants').
    pub fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        let text = self.read("cgroup.procs")?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.trim()
                    .parse()
                    .map_err(|_| self.parse_error("cgroup.procs", l))
            })
            .collect()
    }

    /// The PIDs of this cgroup and all its descendants, sorted and deduplicated.
    pub fn procs_recursive(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        for dir in self.subtree()? {
            match dir.procs() {
                Ok(p) => pids.extend(p),
                // A child cgroup removed while we walk is not an error.
                Err(CgroupError::Io { err, .. }) if err.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// This directory and every cgroup directory below it, parents before children.
    pub fn subtree(&self) -> Result<Vec<Dir>, CgroupError> {
        let mut out = vec![self.clone()];
        let mut i = 0;
        while i < out.len() {
            let dir = out[i].path.clone();
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound && i > 0 => {
                    i += 1;
                    continue;
                }
                Err(e) => return Err(self.io_error_at("read", dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.io_error_at("read", dir.clone(), e))?;
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if is_dir {
                    out.push(Dir::new(&self.cgroup, entry.path()));
                }
            }
            i += 1;
        }
        Ok(out)
    }

    /// Removes this cgroup directory and any cgroups below it (children first). `EBUSY` is
    /// retried for up to a second; a directory that is already gone is fine.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let dirs = match self.subtree() {
            Ok(d) => d,
            Err(CgroupError::Io { err, .. }) if err.kind() == io::ErrorKind::NotFound => {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let deadline = Instant::now() + RMDIR_PATIENCE;
        for dir in dirs.iter().rev() {
            let mut delay = Duration::from_millis(5);
            loop {
                match std::fs::remove_dir(&dir.path) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        sleep(delay);
                        delay = (delay * 2).min(Duration::from_millis(100));
                    }
                    Err(e) => {
                        return Err(self.io_error_at("remove directory", dir.path.clone(), e))
                    }
                }
            }
        }
        Ok(())
    }

    pub fn io_error(&self, op: &'static str, file: &str, err: io::Error) -> CgroupError {
        self.io_error_at(op, self.path.join(file), err)
    }

    pub fn io_error_at(&self, op: &'static str, path: PathBuf, err: io::Error) -> CgroupError {
        CgroupError::Io {
            cgroup: self.cgroup.clone(),
            op,
            path,
            err,
        }
    }

    pub fn parse_error(&self, file: &str, content: &str) -> CgroupError {
        CgroupError::Parse {
            cgroup: self.cgroup.clone(),
            file: file.to_string(),
            content: content.trim().to_string(),
        }
    }
}

/// `mkdir -p` for a cgroup directory, reporting the directory that failed.
pub(crate) fn create_dir_all(cgroup: &str, path: &Path) -> Result<(), CgroupError> {
    std::fs::create_dir_all(path).map_err(|err| CgroupError::Io {
        cgroup: cgroup.to_string(),
        op: "create directory",
        path: path.to_path_buf(),
        err,
    })
}

/// The directories from `mount_point` down to `mount_point/<cgroup path>`, excluding the mount
/// point itself: for `/a/b`, `[mount/a, mount/a/b]`.
pub(crate) fn levels(mount_point: &Path, cgroup: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut cur = mount_point.to_path_buf();
    for comp in cgroup.split('/').filter(|c| !c.is_empty()) {
        cur.push(comp);
        out.push(cur.clone());
    }
    out
}

/// Polls `done` every 10 ms until it returns true or `limit` has passed; returns whether it did.
pub(crate) fn wait_until(
    limit: Duration,
    mut done: impl FnMut() -> Result<bool, CgroupError>,
) -> Result<bool, CgroupError> {
    let deadline = Instant::now() + limit;
    loop {
        if done()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_never_creates_and_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::new("/t", tmp.path().to_path_buf());
        let err = dir.write("pids.max", "10").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cgroup /t: write \"10\" to pids.max: no such file"));
        std::fs::write(tmp.path().join("pids.max"), "max\n").unwrap();
        dir.write("pids.max", "10").unwrap();
        assert_eq!(dir.read("pids.max").unwrap(), "10");
    }

    #[test]
    fn readers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::new("/t", tmp.path().to_path_buf());
        std::fs::write(tmp.path().join("a"), "max\n").unwrap();
        std::fs::write(tmp.path().join("b"), "42\n").unwrap();
        std::fs::write(tmp.path().join("c"), "low 0\noom 2\noom_kill 3\n").unwrap();
        std::fs::write(tmp.path().join("d"), "x\n").unwrap();
        assert_eq!(dir.read_limit("a").unwrap(), None);
        assert_eq!(dir.read_limit("b").unwrap(), Some(42));
        assert_eq!(dir.read_u64("b").unwrap(), 42);
        assert_eq!(dir.read_key("c", "oom_kill").unwrap(), Some(3));
        assert_eq!(dir.read_key("c", "absent").unwrap(), None);
        assert!(matches!(dir.read_u64("d"), Err(CgroupError::Parse { .. })));
        assert_eq!(dir.read_opt("none").unwrap(), None);
    }

    #[test]
    fn procs_recursive_sorted() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("x/y")).unwrap();
        std::fs::write(tmp.path().join("cgroup.procs"), "30\n10\n").unwrap();
        std::fs::write(tmp.path().join("x/cgroup.procs"), "").unwrap();
        std::fs::write(tmp.path().join("x/y/cgroup.procs"), "20\n10\n").unwrap();
        let dir = Dir::new("/t", tmp.path().to_path_buf());
        assert_eq!(dir.procs_recursive().unwrap(), [10, 20, 30]);
    }

    #[test]
    fn remove_children_first_and_gone_is_fine() {
        let tmp = tempfile::tempdir().unwrap();
        let leaf = tmp.path().join("isola/c1");
        std::fs::create_dir_all(leaf.join("sub/sub2")).unwrap();
        let dir = Dir::new("/isola/c1", leaf.clone());
        dir.remove().unwrap();
        assert!(!leaf.exists());
        assert!(tmp.path().join("isola").exists());
        dir.remove().unwrap();
    }

    #[test]
    fn levels_of_a_path() {
        let l = levels(Path::new("/m"), "/a/b");
        assert_eq!(l, [PathBuf::from("/m/a"), PathBuf::from("/m/a/b")]);
    }
}
