//! The container's mounts, in Docker's order: the kernel filesystems every container gets, the
//! host-side `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`, then `-v` binds, then
//! `--tmpfs` mounts. A default mount whose destination a `-v` or `--tmpfs` names is left out,
//! as Docker leaves it out.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Mount;

use super::args::INIT_PATH;
use super::error::SpecError;
use super::BundlePaths;
use crate::config::{Bind, HostConfig, Tmpfs};

/// `/dev/shm`'s size without `--shm-size` (Docker's 64 MiB).
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

fn mount(dest: &str, typ: &str, source: impl Into<PathBuf>, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_owned()));
    m.set_source(Some(source.into()));
    m.set_options(Some(options.iter().map(|o| (*o).to_owned()).collect()));
    m
}

/// The kernel filesystems of every container (Docker's default mounts); `/dev/shm` is
/// `shm_size` bytes.
fn system_mounts(shm_size: u64) -> Vec<Mount> {
    let shm = format!("size={shm_size}");
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm],
        ),
    ]
}

/// The host-side network files, read-only with `--read-only` as Docker mounts them.
fn etc_mounts(paths: &BundlePaths, read_only: bool) -> Vec<Mount> {
    let opts: &[&str] = if read_only {
        &["rbind", "rprivate", "ro"]
    } else {
        &["rbind", "rprivate"]
    };
    vec![
        mount("/etc/hosts", "bind", &paths.hosts, opts),
        mount("/etc/hostname", "bind", &paths.hostname, opts),
        mount("/etc/resolv.conf", "bind", &paths.resolv_conf, opts),
    ]
}

/// Checks a destination inside the container: absolute, no `..`, not `/`. Returns it cleaned.
fn destination(flag: &'static str, shown: &str, dest: &str) -> Result<PathBuf, SpecError> {
    let bad = |reason: &str| SpecError::invalid(flag, shown, reason);
    if !dest.starts_with('/') {
        return Err(bad("the container path must be absolute"));
    }
    if dest.contains('\0') {
        return Err(bad("the container path contains a NUL byte"));
    }
    let path = Path::new(dest);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(bad("the container path must not contain \"..\""));
    }
    let clean = super::args::clean(path);
    if clean == Path::new("/") {
        return Err(bad("the container path must not be \"/\""));
    }
    Ok(clean)
}

fn bind_text(b: &Bind) -> String {
    let ro = if b.read_only { ":ro" } else { "" };
    format!("{}:{}{ro}", b.source, b.destination)
}

/// A `-v` bind: the host path must be absolute and exist; options `rbind`, `rprivate`, and `ro`
/// for `:ro`.
fn bind_mount(b: &Bind) -> Result<Mount, SpecError> {
    let shown = bind_text(b);
    let bad = |reason: String| SpecError::invalid("-v", &shown, reason);
    if !b.source.starts_with('/') {
        return Err(bad("the host path must be absolute".into()));
    }
    if b.source.contains('\0') {
        return Err(bad("the host path contains a NUL byte".into()));
    }
    if let Err(e) = std::fs::metadata(&b.source) {
        let reason = if e.kind() == std::io::ErrorKind::NotFound {
            "the host path does not exist".to_owned()
        } else {
            format!("the host path cannot be used: {e}")
        };
        return Err(bad(reason));
    }
    let dest = destination("-v", &shown, &b.destination)?;
    let mut opts = vec!["rbind", "rprivate"];
    if b.read_only {
        opts.push("ro");
    }
    let mut m = mount("/", "bind", &b.source, &opts);
    m.set_destination(dest);
    Ok(m)
}

/// Flags that have an opposite; a later one of a pair replaces the earlier (Docker's
/// `MergeTmpfsOptions`).
const TMPFS_FLAG_PAIRS: &[(&str, &str)] = &[
    ("ro", "rw"),
    ("exec", "noexec"),
    ("suid", "nosuid"),
    ("dev", "nodev"),
    ("atime", "noatime"),
    ("diratime", "nodiratime"),
    ("relatime", "norelatime"),
    ("strictatime", "nostrictatime"),
    ("sync", "async"),
];

/// Data options tmpfs takes as `key=value`.
const TMPFS_DATA: &[&str] = &[
    "size",
    "mode",
    "uid",
    "gid",
    "nr_inodes",
    "nr_blocks",
    "mpol",
];

fn valid_tmpfs_value(key: &str, value: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match key {
        "mode" => !value.is_empty() && value.bytes().all(|b| (b'0'..=b'7').contains(&b)),
        "uid" | "gid" => digits(value),
        "size" | "nr_blocks" | "nr_inodes" => {
            let num = value
                .strip_suffix(['k', 'K', 'm', 'M', 'g', 'G', '%'])
                .unwrap_or(value);
            digits(num)
        }
        _ => !value.is_empty(),
    }
}

/// A `--tmpfs` mount: Docker's options `noexec`, `nosuid`, `nodev`, `mode=1777` merged with the
/// user's (a later flag replaces its opposite, a later `key=` replaces the same key).
fn tmpfs_mount(t: &Tmpfs) -> Result<Mount, SpecError> {
    let shown = if t.options.is_empty() {
        t.destination.clone()
    } else {
        format!("{}:{}", t.destination, t.options)
    };
    let dest = destination("--tmpfs", &shown, &t.destination)?;
    let mut opts: Vec<String> = ["noexec", "nosuid", "nodev", "mode=1777"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    for opt in t
        .options
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
    {
        if let Some((key, value)) = opt.split_once('=') {
            if !TMPFS_DATA.contains(&key) || !valid_tmpfs_value(key, value) {
                return Err(SpecError::invalid(
                    "--tmpfs",
                    &shown,
                    format!("invalid tmpfs option {opt:?}"),
                ));
            }
            let prefix = format!("{key}=");
            opts.retain(|o| !o.starts_with(&prefix));
        } else {
            let Some((a, b)) = TMPFS_FLAG_PAIRS
                .iter()
                .find(|(a, b)| *a == opt || *b == opt)
            else {
                return Err(SpecError::invalid(
                    "--tmpfs",
                    &shown,
                    format!("invalid tmpfs option {opt:?}"),
                ));
            };
            opts.retain(|o| o != a && o != b);
        }
        opts.push(opt.to_owned());
    }
    opts.push("rprivate".into());
    let mut m = Mount::default();
    m.set_destination(dest);
    m.set_typ(Some("tmpfs".into()));
    m.set_source(Some("tmpfs".into()));
    m.set_options(Some(opts));
    Ok(m)
}

/// All mounts of the container, in order (see the module docs). `--init` adds a read-only bind
/// of the init binary at [`INIT_PATH`].
pub fn mounts(host: &HostConfig, paths: &BundlePaths) -> Result<Vec<Mount>, SpecError> {
    let shm_size = match host.shm_size {
        Some(0) => return Err(SpecError::invalid("--shm-size", "0", "must be above 0")),
        Some(n) => n,
        None => DEFAULT_SHM_SIZE,
    };
    let mut user: Vec<Mount> = Vec::new();
    for b in &host.binds {
        user.push(bind_mount(b)?);
    }
    for t in &host.tmpfs {
        user.push(tmpfs_mount(t)?);
    }
    for (i, m) in user.iter().enumerate() {
        if user[..i].iter().any(|p| p.destination() == m.destination()) {
            let (flag, shown) = match host.binds.get(i) {
                Some(b) => ("-v", bind_text(b)),
                None => (
                    "--tmpfs",
                    host.tmpfs[i - host.binds.len()].destination.clone(),
                ),
            };
            return Err(SpecError::invalid(flag, shown, "duplicate mount point"));
        }
    }
    if host.init {
        let init = paths.init.as_ref().ok_or(SpecError::NoInit)?;
        if !init.is_file() {
            return Err(SpecError::invalid(
                "--init",
                init.display().to_string(),
                "the init binary is not a file",
            ));
        }
        user.push(mount(INIT_PATH, "bind", init, &["bind", "ro"]));
    }
    let taken = |m: &Mount| user.iter().any(|u| u.destination() == m.destination());
    let mut all: Vec<Mount> = system_mounts(shm_size)
        .into_iter()
        .chain(etc_mounts(paths, host.read_only))
        .filter(|m| !taken(m))
        .collect();
    all.extend(user);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> BundlePaths {
        BundlePaths {
            rootfs: dir.join("rootfs"),
            hosts: dir.join("hosts"),
            hostname: dir.join("hostname"),
            resolv_conf: dir.join("resolv.conf"),
            init: None,
        }
    }

    fn dests(m: &[Mount]) -> Vec<String> {
        m.iter()
            .map(|m| m.destination().display().to_string())
            .collect()
    }

    fn opts(m: &Mount) -> Vec<String> {
        m.options().clone().unwrap_or_default()
    }

    fn bind(source: &str, destination: &str, read_only: bool) -> Bind {
        Bind {
            source: source.into(),
            destination: destination.into(),
            read_only,
        }
    }

    fn tmpfs(destination: &str, options: &str) -> Tmpfs {
        Tmpfs {
            destination: destination.into(),
            options: options.into(),
        }
    }

    #[test]
    fn defaults_in_order() {
        let d = tempfile::tempdir().unwrap();
        let m = mounts(&HostConfig::default(), &paths(d.path())).unwrap();
        assert_eq!(
            dests(&m),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm",
                "/etc/hosts",
                "/etc/hostname",
                "/etc/resolv.conf"
            ]
        );
        assert_eq!(opts(&m[0]), ["nosuid", "noexec", "nodev"]);
        assert_eq!(
            opts(&m[2]),
            [
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5"
            ]
        );
        assert_eq!(
            opts(&m[6]),
            ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]
        );
        assert_eq!(
            m[7].source().as_deref(),
            Some(d.path().join("hosts").as_path())
        );
        assert_eq!(opts(&m[7]), ["rbind", "rprivate"]);
    }

    #[test]
    fn read_only_and_shm_size() {
        let d = tempfile::tempdir().unwrap();
        let host = HostConfig {
            read_only: true,
            shm_size: Some(1 << 20),
            ..Default::default()
        };
        let m = mounts(&host, &paths(d.path())).unwrap();
        assert!(opts(&m[6]).contains(&"size=1048576".to_owned()));
        assert_eq!(opts(&m[9]), ["rbind", "rprivate", "ro"]);
        let zero = HostConfig {
            shm_size: Some(0),
            ..Default::default()
        };
        assert_eq!(
            mounts(&zero, &paths(d.path())).unwrap_err().to_string(),
            r#"--shm-size "0": must be above 0"#
        );
    }

    #[test]
    fn binds_are_checked_and_follow_the_defaults() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().display().to_string();
        let host = HostConfig {
            binds: vec![bind(&src, "/data/", false), bind(&src, "/ro", true)],
            tmpfs: vec![tmpfs("/run", "")],
            ..Default::default()
        };
        let m = mounts(&host, &paths(d.path())).unwrap();
        assert_eq!(dests(&m)[10..], ["/data", "/ro", "/run"]);
        assert_eq!(m[10].typ().as_deref(), Some("bind"));
        assert_eq!(m[10].source().as_deref(), Some(d.path()));
        assert_eq!(opts(&m[10]), ["rbind", "rprivate"]);
        assert_eq!(opts(&m[11]), ["rbind", "rprivate", "ro"]);

        let err = |b: Bind| {
            let host = HostConfig {
                binds: vec![b],
                ..Default::default()
            };
            mounts(&host, &paths(d.path())).unwrap_err().to_string()
        };
        assert_eq!(
            err(bind("relative", "/x", false)),
            r#"-v "relative:/x": the host path must be absolute"#
        );
        assert_eq!(
            err(bind("/no/such/path", "/x", true)),
            r#"-v "/no/such/path:/x:ro": the host path does not exist"#
        );
        assert!(err(bind(&src, "x", false)).ends_with("the container path must be absolute"));
        assert!(err(bind(&src, "/a/../b", false)).contains("must not contain \"..\""));
        assert!(err(bind(&src, "//", false)).contains("must not be \"/\""));
        let dup = HostConfig {
            binds: vec![bind(&src, "/x", false)],
            tmpfs: vec![tmpfs("/x/", "")],
            ..Default::default()
        };
        assert_eq!(
            mounts(&dup, &paths(d.path())).unwrap_err().to_string(),
            r#"--tmpfs "/x/": duplicate mount point"#
        );
    }

    #[test]
    fn user_mounts_replace_defaults_at_the_same_place() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("hosts");
        std::fs::write(&src, "").unwrap();
        let host = HostConfig {
            binds: vec![bind(&src.display().to_string(), "/etc/hosts", true)],
            tmpfs: vec![tmpfs("/dev/shm", "size=1m")],
            ..Default::default()
        };
        let m = mounts(&host, &paths(d.path())).unwrap();
        let d = dests(&m);
        assert_eq!(d.iter().filter(|x| *x == "/etc/hosts").count(), 1);
        assert_eq!(d.iter().filter(|x| *x == "/dev/shm").count(), 1);
        assert_eq!(d[d.len() - 2..], ["/etc/hosts", "/dev/shm"]);
    }

    #[test]
    fn tmpfs_options_merge() {
        let m = tmpfs_mount(&tmpfs("/t", "")).unwrap();
        assert_eq!(
            opts(&m),
            ["noexec", "nosuid", "nodev", "mode=1777", "rprivate"]
        );
        let m = tmpfs_mount(&tmpfs("/t", "size=64m,exec,mode=700,uid=1000")).unwrap();
        assert_eq!(
            opts(&m),
            ["nosuid", "nodev", "size=64m", "exec", "mode=700", "uid=1000", "rprivate"]
        );
        assert_eq!(m.typ().as_deref(), Some("tmpfs"));
        for bad in ["size=lots", "mode=999", "bogus", "bind", "x=1", "uid=-1"] {
            let e = tmpfs_mount(&tmpfs("/t", bad)).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("--tmpfs \"/t:{bad}\": invalid tmpfs option")),
                "{e}"
            );
        }
        assert!(tmpfs_mount(&tmpfs("/t", "size=50%")).is_ok());
    }

    #[test]
    fn init_binary() {
        let d = tempfile::tempdir().unwrap();
        let host = HostConfig {
            init: true,
            ..Default::default()
        };
        let mut p = paths(d.path());
        assert!(matches!(mounts(&host, &p), Err(SpecError::NoInit)));
        p.init = Some(d.path().join("missing"));
        assert!(mounts(&host, &p).is_err());
        let init = d.path().join("tini");
        std::fs::write(&init, "").unwrap();
        p.init = Some(init.clone());
        let m = mounts(&host, &p).unwrap();
        let last = m.last().unwrap();
        assert_eq!(last.destination(), Path::new(INIT_PATH));
        assert_eq!(last.source().as_deref(), Some(init.as_path()));
        assert_eq!(opts(last), ["bind", "ro"]);
    }
}
