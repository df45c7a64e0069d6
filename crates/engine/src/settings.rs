//! isola's host configuration file: `/etc/isola/config.toml`, or the file named by `ISOLA_CONFIG`.
//!
//! ```toml
//! [engine]
//! default_isolation = "process"   # or "vm": what --isolation=default (and no flag) means
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
}
