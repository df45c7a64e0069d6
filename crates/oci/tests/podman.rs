//! podman drives `isola-oci` (`podman --runtime`) on the built-in busybox image: run, exec, stop,
//! rm, exit codes, a terminal, and no state, cgroup or mount left behind.
//!
//! Each test gets a throwaway podman (its own `--root`, `--runroot`, `--tmpdir`, containers.conf
//! and storage.conf; nothing of the host's podman is read or touched), loads the busybox image made
//! by the `isola` binary (`isola image builtin` + `isola save`), and points `--runtime` at a wrapper
//! script that records each command line podman (or conmon) gives the runtime and then execs
//! `isola-oci` with the test's own state root.
//!
//! Needs root and podman (Debian package; scripts/install-deps.sh installs it). Without them the
//! tests print `skipped: <test>: <reason>`; with `CI` set that is a failure instead.
//! The `isola` binary comes from `ISOLA_BIN`, else `cargo build -p isola` (same profile).

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

const ISOLA_OCI: &str = env!("CARGO_BIN_EXE_isola-oci");

/// Longest a single podman command may take before the test gives up on it.
const PODMAN_TIMEOUT_SECS: u32 = 120;

/// podman's knobs for this host: no CAP_SYS_RESOURCE (podman's default ulimits would fail),
/// no systemd (cgroupfs, file events).
const CONTAINERS_CONF: &str = r#"[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
"#;

fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("test")
        .rsplit("::")
        .next()
        .unwrap_or("test")
        .to_string()
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Why these tests cannot run here, if they cannot. Not being root is a skip even in CI (the
/// suite runs as root there); podman missing in CI is a failure.
fn cannot_run() -> Option<String> {
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    if euid != 0 {
        return Some("needs root".into());
    }
    for tool in ["podman", "conmon"] {
        if !on_path(tool) {
            let reason = format!("{tool} is not installed (scripts/install-deps.sh installs it)");
            assert!(!in_ci(), "{}: cannot run in CI: {reason}", test_name());
            return Some(reason);
        }
    }
    None
}

/// The `isola` binary: `ISOLA_BIN`, else built by cargo in the profile this test was built in.
fn isola_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ISOLA_BIN") {
        return PathBuf::from(bin);
    }
    let dir = Path::new(ISOLA_OCI)
        .parent()
        .expect("isola-oci has a directory");
    let bin = dir.join("isola");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "isola"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        match dir.file_name().and_then(OsStr::to_str) {
            Some("debug") | None => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(profile) => {
                cmd.args(["--profile", profile]);
            }
        }
        let out = cmd.output().expect("run cargo");
        if !out.status.success() {
            // An older build is better than none for these tests (the image code is not what
            // they test); without one, the build error is the failure.
            assert!(
                bin.is_file(),
                "cargo build -p isola failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!(
                "{}: cargo build -p isola failed; using the existing {}",
                test_name(),
                bin.display()
            );
        }
    }
    assert!(
        bin.is_file(),
        "no isola binary at {} (set ISOLA_BIN)",
        bin.display()
    );
    bin
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// A throwaway podman whose runtime is isola-oci.
#[derive(Debug)]
struct Podman {
    dir: TempDir,
}

impl Podman {
    /// Sets up the podman and loads busybox into it; `None` (after saying why) when the tests
    /// cannot run here.
    fn new() -> Option<Self> {
        if let Some(reason) = cannot_run() {
            eprintln!("skipped: {}: {reason}", test_name());
            return None;
        }
        // A short path: isola-oci's state root holds `<64-character ID>/start.sock`, and a Unix
        // socket path has at most 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("ipm")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let p = Self { dir };
        for sub in ["root", "runroot", "tmp", "oci"] {
            std::fs::create_dir(p.path(sub)).expect("mkdir");
        }
        std::fs::write(p.path("containers.conf"), CONTAINERS_CONF).expect("containers.conf");
        let storage = format!(
            "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
            p.path("runroot").display(),
            p.path("root").display()
        );
        std::fs::write(p.path("storage.conf"), storage).expect("storage.conf");

        // The runtime podman sees: records its arguments, one call per line, tab-separated, and
        // runs isola-oci with this test's state root. (`podman --runtime-flag root=…` would not
        // do: podman 4.3 leaves runtime flags out of the `podman container cleanup` that conmon
        // runs when a container exits, so the final `delete` would look in the default root.)
        let wrapper = p.path("isola-oci");
        let script = format!(
            "#!/bin/sh\n{{ for a in \"$@\"; do printf '%s\\t' \"$a\"; done; echo; }} >>'{}'\nexec '{}' --root '{}' \"$@\"\n",
            p.path("runtime-calls").display(),
            ISOLA_OCI,
            p.path("oci").display()
        );
        std::fs::write(&wrapper, script).expect("wrapper");
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .expect("chmod wrapper");

        // The busybox image, as made by isola and saved as an archive podman can load.
        let isola = isola_bin();
        let image_root = p.path("isola-root");
        let archive = p.path("busybox.tar");
        for args in [
            vec!["image", "builtin"],
            vec!["save", "-o", archive.to_str().unwrap(), "busybox"],
        ] {
            let out = Command::new(&isola)
                .arg("--root")
                .arg(&image_root)
                .args(&args)
                .output()
                .expect("run isola");
            assert!(
                out.status.success(),
                "{}",
                describe(&format!("isola {args:?}"), &out)
            );
        }
        p.ok(&["load", "-i", archive.to_str().unwrap()]);
        let images = p.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert!(
            images.lines().any(|l| l.ends_with("busybox:latest")),
            "busybox not loaded: {images}"
        );
        Some(p)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `podman ARGS` with this podman's storage, config and runtime, under a timeout.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "10", &PODMAN_TIMEOUT_SECS.to_string(), "podman"])
            .arg("--root")
            .arg(self.path("root"))
            .arg("--runroot")
            .arg(self.path("runroot"))
            .arg("--tmpdir")
            .arg(self.path("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .arg("--runtime")
            .arg(self.path("isola-oci"))
            .args(args)
            .env("CONTAINERS_CONF", self.path("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.path("storage.conf"))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `podman ARGS` and returns its output, whatever its exit status.
    fn output(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().expect("run podman");
        assert_ne!(
            out.status.code(),
            Some(124),
            "{}",
            describe(&format!("podman {args:?} timed out"), &out)
        );
        out
    }

    /// Runs `podman ARGS`, which must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "{}",
            describe(&format!("podman {args:?}"), &out)
        );
        text(&out.stdout)
    }

    /// Runs `podman ARGS` with `input` on its stdin; returns its output.
    fn with_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn podman");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write stdin");
        drop(stdin);
        child.wait_with_output().expect("wait podman")
    }

    /// Every call of the runtime so far, as argument lists.
    fn runtime_calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.path("runtime-calls"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                l.split('\t')
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    }

    /// The runtime calls whose command (first argument after the global flags) is `cmd`.
    fn calls_of(&self, cmd: &str) -> Vec<Vec<String>> {
        self.runtime_calls()
            .into_iter()
            .filter(|c| {
                c.iter()
                    .find(|a| !a.starts_with("--"))
                    .is_some_and(|a| a == cmd)
            })
            .collect()
    }

    /// Checks that nothing is left: no container in podman, none in isola-oci's state root,
    /// no cgroup of any container the runtime created.
    fn assert_clean(&self) {
        let ids: Vec<String> = self
            .calls_of("create")
            .into_iter()
            .filter_map(|c| c.last().cloned())
            .collect();
        assert!(!ids.is_empty(), "the runtime created no container");
        let ps = self.ok(&["ps", "-a", "--format", "{{.ID}} {{.Names}} {{.Status}}"]);
        assert_eq!(ps.trim(), "", "podman ps -a not empty");
        let out = Command::new(ISOLA_OCI)
            .arg("--root")
            .arg(self.path("oci"))
            .args(["list", "-q"])
            .output()
            .expect("isola-oci list");
        assert!(out.status.success(), "{}", describe("isola-oci list", &out));
        assert_eq!(
            text(&out.stdout).trim(),
            "",
            "isola-oci still lists containers"
        );
        let left: Vec<String> = std::fs::read_dir(self.path("oci"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "isola-oci state left: {left:?}");
        for id in &ids {
            let cgroups = cgroup_dirs_of(id);
            assert!(cgroups.is_empty(), "cgroups of {id} left: {cgroups:?}");
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Best effort, also after a failed assertion: remove the containers (conmon, the
        // container processes and their cgroups go with them), then any mount podman left.
        let _ = self.command(&["rm", "-a", "-f", "-t", "0"]).output();
        let prefix = self.dir.path().to_string_lossy().into_owned();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", &m]).status();
        }
    }
}

/// Directories of the cgroup hierarchies (v1 and v2) whose name contains `id`.
fn cgroup_dirs_of(id: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, id: &str, depth: usize, found: &mut Vec<PathBuf>) {
        if depth > 4 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = e.path();
            if e.file_name().to_string_lossy().contains(id) {
                found.push(path);
            } else {
                walk(&path, id, depth + 1, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), id, 0, &mut found);
    found
}

#[test]
fn podman_run_output_stdin_and_exit_codes() {
    let Some(p) = Podman::new() else { return };

    let out = p.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "echo",
        "hello",
    ]);
    assert_eq!(out, "hello\n");

    let out = p.output(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", describe("exit 3", &out));

    let out = p.output(&["run", "--rm", "--network", "none", "busybox", "false"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe("false", &out));

    let out = p.with_stdin(
        &[
            "run",
            "--rm",
            "-i",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "cat; echo end",
        ],
        "through stdin\n",
    );
    assert!(out.status.success(), "{}", describe("run -i", &out));
    assert_eq!(text(&out.stdout), "through stdin\nend\n");

    // The process spec podman writes: user, working directory (created when missing, as runc
    // does), environment, hostname.
    let out = p.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-u",
        "1000:1000",
        "-w",
        "/tmp",
        "-e",
        "FOO=bar",
        "--hostname",
        "boxy",
        "busybox",
        "sh",
        "-c",
        "id -u; id -g; pwd; echo $FOO; hostname",
    ]);
    assert_eq!(out, "1000\n1000\n/tmp\nbar\nboxy\n");

    // podman's default seccomp profile, capabilities and ulimits are in force.
    let out = p.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "grep -E '^(Seccomp|NoNewPrivs|CapBnd):' /proc/self/status; ulimit -n",
    ]);
    assert!(out.contains("Seccomp:\t2"), "no seccomp filter: {out}");
    // podman's default capability set (no CAP_SYS_ADMIN, 0x00000000a80425fb).
    assert!(
        out.contains("CapBnd:\t00000000a80425fb"),
        "capabilities: {out}"
    );
    assert!(out.ends_with("1024\n"), "nofile limit: {out}");

    let creates = p.calls_of("create");
    assert!(creates.len() >= 6, "runtime creates: {creates:?}");
    for c in &creates {
        assert!(
            c.iter().any(|a| a == "--bundle"),
            "create without --bundle: {c:?}"
        );
        assert!(
            c.iter().any(|a| a == "--pid-file"),
            "create without --pid-file: {c:?}"
        );
    }
    assert!(!p.calls_of("start").is_empty());
    assert!(!p.calls_of("delete").is_empty());
    p.assert_clean();
}

#[test]
fn podman_detached_exec_pause_stop_rm() {
    let Some(p) = Podman::new() else { return };

    p.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "t",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(
        p.ok(&["inspect", "-f", "{{.State.Status}}", "t"]).trim(),
        "running"
    );
    assert_eq!(p.ok(&["exec", "t", "echo", "hi"]), "hi\n");

    let out = p.output(&["exec", "t", "sh", "-c", "exit 4"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        describe("exec exit 4", &out)
    );

    let out = p.with_stdin(&["exec", "-i", "t", "cat"], "exec stdin\n");
    assert!(out.status.success(), "{}", describe("exec -i", &out));
    assert_eq!(text(&out.stdout), "exec stdin\n");

    let out = p.ok(&[
        "exec",
        "-u",
        "1000:1000",
        "-w",
        "/tmp",
        "-e",
        "FOO=bar",
        "t",
        "sh",
        "-c",
        "id -u; pwd; echo $FOO",
    ]);
    assert_eq!(out, "1000\n/tmp\nbar\n");

    // The exec'd process is in the container's PID namespace: sleep is PID 1 there.
    let out = p.ok(&["exec", "t", "cat", "/proc/1/cmdline"]);
    assert_eq!(out, "sleep\x001000\x00");
    let top = p.ok(&["top", "t", "pid", "args"]);
    assert!(top.contains("sleep 1000"), "podman top: {top}");

    p.ok(&["pause", "t"]);
    assert_eq!(
        p.ok(&["inspect", "-f", "{{.State.Status}}", "t"]).trim(),
        "paused"
    );
    p.ok(&["unpause", "t"]);
    assert_eq!(
        p.ok(&["inspect", "-f", "{{.State.Status}}", "t"]).trim(),
        "running"
    );
    assert_eq!(
        p.ok(&["exec", "t", "echo", "after unpause"]),
        "after unpause\n"
    );

    // sleep as PID 1 ignores SIGTERM, so podman sends SIGKILL after 2 s, as with runc.
    p.ok(&["stop", "-t", "2", "t"]);
    assert_eq!(
        p.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "t"
        ])
        .trim(),
        "exited 137"
    );
    p.ok(&["rm", "t"]);

    // What podman asked of the runtime.
    let execs = p.calls_of("exec");
    assert!(execs.len() >= 6, "runtime execs: {execs:?}");
    for e in &execs {
        for flag in ["--process", "--pid-file", "--detach"] {
            assert!(e.iter().any(|a| a == flag), "exec without {flag}: {e:?}");
        }
    }
    let kills = p.calls_of("kill");
    assert!(
        kills.iter().any(|k| k.last().is_some_and(|s| s == "15")),
        "no SIGTERM: {kills:?}"
    );
    assert!(
        kills.iter().any(|k| k.last().is_some_and(|s| s == "9")),
        "no SIGKILL: {kills:?}"
    );
    assert_eq!(p.calls_of("pause").len(), 1);
    assert_eq!(p.calls_of("resume").len(), 1);
    assert!(!p.calls_of("delete").is_empty());
    p.assert_clean();
}

#[test]
fn podman_terminal() {
    let Some(p) = Podman::new() else { return };

    let probe = "test -t 0 && test -t 1 && test -t 2 && echo tty-yes; tty";
    let out = p.ok(&[
        "run",
        "--rm",
        "-t",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        probe,
    ]);
    assert!(out.contains("tty-yes"), "no terminal: {out:?}");
    assert!(
        out.contains("/dev/pts/0"),
        "not the container's pts: {out:?}"
    );

    let out = p.output(&[
        "run",
        "--rm",
        "-t",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "exit 5",
    ]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        describe("-t exit 5", &out)
    );

    let creates = p.calls_of("create");
    assert!(
        creates
            .iter()
            .all(|c| c.iter().any(|a| a == "--console-socket")),
        "create without --console-socket: {creates:?}"
    );

    // A detached container with a terminal, and an exec with its own.
    p.ok(&[
        "run",
        "-d",
        "-t",
        "--network",
        "none",
        "--name",
        "tt",
        "busybox",
        "sh",
    ]);
    let out = p.ok(&["exec", "-t", "tt", "sh", "-c", probe]);
    assert!(out.contains("tty-yes"), "exec -t without terminal: {out:?}");
    let out = p.ok(&["exec", "tt", "sh", "-c", "test -t 1 || echo no-tty"]);
    assert_eq!(out, "no-tty\n");
    let exec_tty = p
        .calls_of("exec")
        .into_iter()
        .filter(|e| e.iter().any(|a| a == "--console-socket"))
        .count();
    assert_eq!(exec_tty, 1, "runtime execs: {:?}", p.calls_of("exec"));
    p.ok(&["rm", "-f", "-t", "0", "tt"]);
    p.assert_clean();
}

/// The runtime's own messages must not reach a container's output. isola-oci warns on stderr
/// about the 32-bit syscall names of podman's default seccomp profile, on every create and exec;
/// conmon gives the runtime the container's stderr, so the warning lands in `podman logs` and in
/// the stderr of every `podman exec` (runc and crun skip such names silently).
#[test]
fn podman_runtime_messages_stay_out_of_container_output() {
    let Some(p) = Podman::new() else { return };
    p.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "quiet",
        "busybox",
        "sleep",
        "1000",
    ]);
    let out = p.output(&["exec", "quiet", "true"]);
    assert!(out.status.success(), "{}", describe("exec", &out));
    assert_eq!(text(&out.stderr), "", "podman exec's stderr");
    let out = p.output(&["logs", "quiet"]);
    assert_eq!(text(&out.stdout), "", "podman logs (stdout)");
    assert_eq!(text(&out.stderr), "", "podman logs (stderr)");
    p.ok(&["rm", "-f", "-t", "0", "quiet"]);
}
