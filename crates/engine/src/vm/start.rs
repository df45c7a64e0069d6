//! How a container's VM comes up: restored from a VM template (the default), or by booting the
//! guest's kernel ("cold boot"), which is also the fallback whenever the template path fails.
//!
//! Templates live in `<root>/vm/templates/<key>/` ([`isola_vm::template`]); the first VM of a
//! given key (assets, accelerator, size, device layout) pays a cold boot of the template and its
//! save, every later one restores it. A VM started from a template has the fixed device layout
//! ([`guest::fixed_layout`]); unused 9p tags share `<root>/vm/empty`, an empty directory.
//! `[vm] template = false` in the configuration file turns templates off.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use isola_proto::Client;
use isola_vm::assets::{AssetSettings, Assets};
use isola_vm::qemu::{Vm, VmConfig};
use isola_vm::template::{self, Store};
use serde::{Deserialize, Serialize};

use super::guest;
use crate::error::{Error, Result};

/// Longest a VM may take from QEMU's start to the agent's Hello (TCG on a busy host included);
/// also the longest a restore may take.
pub(crate) const BOOT_DEADLINE: Duration = Duration::from_secs(30);
/// Longest a VM waits for another process making the template it needs.
const TEMPLATE_LOCK_WAIT: Duration = Duration::from_secs(45);
/// Process name of a template's QEMU while it is made.
const TEMPLATE_VM_NAME: &str = "isola-vm-templ";

/// How a VM was started from a template (`VM.Boot.Restore` in `isola inspect`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Restore {
    /// The template's key (its directory under `<root>/vm/templates`).
    pub template: String,
    /// Making the template (boot to Hello, then saving), in milliseconds, when this VM's start
    /// made it; 0 when it existed.
    pub make_ms: u64,
    /// Loading the template's saved state until the guest ran again, in milliseconds.
    pub load_ms: u64,
}

/// A VM whose agent is ready for requests.
#[derive(Debug)]
pub(crate) struct Started {
    pub vm: Vm,
    pub channel: UnixStream,
    /// QEMU started until its guest kernel started (cold), or until it was told to load the
    /// template's state (restored), in milliseconds.
    pub vmm_ms: u64,
    /// The guest kernel's boot until the agent ran, in milliseconds (0 when restored).
    pub kernel_ms: u64,
    /// The agent's start until its Hello (cold), or the guest running again until the agent
    /// answered `Restored`, in milliseconds.
    pub agent_ms: u64,
    /// Guest uptime when the agent became ready, in milliseconds.
    pub guest_uptime_ms: u64,
    /// Set when the VM was restored from a template.
    pub restore: Option<Restore>,
    /// Why templates were not used, when they are on and failed.
    pub template_error: Option<String>,
}

/// Starts the VM of `config` (its shares as [`guest::prepare`] made them): from a template
/// unless `[vm] template = false`, else, or when that fails (logged as a warning naming
/// container `id`), by booting the kernel.
///
/// # Errors
/// The cold boot's: QEMU cannot start, or the guest does not greet within [`BOOT_DEADLINE`].
pub(crate) fn start(
    id: &str,
    settings: &AssetSettings,
    assets: &Assets,
    state_dir: &Path,
    config: &VmConfig,
) -> Result<Started> {
    let mut template_error = None;
    if settings.template.unwrap_or(true) {
        match from_template(assets, state_dir, config) {
            Ok(s) => return Ok(s),
            Err(e) => {
                let why = crate::monitor::line(&e);
                tracing::warn!("container {id}: VM template not used ({why}); booting the guest kernel instead");
                template_error = Some(why);
            }
        }
    }
    let mut s = cold(config)?;
    s.template_error = template_error;
    Ok(s)
}

/// Boots the guest's kernel and waits for the agent's Hello.
fn cold(config: &VmConfig) -> Result<Started> {
    let t0 = Instant::now();
    let mut vm = Vm::spawn(config)?;
    let channel = vm.agent()?;
    let reader = channel
        .try_clone()
        .map_err(|e| Error::io("configure", "agent channel", e))?;
    let hello = Client::new(reader).wait_hello(BOOT_DEADLINE).map_err(|e| {
        Error::Vm(format!(
            "the guest did not reach its agent within {BOOT_DEADLINE:?}: {e}; console: {}",
            vm.log_tail(400)
        ))
    })?;
    let hello_ms = t0.elapsed().as_millis() as u64;
    Ok(Started {
        vm,
        channel,
        vmm_ms: hello_ms.saturating_sub(hello.hello_ms),
        kernel_ms: hello.init_ms,
        agent_ms: hello.hello_ms.saturating_sub(hello.init_ms),
        guest_uptime_ms: hello.hello_ms,
        restore: None,
        template_error: None,
    })
}

/// Restores `config`'s VM from its template, making the template first when there is none.
fn from_template(assets: &Assets, state_dir: &Path, config: &VmConfig) -> Result<Started> {
    let empty = empty_dir(state_dir)?;
    let layout = guest::fixed_layout(&config.shares, &empty)?;
    let mut blank = config.clone();
    blank.name = TEMPLATE_VM_NAME.into();
    blank.shares = guest::fixed_layout(&[], &empty)?;
    let key = template::key(&blank, assets, guest::LAYOUT_VERSION);
    let store = Store::new(state_dir.join("templates"));
    let (tmpl, made) = store.get_or_make(&key, TEMPLATE_LOCK_WAIT, |dir| {
        blank.log = dir.join("console.log");
        template::make(&blank, dir, BOOT_DEADLINE)
    })?;
    let mut clone = config.clone();
    clone.shares = layout;
    let r = match template::restore(&clone, &tmpl, BOOT_DEADLINE) {
        Ok(r) => r,
        Err(e) => {
            // A template that cannot be restored is made anew by the next VM.
            store.discard(&key);
            return Err(e.into());
        }
    };
    Ok(Started {
        vm: r.vm,
        channel: r.channel,
        vmm_ms: r.vmm_ms,
        kernel_ms: 0,
        agent_ms: r.agent_ms,
        guest_uptime_ms: tmpl.meta.guest_uptime_ms,
        restore: Some(Restore {
            template: key,
            make_ms: if made { tmpl.meta.build_ms } else { 0 },
            load_ms: r.load_ms,
        }),
        template_error: None,
    })
}

/// `<state dir>/empty`: an empty directory (mode 0500) for the 9p tags a container does not use.
fn empty_dir(state_dir: &Path) -> Result<PathBuf> {
    let dir = state_dir.join("empty");
    match std::fs::DirBuilder::new().mode(0o500).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("create", &dir, e)),
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| Error::io("stat", &dir, e))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let empty = std::fs::read_dir(&dir)
        .map_err(|e| Error::io("read", &dir, e))?
        .next()
        .is_none();
    if !meta.is_dir() || meta.uid() != euid || !empty {
        return Err(Error::Vm(format!(
            "{} must be an empty directory of user {euid} (not a symlink)",
            dir.display()
        )));
    }
    Ok(dir)
}
