//! isola's host configuration file: `/etc/isola/config.toml`, or the file named by `ISOLA_CONFIG`.
//!
//! ```toml
//! [engine]
//! default_isolation = "process"   # or "vm": what --isolation=default (and no flag) means
//!
//! [vm]                            # VM isolation's pieces; each key left out = the default search
//! qemu = "/usr/bin/qemu-system-x86_64"         # default: qemu-system-x86_64 on PATH
//! kernel = "/var/cache/isola/kernel/KEY"       # a vmlinux or its directory; default: the cache of
//!                                              # vm/build-kernel.sh ($ISOLA_KERNEL overrides both)
//! agent = "/usr/lib/isola/isola-agent"         # the static agent; default: next to the isola binary
//! accelerator = "auto"                         # or "kvm" / "tcg": skip the KVM probe
//! template = true                              # start VMs from a saved template VM (default);
//!                                              # false: boot the guest's kernel every time
//! ```
//! A missing file means the defaults; an unknown key or a bad value is an error naming it.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::Isolation;
use crate::error::{Error, Result};

/// Where the configuration file is looked for.
pub fn path() -> PathBuf {
    std::env::var_os("ISOLA_CONFIG")
        .map_or_else(|| PathBuf::from("/etc/isola/config.toml"), PathBuf::from)
}

/// The settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `[engine]`.
    #[serde(default)]
    pub engine: EngineSettings,
    /// `[vm]`: where VM isolation finds QEMU, the guest kernel and the agent; the accelerator.
    #[serde(default)]
    pub vm: isola_vm::assets::AssetSettings,
}

/// `[engine]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// What `--isolation=default` means on this host.
    #[serde(default)]
    pub default_isolation: Isolation,
}

impl Settings {
    /// Reads the configuration file (defaults when it does not exist).
    pub fn load() -> Result<Self> {
        let path = path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        toml::from_str(&text).map_err(|e| Error::Config {
            path,
            reason: e.message().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let s: Settings = toml::from_str("[engine]\ndefault_isolation = \"vm\"\n").unwrap();
        assert_eq!(s.engine.default_isolation, Isolation::Vm);
        assert!(toml::from_str::<Settings>("[engine]\ndefault_isolation = \"x\"\n").is_err());
        assert!(toml::from_str::<Settings>("[engine]\nnope = 1\n").is_err());
    }

    #[test]
    fn vm_table() {
        use isola_vm::accel::AccelChoice;
        let s: Settings = toml::from_str(
            "[vm]\nqemu = \"/opt/q\"\nkernel = \"/k\"\nagent = \"/a\"\naccelerator = \"tcg\"\n",
        )
        .unwrap();
        assert_eq!(s.vm.qemu.as_deref(), Some(std::path::Path::new("/opt/q")));
        assert_eq!(s.vm.kernel.as_deref(), Some(std::path::Path::new("/k")));
        assert_eq!(s.vm.agent.as_deref(), Some(std::path::Path::new("/a")));
        assert_eq!(s.vm.accelerator, Some(AccelChoice::Tcg));
        let s: Settings = toml::from_str("[vm]\naccelerator = \"kvm\"\n").unwrap();
        assert_eq!(s.vm.accelerator, Some(AccelChoice::Kvm));
        assert!(s.vm.qemu.is_none() && s.vm.template.is_none());
        let s: Settings = toml::from_str("[vm]\ntemplate = false\n").unwrap();
        assert_eq!(s.vm.template, Some(false));
        let d: Settings = toml::from_str("").unwrap();
        assert!(d.vm.accelerator.is_none() && d.vm.kernel.is_none());
        for bad in [
            "[vm]\naccelerator = \"fast\"\n",
            "[vm]\nkernal = \"/k\"\n",
            "[vm]\nqemu = 1\n",
            "[vm]\ntemplate = \"yes\"\n",
        ] {
            assert!(toml::from_str::<Settings>(bad).is_err(), "{bad}");
        }
    }
}
