//! Loading and checking a bundle's `config.json` (runtime-spec config.md, config-linux.md) before
//! anything is created: a bad config fails with an error that names the field, and leaves nothing behind.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

pub use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Mount, Process, Spec};

use crate::error::{Error, Result};

/// Largest config.json accepted, in bytes.
pub const MAX_CONFIG: u64 = 4 << 20;

/// A loaded bundle: its directory, its validated spec and the absolute rootfs path.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory, absolute.
    pub dir: PathBuf,
    /// The parsed config.json.
    pub spec: Spec,
    /// `root.path` made absolute (relative paths are taken from the bundle directory).
    pub rootfs: PathBuf,
    /// Warnings found while validating (settings this host cannot honour exactly).
    pub warnings: Vec<String>,
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads `<dir>/config.json` and validates it. Errors name the field: unknown namespace types,
/// capability names, rlimits and seccomp actions, a relative rootfs that climbs out of the bundle,
/// mount destinations that are relative or contain `..`, `hostname` without a UTS namespace, a user
/// namespace without mappings, duplicated namespaces.
pub fn load_bundle(dir: &Path) -> Result<Bundle> {
    let dir = std::path::absolute(dir).map_err(|e| Error::io("resolve bundle", dir, e))?;
    let path = dir.join("config.json");
    let data = read_limited(&path)?;
    let raw: serde_json::Value =
        serde_json::from_slice(&data).map_err(|e| bad(&path, e.to_string()))?;
    crate::process::check_names(&raw).map_err(|e| bad(&path, e.to_string()))?;
    let spec: Spec = serde_path_to_error::deserialize(raw).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
        if field == "." {
            bad(&path, msg)
        } else {
            bad(&path, format!("{field}: {msg}"))
        }
    })?;
    let warnings = validate(&spec, &path)?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| bad(&path, "root: missing"))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        if root
            .path()
            .components()
            .any(|c| matches!(c, Component::ParentDir))
        {
            return Err(bad(
                &path,
                format!(
                    "root.path {:?}: relative path leaves the bundle",
                    root.path()
                ),
            ));
        }
        dir.join(root.path())
    };
    let meta = std::fs::metadata(&rootfs)
        .map_err(|e| bad(&path, format!("root.path {}: {e}", rootfs.display())))?;
    if !meta.is_dir() {
        return Err(bad(
            &path,
            format!("root.path {}: not a directory", rootfs.display()),
        ));
    }
    Ok(Bundle {
        dir,
        spec,
        rootfs,
        warnings,
    })
}

fn read_limited(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut data = Vec::new();
    file.take(MAX_CONFIG + 1)
        .read_to_end(&mut data)
        .map_err(|e| Error::io("read", path, e))?;
    if data.len() as u64 > MAX_CONFIG {
        return Err(bad(path, format!("larger than {MAX_CONFIG} bytes")));
    }
    Ok(data)
}

/// Checks a parsed spec; returns warnings for what is accepted but not applied exactly.
pub fn validate(spec: &Spec, path: &Path) -> Result<Vec<String>> {
    let version = spec.version();
    if !version.starts_with("1.") {
        return Err(bad(
            path,
            format!("ociVersion {version:?}: only 1.x is supported"),
        ));
    }
    let linux = spec.linux().as_ref();
    let namespaces: &[LinuxNamespace] = linux
        .and_then(|l| l.namespaces().as_deref())
        .unwrap_or_default();
    let mut seen = HashSet::new();
    for (i, ns) in namespaces.iter().enumerate() {
        if !seen.insert(ns.typ()) {
            return Err(bad(
                path,
                format!(
                    "linux.namespaces[{i}].type {:?}: listed twice",
                    ns.typ().to_string()
                ),
            ));
        }
        if ns.typ() == LinuxNamespaceType::Time && ns.path().is_none() {
            // A new time namespace needs offsets we do not take from the spec yet.
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(bad(
                    path,
                    format!("linux.namespaces[{i}].path {p:?}: must be absolute"),
                ));
            }
        }
    }
    let has = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(bad(
            path,
            "hostname: set without a private UTS namespace (linux.namespaces has no \"uts\")",
        ));
    }
    if spec.domainname().as_deref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts)
    {
        return Err(bad(path, "domainname: set without a private UTS namespace"));
    }
    let new_userns = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    if let Some(l) = linux {
        let maps = l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            && l.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if new_userns && !maps {
            return Err(bad(
                path,
                "linux.uidMappings/gidMappings: a new user namespace needs both",
            ));
        }
        if !has(LinuxNamespaceType::User)
            && (l.uid_mappings().is_some() || l.gid_mappings().is_some())
        {
            let any = l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty());
            if any {
                return Err(bad(
                    path,
                    "linux.uidMappings: given without a user namespace",
                ));
            }
        }
        if let Some(sysctl) = l.sysctl() {
            for key in sysctl.keys() {
                if key.is_empty() || key.split(['.', '/']).any(|c| c.is_empty() || c == "..") {
                    return Err(bad(path, format!("linux.sysctl {key:?}: invalid name")));
                }
            }
        }
        if let Some(cg) = l.cgroups_path() {
            if cg.components().any(|c| matches!(c, Component::ParentDir)) {
                return Err(bad(
                    path,
                    format!("linux.cgroupsPath {cg:?}: must not contain \"..\""),
                ));
            }
        }
    }
    for (i, m) in spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let d = m.destination();
        if !d.is_absolute() {
            return Err(bad(
                path,
                format!("mounts[{i}].destination {d:?}: must be absolute"),
            ));
        }
        if d.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(bad(
                path,
                format!("mounts[{i}].destination {d:?}: must not contain \"..\""),
            ));
        }
    }
    let mut warnings = Vec::new();
    if let Some(p) = spec.process() {
        if p.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(bad(path, "process.args: must name the program to run"));
        }
        if !p.cwd().is_absolute() {
            return Err(bad(
                path,
                format!("process.cwd {:?}: must be absolute", p.cwd()),
            ));
        }
        warnings.extend(crate::process::validate(p, linux).map_err(|e| bad(path, e.to_string()))?);
    }
    Ok(warnings)
}

/// A default config.json for a bundle whose rootfs is `rootfs/` (what `isola-oci spec` writes): the
/// shell as process, a private PID, network, IPC, UTS, mount and cgroup namespace, the standard
/// mounts, masked and read-only paths, and a small default capability set.
pub fn default_spec() -> Spec {
    let mut spec = Spec::default();
    spec.set_version(oci_spec::runtime::VERSION.to_string());
    spec.set_hostname(Some("isola".into()));
    if let Some(p) = spec.process().clone() {
        let mut p = p;
        p.set_terminal(Some(false));
        p.set_args(Some(vec!["sh".into()]));
        spec.set_process(Some(p));
    }
    spec
}

/// Checks a container ID: 1 to 1024 characters of `[A-Za-z0-9_.-]`, not starting with `.`, so it is
/// safe as a directory name.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadId(id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(config: &str) -> (tempfile::TempDir, Result<Bundle>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        let b = load_bundle(dir.path());
        (dir, b)
    }

    fn minimal(extra: &str) -> String {
        format!(
            r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},
               "process":{{"args":["sh"],"cwd":"/","user":{{"uid":0,"gid":0}}}}{extra}}}"#
        )
    }

    fn err(config: &str) -> String {
        let (_d, b) = bundle_with(config);
        b.expect_err("config should be refused").to_string()
    }

    #[test]
    fn accepts_minimal() {
        let (_d, b) = bundle_with(&minimal(""));
        let b = b.unwrap();
        assert!(b.rootfs.ends_with("rootfs"));
    }

    #[test]
    fn names_bad_fields() {
        let e = err(&minimal(
            r#","linux":{"namespaces":[{"type":"pid"},{"type":"foo"}]}"#,
        ));
        assert!(e.contains("linux.namespaces[1].type"), "{e}");
        let e = err(&minimal(
            r#","mounts":[{"destination":"/a/../../etc","type":"tmpfs"}]"#,
        ));
        assert!(e.contains("mounts[0].destination"), "{e}");
        let e = err(&minimal(r#","hostname":"h""#));
        assert!(e.contains("hostname"), "{e}");
        let e = err(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/",
            "user":{"uid":0,"gid":0},"capabilities":{"bounding":["CAP_CHOWN","CAP_FOO"]}}}"#,
        );
        assert!(e.contains("process.capabilities.bounding"), "{e}");
        let e = err(r#"{"ociVersion":"1.0.2","root":{"path":"../outside"}}"#);
        assert!(e.contains("root.path"), "{e}");
    }

    #[test]
    fn ids() {
        assert!(check_id("abc-1_2.3").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id("../x").is_err());
        assert!(check_id(".hidden").is_err());
        assert!(check_id("a/b").is_err());
    }
}
