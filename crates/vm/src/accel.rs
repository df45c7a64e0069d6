//! KVM or TCG: decided by booting the guest for real, not by looking for `/dev/kvm`.
//!
//! On our hosts `/dev/kvm` is a paravirtual nested KVM (PVM) under which an ordinary guest
//! kernel hangs or dies in KVM's instruction emulator (vm/README.md), so its presence proves
//! nothing. [`decide`] with [`AccelChoice::Auto`] boots the located assets under KVM (1 vCPU,
//! 128 MiB, no shares) and takes KVM only if the agent's `Hello` arrives within
//! [`PROBE_DEADLINE`]; otherwise TCG. The probe's QEMU is always killed and reaped before
//! `decide` returns, and nothing in it can block past the deadline (plus the time to kill QEMU).
//!
//! The result is cached in `<state dir>/accel.json` (the engine uses one host-wide directory,
//! [`HOST_STATE_DIR`], since the answer is a fact about the host, not about a store), keyed by the
//! kernel (path, size, modification time), the agent's hash, QEMU (path and version), the host kernel's release and
//! `/proc/sys/kernel/random/boot_id`: a new kernel, agent, QEMU or host boot probes again. A
//! lock file serialises concurrent probes, so parallel `isola run`s probe once.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::assets::Assets;
use crate::qemu::{Accel, Vm, VmConfig};

/// Where the engine caches the decision: one answer per host boot for every store root.
pub const HOST_STATE_DIR: &str = "/run/isola/vm";
/// How long the probe waits for the agent's Hello, from QEMU's start.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(5);
/// The probe VM's QEMU process name.
pub const PROBE_NAME: &str = "isola-kvm-probe";
/// The KVM device.
pub const KVM_DEVICE: &str = "/dev/kvm";
const CACHE_FILE: &str = "accel.json";
const LOCK_FILE: &str = "accel.lock";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
/// Longest wait for another process's probe (its deadline, plus margin to kill its QEMU).
const LOCK_WAIT: Duration = Duration::from_secs(8);

/// What the `[vm] accelerator` setting asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    /// Probe: KVM if a test boot under KVM reaches the agent, else TCG.
    #[default]
    Auto,
    /// KVM, without probing.
    Kvm,
    /// TCG, without probing.
    Tcg,
}

impl std::fmt::Display for AccelChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AccelChoice::Auto => "auto",
            AccelChoice::Kvm => "kvm",
            AccelChoice::Tcg => "tcg",
        })
    }
}

/// The accelerator to run VMs with, and why (for `isola info` and `isola inspect`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    /// KVM or TCG.
    pub accel: crate::qemu::Accel,
    /// Why, in a sentence.
    pub reason: String,
}

/// Decides the accelerator for VMs of `assets`. [`AccelChoice::Kvm`] and [`AccelChoice::Tcg`]
/// are taken as they are ("forced by settings"); [`AccelChoice::Auto`] gives TCG when there is
/// no usable `/dev/kvm`, else the (cached) result of a test boot under KVM that must reach the
/// agent's Hello within [`PROBE_DEADLINE`]. `state_dir` holds the cache (`<isola root>/vm`).
///
/// Never fails (a probe that cannot even start QEMU means TCG, with the error as the reason),
/// never hangs, and leaves no process behind.
pub fn decide(choice: AccelChoice, assets: &Assets, state_dir: &Path) -> Decision {
    decide_with(
        choice,
        assets,
        state_dir,
        Path::new(KVM_DEVICE),
        PROBE_DEADLINE,
    )
}

fn decide_with(
    choice: AccelChoice,
    assets: &Assets,
    state_dir: &Path,
    kvm: &Path,
    deadline: Duration,
) -> Decision {
    match choice {
        AccelChoice::Kvm => forced(Accel::Kvm),
        AccelChoice::Tcg => forced(Accel::Tcg),
        AccelChoice::Auto => auto(assets, state_dir, kvm, deadline),
    }
}

fn forced(accel: Accel) -> Decision {
    Decision {
        accel,
        reason: format!("forced by settings ([vm] accelerator = \"{accel}\")"),
    }
}

fn tcg(reason: String) -> Decision {
    Decision {
        accel: Accel::Tcg,
        reason,
    }
}

fn auto(assets: &Assets, state_dir: &Path, kvm: &Path, deadline: Duration) -> Decision {
    if !kvm.exists() {
        return tcg(format!("no {}", kvm.display()));
    }
    if let Err(e) = fs::OpenOptions::new().read(true).write(true).open(kvm) {
        return tcg(format!(
            "{} cannot be opened ({e}); using TCG",
            kvm.display()
        ));
    }
    let _ = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir);
    let key = cache_key(assets);
    if let Some(d) = read_cache(state_dir, &key) {
        return d;
    }
    // One probe at a time; whoever waited reads the result of the one before.
    let _lock = lock(state_dir);
    if let Some(d) = read_cache(state_dir, &key) {
        return d;
    }
    let started = Instant::now();
    let (decision, cacheable) = probe(assets, state_dir, deadline);
    let took = started.elapsed();
    tracing::info!(accel = %decision.accel, reason = %decision.reason, ms = took.as_millis() as u64, "accelerator probe");
    if cacheable {
        write_cache(state_dir, &key, &decision, took);
    }
    decision
}

/// The inputs the decision depends on.
#[derive(Debug, Serialize)]
struct KeyInputs {
    kernel: String,
    initramfs: String,
    qemu: String,
    host_release: String,
    boot_id: String,
}

fn file_id(p: &Path) -> String {
    match fs::metadata(p) {
        Ok(m) => format!(
            "{} size={} mtime={}.{:09}",
            p.display(),
            m.len(),
            m.mtime(),
            m.mtime_nsec()
        ),
        Err(_) => format!("{} (missing)", p.display()),
    }
}

fn cache_key(assets: &Assets) -> String {
    let inputs = KeyInputs {
        kernel: file_id(&assets.kernel),
        // The initramfs by its content (the agent's hash), not its path: every store root
        // assembles its own copy of the same bytes.
        initramfs: assets.agent_version.clone(),
        qemu: format!("{} {}", assets.qemu.display(), assets.qemu_version),
        host_release: rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned(),
        boot_id: fs::read_to_string(BOOT_ID)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    };
    let json = serde_json::to_vec(&inputs).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}

/// The cache file's contents.
#[derive(Debug, Serialize, Deserialize)]
struct Cached {
    key: String,
    decision: Decision,
    probe_ms: u64,
}

fn read_cache(state_dir: &Path, key: &str) -> Option<Decision> {
    let data = fs::read(state_dir.join(CACHE_FILE)).ok()?;
    let c: Cached = serde_json::from_slice(&data).ok()?;
    (c.key == key).then_some(c.decision)
}

fn write_cache(state_dir: &Path, key: &str, decision: &Decision, took: Duration) {
    let c = Cached {
        key: key.to_owned(),
        decision: decision.clone(),
        probe_ms: took.as_millis() as u64,
    };
    let path = state_dir.join(CACHE_FILE);
    let tmp = state_dir.join(format!(".{CACHE_FILE}.tmp-{}", crate::assets::unique()));
    let ok = serde_json::to_vec_pretty(&c).ok().is_some_and(|data| {
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&data))
            .and_then(|()| fs::rename(&tmp, &path))
            .is_ok()
    });
    if !ok {
        let _ = fs::remove_file(&tmp);
        tracing::debug!(path = %path.display(), "could not write the accelerator cache");
    }
}

/// An exclusive `flock` on the lock file, waited for at most [`LOCK_WAIT`]; `None` (probe
/// anyway) when it cannot be had.
fn lock(state_dir: &Path) -> Option<fs::File> {
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(state_dir.join(LOCK_FILE))
        .ok()?;
    let until = Instant::now() + LOCK_WAIT;
    loop {
        match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Some(f),
            Err(rustix::io::Errno::WOULDBLOCK | rustix::io::Errno::INTR)
                if Instant::now() < until =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => return None,
        }
    }
}

/// A scratch directory for the probe's sockets and console log, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Longest directory path that still leaves room for `/agent.sock` in a Unix socket address.
const MAX_SOCKET_DIR: usize = 90;

fn scratch(state_dir: &Path) -> std::io::Result<Scratch> {
    let name = format!("probe-{}", crate::assets::unique());
    let mut dir = state_dir.join(&name);
    if dir.as_os_str().len() > MAX_SOCKET_DIR {
        dir = std::env::temp_dir().join(format!("isola-{name}"));
    }
    let _ = fs::remove_dir_all(&dir);
    fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(Scratch(dir))
}

/// Boots `assets` under KVM and waits for the agent's Hello until `deadline` after QEMU's
/// start. Returns the decision and whether it may be cached (a failure to even start QEMU is
/// not about KVM and is not cached).
fn probe(assets: &Assets, state_dir: &Path, deadline: Duration) -> (Decision, bool) {
    let fail = |what: String| {
        (
            tcg(format!("KVM probe could not run ({what}); using TCG")),
            false,
        )
    };
    let dir = match scratch(state_dir) {
        Ok(d) => d,
        Err(e) => return fail(format!("scratch directory: {e}")),
    };
    let config = VmConfig {
        name: PROBE_NAME.into(),
        qemu: assets.qemu.clone(),
        kernel: assets.kernel.clone(),
        initramfs: assets.initramfs.clone(),
        accel: Accel::Kvm,
        vcpus: 1,
        memory_mib: 128,
        shares: Vec::new(),
        log: dir.0.join("console.log"),
        kernel_args: Vec::new(),
        memory: Default::default(),
        incoming: None,
    };
    let t0 = Instant::now();
    let mut vm = match Vm::spawn(&config) {
        Ok(vm) => vm,
        Err(e) => return fail(e.to_string()),
    };
    let until = t0 + deadline;
    let hello = vm.agent().and_then(|stream| {
        let mut client = isola_proto::Client::new(stream);
        let left = until.saturating_duration_since(Instant::now());
        let info = client
            .wait_hello(left)
            .map_err(|e| crate::Error::Agent(e.to_string()))?;
        // Best effort: the VM is killed below anyway.
        let _ = client.shutdown(Duration::from_millis(300));
        Ok(info)
    });
    let took = t0.elapsed();
    // A closed channel usually means QEMU is exiting: give it a moment to be reaped, so the
    // reason can say it exited (and with what).
    let exited = match &hello {
        Err(_) if took < deadline => vm
            .try_wait()
            .or_else(|| vm.wait_timeout(Duration::from_millis(300))),
        _ => vm.try_wait(),
    };
    let console = vm.log_tail(4000);
    vm.kill();
    drop(vm);
    let secs = if deadline.subsec_millis() == 0 {
        deadline.as_secs().to_string()
    } else {
        format!("{:.1}", deadline.as_secs_f64())
    };
    let decision = match hello {
        Ok(_) => Decision {
            accel: Accel::Kvm,
            reason: format!(
                "a test boot under KVM reached the agent in {} ms",
                took.as_millis()
            ),
        },
        Err(e) => {
            let hint = if console.contains("KVM internal error") {
                " (QEMU reported a KVM internal error)"
            } else {
                ""
            };
            match exited {
                Some(status) => tcg(format!(
                    "KVM: {} present but a test boot failed: QEMU exited ({status}) before the agent answered{hint}: {}; using TCG",
                    KVM_DEVICE,
                    tail(&console, 200)
                )),
                None if took >= deadline => tcg(format!(
                    "KVM: {KVM_DEVICE} present but a test boot did not reach the agent in {secs} s (nested/paravirtual KVM?){hint}; using TCG"
                )),
                None => tcg(format!(
                    "KVM: {KVM_DEVICE} present but a test boot did not reach the agent: {e}{hint}; using TCG"
                )),
            }
        }
    };
    (decision, true)
}

/// The last `max` bytes of `s`, on a character boundary.
fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests;
