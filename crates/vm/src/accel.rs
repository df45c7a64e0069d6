//! Accelerator choice (interim: replaced by the real-boot KVM probe).

use std::path::Path;

use crate::assets::Assets;
use crate::qemu::Accel;

/// What the settings ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    /// Probe.
    #[default]
    Auto,
    /// Force KVM.
    Kvm,
    /// Force TCG.
    Tcg,
}

/// The accelerator and why.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    /// The accelerator.
    pub accel: Accel,
    /// Why.
    pub reason: String,
}

/// Decides.
pub fn decide(choice: AccelChoice, _assets: &Assets, _state_dir: &Path) -> Decision {
    match choice {
        AccelChoice::Kvm => Decision {
            accel: Accel::Kvm,
            reason: "forced by settings".into(),
        },
        _ => Decision {
            accel: Accel::Tcg,
            reason: "interim".into(),
        },
    }
}
