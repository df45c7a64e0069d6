//! Guest assets (interim: replaced by the full search and initramfs assembly).

use std::path::{Path, PathBuf};

use crate::accel::AccelChoice;
use crate::error::{Error, Result};

/// Where isola finds its VM pieces; each `None` = the default search.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetSettings {
    /// QEMU binary.
    pub qemu: Option<PathBuf>,
    /// Guest kernel (`vmlinux`).
    pub kernel: Option<PathBuf>,
    /// Static agent binary.
    pub agent: Option<PathBuf>,
    /// Accelerator choice.
    pub accelerator: Option<AccelChoice>,
}

/// The located assets.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Assets {
    /// QEMU binary.
    pub qemu: PathBuf,
    /// QEMU's version line.
    pub qemu_version: String,
    /// Guest kernel.
    pub kernel: PathBuf,
    /// Its version.
    pub kernel_version: String,
    /// The initramfs.
    pub initramfs: PathBuf,
    /// The agent's version.
    pub agent_version: String,
}

/// Finds the assets.
///
/// # Errors
/// [`Error::Asset`] naming what is missing.
pub fn locate(settings: &AssetSettings, _state_dir: &Path) -> Result<Assets> {
    let kernel = settings
        .kernel
        .clone()
        .or_else(|| std::env::var_os("ISOLA_KERNEL").map(PathBuf::from))
        .ok_or_else(|| Error::Asset("guest kernel not found".into()))?;
    let initramfs = std::env::var_os("ISOLA_INITRAMFS")
        .map(PathBuf::from)
        .ok_or_else(|| Error::Asset("initramfs not found".into()))?;
    Ok(Assets {
        qemu: settings
            .qemu
            .clone()
            .unwrap_or_else(|| "qemu-system-x86_64".into()),
        qemu_version: String::new(),
        kernel,
        kernel_version: String::new(),
        initramfs,
        agent_version: String::new(),
    })
}
