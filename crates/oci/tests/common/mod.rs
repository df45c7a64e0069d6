//! Harness of the privileged `isola-oci` tests: a busybox bundle with the static probe at `/probe`,
//! a private state root per test, helpers to run `isola-oci`, and checks that nothing is left behind
//! (mounts, cgroups, state) when a test ends.
//!
//! Every test starts with [`Ctx::new`], which returns `None` (after printing why) when the test cannot
//! run here: not root. Under `CI` a missing requirement is a failure, not a skip.

#![allow(dead_code)]

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The `isola-oci` binary under test.
pub const OCI: &str = env!("CARGO_BIN_EXE_isola-oci");

/// How long one `isola-oci` command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// Host UID/GID that container root maps to in the user-namespace tests.
pub const USERNS_BASE: u32 = 100_000;

/// Whether a missing requirement must fail (in CI) rather than skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Prints why `test` cannot run, or panics when running in CI.
pub fn skip(test: &str, why: &str) {
    if in_ci() {
        panic!("{test}: {why} (required in CI)");
    }
    eprintln!("skipped: {test}: {why}");
}

/// Whether this process is root; prints the skip otherwise.
pub fn need_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    skip(test, "needs root");
    false
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Holds an exclusive `flock` on a file for as long as it lives.
struct FileLock(fs::File);

impl FileLock {
    fn take(path: &Path) -> Self {
        use std::os::fd::AsRawFd as _;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open lock {}: {e}", path.display()));
        // SAFETY: flock on a file descriptor we own; the lock is released when it closes.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(r, 0, "flock {}", path.display());
        Self(f)
    }
}

/// The static probe: `$ISOLA_PROBE`, or built once per test binary (under a file lock, since test
/// binaries run in parallel) and copied aside so that a later non-static build cannot replace it.
pub fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        if let Some(p) = std::env::var_os("ISOLA_PROBE") {
            return PathBuf::from(p);
        }
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        fs::create_dir_all(tmp).unwrap();
        let _lock = FileLock::take(&tmp.join("isola-probe.lock"));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(&cargo)
            .current_dir(workspace())
            .args([
                "rustc",
                "-q",
                "-p",
                "isola-probe",
                "--release",
                "--bin",
                "isola-probe",
            ])
            .args(["--", "-C", "target-feature=+crt-static"])
            .output()
            .expect("run cargo to build the probe");
        assert!(
            out.status.success(),
            "building the static probe failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let built = workspace().join("target/release/isola-probe");
        let bytes = fs::read(&built).unwrap_or_else(|e| panic!("{}: {e}", built.display()));
        assert!(
            !has_interpreter(&bytes),
            "{} is not static",
            built.display()
        );
        let dest = tmp.join("isola-probe-static");
        let part = tmp.join(format!("isola-probe-static.{}", std::process::id()));
        fs::write(&part, bytes).unwrap();
        fs::set_permissions(&part, fs::Permissions::from_mode(0o755)).unwrap();
        fs::rename(&part, &dest).unwrap();
        dest
    })
}

/// Whether an ELF64 file asks for a dynamic loader (has a `PT_INTERP` program header).
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let o = phoff + i * size;
        u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == 3
    })
}

/// The busybox applets as paths relative to `/`, e.g. `usr/bin/env`.
fn busybox_applets() -> &'static [String] {
    static LIST: OnceLock<Vec<String>> = OnceLock::new();
    LIST.get_or_init(|| {
        let out = Command::new("/bin/busybox")
            .arg("--list-full")
            .output()
            .expect("/bin/busybox --list-full (Debian busybox-static)");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().trim_start_matches('/').to_owned())
            .filter(|l| !l.is_empty() && l != "bin/busybox")
            .collect()
    })
}

/// Writes a busybox root filesystem with `/probe`, users `root`, `app` (1000:1000, also in group
/// 2000) and `nobody`, into `rootfs`.
pub fn make_busybox_rootfs(rootfs: &Path) {
    for d in [
        "bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/app", "usr/bin", "sbin",
    ] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy /bin/busybox");
    for applet in busybox_applets() {
        let link = rootfs.join(applet);
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        let _ = symlink("/bin/busybox", &link);
    }
    fs::copy(probe(), rootfs.join("probe")).unwrap();
    fs::set_permissions(rootfs.join("probe"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n",
    )
    .unwrap();
}

/// What an `isola-oci` command did.
#[derive(Debug)]
pub struct Out {
    /// Exit code (128 + signal if it was killed).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// File that received the command's stdout (and that of a container it created).
    pub stdout_path: PathBuf,
}

impl Out {
    /// Panics with the whole output unless the command succeeded.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "command failed: {self:#?}");
        self
    }

    /// Panics unless the command failed with a single-line error on stderr; returns that line.
    #[track_caller]
    pub fn one_line_error(&self) -> String {
        assert_ne!(self.code, 0, "command should have failed: {self:#?}");
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "expected a one-line error: {self:#?}");
        lines[0].to_owned()
    }

    /// The stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Runs `cmd` with stdout and stderr going to files `<dir>/<tag>.out|.err` (pipes would keep a test
/// waiting on a detached container that inherited them), with a timeout.
pub fn run_logged(mut cmd: Command, dir: &Path, tag: &str) -> Out {
    let stdout_path = dir.join(format!("{tag}.out"));
    let stderr_path = dir.join(format!("{tag}.err"));
    let out = fs::File::create(&stdout_path).unwrap();
    let err = fs::File::create(&stderr_path).unwrap();
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish in {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let read = |p: &Path| {
        let mut s = String::new();
        let _ = fs::File::open(p).and_then(|mut f| f.read_to_string(&mut s));
        s
    };
    Out {
        code: exit_code(status),
        stdout: read(&stdout_path),
        stderr: read(&stderr_path),
        stdout_path,
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One test's world: a bundle (config + busybox rootfs), a private state root and a container ID.
/// Dropping it deletes the container and checks that nothing is left behind.
#[derive(Debug)]
pub struct Ctx {
    pub test: String,
    pub id: String,
    pub dir: tempfile::TempDir,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub root: PathBuf,
    pub config: Value,
    /// Further container IDs this test created in the same root (deleted and checked too).
    pub extra_ids: Vec<String>,
    calls: AtomicU32,
}

impl Ctx {
    /// A busybox bundle whose process is `/probe report`, or `None` if the test cannot run here.
    pub fn new(test: &str) -> Option<Self> {
        if !need_root(test) {
            return None;
        }
        let dir = tempfile::Builder::new().prefix("io-").tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let bundle = dir.path().join("bundle");
        let rootfs = bundle.join("rootfs");
        let root = dir.path().join("state");
        fs::create_dir_all(&rootfs).unwrap();
        make_busybox_rootfs(&rootfs);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Short: the state root plus the ID must stay well below the 108-byte socket path limit.
        let short: String = test
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(16)
            .collect();
        let id = format!("{short}-{}-{n}", std::process::id());
        let mut ctx = Self {
            test: test.to_owned(),
            id,
            dir,
            bundle,
            rootfs,
            root,
            config: Value::Null,
            extra_ids: Vec::new(),
            calls: AtomicU32::new(0),
        };
        ctx.oci(&["spec", "--bundle", ctx.bundle.to_str().unwrap()])
            .ok();
        let text = fs::read_to_string(ctx.bundle.join("config.json")).unwrap();
        ctx.config = serde_json::from_str(&text).unwrap();
        ctx.args(&["/probe", "report"]);
        Some(ctx)
    }

    /// A path under the test's private directory (outside the bundle).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Sets `process.args`.
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = json!(args);
        self
    }

    /// `process.args = ["sh", "-c", script]`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["/bin/sh", "-c", script])
    }

    /// The `linux` object of the config (created if missing).
    pub fn linux(&mut self) -> &mut serde_json::Map<String, Value> {
        if !self.config["linux"].is_object() {
            self.config["linux"] = json!({});
        }
        self.config["linux"].as_object_mut().unwrap()
    }

    /// The `process` object of the config.
    pub fn process(&mut self) -> &mut serde_json::Map<String, Value> {
        self.config["process"].as_object_mut().unwrap()
    }

    /// Removes the namespace `kind` from `linux.namespaces`.
    pub fn drop_namespace(&mut self, kind: &str) -> &mut Self {
        if let Some(list) = self
            .linux()
            .get_mut("namespaces")
            .and_then(Value::as_array_mut)
        {
            list.retain(|n| n["type"] != kind);
        }
        self
    }

    /// Sets (or adds) namespace `kind`, with `path` to join an existing one.
    pub fn namespace(&mut self, kind: &str, path: Option<&str>) -> &mut Self {
        self.drop_namespace(kind);
        let mut ns = json!({ "type": kind });
        if let Some(p) = path {
            ns["path"] = json!(p);
        }
        let linux = self.linux();
        if !linux.get("namespaces").is_some_and(Value::is_array) {
            linux.insert("namespaces".into(), json!([]));
        }
        linux["namespaces"].as_array_mut().unwrap().push(ns);
        self
    }

    /// Appends to `mounts`.
    pub fn mount(&mut self, m: Value) -> &mut Self {
        if !self.config["mounts"].is_array() {
            self.config["mounts"] = json!([]);
        }
        self.config["mounts"].as_array_mut().unwrap().push(m);
        self
    }

    /// Writes the config to the bundle.
    pub fn write_config(&self) {
        fs::write(
            self.bundle.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// Runs `isola-oci --root <root> ARGS` in the bundle directory.
    pub fn oci(&self, args: &[&str]) -> Out {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{n:03}-{}", args.first().copied().unwrap_or("none"));
        let mut cmd = Command::new(OCI);
        cmd.current_dir(&self.bundle)
            .arg("--root")
            .arg(&self.root)
            .args(args);
        run_logged(cmd, self.dir.path(), &tag)
    }

    /// Writes the config, then `run --bundle B ID`.
    pub fn run(&self) -> Out {
        self.write_config();
        self.oci(&["run", "--bundle", self.bundle.to_str().unwrap(), &self.id])
    }

    /// Runs the container (whose process should be `/probe report`) and parses the report.
    #[track_caller]
    pub fn report(&self) -> Value {
        self.run().ok().json()
    }

    /// Writes the config, then `create --bundle B [EXTRA…] ID`.
    pub fn create(&self, extra: &[&str]) -> Out {
        self.write_config();
        let mut args = vec!["create", "--bundle", self.bundle.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(&self.id);
        self.oci(&args)
    }

    /// `state ID` as JSON.
    #[track_caller]
    pub fn state(&self) -> Value {
        self.oci(&["state", &self.id]).ok().json()
    }

    /// The container's host PID from `state`.
    #[track_caller]
    pub fn pid(&self) -> i32 {
        let pid = self.state()["pid"].as_i64().unwrap_or(0) as i32;
        assert!(pid > 0, "container {} has no pid", self.id);
        pid
    }

    /// Creates and starts the container, and returns its host PID.
    #[track_caller]
    pub fn start_detached(&self) -> i32 {
        self.create(&[]).ok();
        self.oci(&["start", &self.id]).ok();
        self.pid()
    }

    /// Polls `state` until its status is `status`.
    #[track_caller]
    pub fn wait_status(&self, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = self.state();
            if st["status"] == status {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "container {} never became {status}: {st}",
                self.id
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The cgroup path of the container, relative to each hierarchy (`/isola/<id>` by default).
    pub fn cgroup_path_of(&self, id: &str) -> String {
        match self.config["linux"]["cgroupsPath"].as_str() {
            Some(p) if id == self.id => p.to_owned(),
            _ => format!("/isola/{id}"),
        }
    }

    /// Deletes every container of the test and returns what it left behind, if anything.
    pub fn cleanup(&self) -> Vec<String> {
        let mut left = Vec::new();
        for id in std::iter::once(&self.id).chain(&self.extra_ids) {
            let out = self.oci(&["delete", "--force", id]);
            if out.code != 0 {
                left.push(format!("delete --force {id} failed: {}", out.stderr.trim()));
            }
            if self.root.join(id).exists() {
                left.push(format!("state directory {}", self.root.join(id).display()));
            }
            for dir in cgroup_dirs(&self.cgroup_path_of(id)) {
                left.push(format!("cgroup {}", dir.display()));
            }
        }
        for m in host_mounts_under(self.dir.path()) {
            left.push(format!("mount {m}"));
        }
        left
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        let left = self.cleanup();
        if !std::thread::panicking() {
            assert!(left.is_empty(), "{}: left behind: {left:#?}", self.test);
        } else if !left.is_empty() {
            eprintln!("{}: left behind: {left:#?}", self.test);
        }
    }
}

/// Every cgroup hierarchy root mounted on the host (`/sys/fs/cgroup/<ctrl>`, or the v2 root).
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let mut out = Vec::new();
    if base.join("cgroup.procs").exists() {
        out.push(base.to_path_buf());
    }
    if let Ok(rd) = fs::read_dir(base) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() && p.join("cgroup.procs").exists() {
                out.push(p);
            }
        }
    }
    out
}

/// The existing directories of cgroup `path` in every hierarchy.
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    cgroup_hierarchies()
        .into_iter()
        .map(|h| h.join(rel))
        .filter(|p| p.exists())
        .collect()
}

/// The host's mount points at or under `dir` (from this process's mountinfo).
pub fn host_mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            let target = l.split(' ').nth(4).unwrap_or_default();
            target == prefix || target.starts_with(&format!("{prefix}/"))
        })
        .map(str::to_owned)
        .collect()
}

/// This process's namespace link, e.g. `net:[4026531840]`.
pub fn host_ns(kind: &str) -> String {
    ns_of("self", kind)
}

/// A process's namespace link.
pub fn ns_of(pid: &str, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{kind}: {e}"))
        .display()
        .to_string()
}

/// The mount at `target` in a probe report.
pub fn mount_at<'a>(report: &'a Value, target: &str) -> Option<&'a Value> {
    report["mounts"]
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["target"] == target)
}

/// Whether a mount's per-mount options (`ro,nosuid,…`) contain `opt`.
pub fn has_opt(mount: &Value, opt: &str) -> bool {
    mount["options"]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .any(|o| o == opt)
}

/// A capability mask (as `/proc/PID/status` shows it) of the given capability numbers.
pub fn cap_mask(caps: &[u32]) -> String {
    format!("{:016x}", caps.iter().fold(0u64, |m, c| m | (1 << c)))
}

/// A field of `/proc/PID/status`.
pub fn proc_status(pid: i32, key: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(':')
                .map(|v| v.trim().to_owned())
        })
}

/// Whether a process is gone (or a zombie).
pub fn process_gone(pid: i32) -> bool {
    proc_status(pid, "State").is_none_or(|s| s.starts_with('Z') || s.starts_with('X'))
}

/// Polls `f` until it holds or `secs` pass.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a file that a container keeps writing until it holds `needle`.
pub fn wait_for_text(path: &Path, needle: &str, secs: u64) -> String {
    let mut text = String::new();
    let found = eventually(secs, || {
        text = fs::read_to_string(path).unwrap_or_default();
        text.contains(needle)
    });
    assert!(
        found,
        "{} never contained {needle:?}: {text:?}",
        path.display()
    );
    text
}
