//! Parsing of `mounts[].options` (runtime-spec config.md "Mounts", and the fstab-style options
//! runc accepts) into what the mount code applies: per-mount attributes (`mount_setattr(2)`),
//! superblock flags and filesystem data for new filesystems (`fsconfig(2)`), propagation, and
//! whether the mount is a (recursive) bind mount. Pure logic, no system calls.

use oci_spec::runtime::Mount;
use rustix::mount::{MountAttrFlags, MountPropagationFlags};

use super::error::{invalid, RootfsError};

/// A change of per-mount attributes, for the top mount only or for a whole tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttrChange {
    /// Attributes to set (`MOUNT_ATTR_RDONLY`, `MOUNT_ATTR_NOSUID`, …).
    pub set: MountAttrFlags,
    /// Attributes to clear because an option asked for it (`rw`, `suid`, …).
    pub clear: MountAttrFlags,
    /// The access-time mode, when an option chose one (`noatime`, `relatime`, `strictatime`).
    pub atime: Option<MountAttrFlags>,
}

impl Default for AttrChange {
    fn default() -> Self {
        AttrChange {
            set: MountAttrFlags::empty(),
            clear: MountAttrFlags::empty(),
            atime: None,
        }
    }
}

impl AttrChange {
    /// True when applying this change would do nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.clear.is_empty() && self.atime.is_none()
    }

    fn flag(&mut self, flag: MountAttrFlags, on: bool) {
        if on {
            self.set |= flag;
            self.clear -= flag;
        } else {
            self.clear |= flag;
            self.set -= flag;
        }
    }

    /// The `(attr_set, attr_clr)` pair for `mount_setattr(2)`.
    pub fn setattr_pair(&self) -> (MountAttrFlags, MountAttrFlags) {
        let mut set = self.set;
        let mut clear = self.clear;
        if let Some(mode) = self.atime {
            set |= mode;
            clear |= MountAttrFlags::MOUNT_ATTR__ATIME;
        }
        (set, clear)
    }

    /// The attributes for `fsmount(2)` of a new filesystem, where nothing needs clearing.
    pub fn fsmount_attrs(&self) -> MountAttrFlags {
        self.set | self.atime.unwrap_or(MountAttrFlags::empty())
    }
}

/// One propagation change, applied in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PropagationChange {
    /// Exactly one of shared, private, downstream (slave) or unbindable.
    pub kind: MountPropagationFlags,
    /// The `r` variant: the whole tree below the mount.
    pub recursive: bool,
}

/// `mounts[].options`, sorted by what applies them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MountOptions {
    /// `bind` or `rbind`.
    pub bind: bool,
    /// `rbind`: submounts of the source come along.
    pub recursive: bool,
    /// `remount`: change an existing mount at the destination.
    pub remount: bool,
    /// Attributes of the mount itself.
    pub attrs: AttrChange,
    /// Attributes of the mount and everything below it (`rro`, `rnosuid`, …).
    pub rec_attrs: AttrChange,
    /// Superblock flags for a new filesystem, as `fsconfig(2)` flag names (`ro`, `sync`, …).
    pub sb_flags: Vec<&'static str>,
    /// Propagation changes, in order.
    pub propagation: Vec<PropagationChange>,
    /// Filesystem-specific options (`size=64m`, `mode=755`, `newinstance`, …).
    pub data: Vec<String>,
    /// `tmpcopyup` was asked for (not supported: a warning is logged).
    pub tmpcopyup: bool,
}

impl MountOptions {
    /// Parses the options of `mounts[index]`.
    pub fn parse(index: usize, options: &[String]) -> Result<Self, RootfsError> {
        let mut o = MountOptions::default();
        for opt in options {
            o.apply(index, opt)?;
        }
        Ok(o)
    }

    fn apply(&mut self, index: usize, opt: &str) -> Result<(), RootfsError> {
        use MountAttrFlags as A;
        let (rec, base) = match opt.strip_prefix('r') {
            // `rro`, `rnosuid`, `rrelatime`, …: but not `relatime`/`rw`/`rbind`/`rprivate`.
            Some(rest) if RECURSIVE_ATTR_OPTS.contains(&rest) => (true, rest),
            _ => (false, opt),
        };
        let attrs = if rec {
            &mut self.rec_attrs
        } else {
            &mut self.attrs
        };
        match base {
            "ro" => {
                attrs.flag(A::MOUNT_ATTR_RDONLY, true);
                if !rec {
                    self.set_sb("ro", true);
                }
            }
            "rw" => {
                attrs.flag(A::MOUNT_ATTR_RDONLY, false);
                if !rec {
                    self.set_sb("ro", false);
                }
            }
            "nosuid" => attrs.flag(A::MOUNT_ATTR_NOSUID, true),
            "suid" => attrs.flag(A::MOUNT_ATTR_NOSUID, false),
            "nodev" => attrs.flag(A::MOUNT_ATTR_NODEV, true),
            "dev" => attrs.flag(A::MOUNT_ATTR_NODEV, false),
            "noexec" => attrs.flag(A::MOUNT_ATTR_NOEXEC, true),
            "exec" => attrs.flag(A::MOUNT_ATTR_NOEXEC, false),
            "nodiratime" => attrs.flag(A::MOUNT_ATTR_NODIRATIME, true),
            "diratime" => attrs.flag(A::MOUNT_ATTR_NODIRATIME, false),
            "nosymfollow" => attrs.flag(A::MOUNT_ATTR_NOSYMFOLLOW, true),
            "symfollow" => attrs.flag(A::MOUNT_ATTR_NOSYMFOLLOW, false),
            "noatime" => attrs.atime = Some(A::MOUNT_ATTR_NOATIME),
            "relatime" => attrs.atime = Some(A::MOUNT_ATTR_RELATIME),
            "strictatime" => attrs.atime = Some(A::MOUNT_ATTR_STRICTATIME),
            // The kernel's default access-time mode is relatime.
            "atime" | "norelatime" | "nostrictatime" => attrs.atime = Some(A::MOUNT_ATTR_RELATIME),
            "sync" | "dirsync" | "mand" | "lazytime" => self.set_sb(sb_name(base), true),
            "async" => self.set_sb("sync", false),
            "nomand" => self.set_sb("mand", false),
            "nolazytime" => self.set_sb("lazytime", false),
            "bind" => self.bind = true,
            "rbind" => {
                self.bind = true;
                self.recursive = true;
            }
            "remount" => self.remount = true,
            "tmpcopyup" => self.tmpcopyup = true,
            "idmap" | "ridmap" => {
                return Err(invalid(
                    format!("mounts[{index}].options"),
                    opt,
                    "idmapped mounts are not supported",
                ))
            }
            // fstab-only words that mean nothing to the kernel.
            "defaults" | "auto" | "noauto" | "nofail" | "_netdev" | "user" | "nouser" | "users"
            | "silent" | "loud" => {}
            other => match propagation(other) {
                Some(p) => self.propagation.push(p),
                None if other.is_empty() => {}
                None => self.data.extend(split_data(other)),
            },
        }
        Ok(())
    }

    fn set_sb(&mut self, name: &'static str, on: bool) {
        self.sb_flags.retain(|f| *f != name);
        if on {
            self.sb_flags.push(name);
        }
    }
}

/// Attribute options that have an `r`-prefixed recursive form (runtime-spec config.md "Mounts").
const RECURSIVE_ATTR_OPTS: &[&str] = &[
    "ro",
    "rw",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "nodiratime",
    "diratime",
    "relatime",
    "norelatime",
    "noatime",
    "atime",
    "strictatime",
    "nostrictatime",
    "nosymfollow",
    "symfollow",
];

fn sb_name(opt: &str) -> &'static str {
    match opt {
        "sync" => "sync",
        "dirsync" => "dirsync",
        "mand" => "mand",
        _ => "lazytime",
    }
}

/// Parses a propagation word: `shared`, `rshared`, `slave`, `rslave`, `private`, `rprivate`,
/// `unbindable`, `runbindable` (runtime-spec config-linux.md "Rootfs Mount Propagation" uses the
/// same words for `linux.rootfsPropagation`).
pub(crate) fn propagation(word: &str) -> Option<PropagationChange> {
    let (recursive, base) = match word.strip_prefix('r') {
        Some(rest) if matches!(rest, "shared" | "slave" | "private" | "unbindable") => (true, rest),
        _ => (false, word),
    };
    let kind = match base {
        "shared" => MountPropagationFlags::SHARED,
        "slave" => MountPropagationFlags::DOWNSTREAM,
        "private" => MountPropagationFlags::PRIVATE,
        "unbindable" => MountPropagationFlags::UNBINDABLE,
        _ => return None,
    };
    Some(PropagationChange { kind, recursive })
}

/// Splits a data option on commas that are not inside double quotes, so that both
/// `["size=1m", "mode=755"]` and `["size=1m,mode=755"]` reach `fsconfig(2)` one key at a time.
pub(crate) fn split_data(opt: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in opt.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// How a mount is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MountKind {
    /// A bind mount of a host path (type `bind`, or any type with the `bind`/`rbind` option).
    Bind,
    /// `cgroup` or `cgroup2`: the host's cgroup layout decides what is mounted.
    Cgroup,
    /// `sysfs`, with a read-only bind of the host's `/sys` when the kernel refuses a new one.
    Sysfs,
    /// Any other filesystem type, created with `fsopen(2)`.
    Filesystem(String),
}

impl MountKind {
    /// Classifies `mounts[index]`.
    pub fn of(index: usize, m: &Mount, opts: &MountOptions) -> Result<Self, RootfsError> {
        let typ = m.typ().as_deref().unwrap_or("");
        if opts.bind || typ == "bind" || typ == "rbind" {
            return Ok(MountKind::Bind);
        }
        match typ {
            "" if opts.remount => Ok(MountKind::Filesystem(String::new())),
            "" => Err(invalid(
                format!("mounts[{index}].type"),
                "",
                "a type is required unless the mount is a bind mount",
            )),
            "none" => Err(invalid(
                format!("mounts[{index}].type"),
                typ,
                "\"none\" needs the bind or rbind option",
            )),
            "cgroup" | "cgroup2" => Ok(MountKind::Cgroup),
            "sysfs" => Ok(MountKind::Sysfs),
            t if t.contains(['/', '\0']) => Err(invalid(
                format!("mounts[{index}].type"),
                typ,
                "is not a filesystem type",
            )),
            t => Ok(MountKind::Filesystem(t.to_string())),
        }
    }

    /// The name used in error messages.
    pub fn label(&self) -> &str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Cgroup => "cgroup",
            MountKind::Sysfs => "sysfs",
            MountKind::Filesystem(t) if t.is_empty() => "remount",
            MountKind::Filesystem(t) => t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::MountBuilder;
    use MountAttrFlags as A;

    fn parse(opts: &[&str]) -> MountOptions {
        let v: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        MountOptions::parse(0, &v).unwrap()
    }

    #[test]
    fn attributes_set_and_clear() {
        let o = parse(&["ro", "nosuid", "nodev", "noexec"]);
        let all = A::MOUNT_ATTR_RDONLY | A::MOUNT_ATTR_NOSUID | A::MOUNT_ATTR_NODEV;
        assert_eq!(o.attrs.set, all | A::MOUNT_ATTR_NOEXEC);
        assert!(o.attrs.clear.is_empty());
        assert_eq!(o.sb_flags, vec!["ro"]);
        let o = parse(&["ro", "rw", "nosuid", "suid", "exec"]);
        assert!(o.attrs.set.is_empty());
        assert_eq!(
            o.attrs.clear,
            A::MOUNT_ATTR_RDONLY | A::MOUNT_ATTR_NOSUID | A::MOUNT_ATTR_NOEXEC
        );
        assert!(o.sb_flags.is_empty());
    }

    #[test]
    fn recursive_attributes_are_separate() {
        let o = parse(&["rro", "rnosuid", "rbind", "rprivate", "relatime", "rw"]);
        assert_eq!(o.rec_attrs.set, A::MOUNT_ATTR_RDONLY | A::MOUNT_ATTR_NOSUID);
        assert!(o.bind && o.recursive);
        assert_eq!(o.attrs.atime, Some(A::MOUNT_ATTR_RELATIME));
        assert_eq!(o.attrs.clear, A::MOUNT_ATTR_RDONLY);
        assert_eq!(
            o.propagation,
            vec![PropagationChange {
                kind: MountPropagationFlags::PRIVATE,
                recursive: true
            }]
        );
    }

    #[test]
    fn atime_modes_last_one_wins() {
        let o = parse(&["noatime", "strictatime"]);
        assert_eq!(o.attrs.atime, Some(A::MOUNT_ATTR_STRICTATIME));
        let (set, clear) = o.attrs.setattr_pair();
        assert_eq!(set, A::MOUNT_ATTR_STRICTATIME);
        assert_eq!(clear, A::MOUNT_ATTR__ATIME);
        let o = parse(&["noatime", "nodiratime"]);
        assert_eq!(
            o.attrs.fsmount_attrs(),
            A::MOUNT_ATTR_NOATIME | A::MOUNT_ATTR_NODIRATIME
        );
    }

    #[test]
    fn superblock_flags_and_data() {
        let o = parse(&[
            "sync",
            "dirsync",
            "async",
            "mand",
            "size=65536k",
            "mode=755,newinstance",
        ]);
        assert_eq!(o.sb_flags, vec!["dirsync", "mand"]);
        assert_eq!(o.data, vec!["size=65536k", "mode=755", "newinstance"]);
        let o = parse(&["tmpcopyup", "remount", "defaults", "nofail"]);
        assert!(o.tmpcopyup && o.remount && o.data.is_empty());
    }

    #[test]
    fn propagation_words() {
        for (w, kind, rec) in [
            ("shared", MountPropagationFlags::SHARED, false),
            ("rshared", MountPropagationFlags::SHARED, true),
            ("slave", MountPropagationFlags::DOWNSTREAM, false),
            ("rslave", MountPropagationFlags::DOWNSTREAM, true),
            ("private", MountPropagationFlags::PRIVATE, false),
            ("rprivate", MountPropagationFlags::PRIVATE, true),
            ("unbindable", MountPropagationFlags::UNBINDABLE, false),
            ("runbindable", MountPropagationFlags::UNBINDABLE, true),
        ] {
            assert_eq!(
                propagation(w),
                Some(PropagationChange {
                    kind,
                    recursive: rec
                }),
                "{w}"
            );
        }
        assert_eq!(propagation("rsharedx"), None);
        assert_eq!(propagation("rw"), None);
    }

    #[test]
    fn data_splits_outside_quotes() {
        assert_eq!(
            split_data(r#"context="a:b:c0,c1",size=1m,,"#),
            vec![r#"context="a:b:c0,c1""#, "size=1m"]
        );
    }

    #[test]
    fn idmap_is_refused_by_name() {
        let e = MountOptions::parse(2, &["idmap".to_string()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"mounts[2].options "idmap": idmapped mounts are not supported"#
        );
    }

    #[test]
    fn kinds() {
        let m = |typ: Option<&str>, opts: &[&str]| {
            let mut b = MountBuilder::default().destination("/x");
            if let Some(t) = typ {
                b = b.typ(t);
            }
            let m = b.build().unwrap();
            let o = parse(opts);
            MountKind::of(1, &m, &o)
        };
        assert_eq!(m(Some("bind"), &[]).unwrap(), MountKind::Bind);
        assert_eq!(m(Some("none"), &["rbind"]).unwrap(), MountKind::Bind);
        assert_eq!(m(None, &["bind"]).unwrap(), MountKind::Bind);
        assert_eq!(m(Some("cgroup2"), &[]).unwrap(), MountKind::Cgroup);
        assert_eq!(m(Some("sysfs"), &[]).unwrap(), MountKind::Sysfs);
        assert_eq!(
            m(Some("tmpfs"), &[]).unwrap(),
            MountKind::Filesystem("tmpfs".into())
        );
        assert!(m(Some("none"), &[])
            .unwrap_err()
            .to_string()
            .contains("mounts[1].type"));
        assert!(m(None, &[]).is_err());
        assert!(m(Some("../x"), &[]).is_err());
        assert_eq!(m(None, &["remount", "ro"]).unwrap().label(), "remount");
    }
}
