//! Test harness: runs the `isola` binary against a private store and checks what it leaves.
//!
//! Tests that need something the machine lacks (root, the Debian test asset, a tool) print
//! `skipped: <test>: <reason>` and return; when `CI` is set a missing asset is a failure
//! instead, so CI cannot pass by skipping.
#![allow(dead_code)]

pub mod archive;
pub mod fixtures;
pub mod layer;

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_isola");

/// Exit code of every isola failure.
pub const EXIT_FAILURE: i32 = 125;

fn test_name() -> String {
    std::thread::current().name().unwrap_or("test").to_string()
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Reports that the current test cannot run here; in CI that is a failure.
pub fn skip(reason: &str) {
    if in_ci() {
        panic!("{}: cannot run in CI: {reason}", test_name());
    }
    eprintln!("skipped: {}: {reason}", test_name());
}

/// True when running as root; otherwise reports the skip (a failure in CI).
pub fn require_root() -> bool {
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    if euid != 0 {
        skip("needs root");
        return false;
    }
    true
}

/// True when `tool` is on PATH; otherwise reports the skip (a failure in CI).
pub fn require_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        skip(&format!(
            "{tool} is not installed (scripts/install-deps.sh installs it)"
        ));
    }
    found
}

fn test_cache() -> PathBuf {
    std::env::var_os("ISOLA_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/isola-test"))
}

/// The Debian bookworm minbase rootfs tarball built by `scripts/test-assets.sh`, from
/// `ISOLA_TEST_DEBIAN_TAR` or the cache's `assets.env`. `None` (after reporting the skip)
/// when it has not been built.
pub fn debian_tar() -> Option<PathBuf> {
    let from_env = std::env::var_os("ISOLA_TEST_DEBIAN_TAR").map(PathBuf::from);
    let from_cache = || {
        let env = std::fs::read_to_string(test_cache().join("assets.env")).ok()?;
        env.lines()
            .find_map(|l| l.strip_prefix("ISOLA_TEST_DEBIAN_TAR="))
            .map(|v| PathBuf::from(v.trim()))
    };
    match from_env.or_else(from_cache) {
        Some(p) if p.is_file() => Some(p),
        Some(p) => {
            skip(&format!(
                "Debian test asset {} is missing (run scripts/test-assets.sh)",
                p.display()
            ));
            None
        }
        None => {
            skip("Debian test asset not built (run scripts/test-assets.sh)");
            None
        }
    }
}

/// One isola store (`--root`) and run directory (`--run-root`), removed at drop.
#[derive(Debug)]
pub struct Isola {
    pub root: PathBuf,
    pub run_root: PathBuf,
    dir: tempfile::TempDir,
}

impl Default for Isola {
    fn default() -> Self {
        Self::new()
    }
}

impl Isola {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("isola-test-")
            .tempdir()
            .unwrap();
        Isola {
            root: dir.path().join("root"),
            run_root: dir.path().join("run"),
            dir,
        }
    }

    /// A scratch directory for the test's own files (outside the store).
    pub fn scratch(&self) -> PathBuf {
        let p = self.dir.path().join("scratch");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// The `isola` command with this store's global options, not yet run.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(BIN);
        c.env_remove("ISOLA_ROOT")
            .env_remove("ISOLA_RUN_ROOT")
            .arg("--root")
            .arg(&self.root)
            .arg("--run-root")
            .arg(&self.run_root)
            .args(args)
            .stdin(std::process::Stdio::null());
        c
    }

    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.command(args).output().expect("cannot run isola")
    }

    /// Runs isola, asserts success, returns stdout.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "isola {} failed:\n{}",
            show(args),
            describe(&out)
        );
        String::from_utf8(out.stdout).expect("stdout is not UTF-8")
    }

    /// Runs isola, asserts it failed with exit code 125 and a single `Error: ` line on
    /// stderr, returns stderr.
    pub fn fail<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(EXIT_FAILURE),
            "isola {} should fail with {EXIT_FAILURE}:\n{}",
            show(args),
            describe(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("Error: "),
            "isola {}: stderr should be one line starting \"Error: \", got:\n{stderr}",
            show(args)
        );
        stderr
    }

    /// Asserts that `isola args` fails (125) with an error mentioning every one of `needles`,
    /// and that the store is left as clean and as empty as before.
    pub fn fail_clean<S: AsRef<OsStr>>(&self, args: &[S], needles: &[&str]) -> String {
        let err = self.fail(args);
        for n in needles {
            assert!(err.contains(n), "error should mention {n:?}, got: {err}");
        }
        self.assert_clean();
        assert_eq!(
            self.image_ids(),
            Vec::<String>::new(),
            "no image may be recorded"
        );
        err
    }

    /// Asserts the store holds no leftovers: `tmp/` empty and nothing mounted under the root
    /// or the run root.
    pub fn assert_clean(&self) {
        let tmp = self.root.join("tmp");
        if tmp.exists() {
            let left: Vec<_> = std::fs::read_dir(&tmp)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert!(left.is_empty(), "{} is not empty: {left:?}", tmp.display());
        }
        let mounts: Vec<PathBuf> = mount_points()
            .into_iter()
            .filter(|m| m.starts_with(&self.root) || m.starts_with(&self.run_root))
            .collect();
        assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
    }

    /// Asserts that no blob and no layer directory is left (a store with no images).
    pub fn assert_empty_store(&self) {
        for sub in ["blobs/sha256", "layers"] {
            let d = self.root.join(sub);
            if d.exists() {
                let left: Vec<_> = std::fs::read_dir(&d)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect();
                assert!(left.is_empty(), "{} is not empty: {left:?}", d.display());
            }
        }
    }

    /// Asserts every blob in the store hashes to its name (no partial or foreign content).
    pub fn assert_blobs_valid(&self) {
        let d = self.root.join("blobs/sha256");
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let data = std::fs::read(e.path()).unwrap();
            assert_eq!(
                archive::sha256_hex(&data),
                name,
                "blob {name} does not match its name"
            );
        }
    }

    /// `isola images -q`, one ID per line.
    pub fn image_ids(&self) -> Vec<String> {
        self.ok(&["images", "-q"])
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// `isola images --format json`.
    pub fn images_json(&self) -> Vec<Value> {
        let out = self.ok(&["images", "--format", "json"]);
        match serde_json::from_str(&out) {
            Ok(Value::Array(a)) => a,
            other => panic!("images --format json is not an array: {other:?}\n{out}"),
        }
    }

    /// `isola image inspect IMAGE`, the single object.
    pub fn inspect(&self, image: &str) -> Value {
        let out = self.ok(&["image", "inspect", image]);
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("image inspect output is not JSON ({e}):\n{out}"));
        let arr = v.as_array().expect("image inspect prints an array");
        assert_eq!(arr.len(), 1, "one object per image: {out}");
        arr[0].clone()
    }

    /// The layer directories of `image`, bottom first, from its `RootFS.Layers`.
    pub fn layer_dirs(&self, image: &str) -> Vec<PathBuf> {
        let v = self.inspect(image);
        let diff_ids: Vec<String> = v["RootFS"]["Layers"]
            .as_array()
            .expect("RootFS.Layers")
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect();
        archive::chain_ids(&diff_ids)
            .iter()
            .map(|c| self.layer_dir(c))
            .collect()
    }

    pub fn layer_dir(&self, chain_id: &str) -> PathBuf {
        self.root.join("layers").join(archive::hex_of(chain_id))
    }

    pub fn blob(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(archive::hex_of(digest))
    }

    /// Mounts the merged view of `image` (a read-only overlay of its layer directories) in a
    /// directory outside the store; unmounted when the returned guard drops.
    pub fn mount_merged(&self, image: &str) -> Merged {
        Merged::mount(&self.layer_dirs(image))
    }

    /// Loads `archive`, asserts success, returns the printed lines.
    pub fn load(&self, archive: &Path) -> Vec<String> {
        let out = self.ok(&[OsStr::new("load"), OsStr::new("-i"), archive.as_os_str()]);
        out.lines().map(str::to_string).collect()
    }
}

fn show<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Mount points of this mount namespace (octal escapes of /proc/self/mountinfo decoded).
pub fn mount_points() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape(m)))
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A read-only overlayfs mount of layer directories, unmounted on drop.
#[derive(Debug)]
pub struct Merged {
    dir: tempfile::TempDir,
}

impl Merged {
    /// Mounts `layers` (bottom first); an empty directory is put under them so one layer
    /// also makes a valid overlay.
    pub fn mount(layers: &[PathBuf]) -> Merged {
        let dir = tempfile::Builder::new()
            .prefix("isola-merged-")
            .tempdir()
            .unwrap();
        let empty = dir.path().join("empty");
        let target = dir.path().join("merged");
        std::fs::create_dir(&empty).unwrap();
        std::fs::create_dir(&target).unwrap();
        let mut lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|p| p.to_str().expect("UTF-8 path").to_string())
            .collect();
        lower.push(empty.to_str().unwrap().to_string());
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!("ro,lowerdir={}", lower.join(":")))
            .arg(&target)
            .output()
            .expect("cannot run mount");
        assert!(
            out.status.success(),
            "overlay mount failed:\n{}",
            describe(&out)
        );
        Merged { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("merged")
    }
}

impl Drop for Merged {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path()).status();
    }
}

/// The value of extended attribute `name` of `path` (not following a final symlink), or
/// `None` when it is not set.
pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let out = Command::new("getfattr")
        .args(["-h", "--absolute-names", "--only-values", "-n", name])
        .arg(path)
        .output()
        .expect("cannot run getfattr (package attr)");
    out.status.success().then_some(out.stdout)
}

// ---------------------------------------------------------------------------------------------
// Container tests: every command under a timeout, so a hang fails instead of stalling CI.

/// Longest any one command of the container tests may take.
pub const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits for `child` (stdout and stderr piped or not) to finish, killing it and failing the test
/// after `timeout`.
pub fn finish_within(
    child: std::process::Child,
    timeout: std::time::Duration,
    what: &str,
) -> Output {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on our own child, which the waiting thread has not reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{what} took longer than {timeout:?}");
        }
    }
}

/// Runs `cmd` with stdout and stderr captured, failing the test after [`COMMAND_TIMEOUT`].
pub fn output_within(cmd: &mut Command, what: &str) -> Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    finish_within(child, COMMAND_TIMEOUT, what)
}

/// Polls `f` every 50 ms until it holds or `timeout` passes; whether it held.
pub fn eventually(timeout: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    f()
}

/// Cgroup directories of container `id` in any hierarchy (the v2 tree or v1 controllers).
pub fn container_cgroups(id: &str) -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let mut candidates = vec![base.join("isola").join(id)];
    if let Ok(d) = std::fs::read_dir(base) {
        candidates.extend(d.map(|e| e.unwrap().path().join("isola").join(id)));
    }
    candidates.into_iter().filter(|p| p.exists()).collect()
}

/// PIDs of the host's processes whose command line mentions `needle` (e.g. a container ID).
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

impl Isola {
    /// `isola args` with stdout and stderr captured, failing the test if it hangs.
    pub fn run_timed<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        output_within(&mut self.command(args), &format!("isola {}", show(args)))
    }

    /// `isola args` with `input` on its stdin (then closed), failing the test if it hangs.
    pub fn run_timed_stdin<S: AsRef<OsStr>>(&self, args: &[S], input: &[u8]) -> Output {
        self.run_stdin_within(args, input, COMMAND_TIMEOUT)
    }

    /// `isola args` with `input` on its stdin (written by another thread, then closed), killed
    /// and failing the test after `timeout`.
    pub fn run_stdin_within<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        input: &[u8],
        timeout: std::time::Duration,
    ) -> Output {
        let mut child = self
            .command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("cannot run isola");
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        // A writer that blocks (isola not reading) ends with EPIPE once isola is killed.
        std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut stdin, &input);
        });
        finish_within(child, timeout, &format!("isola {}", show(args)))
    }

    /// `isola args`, which must succeed (under the timeout); its stdout.
    pub fn ok_timed<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let out = self.run_timed(args);
        assert!(
            out.status.success(),
            "isola {} failed:\n{}",
            show(args),
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `isola inspect CONTAINER`, the single object.
    pub fn container(&self, name: &str) -> Value {
        let out = self.ok_timed(&["inspect", "--type", "container", name]);
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("inspect output is not JSON ({e}):\n{out}"));
        v[0].clone()
    }

    /// `isola ps -a --format json`.
    pub fn containers(&self) -> Vec<Value> {
        let out = self.ok_timed(&["ps", "-a", "--format", "json"]);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("ps --format json is not JSON ({e}):\n{out}"))
    }

    /// The container directories left under `--root` and `--run-root`.
    pub fn container_dirs(&self) -> Vec<PathBuf> {
        [&self.root, &self.run_root]
            .iter()
            .filter_map(|r| std::fs::read_dir(r.join("containers")).ok())
            .flat_map(|d| d.map(|e| e.unwrap().path()))
            .collect()
    }

    /// Asserts nothing of container `id` is left: no record, mount, cgroup, directory or
    /// process.
    pub fn assert_container_gone(&self, id: &str) {
        self.assert_clean();
        assert_eq!(
            container_cgroups(id),
            Vec::<PathBuf>::new(),
            "cgroups left behind"
        );
        let dirs: Vec<PathBuf> = self
            .container_dirs()
            .into_iter()
            .filter(|d| d.to_string_lossy().contains(id))
            .collect();
        assert_eq!(dirs, Vec::<PathBuf>::new(), "directories left behind");
        assert_eq!(
            processes_mentioning(id),
            Vec::<i32>::new(),
            "processes left"
        );
        let listed = self.ok_timed(&["ps", "-aq", "--no-trunc"]);
        assert!(!listed.contains(id), "still listed: {listed}");
    }
}

/// Asserts `out` failed with `status` and a single `Error: ` line mentioning every one of
/// `needles`; returns that line.
pub fn assert_error(out: &Output, status: i32, needles: &[&str]) -> String {
    assert_eq!(out.status.code(), Some(status), "{}", describe(out));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("Error: "),
        "expected one Error line:\n{}",
        describe(out)
    );
    for n in needles {
        assert!(
            lines[0].contains(n),
            "error should mention {n:?}: {}",
            lines[0]
        );
    }
    lines[0].to_string()
}

/// An [`Isola`] for container tests that, when dropped (also when the test fails), removes its
/// containers by force, and unmounts and removes what they left, so a failing test does not
/// leave processes, mounts or cgroups on the host.
#[derive(Debug)]
pub struct Engine(pub Isola);

impl Engine {
    pub fn new() -> Self {
        Engine(Isola::new())
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl std::ops::Deref for Engine {
    type Target = Isola;
    fn deref(&self) -> &Isola {
        &self.0
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let quick = |args: &[&str]| -> Option<String> {
            let child = self
                .command(args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .ok()?;
            let pid = child.id() as i32;
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(child.wait_with_output());
            });
            match rx.recv_timeout(std::time::Duration::from_secs(30)) {
                Ok(Ok(out)) => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
                _ => {
                    // SAFETY: kill(2) on our own child, not yet reaped.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    None
                }
            }
        };
        let ids: Vec<String> = quick(&["ps", "-aq", "--no-trunc"])
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        for id in &ids {
            let _ = quick(&["rm", "-f", id]);
        }
        // Whatever is still there: processes of the store, mounts, cgroups.
        for pid in processes_mentioning(self.root.to_str().unwrap_or("/nonexistent")) {
            // SAFETY: kill(2) of a process whose command line names this test's private store.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let mut mounts: Vec<PathBuf> = mount_points()
            .into_iter()
            .filter(|m| m.starts_with(&self.root) || m.starts_with(&self.run_root))
            .collect();
        mounts.sort();
        for m in mounts.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        for id in &ids {
            for d in container_cgroups(id) {
                let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                for pid in procs
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    // SAFETY: kill(2) of a process in this test's container's cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                eventually(std::time::Duration::from_secs(2), || {
                    std::fs::remove_dir(&d).is_ok() || !d.exists()
                });
            }
        }
    }
}

/// Whether VM isolation can run here: QEMU, a guest kernel and a static agent (as `isola info`
/// reports them). Otherwise the test is skipped with the reason, or fails in CI.
pub fn require_vm() -> bool {
    if !require_root() || !require_tool("qemu-system-x86_64") {
        return false;
    }
    let probe = Isola::new();
    let out = probe.run_timed(&["info", "--format", "json"]);
    let info: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let vm = &info["VM"];
    if vm["Kernel"].is_string() && vm["Missing"].as_array().is_none_or(|m| m.is_empty()) {
        return true;
    }
    skip(&format!(
        "VM isolation is not ready here (vm/build-kernel.sh builds the guest kernel, scripts/build-agent.sh the agent): {vm}"
    ));
    false
}
