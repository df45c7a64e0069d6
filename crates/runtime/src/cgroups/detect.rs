//! Finding the host's cgroup hierarchies: `/proc/self/mountinfo` parsing (proc(5), "mountinfo")
//! and the v1 / hybrid / v2 decision.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use super::error::CgroupError;

/// Where the process's mount table is read from.
pub(crate) const MOUNTINFO: &str = "/proc/self/mountinfo";

/// How the host's cgroup hierarchies are arranged (runtime-spec config-linux.md "Control groups"
/// covers both versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// cgroup v1 only: one hierarchy per controller (or group of controllers).
    V1,
    /// v1 controllers plus a cgroup2 mount (usually `/sys/fs/cgroup/unified`) holding the
    /// controllers not bound to v1 (on our hosts: `hugetlb`).
    Hybrid,
    /// cgroup v2 only: a single unified hierarchy.
    V2,
}

impl fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1 => "v1",
            Self::Hybrid => "hybrid",
            Self::V2 => "v2",
        })
    }
}

/// Names a v1 mount's super options may carry that are controllers.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mounted {
    /// The mount point on the host.
    pub mount_point: PathBuf,
    /// v1: the controllers bound to it, plus `name=<x>` for a named hierarchy. v2: empty (the
    /// controllers are listed in `cgroup.controllers`).
    pub controllers: Vec<String>,
    /// Mounted with the `ro` mount option.
    pub read_only: bool,
    /// A cgroup2 mount.
    pub unified: bool,
}

/// All the cgroup hierarchies of the host, v1 and v2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub v1: Vec<Mounted>,
    pub unified: Option<Mounted>,
}

impl Layout {
    /// Reads the calling process's mount table.
    pub fn probe() -> Result<Self, CgroupError> {
        let text = std::fs::read_to_string(MOUNTINFO).map_err(|err| CgroupError::Mountinfo {
            path: MOUNTINFO.into(),
            err,
        })?;
        Self::from_mountinfo(&text)
    }

    /// Builds the layout from mountinfo text. Each hierarchy is kept once: a hierarchy mounted
    /// twice (bind mounts) is identified by its controller set, and the mount under
    /// `/sys/fs/cgroup` whose root is `/` is preferred.
    pub fn from_mountinfo(text: &str) -> Result<Self, CgroupError> {
        let mut candidates: Vec<(bool, Mounted)> = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Some(entry) = parse_line(line)? else {
                continue;
            };
            candidates.push(entry);
        }
        // Preferred mounts first; the sort is stable, so mount order decides among equals.
        candidates.sort_by_key(|(preferred, _)| !preferred);
        let mut seen = HashSet::new();
        let mut layout = Layout {
            v1: Vec::new(),
            unified: None,
        };
        for (_, m) in candidates {
            let mut key = m.controllers.clone();
            key.sort();
            if !seen.insert((m.unified, key)) {
                continue;
            }
            if m.unified {
                layout.unified = Some(m);
            } else {
                layout.v1.push(m);
            }
        }
        layout.v1.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
        Ok(layout)
    }

    /// A layout for a cgroupfs tree rooted at `root`, for hosts (and tests) where it is not at
    /// `/sys/fs/cgroup`. If `root` holds `cgroup.controllers` it is a v2 hierarchy. Otherwise each
    /// subdirectory is a v1 hierarchy whose name lists its controllers separated by commas
    /// (`cpu,cpuacct`), except `systemd` (the `name=systemd` hierarchy) and `unified` (a cgroup2
    /// hierarchy, making the layout hybrid).
    pub fn from_dir(root: &Path) -> Result<Self, CgroupError> {
        let io_err = |err| CgroupError::Io {
            cgroup: "/".into(),
            op: "read",
            path: root.to_path_buf(),
            err,
        };
        if root.join("cgroup.controllers").exists() {
            return Ok(Layout {
                v1: Vec::new(),
                unified: Some(unified_at(root.to_path_buf())),
            });
        }
        let mut layout = Layout {
            v1: Vec::new(),
            unified: None,
        };
        for entry in std::fs::read_dir(root).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            if !entry.file_type().map_err(io_err)?.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name == "unified" && path.join("cgroup.controllers").exists() {
                layout.unified = Some(unified_at(path));
                continue;
            }
            let controllers = if name == "systemd" {
                vec!["name=systemd".to_string()]
            } else {
                name.split(',').map(str::to_string).collect()
            };
            layout.v1.push(Mounted {
                mount_point: path,
                controllers,
                read_only: false,
                unified: false,
            });
        }
        layout.v1.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
        Ok(layout)
    }

    /// v1 if only v1 controllers are mounted, hybrid if a cgroup2 mount sits beside them, v2 if
    /// the cgroup2 mount is the only one holding controllers (a lone `name=systemd` v1
    /// hierarchy does not make a host v1).
    pub fn mode(&self) -> Result<CgroupMode, CgroupError> {
        let has_v1_controller = self
            .v1
            .iter()
            .any(|m| m.controllers.iter().any(|c| !c.starts_with("name=")));
        match (has_v1_controller, self.unified.is_some()) {
            (true, true) => Ok(CgroupMode::Hybrid),
            (true, false) => Ok(CgroupMode::V1),
            (false, true) => Ok(CgroupMode::V2),
            (false, false) => Err(CgroupError::NotMounted),
        }
    }
}

fn unified_at(mount_point: PathBuf) -> Mounted {
    Mounted {
        mount_point,
        controllers: Vec::new(),
        read_only: false,
        unified: true,
    }
}

/// Reads `/proc/self/mountinfo` and tells how the host's cgroups are arranged.
pub fn detect_mode() -> Result<CgroupMode, CgroupError> {
    Layout::probe()?.mode()
}

/// Parses one mountinfo line; `Ok(None)` for a mount that is not a cgroup hierarchy. The
/// boolean says whether the mount is preferred (under `/sys/fs/cgroup` with root `/`).
///
/// Format: `id parent major:minor root mount-point mount-options [optional...] - fstype source
/// super-options`.
fn parse_line(line: &str) -> Result<Option<(bool, Mounted)>, CgroupError> {
    let malformed = || CgroupError::MalformedMountinfo {
        line: line.to_string(),
    };
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields
        .iter()
        .position(|f| *f == "-")
        .ok_or_else(malformed)?;
    if sep < 6 || fields.len() < sep + 4 {
        return Err(malformed());
    }
    let fstype = fields[sep + 1];
    if fstype != "cgroup" && fstype != "cgroup2" {
        return Ok(None);
    }
    let root = unescape(fields[3]);
    let mount_point = PathBuf::from(unescape(fields[4]));
    let read_only = fields[5].split(',').any(|o| o == "ro");
    let preferred = root == "/" && mount_point.starts_with("/sys/fs/cgroup");
    if fstype == "cgroup2" {
        let mut m = unified_at(mount_point);
        m.read_only = read_only;
        return Ok(Some((preferred, m)));
    }
    let controllers: Vec<String> = fields[sep + 3]
        .split(',')
        .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
        .map(str::to_string)
        .collect();
    if controllers.is_empty() {
        return Ok(None);
    }
    Ok(Some((
        preferred,
        Mounted {
            mount_point,
            controllers,
            read_only,
            unified: false,
        },
    )))
}

/// Undoes the kernel's octal escaping of space, tab, newline and backslash (`\040` …).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mount table of our build hosts (hybrid), plus an unrelated mount and a duplicate
    /// bind mount of the memory hierarchy elsewhere.
    const HYBRID: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
90 1 0:32 /sub /mnt/mem rw,relatime - cgroup cgroup rw,memory
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer ro,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_mountinfo() {
        let layout = Layout::from_mountinfo(HYBRID).unwrap();
        assert_eq!(layout.mode().unwrap(), CgroupMode::Hybrid);
        let names: Vec<_> = layout.v1.iter().map(|m| m.controllers.join(",")).collect();
        assert_eq!(
            names,
            [
                "blkio",
                "cpu",
                "cpuacct",
                "cpuset",
                "devices",
                "freezer",
                "memory",
                "pids",
                "name=systemd"
            ]
        );
        let memory = layout
            .v1
            .iter()
            .find(|m| m.controllers == ["memory"])
            .unwrap();
        assert_eq!(memory.mount_point, Path::new("/sys/fs/cgroup/memory"));
        let freezer = layout
            .v1
            .iter()
            .find(|m| m.controllers == ["freezer"])
            .unwrap();
        assert!(freezer.read_only);
        assert!(!memory.read_only);
        assert_eq!(
            layout.unified.unwrap().mount_point,
            Path::new("/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn pure_v2_and_v1_and_none() {
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            Layout::from_mountinfo(v2).unwrap().mode().unwrap(),
            CgroupMode::V2
        );
        let v1 =
            "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct\n";
        let layout = Layout::from_mountinfo(v1).unwrap();
        assert_eq!(layout.mode().unwrap(), CgroupMode::V1);
        assert_eq!(layout.v1[0].controllers, ["cpu", "cpuacct"]);
        // A lone named hierarchy next to cgroup2 is still a v2 host.
        let named =
            format!("{v2}40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n");
        assert_eq!(
            Layout::from_mountinfo(&named).unwrap().mode().unwrap(),
            CgroupMode::V2
        );
        let none = "22 1 8:1 / / rw - ext4 /dev/vda1 rw\n";
        assert!(matches!(
            Layout::from_mountinfo(none).unwrap().mode(),
            Err(CgroupError::NotMounted)
        ));
    }

    #[test]
    fn escaped_mount_point_and_malformed_line() {
        let text = "41 31 0:38 / /mnt/my\\040cgroup rw - cgroup2 cgroup2 rw\n";
        let layout = Layout::from_mountinfo(text).unwrap();
        assert_eq!(
            layout.unified.unwrap().mount_point,
            Path::new("/mnt/my cgroup")
        );
        assert!(matches!(
            Layout::from_mountinfo("41 31 0:38 / /x rw cgroup2\n"),
            Err(CgroupError::MalformedMountinfo { .. })
        ));
        assert_eq!(unescape("a\\134b\\011"), "a\\b\t");
        assert_eq!(unescape("trailing\\"), "trailing\\");
    }

    #[test]
    fn layout_from_dir() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["cpu,cpuacct", "memory", "systemd", "unified"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("unified/cgroup.controllers"), "hugetlb\n").unwrap();
        let layout = Layout::from_dir(dir.path()).unwrap();
        assert_eq!(layout.mode().unwrap(), CgroupMode::Hybrid);
        assert_eq!(layout.v1.len(), 3);
        assert_eq!(layout.v1[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(layout.v1[2].controllers, ["name=systemd"]);

        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        assert_eq!(
            Layout::from_dir(v2.path()).unwrap().mode().unwrap(),
            CgroupMode::V2
        );
    }

    #[test]
    fn display() {
        assert_eq!(CgroupMode::V1.to_string(), "v1");
        assert_eq!(CgroupMode::Hybrid.to_string(), "hybrid");
        assert_eq!(CgroupMode::V2.to_string(), "v2");
    }
}
