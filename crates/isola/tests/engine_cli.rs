//! The container commands end to end, as a Docker user types them: the seed scenario (run -d,
//! top, logs, stop, rm and nothing left behind), exit statuses, stdin, exec, wait, inspect,
//! create/start/attach/restart, pause, signal forwarding, and flag errors. They need root; each
//! uses its own roots.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{describe, Isola};
use serde_json::Value;

/// Longest any one isola command may take here: a hang fails the test instead of stalling CI.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits for `child` to finish, killing it (and failing) after [`COMMAND_TIMEOUT`].
fn finish(child: std::process::Child, what: &str) -> Output {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on our own child, which the waiting thread has not reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("isola {what} took longer than {COMMAND_TIMEOUT:?}");
        }
    }
}

/// `isola args`, failing the test if it hangs.
fn run(isola: &Isola, args: &[&str]) -> Output {
    let child = isola
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(child, &args.join(" "))
}

/// `isola args`, which must succeed; its stdout.
fn ok(isola: &Isola, args: &[&str]) -> String {
    let out = run(isola, args);
    assert!(out.status.success(), "isola {args:?}:\n{}", describe(&out));
    stdout(&out)
}

/// An isola with private roots, or `None` (the test reports why) without root.
fn isola() -> Option<Isola> {
    common::require_root().then(Isola::new)
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `isola inspect NAME`, the single object.
fn inspect(isola: &Isola, name: &str) -> Value {
    let v: Value = serde_json::from_str(&ok(isola, &["inspect", name])).unwrap();
    v[0].clone()
}

/// `isola ps -a --format json`.
fn ps_all(isola: &Isola) -> Vec<Value> {
    serde_json::from_str(&ok(isola, &["ps", "-a", "--format", "json"])).unwrap()
}

/// The container directories left under `--root`.
fn container_dirs(isola: &Isola) -> Vec<PathBuf> {
    match std::fs::read_dir(isola.root.join("containers")) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Cgroup directories of container `id` in any hierarchy (v1 controllers or the v2 tree).
fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let mut candidates = vec![base.join("isola").join(id)];
    if let Ok(d) = std::fs::read_dir(base) {
        candidates.extend(d.map(|e| e.unwrap().path().join("isola").join(id)));
    }
    candidates.into_iter().filter(|p| p.exists()).collect()
}

/// Asserts nothing of container `id` (or any other) is left: no mount, cgroup or directory.
fn assert_gone(isola: &Isola, id: &str) {
    isola.assert_clean();
    assert_eq!(
        cgroup_dirs(id),
        Vec::<PathBuf>::new(),
        "cgroups left behind"
    );
    assert_eq!(
        container_dirs(isola),
        Vec::<PathBuf>::new(),
        "container directories left behind"
    );
    assert_eq!(ok(isola, &["ps", "-aq"]), "");
}

/// Polls `f` until it holds or `timeout` passes.
fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Runs `isola args` with `input` on its stdin.
fn with_stdin(isola: &Isola, args: &[&str], input: &[u8]) -> Output {
    let mut child = isola
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    finish(child, &args.join(" "))
}

/// Asserts `out` failed with `status` and one `Error: ` line mentioning `needle`.
fn assert_error(out: &Output, status: i32, needle: &str) {
    assert_eq!(code(out), Some(status), "{}", describe(out));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("Error: ") && lines[0].contains(needle),
        "expected one Error line mentioning {needle:?}:\n{}",
        describe(out)
    );
}

#[test]
fn seed_scenario() {
    let Some(isola) = isola() else { return };
    let id = ok(
        &isola,
        &[
            "run",
            "-d",
            "--name",
            "pinger",
            "busybox",
            "ping",
            "localhost",
        ],
    );
    let id = id.trim().to_owned();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "run -d prints the full ID: {id:?}"
    );

    // top lists ping with its host PID, and the host sees the same process.
    let top = ok(&isola, &["top", "pinger"]);
    let mut lines = top.lines();
    let titles: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        titles,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    let row = lines
        .find(|l| l.contains("ping localhost"))
        .unwrap_or_else(|| panic!("top lists ping:\n{top}"));
    let pid: i32 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
    let comm = Command::new("ps")
        .args(["-p", &pid.to_string(), "-o", "comm="])
        .output()
        .unwrap();
    assert_eq!(stdout(&comm).trim(), "ping", "the host's PID {pid} is ping");
    assert_eq!(inspect(&isola, "pinger")["State"]["Pid"], pid);

    let ps = ok(&isola, &["ps"]);
    assert!(ps.starts_with("CONTAINER ID   IMAGE"), "{ps}");
    let line = ps.lines().nth(1).unwrap();
    assert!(line.starts_with(&id[..12]), "{ps}");
    for field in ["busybox", "\"ping localhost\"", "Up ", "pinger"] {
        assert!(line.contains(field), "ps shows {field}: {ps}");
    }

    // ping's replies reach the log.
    assert!(
        eventually(Duration::from_secs(5), || {
            isola
                .ok(&["logs", "pinger"])
                .contains("bytes from 127.0.0.1")
        }),
        "logs show ping's replies"
    );
    std::thread::sleep(Duration::from_secs(2));
    let logs = ok(&isola, &["logs", "pinger"]);
    assert!(
        logs.lines()
            .filter(|l| l.contains("bytes from 127.0.0.1"))
            .count()
            >= 2,
        "{logs}"
    );

    // stop ends it within the stop timeout (10 s; ping as PID 1 ignores SIGTERM, as in Docker,
    // so it is killed when the timeout ends).
    let t = Instant::now();
    assert_eq!(ok(&isola, &["stop", "pinger"]), "pinger\n");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(13), "stop took {took:?}");
    let state = &inspect(&isola, "pinger")["State"];
    assert_eq!(state["Status"], "exited");
    assert_eq!(state["Running"], false);
    assert!(
        eventually(Duration::from_secs(2), || !Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists()),
        "process {pid} is gone"
    );

    assert_eq!(ok(&isola, &["rm", "pinger"]), "pinger\n");
    assert_gone(&isola, &id);
}

#[test]
fn foreground_output_and_exit_statuses() {
    let Some(isola) = isola() else { return };
    let out = run(&isola, &["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!(
        (code(&out), stdout(&out).as_str()),
        (Some(0), "hi\n"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        container_dirs(&isola),
        Vec::<PathBuf>::new(),
        "--rm removes"
    );

    let out = run(
        &isola,
        &[
            "run",
            "--name",
            "three",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!(code(&out), Some(3), "{}", describe(&out));
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    let out = run(
        &isola,
        &["run", "--name", "missing", "busybox", "nosuchcmd"],
    );
    assert_error(&out, 127, "nosuchcmd");
    // As Docker, the container stays, with the error recorded.
    let state = &inspect(&isola, "missing")["State"];
    assert_eq!(state["ExitCode"], 127);
    assert!(state["Error"].as_str().unwrap().contains("nosuchcmd"));

    assert_error(
        &run(&isola, &["run", "--rm", "busybox", "/etc"]),
        126,
        "/etc",
    );
    assert_error(
        &run(&isola, &["run", "-d", "--rm", "busybox", "nosuchcmd"]),
        127,
        "nosuchcmd",
    );

    let out = run(
        &isola,
        &["run", "--rm", "--init", "busybox", "sh", "-c", "kill -9 $$"],
    );
    assert_eq!(code(&out), Some(137), "{}", describe(&out));

    assert_error(
        &run(&isola, &["run", "nosuchimage"]),
        125,
        "no such image: nosuchimage",
    );
    ok(&isola, &["rm", "missing", "three"]);
    assert_eq!(
        ok(&isola, &["ps", "-aq"]),
        "",
        "only the failed runs were left"
    );
    isola.assert_clean();
}

#[test]
fn stdin_reaches_the_container() {
    let Some(isola) = isola() else { return };
    let out = with_stdin(&isola, &["run", "-i", "--rm", "busybox", "cat"], b"hi\n");
    assert_eq!(
        (code(&out), stdout(&out).as_str()),
        (Some(0), "hi\n"),
        "{}",
        describe(&out)
    );
    // Without -i the container reads nothing.
    let out = with_stdin(&isola, &["run", "--rm", "busybox", "cat"], b"ignored\n");
    assert_eq!(
        (code(&out), stdout(&out).as_str()),
        (Some(0), ""),
        "{}",
        describe(&out)
    );
    // -it needs a terminal.
    let out = with_stdin(&isola, &["run", "-it", "busybox", "sh"], b"");
    assert_error(&out, 125, "not a TTY");
    assert_eq!(ok(&isola, &["ps", "-aq"]), "");
}

#[test]
fn exec_and_wait() {
    let Some(isola) = isola() else { return };
    ok(
        &isola,
        &["run", "-d", "--name", "box", "busybox", "sleep", "1000"],
    );
    let out = run(&isola, &["exec", "box", "sh", "-c", "echo in; exit 5"]);
    assert_eq!(
        (code(&out), stdout(&out).as_str()),
        (Some(5), "in\n"),
        "{}",
        describe(&out)
    );
    let out = run(
        &isola,
        &[
            "exec",
            "-e",
            "FOO=bar",
            "-w",
            "/tmp",
            "box",
            "sh",
            "-c",
            "echo $FOO $PWD",
        ],
    );
    assert_eq!(stdout(&out), "bar /tmp\n", "{}", describe(&out));
    let out = with_stdin(&isola, &["exec", "-i", "box", "cat"], b"piped\n");
    assert_eq!(stdout(&out), "piped\n", "{}", describe(&out));
    assert_error(
        &run(&isola, &["exec", "box", "nosuchcmd"]),
        127,
        "nosuchcmd",
    );
    // The exec'd process is in the container: it sees the container's PID 1.
    let out = ok(&isola, &["exec", "box", "cat", "/proc/1/cmdline"]);
    assert!(out.starts_with("sleep"), "{out:?}");

    let waiter = isola
        .command(&["wait", "box"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ok(&isola, &["kill", "box"]), "box\n");
    let out = finish(waiter, "wait box");
    assert_eq!(stdout(&out), "137\n", "{}", describe(&out));
    assert_eq!(
        ok(&isola, &["wait", "box"]),
        "137\n",
        "wait on a stopped container"
    );
    assert_error(&run(&isola, &["exec", "box", "true"]), 125, "box");
    ok(&isola, &["rm", "box"]);
    isola.assert_clean();
}

#[test]
fn inspect_fields() {
    let Some(isola) = isola() else { return };
    let id = ok(
        &isola,
        &[
            "run",
            "-d",
            "--name",
            "insp",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "20",
            "-v",
            "/tmp:/host:ro",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    let v = inspect(&isola, "insp");
    assert_eq!(v["Id"], id.trim());
    assert_eq!(v["Name"], "/insp");
    assert_eq!(v["State"]["Status"], "running");
    assert_eq!(v["State"]["Running"], true);
    let pid = v["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 1 && Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(v["HostConfig"]["Isolation"], "process");
    assert_eq!(v["HostConfig"]["Memory"], 64 << 20);
    assert_eq!(v["HostConfig"]["NanoCpus"], 500_000_000);
    assert_eq!(v["HostConfig"]["PidsLimit"], 20);
    assert_eq!(v["HostConfig"]["Binds"][0], "/tmp:/host:ro");
    assert_eq!(v["Config"]["Image"], "busybox");
    assert_eq!(v["Path"], "sleep");
    // A name is tried as a container, then as an image.
    let image = inspect(&isola, "busybox");
    assert!(
        image["Id"].as_str().unwrap().starts_with("sha256:"),
        "{image}"
    );
    assert_eq!(
        ok(
            &isola,
            &[
                "inspect",
                "-f",
                "{{.State.Pid}} {{.HostConfig.Isolation}}",
                "insp"
            ]
        ),
        format!("{pid} process\n")
    );
    assert!(isola
        .fail(&["inspect", "nothing"])
        .contains("no such object: nothing"));
    assert!(isola
        .fail(&["inspect", "--type", "image", "insp"])
        .contains("no such image"));
    // An image a container uses cannot be removed.
    assert!(isola.fail(&["rmi", "busybox"]).contains("insp"));
    ok(&isola, &["rm", "-f", "insp"]);
    isola.assert_clean();
}

#[test]
fn create_start_attach_restart() {
    let Some(isola) = isola() else { return };
    let id = ok(
        &isola,
        &[
            "create",
            "--name",
            "c1",
            "busybox",
            "sh",
            "-c",
            "echo run; exit 4",
        ],
    );
    assert_eq!(id.trim().len(), 64);
    let ps = ps_all(&isola);
    assert_eq!(
        (ps[0]["Names"].as_str(), ps[0]["Status"].as_str()),
        (Some("c1"), Some("Created"))
    );
    assert_eq!(ps[0]["Command"], "sh -c echo run; exit 4");
    assert_eq!(
        ok(&isola, &["ps", "-q"]),
        "",
        "ps without -a lists running ones only"
    );

    let out = run(&isola, &["start", "-a", "c1"]);
    assert_eq!(
        (code(&out), stdout(&out).as_str()),
        (Some(4), "run\n"),
        "{}",
        describe(&out)
    );
    let ps = ps_all(&isola);
    assert!(
        ps[0]["Status"].as_str().unwrap().starts_with("Exited (4) "),
        "{ps:?}"
    );
    assert_eq!(ok(&isola, &["start", "c1"]), "c1\n");
    assert_eq!(ok(&isola, &["wait", "c1"]), "4\n");
    assert_eq!(ok(&isola, &["logs", "c1"]), "run\nrun\n");
    assert_eq!(ok(&isola, &["logs", "--tail", "1", "c1"]), "run\n");
    assert_eq!(ok(&isola, &["logs", "--since", "1h", "c1"]), "run\nrun\n");

    ok(&isola, &["create", "-i", "--name", "c2", "busybox", "cat"]);
    let out = with_stdin(&isola, &["start", "-ai", "c2"], b"via start\n");
    assert_eq!(
        (code(&out), stdout(&out).as_str()),
        (Some(0), "via start\n"),
        "{}",
        describe(&out)
    );

    ok(
        &isola,
        &["run", "-d", "--name", "r", "busybox", "sleep", "1000"],
    );
    let before = inspect(&isola, "r")["State"]["Pid"].clone();
    assert_eq!(ok(&isola, &["restart", "-t", "1", "r"]), "r\n");
    let after = inspect(&isola, "r")["State"].clone();
    assert_eq!(after["Running"], true);
    assert_ne!(after["Pid"], before, "a new process");

    let attach = isola
        .command(&["attach", "r"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    ok(&isola, &["kill", "-s", "SIGKILL", "r"]);
    let out = finish(attach, "attach r");
    assert_eq!(
        code(&out),
        Some(137),
        "attach ends with the status: {}",
        describe(&out)
    );

    let out = run(&isola, &["rm", "c1", "c2", "r", "nosuch"]);
    assert_error(&out, 125, "no such container: nosuch");
    assert_eq!(stdout(&out), "c1\nc2\nr\n");
    isola.assert_clean();
    assert_eq!(container_dirs(&isola), Vec::<PathBuf>::new());
}

#[test]
fn pause_and_unpause() {
    let Some(isola) = isola() else { return };
    ok(
        &isola,
        &["run", "-d", "--name", "p", "busybox", "sleep", "1000"],
    );
    assert_eq!(ok(&isola, &["pause", "p"]), "p\n");
    let ps = ps_all(&isola);
    assert_eq!(ps[0]["State"], "paused");
    assert!(
        ps[0]["Status"].as_str().unwrap().ends_with("(Paused)"),
        "{ps:?}"
    );
    assert_eq!(ok(&isola, &["unpause", "p"]), "p\n");
    assert_eq!(ps_all(&isola)[0]["State"], "running");
    assert!(isola.fail(&["unpause", "p"]).contains("not paused"));
    ok(&isola, &["pause", "p"]);
    // A paused container can be removed by force.
    assert_eq!(ok(&isola, &["rm", "-f", "p"]), "p\n");
    isola.assert_clean();
}

#[test]
fn signals_reach_a_foreground_container() {
    let Some(isola) = isola() else { return };
    let script = "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done";
    let mut child = isola
        .command(&["run", "--rm", "busybox", "sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    // SAFETY: kill(2) on our own child, which has not been waited for.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!((status.code(), rest.as_str()), (Some(7), "got-term\n"));
}

#[test]
fn bad_flags_name_the_flag_and_create_nothing() {
    let Some(isola) = isola() else { return };
    for (args, needle) in [
        (
            &["run", "--memory", "12q", "busybox"][..],
            "--memory \"12q\": invalid size",
        ),
        (
            &["run", "-v", "x", "busybox"],
            "-v \"x\": expected HOST:CONTAINER[:ro]",
        ),
        (&["run", "--ulimit", "bogus=1", "busybox"], "--ulimit"),
        (&["run", "--cpus", "0", "busybox"], "--cpus"),
        (&["run", "--isolation", "kvm", "busybox"], "--isolation"),
        (&["run", "-w", "relative", "busybox"], "-w"),
        (
            &["run", "--stop-signal", "NOPE", "busybox"],
            "--stop-signal",
        ),
        (&["create", "--tmpfs", "rel", "busybox"], "--tmpfs"),
        (&["kill", "-s", "NOPE", "x"], "--signal"),
        (&["logs", "--since", "yesterday", "x"], "--since"),
    ] {
        let err = isola.fail(args);
        assert!(err.contains(needle), "isola {args:?}: {err}");
    }
    assert_eq!(ok(&isola, &["ps", "-aq"]), "");
    for cmd in ["stop", "rm", "wait", "top", "logs", "pause", "attach"] {
        assert!(
            isola
                .fail(&[cmd, "nosuch"])
                .contains("no such container: nosuch"),
            "{cmd}"
        );
    }
}

#[test]
fn info_reports_the_host() {
    let Some(isola) = isola() else { return };
    let v: Value = serde_json::from_str(&ok(&isola, &["info", "--format", "json"])).unwrap();
    assert_eq!(v["RootDir"], isola.root.to_str().unwrap());
    let default = v["DefaultIsolation"].as_str().unwrap_or_default();
    assert!(["process", "vm"].contains(&default), "{v}");
    let text = ok(&isola, &["info"]);
    assert!(text.contains("KernelVersion: "), "{text}");
    assert!(text.contains("CgroupVersion: "), "{text}");

    // The VM section: the pieces and the accelerator with its reason, or what is missing.
    let status = v["Isolations"]["vm"].as_str().unwrap_or_default();
    let vm = &v["VM"];
    if status.starts_with("available") {
        let accel = vm["Accelerator"].as_str().unwrap_or_default();
        assert!(["kvm", "tcg"].contains(&accel), "{vm}");
        assert_eq!(status, format!("available ({accel})"));
        for key in [
            "QemuVersion",
            "KernelVersion",
            "AgentVersion",
            "AcceleratorReason",
        ] {
            assert!(
                !vm[key].as_str().unwrap_or_default().is_empty(),
                "{key}: {vm}"
            );
        }
        let initramfs = vm["Initramfs"].as_str().unwrap_or_default();
        assert!(
            initramfs.starts_with(isola.root.join("vm").to_str().unwrap()),
            "{vm}"
        );
        assert!(text.contains("AcceleratorReason: "), "{text}");
        assert!(
            vm["Templates"].is_boolean(),
            "whether VMs start from templates: {vm}"
        );
    } else {
        // CI builds the kernel and the static agent and installs QEMU: VM isolation must be there.
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0") {
            panic!("VM isolation not available in CI: {vm}");
        }
        assert!(status.starts_with("not available"), "{status}");
        assert!(!vm["Missing"].as_array().unwrap().is_empty(), "{vm}");
        assert!(text.contains("Missing:\n"), "{text}");
    }
}

#[test]
fn info_says_what_vm_isolation_misses() {
    let Some(isola) = isola() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[vm]\nqemu = \"/nonexistent/qemu\"\nkernel = \"/nonexistent/vmlinux\"\nagent = \"/nonexistent/isola-agent\"\naccelerator = \"tcg\"\n",
    )
    .unwrap();
    let run_info = |format: &str| {
        let child = isola
            .command(&["info", "--format", format])
            .env("ISOLA_CONFIG", &config)
            .env_remove("ISOLA_KERNEL")
            .env_remove("ISOLA_AGENT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = finish(child, "info");
        assert!(out.status.success(), "{}", describe(&out));
        stdout(&out)
    };
    let v: Value = serde_json::from_str(&run_info("json")).unwrap();
    assert_eq!(
        v["Isolations"]["vm"],
        "not available: see VM (missing or unusable: QEMU, guest kernel, guest agent)"
    );
    let vm = &v["VM"];
    assert_eq!(vm["AcceleratorSetting"], "tcg");
    let missing: Vec<&str> = vm["Missing"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(missing.len(), 3, "{vm}");
    // Each says what is missing and how to get it.
    assert!(
        missing[0].contains("/nonexistent/qemu") && missing[0].contains("qemu-system-x86"),
        "{}",
        missing[0]
    );
    assert!(
        missing[1].contains("/nonexistent/vmlinux") && missing[1].contains("vm/build-kernel.sh"),
        "{}",
        missing[1]
    );
    assert!(
        missing[2].contains("/nonexistent/isola-agent")
            && missing[2].contains("scripts/build-agent.sh"),
        "{}",
        missing[2]
    );
    for key in ["Qemu", "Kernel", "Agent"] {
        assert_eq!(vm[key], "missing", "{vm}");
    }
    let text = run_info("text");
    assert!(
        text.contains("  Missing:\n    - QEMU not found at /nonexistent/qemu"),
        "{text}"
    );
}
