//! Linux security module labels (config.md "Linux process" → `apparmorProfile`, `selinuxLabel`).
//!
//! Both are set for the next `execve` through `/proc/self/attr/...`. A host without the LSM gets a
//! warning, never a silent drop; a host with it gets the label or an error.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use oci_spec::runtime::Process;

use super::error::ProcessError;

/// Where the LSM state is looked for; a field so that tests can point it elsewhere.
#[derive(Debug)]
struct Probe<'a> {
    root: &'a Path,
}

impl Probe<'_> {
    fn path(&self, abs: &str) -> std::path::PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    fn exists(&self, abs: &str) -> bool {
        self.path(abs).exists()
    }

    /// AppArmor is enabled: its securityfs directory, its module parameter, or (when `/sys` is not
    /// mounted in the container) a readable per-LSM attribute.
    fn apparmor_enabled(&self) -> bool {
        self.exists("/sys/kernel/security/apparmor")
            || fs::read_to_string(self.path("/sys/module/apparmor/parameters/enabled"))
                .is_ok_and(|s| s.starts_with('Y'))
            || fs::read_to_string(self.path("/proc/self/attr/apparmor/current")).is_ok()
    }

    /// SELinux is enabled: selinuxfs is mounted, or registered (it is only when SELinux is on).
    fn selinux_enabled(&self) -> bool {
        self.exists("/sys/fs/selinux/enforce")
            || fs::read_to_string(self.path("/proc/filesystems"))
                .is_ok_and(|s| s.lines().any(|l| l.trim_end().ends_with("\tselinuxfs")))
    }
}

fn write_attr(path: &Path, data: &str) -> Result<(), ProcessError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(data.as_bytes()))
        .map_err(|e| ProcessError::file(path, e))
}

fn apply_with(probe: &Probe<'_>, process: &Process) -> Result<Vec<String>, ProcessError> {
    let mut warnings = Vec::new();
    if let Some(profile) = process
        .apparmor_profile()
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        if probe.apparmor_enabled() {
            let new_attr = probe.path("/proc/self/attr/apparmor/exec");
            let attr = if new_attr.exists() {
                new_attr
            } else {
                probe.path("/proc/self/attr/exec")
            };
            write_attr(&attr, &format!("exec {profile}"))?;
            tracing::debug!(%profile, "apparmor profile set for exec");
        } else {
            warnings.push(format!(
                "apparmor profile {profile} requested but AppArmor is not enabled on this host; not applied"
            ));
        }
    }
    if let Some(label) = process.selinux_label().as_deref().filter(|l| !l.is_empty()) {
        if probe.selinux_enabled() {
            write_attr(&probe.path("/proc/self/attr/exec"), label)?;
            tracing::debug!(%label, "selinux label set for exec");
        } else {
            warnings.push(format!(
                "selinux label {label} requested but SELinux is not enabled on this host; not applied"
            ));
        }
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    Ok(warnings)
}

/// Sets `process.apparmorProfile` and `process.selinuxLabel` (config.md "Linux process") for the
/// next `execve`: `exec <profile>` to `/proc/self/attr/apparmor/exec` (or `/proc/self/attr/exec` on
/// kernels before 5.8), and the label to `/proc/self/attr/exec`. Where the host does not run the
/// LSM, the label is not applied and a warning saying so is returned (and logged).
pub fn apply_lsm(process: &Process) -> Result<Vec<String>, ProcessError> {
    apply_with(
        &Probe {
            root: Path::new("/"),
        },
        process,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(json: &str) -> Process {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn without_the_lsm_it_warns() {
        let root = tempfile::tempdir().unwrap();
        let probe = Probe { root: root.path() };
        let p = process(
            r#"{"cwd":"/","user":{"uid":0,"gid":0},"apparmorProfile":"docker-default","selinuxLabel":"system_u:system_r:container_t:s0"}"#,
        );
        let warnings = apply_with(&probe, &p).unwrap();
        assert_eq!(
            warnings,
            [
                "apparmor profile docker-default requested but AppArmor is not enabled on this host; not applied",
                "selinux label system_u:system_r:container_t:s0 requested but SELinux is not enabled on this host; not applied"
            ]
        );
        let none = process(r#"{"cwd":"/","user":{"uid":0,"gid":0}}"#);
        assert!(apply_with(&probe, &none).unwrap().is_empty());
    }

    #[test]
    fn with_the_lsm_it_writes_the_exec_attribute() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("sys/kernel/security/apparmor")).unwrap();
        fs::create_dir_all(root.path().join("sys/fs/selinux")).unwrap();
        fs::write(root.path().join("sys/fs/selinux/enforce"), "1").unwrap();
        fs::create_dir_all(root.path().join("proc/self/attr/apparmor")).unwrap();
        fs::write(root.path().join("proc/self/attr/apparmor/exec"), "").unwrap();
        fs::write(root.path().join("proc/self/attr/exec"), "").unwrap();
        let probe = Probe { root: root.path() };
        let p = process(
            r#"{"cwd":"/","user":{"uid":0,"gid":0},"apparmorProfile":"p1","selinuxLabel":"l1"}"#,
        );
        assert!(apply_with(&probe, &p).unwrap().is_empty());
        assert_eq!(
            fs::read_to_string(root.path().join("proc/self/attr/apparmor/exec")).unwrap(),
            "exec p1"
        );
        assert_eq!(
            fs::read_to_string(root.path().join("proc/self/attr/exec")).unwrap(),
            "l1"
        );
    }

    #[test]
    fn this_host_has_neither() {
        // DESIGN.md: no AppArmor or SELinux on our machines.
        let p = process(r#"{"cwd":"/","user":{"uid":0,"gid":0},"apparmorProfile":"x"}"#);
        let probe = Probe {
            root: Path::new("/"),
        };
        if !probe.apparmor_enabled() {
            assert_eq!(apply_lsm(&p).unwrap().len(), 1);
        }
    }
}
