//! Guest assets: where isola finds QEMU, the guest kernel and the static agent, and the initramfs
//! it assembles from the agent.
//!
//! Default search (each piece can be set in the `[vm]` table of `/etc/isola/config.toml`, see
//! [`AssetSettings`]):
//! - **QEMU**: `qemu-system-x86_64` on `PATH`; its version from `--version`.
//! - **Kernel**: `$ISOLA_KERNEL`, else the setting, else the cache entry of
//!   `vm/build-kernel.sh` whose key matches the `vm/kernel.config` this isola was built with
//!   (the key needs the installed `linux-source-6.1` version), else the newest
//!   `${ISOLA_CACHE:-/var/cache/isola}/kernel/*/vmlinux`. A path may name the `vmlinux` or a
//!   directory holding it. It must be an uncompressed ELF `vmlinux` with the PVH entry note.
//! - **Agent**: `$ISOLA_AGENT`, else the setting, else the first statically linked one of:
//!   `isola-agent` next to the running executable (for test binaries that cargo puts in
//!   `target/<profile>/deps`, also the directory above), and, in a build tree,
//!   `target/agent-static/release/isola-agent`, where `scripts/build-agent.sh` builds it (a
//!   plain `cargo build` of the workspace leaves cargo's dynamically linked `isola-agent` next to
//!   `isola`). It must be a statically linked x86-64 ELF binary: the guest has no libc.
//!
//! The initramfs (a `newc` cpio: `/init` = the agent, the directories `dev proc sys tmp run`,
//! `/dev/console`) is assembled by [`locate`] in the VM state directory, named after the agent's
//! sha256, so it is built once per agent binary; it is written to a temporary file and renamed
//! into place, so a reader never sees half of it. It is left uncompressed: under TCG the guest
//! unpacks a gzip archive of the agent more slowly than it copies the plain one (measured in
//! bench/RESULTS.md).
//!
//! What is learnt by reading or running a file (QEMU's version, the agent's hash, the kernel's
//! version) is remembered in `<state dir>/assets.json` against the file's device, inode, size and
//! modification time, so a `locate` on the hot path only `stat`s the files.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::accel::AccelChoice;
use crate::elf;
use crate::error::{Error, Result};

mod initramfs;
mod memo;

pub use initramfs::{initramfs, write_initramfs, Compression, INITRAMFS_COMPRESSION};
pub(crate) use memo::unique;
use memo::Memo;
#[cfg(test)]
use memo::MEMO_FILE;

/// The QEMU binary searched for on `PATH`.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";
/// The agent binary searched for next to the running executable.
pub const AGENT_BINARY: &str = "isola-agent";
/// Version of the initramfs layout; part of the file name, so a change of layout rebuilds it.
pub const INITRAMFS_LAYOUT: u32 = 1;
/// Bytes the agent may embed to state its version: the marker, the version, a NUL.
pub const AGENT_VERSION_MARKER: &[u8] = b"ISOLA_AGENT_VERSION=";
/// Longest time `qemu-system-x86_64 --version` may take.
const QEMU_VERSION_TIMEOUT: Duration = Duration::from_secs(5);

/// isola's kernel config fragment and build script, for the cache key of `vm/build-kernel.sh`.
const KERNEL_CONFIG: &str = include_str!("../../../vm/kernel.config");
const BUILD_KERNEL_SH: &str = include_str!("../../../vm/build-kernel.sh");
/// The Debian package the kernel is built from (part of the cache key).
const KERNEL_SOURCE_PACKAGE: &str = "linux-source-6.1";
const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// Where isola finds its VM pieces (the `[vm]` table of the configuration file); each `None`
/// means the default search described in the [module documentation](self).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetSettings {
    /// The QEMU binary (`qemu-system-x86_64`).
    pub qemu: Option<PathBuf>,
    /// The guest kernel: an uncompressed `vmlinux` with a PVH note, or a directory holding one
    /// (`$ISOLA_KERNEL` overrides it).
    pub kernel: Option<PathBuf>,
    /// The statically linked `isola-agent` binary (`$ISOLA_AGENT` overrides it).
    pub agent: Option<PathBuf>,
    /// KVM, TCG, or probe (`auto`, the default).
    pub accelerator: Option<AccelChoice>,
    /// Start VMs by restoring a VM template (see [`crate::template`]) rather than booting the
    /// guest's kernel each time; `None` means yes.
    pub template: Option<bool>,
}

/// The VM pieces found by [`locate`], ready for [`crate::qemu::VmConfig`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Assets {
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// QEMU's version, as it reports it (`7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)`).
    pub qemu_version: String,
    /// The guest kernel (`vmlinux`).
    pub kernel: PathBuf,
    /// The kernel's release (`6.1.192-isola`).
    pub kernel_version: String,
    /// The initramfs holding the agent as `/init`.
    pub initramfs: PathBuf,
    /// The agent's version when the binary states it, and the start of its sha256
    /// (`0.1.0 (sha256:0123456789abcdef)`, or `sha256:0123456789abcdef`).
    pub agent_version: String,
    /// sha256 of the agent binary, hex (the initramfs is made from it alone).
    pub agent_sha256: String,
    /// sha256 of the guest kernel, hex.
    pub kernel_sha256: String,
}

/// QEMU as found by [`find_qemu`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Qemu {
    /// The binary.
    pub path: PathBuf,
    /// Its version.
    pub version: String,
}

/// The guest kernel as found by [`find_kernel`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kernel {
    /// The `vmlinux`.
    pub path: PathBuf,
    /// Its release.
    pub version: String,
}

/// The agent as found by [`find_agent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// The binary.
    pub path: PathBuf,
    /// sha256 of the binary, hex.
    pub sha256: String,
    /// The version the binary states (after [`AGENT_VERSION_MARKER`]), if it does.
    pub version: Option<String>,
}

impl Agent {
    /// `0.1.0 (sha256:0123456789abcdef)` or `sha256:0123456789abcdef`.
    pub fn describe(&self) -> String {
        let short = &self.sha256[..16.min(self.sha256.len())];
        match &self.version {
            Some(v) => format!("{v} (sha256:{short})"),
            None => format!("sha256:{short}"),
        }
    }
}

/// The configuration file named in messages: `$ISOLA_CONFIG`, else `/etc/isola/config.toml`.
pub fn config_file() -> PathBuf {
    std::env::var_os("ISOLA_CONFIG")
        .map_or_else(|| PathBuf::from("/etc/isola/config.toml"), PathBuf::from)
}

/// The root of the kernel cache: `${ISOLA_CACHE:-/var/cache/isola}/kernel`.
pub fn kernel_cache() -> PathBuf {
    std::env::var_os("ISOLA_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/isola"), PathBuf::from)
        .join("kernel")
}

/// Finds QEMU, the guest kernel and the agent, and assembles (or reuses) the initramfs in
/// `state_dir` (`<isola root>/vm`, created with mode 0700).
///
/// # Errors
/// [`Error::Asset`] naming the missing or unusable piece and how to get it (the first one
/// found, in the order QEMU, kernel, agent); [`Error::Io`] when the state directory or the
/// initramfs cannot be written.
pub fn locate(settings: &AssetSettings, state_dir: &Path) -> Result<Assets> {
    locate_in(settings, state_dir, &Env::read())
}

fn locate_in(settings: &AssetSettings, state_dir: &Path, env: &Env) -> Result<Assets> {
    create_state_dir(state_dir)?;
    let mut memo = Memo::load(state_dir);
    let qemu = find_qemu_memo(settings, &mut memo)?;
    let kernel = find_kernel_memo(settings, env, &mut memo)?;
    let agent = find_agent_memo(settings, env, &mut memo)?;
    let kernel_sha256 = memo
        .get_or("kernel-sha256", &kernel.path, |p| {
            let data = fs::read(p).map_err(|e| Error::io("read", p, e))?;
            Ok(hex::encode(Sha256::digest(&data)).into())
        })?
        .as_str()
        .unwrap_or_default()
        .to_owned();
    memo.save(state_dir);
    let initramfs = initramfs(&agent, state_dir)?;
    Ok(Assets {
        qemu: qemu.path,
        qemu_version: qemu.version,
        kernel: kernel.path,
        kernel_version: kernel.version,
        initramfs,
        agent_version: agent.describe(),
        agent_sha256: agent.sha256,
        kernel_sha256,
    })
}

/// Finds QEMU and asks its version.
///
/// # Errors
/// [`Error::Asset`] when it is missing or does not answer `--version`.
pub fn find_qemu(settings: &AssetSettings) -> Result<Qemu> {
    find_qemu_memo(settings, &mut Memo::default())
}

/// Finds the guest kernel and its release.
///
/// # Errors
/// [`Error::Asset`] when there is none, or it is not a PVH-bootable `vmlinux`.
pub fn find_kernel(settings: &AssetSettings) -> Result<Kernel> {
    find_kernel_memo(settings, &Env::read(), &mut Memo::default())
}

/// Finds the agent, checks that it is a static x86-64 binary and hashes it.
///
/// # Errors
/// [`Error::Asset`] when it is missing, dynamically linked or not an x86-64 ELF binary.
pub fn find_agent(settings: &AssetSettings) -> Result<Agent> {
    find_agent_memo(settings, &Env::read(), &mut Memo::default())
}

/// The environment's overrides of the settings: `ISOLA_KERNEL`, `ISOLA_AGENT`.
#[derive(Debug, Default)]
struct Env {
    kernel: Option<PathBuf>,
    agent: Option<PathBuf>,
}

impl Env {
    fn read() -> Env {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Env {
            kernel: var("ISOLA_KERNEL"),
            agent: var("ISOLA_AGENT"),
        }
    }
}

fn create_state_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("create", dir, e))
}

// --- QEMU -----------------------------------------------------------------------------------

fn find_qemu_memo(settings: &AssetSettings, memo: &mut Memo) -> Result<Qemu> {
    let cfg = config_file();
    let path = match &settings.qemu {
        Some(p) => {
            if !is_executable(p) {
                return Err(Error::Asset(format!(
                    "QEMU not found at {} ([vm] qemu in {}): install qemu-system-x86 or fix the setting",
                    p.display(),
                    cfg.display()
                )));
            }
            p.clone()
        }
        None => search_path(QEMU_BINARY).ok_or_else(|| {
            Error::Asset(format!(
                "QEMU not found: no {QEMU_BINARY} on PATH; install it (apt-get install qemu-system-x86) or set [vm] qemu in {}",
                cfg.display()
            ))
        })?,
    };
    let version = memo.get_or("qemu", &path, |p| {
        qemu_version(p).map(serde_json::Value::String)
    })?;
    Ok(Qemu {
        path,
        version: version.as_str().unwrap_or_default().to_owned(),
    })
}

/// `PATH` lookup of an executable file.
fn search_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `QEMU --version` (at most [`QEMU_VERSION_TIMEOUT`]) and returns what follows
/// `QEMU emulator version` on its first line.
fn qemu_version(qemu: &Path) -> Result<String> {
    let unusable = |why: String| {
        Error::Asset(format!(
            "QEMU at {} is not usable: {why}; reinstall qemu-system-x86 or set [vm] qemu in {}",
            qemu.display(),
            config_file().display()
        ))
    };
    let mut child = Command::new(qemu)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| unusable(format!("cannot run it ({e})")))?;
    let deadline = Instant::now() + QEMU_VERSION_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(unusable(format!(
                    "`--version` did not answer within {} s",
                    QEMU_VERSION_TIMEOUT.as_secs()
                )));
            }
        }
    };
    let mut out = String::new();
    if let Some(mut so) = child.stdout.take() {
        let _ = so.read_to_string(&mut out);
    }
    let first = out.lines().next().unwrap_or_default().trim();
    match first.strip_prefix("QEMU emulator version ") {
        Some(v) if status.success() => Ok(v.trim().to_owned()),
        _ => Err(unusable(format!(
            "`--version` printed {first:?} ({status})"
        ))),
    }
}

// --- kernel ---------------------------------------------------------------------------------

fn find_kernel_memo(settings: &AssetSettings, env: &Env, memo: &mut Memo) -> Result<Kernel> {
    let cfg = config_file();
    let explicit = env
        .kernel
        .clone()
        .map(|p| (p, "ISOLA_KERNEL".to_owned()))
        .or_else(|| {
            settings
                .kernel
                .clone()
                .map(|p| (p, format!("[vm] kernel in {}", cfg.display())))
        });
    let path = match explicit {
        Some((p, from)) => {
            let p = if p.is_dir() { p.join("vmlinux") } else { p };
            if !p.is_file() {
                return Err(Error::Asset(format!(
                    "guest kernel {} (from {from}) not found: run vm/build-kernel.sh, which prints the directory holding vmlinux, or fix the setting",
                    p.display()
                )));
            }
            p
        }
        None => cached_kernel(memo).ok_or_else(|| {
            Error::Asset(format!(
                "guest kernel not found (no {}/*/vmlinux): run vm/build-kernel.sh or set [vm] kernel in {}",
                kernel_cache().display(),
                cfg.display()
            ))
        })?,
    };
    let info = elf::inspect(&path).map_err(|e| {
        Error::Asset(format!(
            "guest kernel {}: {e}; it must be the uncompressed vmlinux of vm/build-kernel.sh",
            path.display()
        ))
    })?;
    if info.machine != elf::EM_X86_64 || !info.pvh {
        return Err(Error::Asset(format!(
            "guest kernel {} has no PVH entry note (or is not x86-64): QEMU's microvm boots isola's vmlinux through PVH; use the one built by vm/build-kernel.sh",
            path.display()
        )));
    }
    let version = memo.get_or("kernel", &path, |p| {
        Ok(serde_json::Value::String(kernel_release(p)))
    })?;
    Ok(Kernel {
        path,
        version: version.as_str().unwrap_or_default().to_owned(),
    })
}

/// The cache entry for this isola's kernel config, else the newest complete one.
fn cached_kernel(memo: &mut Memo) -> Option<PathBuf> {
    let root = kernel_cache();
    if let Some(key) = kernel_key(memo) {
        let p = root.join(&key).join("vmlinux");
        if p.is_file() {
            return Some(p);
        }
        tracing::debug!(key, "no cached kernel for this config; taking the newest");
    }
    fs::read_dir(&root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path().join("vmlinux"))
        .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
}

/// The cache key `vm/build-kernel.sh` gives this isola's kernel config, when the version of
/// the installed `linux-source-6.1` package can be read.
fn kernel_key(memo: &mut Memo) -> Option<String> {
    let version = memo
        .get_or("dpkg", Path::new(DPKG_STATUS), |p| {
            Ok(dpkg_version(p, KERNEL_SOURCE_PACKAGE).map_or(serde_json::Value::Null, Into::into))
        })
        .ok()?;
    Some(kernel_key_for(version.as_str()?))
}

/// `sha256("kernel.config\0" config "\0" package "\0" version "\0build-kernel.sh\0" script)`,
/// first 16 hex digits: what `vm/build-kernel.sh` computes.
fn kernel_key_for(source_version: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"kernel.config\0");
    h.update(KERNEL_CONFIG.as_bytes());
    h.update(format!("\0{KERNEL_SOURCE_PACKAGE}\0{source_version}\0").as_bytes());
    h.update(b"build-kernel.sh\0");
    h.update(BUILD_KERNEL_SH.as_bytes());
    hex::encode(h.finalize())[..16].to_owned()
}

/// The version of an installed package, from dpkg's status file.
fn dpkg_version(status: &Path, package: &str) -> Option<String> {
    let text = fs::read_to_string(status).ok()?;
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        (field("Package") == Some(package) && field("Status") == Some("install ok installed"))
            .then(|| field("Version").map(str::to_owned))
            .flatten()
    })
}

/// The kernel's release: the `version` file that `vm/build-kernel.sh` writes next to it, else
/// the `Linux version X` banner inside the `vmlinux`, else `unknown`.
fn kernel_release(vmlinux: &Path) -> String {
    if let Some(v) = vmlinux
        .parent()
        .and_then(|d| fs::read_to_string(d.join("version")).ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty() && v.len() < 100)
    {
        return v;
    }
    fs::read(vmlinux)
        .ok()
        .and_then(|data| {
            let needle = b"Linux version ";
            let at = find(&data, needle)? + needle.len();
            let rest = &data[at..data.len().min(at + 100)];
            let end = rest.iter().position(|&c| c == b' ' || c == 0)?;
            Some(String::from_utf8_lossy(&rest[..end]).into_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// First position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(i) = hay[from..].iter().position(|&c| c == first) {
        let at = from + i;
        if hay[at + 1..].starts_with(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

// --- agent ----------------------------------------------------------------------------------

fn find_agent_memo(settings: &AssetSettings, env: &Env, memo: &mut Memo) -> Result<Agent> {
    let cfg = config_file();
    let build_hint = "build it with scripts/build-agent.sh (cargo rustc -p isola-agent --release --bin isola-agent -- -C target-feature=+crt-static), which puts it next to isola";
    let explicit = env
        .agent
        .clone()
        .map(|p| (p, "ISOLA_AGENT".to_owned()))
        .or_else(|| {
            settings
                .agent
                .clone()
                .map(|p| (p, format!("[vm] agent in {}", cfg.display())))
        });
    let path = match explicit {
        Some((p, _)) if p.is_file() => p,
        Some((p, from)) => {
            return Err(Error::Asset(format!(
                "guest agent {} (from {from}) not found: {build_hint}, or fix the setting",
                p.display(),
            )))
        }
        None => {
            let candidates = default_agent_paths();
            // The first static one; else the first there is (its error says what is wrong).
            let is_static = |p: &&PathBuf| {
                elf::inspect(p).is_ok_and(|i| i.interp.is_none() && i.machine == elf::EM_X86_64)
            };
            let found = candidates
                .iter()
                .find(|p| p.is_file() && is_static(p))
                .or_else(|| candidates.iter().find(|p| p.is_file()));
            match found {
                Some(p) => p.clone(),
                None => {
                    let tried = candidates
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" or ");
                    return Err(Error::Asset(format!(
                        "guest agent not found at {tried}: {build_hint}; or set [vm] agent in {}",
                        cfg.display()
                    )));
                }
            }
        }
    };
    let info = elf::inspect(&path)
        .map_err(|e| Error::Asset(format!("guest agent {}: {e}; {build_hint}", path.display())))?;
    if info.machine != elf::EM_X86_64 {
        return Err(Error::Asset(format!(
            "guest agent {} is not an x86-64 binary; {build_hint}",
            path.display()
        )));
    }
    if let Some(interp) = info.interp {
        return Err(Error::Asset(format!(
            "guest agent {} is dynamically linked (interpreter {interp}) and the guest has no libc: {build_hint} (a plain cargo build leaves a dynamic one there)",
            path.display()
        )));
    }
    let facts = memo.get_or("agent", &path, |p| {
        let (sha256, version) = hash_agent(p)?;
        Ok(serde_json::json!({ "sha256": sha256, "version": version }))
    })?;
    let sha256 = facts["sha256"].as_str().unwrap_or_default().to_owned();
    if sha256.len() != 64 {
        return Err(Error::Asset(format!(
            "guest agent {}: could not hash it",
            path.display()
        )));
    }
    Ok(Agent {
        path,
        sha256,
        version: facts["version"].as_str().map(str::to_owned),
    })
}

/// `isola-agent` next to the running executable; for an executable in a directory named `deps`
/// (cargo's test binaries), also the directory above.
fn default_agent_paths() -> Vec<PathBuf> {
    let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    else {
        return vec![PathBuf::from(AGENT_BINARY)];
    };
    let mut v = vec![dir.join(AGENT_BINARY)];
    let mut profile = dir.clone();
    if dir.file_name().is_some_and(|n| n == "deps") {
        if let Some(up) = dir.parent() {
            v.push(up.join(AGENT_BINARY));
            profile = up.to_path_buf();
        }
    }
    // In a build tree (`target/<profile>/isola`), where scripts/build-agent.sh builds the static
    // agent: `cargo build` of the workspace puts a dynamically linked one next to isola.
    if let Some(target) = profile.parent() {
        v.push(target.join("agent-static/release").join(AGENT_BINARY));
    }
    v
}

/// sha256 of the agent, and the version it states after [`AGENT_VERSION_MARKER`], if any.
fn hash_agent(path: &Path) -> Result<(String, Option<String>)> {
    let data = fs::read(path).map_err(|e| Error::io("read", path, e))?;
    let sha = hex::encode(Sha256::digest(&data));
    let version = find(&data, AGENT_VERSION_MARKER).and_then(|at| {
        let rest = &data[at + AGENT_VERSION_MARKER.len()..];
        let end = rest.iter().take(64).position(|&c| c == 0)?;
        let v = std::str::from_utf8(&rest[..end]).ok()?;
        (!v.is_empty() && v.chars().all(|c| c.is_ascii_graphic())).then(|| v.to_owned())
    });
    Ok((sha, version))
}

#[cfg(test)]
mod tests;
