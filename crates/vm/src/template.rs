//! VM templates: a guest booted once to its agent's Hello, paused, and saved, then restored into
//! as many VMs ("clones") as wanted, as Kata Containers' VM templating does.
//!
//! A template is a directory `<store>/<key>/` holding:
//! ```text
//! memory      the guest's RAM (a sparse file of the guest's size; QEMU mapped it shared)
//! state       QEMU's device state, saved by migration with `x-ignore-shared` (RAM is not in it)
//! meta.json   what the template was made from and when (Meta)
//! ```
//! A clone maps `memory` private (copy-on-write), so pages no clone has written stay in the page
//! cache once and are shared by every clone; it loads `state` (`-incoming defer`, then
//! `migrate-incoming`) and continues where the template stopped: with its agent waiting for the
//! host's first request. The template's Hello went to its maker, so the host opens with
//! `Request::Restored` (fresh entropy, the wall clock) instead of waiting for one.
//!
//! The [key](key) names everything that must match for a saved guest to be valid in a new VM: the
//! QEMU binary and version, the kernel's and the agent's hashes (the initramfs is made from the
//! agent alone), the accelerator, vCPUs, RAM size, the kernel command line and the device layout
//! (the 9p tags, in order; the caller's layout version). Devices must be the same, not their
//! backends: a clone's 9p shares point at the container's directories, the template's at an empty
//! one, which works because the guest had mounted none of them when it was saved.
//!
//! # Threat model
//! A template's files are written by QEMU for a guest that ran only isola's kernel and agent (no
//! container code ever ran in it), in a directory of the store root (mode 0700) that is created
//! under a lock, filled as `.tmp-<key>-<unique>` and renamed into place whole, so no reader sees
//! half a template. Opening one refuses symlinks (the store, the template directory, each file)
//! and anything that is not a regular file of the expected size. Clones never share writable
//! state: each maps the RAM file private and reads the state file once. A clone's guest is not
//! trusted any more than a cold-booted one; nothing it writes reaches the template.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use isola_proto::{Client, Request, Response, MIN_RESTORE_ENTROPY};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::assets::Assets;
use crate::error::{Error, Result};
use crate::qemu::{GuestMemory, Vm, VmConfig, INCOMING_FD};

/// Version of the template format (the files and how they are made); part of every key.
pub const FORMAT: u32 = 1;
/// The RAM file of a template.
pub const MEMORY_FILE: &str = "memory";
/// The saved device state of a template.
pub const STATE_FILE: &str = "state";
/// The description of a template.
pub const META_FILE: &str = "meta.json";
/// Largest `meta.json` read.
const META_MAX: u64 = 64 * 1024;
/// Longest one QMP command may take.
const QMP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a template was made from; `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// [`FORMAT`] when it was made.
    pub format: u32,
    /// Its [`key`].
    pub key: String,
    /// Guest RAM, in MiB.
    pub memory_mib: u64,
    /// The 9p tags of its devices, in order.
    pub tags: Vec<String>,
    /// Guest uptime when it was saved, in milliseconds: a clone's guest boot time is this much
    /// before its restore.
    pub guest_uptime_ms: u64,
    /// The agent's version, as its Hello said.
    pub agent_version: String,
    /// How long making it took (boot to Hello, then saving), in milliseconds.
    pub build_ms: u64,
    /// When it was made, in milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
}

/// A template found in, or just added to, a [`Store`].
#[derive(Debug, Clone)]
pub struct Template {
    dir: PathBuf,
    /// Its description.
    pub meta: Meta,
}

impl Template {
    /// The template's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The template key of VMs started with `config` from `assets`, for the caller's device
/// `layout` version: 32 hex digits of a sha256 over everything a saved guest depends on (see the
/// [module documentation](self)). The shares' host paths and read-only flags are not part of it.
pub fn key(config: &VmConfig, assets: &Assets, layout: u32) -> String {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &str| {
        h.update(name.as_bytes());
        h.update(b"=");
        h.update(value.as_bytes());
        h.update(b"\0");
    };
    field("format", &FORMAT.to_string());
    field("layout", &layout.to_string());
    field("qemu", &config.qemu.to_string_lossy());
    field("qemu-version", &assets.qemu_version);
    field("kernel-sha256", &assets.kernel_sha256);
    field("agent-sha256", &assets.agent_sha256);
    field(
        "initramfs-layout",
        &crate::assets::INITRAMFS_LAYOUT.to_string(),
    );
    field("accel", &config.accel.to_string());
    field("vcpus", &config.vcpus.to_string());
    field("memory-mib", &config.memory_mib.to_string());
    field("append", &config.append());
    let tags: Vec<&str> = config.shares.iter().map(|s| s.tag.as_str()).collect();
    field("tags", &tags.join(","));
    hex::encode(h.finalize())[..32].to_owned()
}

/// The templates of one store root: `<root>/vm/templates`.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// A key is 32 lower-case hex digits: nothing else names a directory of the store.
fn valid_key(key: &str) -> bool {
    key.len() == 32
        && key
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// `path` must be a real directory (not a symlink) owned by this user.
fn check_dir(path: &Path) -> Result<()> {
    let m = fs::symlink_metadata(path).map_err(|e| Error::io("stat", path, e))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if !m.file_type().is_dir() || m.uid() != euid {
        return Err(Error::Invalid(format!(
            "{} is not a directory owned by user {euid} (symlinks are refused)",
            path.display()
        )));
    }
    Ok(())
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Store {
    /// The store in `dir` (nothing is touched yet).
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn create(&self) -> Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| Error::io("create", &self.dir, e))?;
        check_dir(&self.dir)
    }

    /// The template with `key`, if there is a complete one.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad key, or when the store, the template's directory or one of
    /// its files is a symlink, not owned by this user, or malformed; [`Error::Io`] when it cannot
    /// be read.
    pub fn find(&self, key: &str) -> Result<Option<Template>> {
        if !valid_key(key) {
            return Err(Error::Invalid(format!("template key {key:?}")));
        }
        let dir = self.dir.join(key);
        match fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("stat", &dir, e)),
            Ok(_) => {}
        }
        check_dir(&self.dir)?;
        check_dir(&dir)?;
        let meta_path = dir.join(META_FILE);
        let mut text = String::new();
        File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&meta_path)
            .and_then(|f| f.take(META_MAX).read_to_string(&mut text))
            .map_err(|e| Error::io("read", &meta_path, e))?;
        let meta: Meta = serde_json::from_str(&text)
            .map_err(|e| Error::Invalid(format!("{}: {e}", meta_path.display())))?;
        if meta.key != key || meta.format != FORMAT {
            return Err(Error::Invalid(format!(
                "{}: made for key {} (format {}), not {key} (format {FORMAT})",
                meta_path.display(),
                meta.key,
                meta.format
            )));
        }
        Ok(Some(Template { dir, meta }))
    }

    /// The template with `key`; when there is none, makes it with `make` (which gets an empty
    /// directory to fill with [`MEMORY_FILE`] and [`STATE_FILE`] and returns the [`Meta`], whose
    /// `key` and `format` are filled in here; [`make`] is the real one) under
    /// a lock, so concurrent callers make it once: the others wait at most `lock_wait` for the
    /// maker. Returns the template and whether this call made it.
    ///
    /// A template directory that [`Store::find`] refuses (damaged, a symlink, ...) is replaced.
    ///
    /// # Errors
    /// [`Error::Boot`] when the lock is not had within `lock_wait`; `make`'s errors;
    /// [`Error::Invalid`] when the store is a symlink or not this user's; [`Error::Io`] when the
    /// store cannot be written.
    pub fn get_or_make(
        &self,
        key: &str,
        lock_wait: Duration,
        make: impl FnOnce(&Path) -> Result<Meta>,
    ) -> Result<(Template, bool)> {
        if let Ok(Some(t)) = self.find(key) {
            return Ok((t, false));
        }
        self.create()?;
        let _lock = self.lock(key, lock_wait)?;
        match self.find(key) {
            Ok(Some(t)) => return Ok((t, false)),
            Ok(None) => {}
            Err(e) => {
                // Templates are published whole: this one is damaged, or not isola's.
                tracing::warn!(key, "replacing a template that cannot be used: {e}");
                self.discard(key);
            }
        }
        self.remove_leftovers(key);
        let tmp = self
            .dir
            .join(format!(".tmp-{key}-{}", crate::assets::unique()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        let made = make(&tmp).and_then(|mut meta| {
            meta.key = key.to_owned();
            meta.format = FORMAT;
            let path = tmp.join(META_FILE);
            let data = serde_json::to_vec_pretty(&meta).unwrap_or_default();
            write_new(&path, &data)?;
            sync_dir(&tmp)?;
            let dest = self.dir.join(key);
            fs::rename(&tmp, &dest).map_err(|e| Error::io("rename into place", &dest, e))?;
            sync_dir(&self.dir)?;
            Ok(Template { dir: dest, meta })
        });
        match made {
            Ok(t) => Ok((t, true)),
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    /// Removes the template with `key` (a clone of it failed): the next caller makes it anew.
    /// Clones running from it keep their open files.
    pub fn discard(&self, key: &str) {
        if !valid_key(key) || check_dir(&self.dir).is_err() {
            return;
        }
        let dir = self.dir.join(key);
        let doomed = self
            .dir
            .join(format!(".tmp-{key}-discarded-{}", crate::assets::unique()));
        if fs::rename(&dir, &doomed).is_ok() {
            let _ = fs::remove_dir_all(&doomed);
        }
    }

    /// Half-made templates of `key` whose maker died (the caller holds the key's lock).
    fn remove_leftovers(&self, key: &str) {
        let prefix = format!(".tmp-{key}-");
        for e in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    /// An exclusive lock on `<store>/.lock-<key>`, waited for at most `wait`.
    fn lock(&self, key: &str, wait: Duration) -> Result<File> {
        let path = self.dir.join(format!(".lock-{key}"));
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        let deadline = Instant::now() + wait;
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(file),
                Err(rustix::io::Errno::WOULDBLOCK) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(Error::Boot(format!(
                        "another process has been making template {key} for over {wait:?}"
                    )))
                }
                Err(e) => return Err(Error::io("lock", &path, e.into())),
            }
        }
    }
}

/// Writes `data` to a new file (never an existing one or a symlink), mode 0600, and syncs it.
fn write_new(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io("create", path, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("write", path, e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync", dir, e))
}

/// Makes a template in `dir` (empty, from [`Store::get_or_make`]): boots `config` with its RAM
/// in `dir/memory` (shared), waits at most `boot_deadline` for the agent's Hello, pauses the
/// guest, saves its device state to `dir/state` (migration with `x-ignore-shared`, to a
/// descriptor handed over QMP: no helper process, so QEMU's `-sandbox` stays as it is) and ends
/// QEMU. `config.shares` must be the full device layout the clones will have.
///
/// # Errors
/// [`Error::Invalid`] for a config that cannot be a template; [`Error::Io`] for the files;
/// [`Error::Boot`] when the guest does not greet in time or QEMU fails to save.
pub fn make(config: &VmConfig, dir: &Path, boot_deadline: Duration) -> Result<Meta> {
    if config.incoming.is_some() {
        return Err(Error::Invalid(
            "a template boots its kernel: no incoming state".into(),
        ));
    }
    let t0 = Instant::now();
    let memory = dir.join(MEMORY_FILE);
    let f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&memory)
        .map_err(|e| Error::io("create", &memory, e))?;
    f.set_len(config.memory_mib << 20)
        .map_err(|e| Error::io("size", &memory, e))?;
    drop(f);
    let mut config = config.clone();
    config.memory = GuestMemory::File {
        path: memory.clone(),
        shared: true,
    };
    let mut vm = Vm::spawn(&config)?;
    // The agent powers the guest off when the host closes its channel: it stays open until
    // QEMU has ended, so the saved guest is one whose host is still there.
    let channel = vm.agent()?;
    let reader = channel
        .try_clone()
        .map_err(|e| Error::io("duplicate", "agent channel", e))?;
    let hello = Client::new(reader)
        .wait_hello(boot_deadline)
        .map_err(|e| {
            Error::Boot(format!(
                "the template's guest did not reach its agent within {boot_deadline:?}: {e}; console: {}",
                vm.log_tail(400)
            ))
        })?;
    let state = dir.join(STATE_FILE);
    save(&mut vm, &state, boot_deadline)?;
    vm.quit(Duration::from_secs(2));
    drop(channel);
    for path in [&memory, &state] {
        File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("sync", path, e))?;
    }
    Ok(Meta {
        format: FORMAT,
        key: String::new(),
        memory_mib: config.memory_mib,
        tags: config.shares.iter().map(|s| s.tag.clone()).collect(),
        guest_uptime_ms: hello.hello_ms,
        agent_version: hello.agent_version,
        build_ms: t0.elapsed().as_millis() as u64,
        created_unix_ms: now_unix_ms(),
    })
}

/// Pauses the guest and saves its device state (not its RAM) to a new file `state`.
fn save(vm: &mut Vm, state: &Path, deadline: Duration) -> Result<()> {
    let qmp = vm.qmp();
    qmp.execute("stop", serde_json::Value::Null, QMP_TIMEOUT)?;
    qmp.execute(
        "migrate-set-capabilities",
        json!({"capabilities": [{"capability": "x-ignore-shared", "state": true}]}),
        QMP_TIMEOUT,
    )?;
    let file = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(state)
        .map_err(|e| Error::io("create", state, e))?;
    qmp.execute_with_fd(
        "getfd",
        json!({"fdname": "isola-state"}),
        file.as_fd(),
        QMP_TIMEOUT,
    )?;
    drop(file);
    qmp.execute("migrate", json!({"uri": "fd:isola-state"}), QMP_TIMEOUT)?;
    let end = Instant::now() + deadline;
    loop {
        let r = qmp.execute("query-migrate", serde_json::Value::Null, QMP_TIMEOUT)?;
        match r.get("status").and_then(serde_json::Value::as_str) {
            Some("completed") => return Ok(()),
            Some(s @ ("failed" | "cancelled")) => {
                return Err(Error::Boot(format!(
                    "saving the template's state {s}: {}",
                    r.get("error-desc").unwrap_or(&serde_json::Value::Null)
                )))
            }
            _ if Instant::now() >= end => {
                return Err(Error::Boot(format!(
                    "saving the template's state took over {deadline:?}"
                )))
            }
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// A VM restored from a template, its agent told so and ready for requests.
#[derive(Debug)]
pub struct Restored {
    /// The running VM.
    pub vm: Vm,
    /// isola's end of the agent's channel (taken from `vm`).
    pub channel: std::os::unix::net::UnixStream,
    /// QEMU's start until its monitor answered and the saved state was asked for, in ms.
    pub vmm_ms: u64,
    /// Loading the saved state until the guest ran again, in ms.
    pub load_ms: u64,
    /// The guest running again until its agent answered `Restored`, in ms.
    pub agent_ms: u64,
}

/// Starts a clone of `template` with `config` (whose shares are the container's, with the
/// template's tags in the same order) and waits at most `deadline` for its agent: QEMU maps the
/// template's RAM private, loads its state, continues the guest, and the agent answers
/// `Restored` (fresh entropy from the host's `/dev/urandom`, the host's wall clock).
///
/// # Errors
/// [`Error::Invalid`] when `config` does not fit the template; [`Error::Io`] when a file or the
/// host's random device fails; [`Error::Boot`] when QEMU cannot load the state or the agent does
/// not answer in time (the VM is ended).
pub fn restore(config: &VmConfig, template: &Template, deadline: Duration) -> Result<Restored> {
    let tags: Vec<String> = config.shares.iter().map(|s| s.tag.clone()).collect();
    if tags != template.meta.tags || config.memory_mib != template.meta.memory_mib {
        return Err(Error::Invalid(format!(
            "the VM ({} MiB, 9p tags {tags:?}) does not fit template {} ({} MiB, tags {:?})",
            config.memory_mib, template.meta.key, template.meta.memory_mib, template.meta.tags
        )));
    }
    let t0 = Instant::now();
    let end = t0 + deadline;
    let mut config = config.clone();
    config.memory = GuestMemory::File {
        path: template.dir.join(MEMORY_FILE),
        shared: false,
    };
    config.incoming = Some(template.dir.join(STATE_FILE));
    let mut vm = Vm::spawn(&config)?;
    let left = || {
        end.saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let qmp = vm.qmp();
    qmp.execute(
        "migrate-set-capabilities",
        json!({"capabilities": [{"capability": "x-ignore-shared", "state": true}]}),
        left().min(QMP_TIMEOUT),
    )?;
    qmp.execute(
        "migrate-incoming",
        json!({ "uri": format!("fd:{INCOMING_FD}") }),
        left().min(QMP_TIMEOUT),
    )?;
    let t_asked = t0.elapsed();
    loop {
        let status = vm
            .qmp()
            .execute(
                "query-status",
                serde_json::Value::Null,
                left().min(QMP_TIMEOUT),
            )
            .map_err(|e| {
                Error::Boot(format!(
                    "QEMU failed loading template {}: {e}; console: {}",
                    template.meta.key,
                    vm.log_tail(400)
                ))
            })?;
        match status.get("status").and_then(serde_json::Value::as_str) {
            Some("inmigrate") if Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Some("running") => break,
            Some("paused" | "postmigrate" | "prelaunch") => {
                vm.qmp()
                    .execute("cont", serde_json::Value::Null, left().min(QMP_TIMEOUT))?;
                break;
            }
            other => {
                return Err(Error::Boot(format!(
                "QEMU did not load template {} within {deadline:?} (status {other:?}); console: {}",
                template.meta.key,
                vm.log_tail(400)
            )))
            }
        }
    }
    let t_running = t0.elapsed();
    let channel = vm.agent()?;
    let mut entropy = vec![0u8; MIN_RESTORE_ENTROPY];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut entropy))
        .map_err(|e| Error::io("read", "/dev/urandom", e))?;
    let unix_time_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let reader = channel
        .try_clone()
        .map_err(|e| Error::io("duplicate", "agent channel", e))?;
    let answer = Client::new(reader).request(
        Request::Restored {
            unix_time_ns,
            entropy,
        },
        left(),
    );
    match answer {
        Ok(Response::Done) => {}
        Ok(other) => {
            return Err(Error::Agent(format!(
                "Restored: unexpected answer {other:?}"
            )))
        }
        Err(e) => {
            return Err(Error::Boot(format!(
                "the agent restored from template {} did not answer: {e}; console: {}",
                template.meta.key,
                vm.log_tail(400)
            )))
        }
    }
    let ms = |d: Duration| d.as_millis() as u64;
    Ok(Restored {
        vm,
        channel,
        vmm_ms: ms(t_asked),
        load_ms: ms(t_running - t_asked),
        agent_ms: ms(t0.elapsed() - t_running),
    })
}

#[cfg(test)]
mod tests;
