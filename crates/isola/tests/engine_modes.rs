//! The same user-visible behaviour in both isolation modes: each test body runs once with
//! `--isolation=process` and once with `--isolation=vm` (exit statuses, output streams, stdin,
//! env/user/workdir, exec, top, wait, kill, stop timeout, logs, the writable layer across
//! stop/start, volumes, the OOM killer, large and slowly read stdin with nothing lost). Then the VM-only checks: the seed scenario with no
//! container process on the host and one QEMU named `isola-vm-<ID>`, the guest's size from
//! `--memory`/`--cpus`, a killed VMM, `rm -f`, and flags that cannot apply to a VM.
//!
//! They need root; VM tests need QEMU and the guest kernel (`vm/build-kernel.sh`), which CI
//! builds: there a missing piece fails the test instead of skipping it. VM tests run on TCG here.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{assert_error, describe, eventually, Engine, Isola};

/// An isola with private roots for `mode`, or `None` (the test printed why).
fn isola(mode: &str) -> Option<Engine> {
    if !common::require_root() {
        return None;
    }
    if mode == "vm" && !common::require_vm() {
        return None;
    }
    Some(Engine::new())
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `isola run --isolation=MODE ARGS…`.
fn run(isola: &Isola, mode: &str, args: &[&str]) -> Output {
    let iso = format!("--isolation={mode}");
    let mut all = vec!["run", iso.as_str()];
    all.extend_from_slice(args);
    isola.run_timed(&all)
}

/// `isola run -d --isolation=MODE ARGS…`; the full ID.
fn run_d(isola: &Isola, mode: &str, args: &[&str]) -> String {
    let iso = format!("--isolation={mode}");
    let mut all = vec!["run", "-d", iso.as_str()];
    all.extend_from_slice(args);
    let id = isola.ok_timed(&all).trim().to_owned();
    assert_eq!(id.len(), 64, "run -d prints the ID: {id:?}");
    id
}

/// Defines `process_NAME` and `vm_NAME` from one body `fn(&Isola, mode)`.
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        mod process {
            $(#[test] fn $name() { if let Some(i) = super::isola("process") { super::$name(&i, "process") } })*
        }
        mod vm {
            $(#[test] fn $name() { if let Some(i) = super::isola("vm") { super::$name(&i, "vm") } })*
        }
    };
}

both_modes!(
    exit_statuses_and_streams,
    env_user_workdir,
    stdin_is_piped,
    large_stdin_reaches_run,
    large_stdin_reaches_exec,
    slowly_read_stdin_loses_nothing,
    exec_top_wait_kill,
    stop_timeout_and_logs,
    writable_layer_survives_stop_start,
    volumes,
    oom_kill,
);

fn exit_statuses_and_streams(isola: &Isola, mode: &str) {
    let out = run(isola, mode, &["--rm", "busybox", "echo", "hi"]);
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), "hi\n"),
        "{}",
        describe(&out)
    );
    let out = run(
        isola,
        mode,
        &[
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_error(
        &run(isola, mode, &["--rm", "busybox", "nosuchcmd"]),
        127,
        &["nosuchcmd"],
    );
    assert_error(
        &run(isola, mode, &["--rm", "busybox", "/etc"]),
        126,
        &["/etc"],
    );
    let out = run(
        isola,
        mode,
        &["--rm", "--init", "busybox", "sh", "-c", "kill -9 $$"],
    );
    assert_eq!(out.status.code(), Some(137), "{}", describe(&out));
    assert_eq!(isola.ok_timed(&["ps", "-aq"]), "");
    isola.assert_clean();
}

fn env_user_workdir(isola: &Isola, mode: &str) {
    let out = run(
        isola,
        mode,
        &[
            "--rm",
            "-e",
            "FOO=bar",
            "-u",
            "nobody",
            "-w",
            "/tmp",
            "--hostname",
            "boxy",
            "busybox",
            "sh",
            "-c",
            "echo $FOO $(id -u) $PWD $(hostname)",
        ],
    );
    assert_eq!(stdout(&out), "bar 65534 /tmp boxy\n", "{}", describe(&out));
}

fn stdin_is_piped(isola: &Isola, mode: &str) {
    let iso = format!("--isolation={mode}");
    let input: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let out = isola.run_timed_stdin(&["run", "-i", "--rm", &iso, "busybox", "md5sum"], &input);
    let want = Command::new("md5sum")
        .stdin(
            std::fs::File::open({
                let p = isola.scratch().join("input");
                std::fs::write(&p, &input).unwrap();
                p
            })
            .unwrap(),
        )
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out).split_whitespace().next(),
        stdout(&want).split_whitespace().next(),
        "{}",
        describe(&out)
    );
    // Without -i the container reads nothing.
    let out = isola.run_timed_stdin(&["run", "--rm", &iso, "busybox", "cat"], b"ignored\n");
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), ""));
}

/// `len` bytes that do not compress (xorshift), different for each `seed`.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The host's `md5sum` of `data`, the hex digest.
fn host_md5(isola: &Isola, data: &[u8]) -> String {
    let p = isola.scratch().join("md5-input");
    std::fs::write(&p, data).unwrap();
    let out = Command::new("md5sum").arg(&p).output().unwrap();
    std::fs::remove_file(&p).unwrap();
    stdout(&out).split_whitespace().next().unwrap().to_owned()
}

/// Asserts that `out` is a successful `md5sum` of `want` (the container's view of its stdin).
fn assert_md5(out: &Output, want: &str, took: Duration, len: usize) {
    assert_eq!(
        (out.status.code(), stdout(out).split_whitespace().next()),
        (Some(0), Some(want)),
        "{}",
        describe(out)
    );
    let mb = len as f64 / 1e6;
    eprintln!(
        "{mb:.0} MB of stdin in {took:.1?} ({:.1} MB/s end to end)",
        mb / took.as_secs_f64()
    );
}

/// Large stdin: far more than the guest agent may queue (16 MiB) and than one flow-control
/// window; a command that hangs or loses a byte fails.
const LARGE_STDIN: usize = 64 << 20;
/// Longest one command with [`LARGE_STDIN`] may take (TCG on a busy 2-core host).
const LARGE_TIMEOUT: Duration = Duration::from_secs(120);

fn large_stdin_reaches_run(isola: &Isola, mode: &str) {
    let iso = format!("--isolation={mode}");
    let input = noise(LARGE_STDIN, 1);
    let want = host_md5(isola, &input);
    let t = Instant::now();
    let out = isola.run_stdin_within(
        &["run", "-i", "--rm", &iso, "busybox", "md5sum"],
        &input,
        LARGE_TIMEOUT,
    );
    assert_md5(&out, &want, t.elapsed(), input.len());
    // A container that stops reading early ends at once: the input still pending is dropped.
    let out = isola.run_stdin_within(
        &[
            "run",
            "-i",
            "--rm",
            &iso,
            "busybox",
            "sh",
            "-c",
            "head -c 1000 | wc -c",
        ],
        &input,
        Duration::from_secs(60),
    );
    assert_eq!(
        (out.status.code(), stdout(&out).trim()),
        (Some(0), "1000"),
        "{}",
        describe(&out)
    );
    isola.assert_clean();
}

fn large_stdin_reaches_exec(isola: &Isola, mode: &str) {
    run_d(isola, mode, &["--name", "sink", "busybox", "sleep", "1000"]);
    let input = noise(LARGE_STDIN, 2);
    let want = host_md5(isola, &input);
    let t = Instant::now();
    let out = isola.run_stdin_within(&["exec", "-i", "sink", "md5sum"], &input, LARGE_TIMEOUT);
    assert_md5(&out, &want, t.elapsed(), input.len());
    // An exec that reads a little and exits: `exec` returns, the container lives on.
    let out = isola.run_stdin_within(
        &["exec", "-i", "sink", "head", "-c", "3"],
        &input,
        Duration::from_secs(60),
    );
    assert_eq!(
        (out.status.code(), out.stdout.as_slice()),
        (Some(0), &input[..3]),
        "{}",
        describe(&out)
    );
    assert_eq!(
        isola.ok_timed(&["exec", "sink", "echo", "alive"]),
        "alive
"
    );
    isola.ok_timed(&["rm", "-f", "sink"]);
    isola.assert_clean();
}

fn slowly_read_stdin_loses_nothing(isola: &Isola, mode: &str) {
    let iso = format!("--isolation={mode}");
    // While the container sleeps, the input waits on the host (in VM mode more than the agent
    // may queue would otherwise be sent by then).
    let input = noise(40 << 20, 3);
    let want = host_md5(isola, &input);
    let t = Instant::now();
    let out = isola.run_stdin_within(
        &[
            "run",
            "-i",
            "--rm",
            &iso,
            "busybox",
            "sh",
            "-c",
            "sleep 8; md5sum",
        ],
        &input,
        LARGE_TIMEOUT,
    );
    assert_md5(&out, &want, t.elapsed(), input.len());
    isola.assert_clean();
}

fn exec_top_wait_kill(isola: &Isola, mode: &str) {
    let id = run_d(isola, mode, &["--name", "box", "busybox", "sleep", "1000"]);
    let out = isola.run_timed(&["exec", "box", "sh", "-c", "echo in; echo err >&2; exit 5"]);
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(5), "in\n"),
        "{}",
        describe(&out)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let out = isola.run_timed(&[
        "exec",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "nobody",
        "box",
        "sh",
        "-c",
        "echo $FOO $PWD $(id -u)",
    ]);
    assert_eq!(stdout(&out), "bar /tmp 65534\n", "{}", describe(&out));
    let out = isola.run_timed_stdin(&["exec", "-i", "box", "cat"], b"piped\n");
    assert_eq!(stdout(&out), "piped\n", "{}", describe(&out));
    assert_error(
        &isola.run_timed(&["exec", "box", "nosuchcmd"]),
        127,
        &["nosuchcmd"],
    );
    // The exec'd process is in the container: it sees the container's PID 1.
    let out = isola.ok_timed(&["exec", "box", "cat", "/proc/1/cmdline"]);
    assert!(out.starts_with("sleep"), "{out:?}");
    isola.ok_timed(&["exec", "-d", "box", "sleep", "999"]);
    let top = isola.ok_timed(&["top", "box"]);
    let titles: Vec<&str> = top.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        titles,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    assert!(top.lines().any(|l| l.ends_with("sleep 1000")), "{top}");
    assert!(top.lines().any(|l| l.ends_with("sleep 999")), "{top}");

    let waiter = isola
        .command(&["wait", "box"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(isola.ok_timed(&["kill", "box"]), "box\n");
    let out = common::finish_within(waiter, Duration::from_secs(30), "wait box");
    assert_eq!(stdout(&out), "137\n", "{}", describe(&out));
    assert_eq!(isola.ok_timed(&["wait", "box"]), "137\n");
    assert_error(&isola.run_timed(&["exec", "box", "true"]), 125, &["box"]);
    isola.ok_timed(&["rm", "box"]);
    isola.assert_container_gone(&id);
}

fn stop_timeout_and_logs(isola: &Isola, mode: &str) {
    run_d(
        isola,
        mode,
        &[
            "--name",
            "deaf",
            "--stop-timeout",
            "1",
            "busybox",
            "sh",
            "-c",
            "trap '' TERM; echo ready; sleep 100",
        ],
    );
    assert!(
        eventually(Duration::from_secs(10), || isola
            .ok_timed(&["logs", "deaf"])
            == "ready\n"),
        "logs show the output"
    );
    let t = Instant::now();
    assert_eq!(isola.ok_timed(&["stop", "deaf"]), "deaf\n");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "stop took {took:?}"
    );
    let s = &isola.container("deaf")["State"];
    assert_eq!(
        (s["Status"].as_str(), s["ExitCode"].as_i64()),
        (Some("exited"), Some(137)),
        "{s}"
    );
    // SIGTERM ends a process that does not ignore it: 128 + 15.
    run_d(
        isola,
        mode,
        &["--name", "polite", "--init", "busybox", "sleep", "100"],
    );
    // Once the init has started its child it has its signal handlers (before that, as PID 1 of
    // the container, it would ignore SIGTERM: the same in both modes).
    assert!(eventually(Duration::from_secs(10), || {
        isola
            .ok_timed(&["top", "polite"])
            .lines()
            .any(|l| l.ends_with(" sleep 100") && !l.contains("init"))
    }));
    isola.ok_timed(&["stop", "polite"]);
    assert_eq!(isola.container("polite")["State"]["ExitCode"], 143);
    isola.ok_timed(&["rm", "deaf", "polite"]);
    isola.assert_clean();
}

fn writable_layer_survives_stop_start(isola: &Isola, mode: &str) {
    let id = run_d(
        isola,
        mode,
        &["--name", "keeper", "busybox", "sleep", "1000"],
    );
    isola.ok_timed(&[
        "exec",
        "keeper",
        "sh",
        "-c",
        "echo kept > /data; rm /bin/true",
    ]);
    isola.ok_timed(&["stop", "-t", "1", "keeper"]);
    assert_eq!(isola.ok_timed(&["start", "keeper"]), "keeper\n");
    assert_eq!(
        isola.ok_timed(&["exec", "keeper", "cat", "/data"]),
        "kept\n"
    );
    let out = isola.run_timed(&["exec", "keeper", "ls", "/bin/true"]);
    assert_ne!(out.status.code(), Some(0), "the deletion survived too");
    assert_eq!(isola.ok_timed(&["rm", "-f", "keeper"]), "keeper\n");
    isola.assert_container_gone(&id);
}

fn volumes(isola: &Isola, mode: &str) {
    let dir = isola.scratch().join("vol");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("in.txt"), "from host\n").unwrap();
    let file = isola.scratch().join("single.txt");
    std::fs::write(&file, "one file\n").unwrap();
    let v1 = format!("{}:/data", dir.display());
    let v2 = format!("{}:/etc/single.txt:ro", file.display());
    let out = run(
        isola,
        mode,
        &["--rm", "-v", &v1, "-v", &v2, "busybox", "sh", "-c",
          "cat /data/in.txt /etc/single.txt; echo from guest > /data/out.txt; echo x > /etc/single.txt || echo read-only"],
    );
    assert_eq!(
        stdout(&out),
        "from host\none file\nread-only\n",
        "{}",
        describe(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("out.txt")).unwrap(),
        "from guest\n"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "one file\n");
    isola.assert_clean();
}

fn oom_kill(isola: &Isola, mode: &str) {
    run_d(
        isola,
        mode,
        &[
            "--name",
            "hog",
            "--memory",
            "16m",
            "busybox",
            "sh",
            "-c",
            "tail /dev/zero",
        ],
    );
    assert_eq!(isola.ok_timed(&["wait", "hog"]), "137\n");
    let s = &isola.container("hog")["State"];
    assert_eq!(
        (s["OOMKilled"].as_bool(), s["ExitCode"].as_i64()),
        (Some(true), Some(137)),
        "{s}"
    );
    isola.ok_timed(&["rm", "hog"]);
    isola.assert_clean();
}

// --- VM only ---------------------------------------------------------------------------------

/// Host processes named `comm` (as `pgrep -x` finds them).
fn pgrep(comm: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .collect()
}

/// Whether `pid` descends from `ancestor`.
fn descends_from(pid: i32, ancestor: i32) -> bool {
    let mut p = pid;
    for _ in 0..64 {
        if p == ancestor {
            return true;
        }
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let Some(after) = stat.rsplit_once(')').map(|(_, a)| a.to_owned()) else {
            return false;
        };
        p = after
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        if p <= 1 {
            return false;
        }
    }
    false
}

fn comm(pid: i64) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim_end()
        .to_owned()
}

#[test]
fn vm_seed_scenario() {
    let Some(isola) = isola("vm") else { return };
    let id = run_d(
        &isola,
        "vm",
        &["--name", "pinger", "busybox", "ping", "localhost"],
    );
    let v = isola.container("pinger");
    assert_eq!(v["HostConfig"]["Isolation"], "vm");
    let qemu = v["State"]["Pid"].as_i64().unwrap();
    assert_eq!(
        comm(qemu),
        format!("isola-vm-{}", &id[..6]),
        "the VMM is named after the container"
    );
    assert!(comm(qemu).len() <= 15);
    assert!(
        v["VM"]["Boot"]["TotalMs"].as_u64().unwrap() > 0,
        "{}",
        v["VM"]
    );

    // top lists ping with its PID inside the guest.
    let top = isola.ok_timed(&["top", "pinger"]);
    let row = top
        .lines()
        .find(|l| l.ends_with("ping localhost"))
        .unwrap_or_else(|| panic!("{top}"));
    let guest_pid: i64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(guest_pid >= 1);
    // On the host, no ping belongs to this container: nothing under its monitor or its VMM,
    // nothing in a cgroup named after it (process-mode tests may run pings of their own).
    let vmm = qemu as i32;
    for pid in pgrep("ping") {
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        assert!(
            !cg.contains(&id),
            "host process {pid} named ping is in the VM container's cgroup"
        );
        assert!(
            !descends_from(pid, vmm),
            "host process {pid} named ping descends from the VMM"
        );
    }
    assert!(
        eventually(Duration::from_secs(15), || isola
            .ok_timed(&["logs", "pinger"])
            .matches("bytes from 127.0.0.1")
            .count()
            >= 2),
        "logs show ping's replies"
    );
    let t = Instant::now();
    assert_eq!(isola.ok_timed(&["stop", "pinger"]), "pinger\n");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "stop took {:?}",
        t.elapsed()
    );
    assert_eq!(isola.container("pinger")["State"]["Status"], "exited");
    assert!(
        eventually(Duration::from_secs(5), || !common::process_alive(
            qemu as i32
        )),
        "QEMU {qemu} is gone"
    );
    assert_eq!(isola.ok_timed(&["rm", "pinger"]), "pinger\n");
    isola.assert_container_gone(&id);
    assert_eq!(isola.container_dirs(), Vec::<PathBuf>::new());
}

#[test]
fn vm_size_follows_memory_and_cpus() {
    let Some(isola) = isola("vm") else { return };
    run_d(
        &isola,
        "vm",
        &[
            "--name", "sized", "--memory", "64m", "--cpus", "2", "busybox", "sleep", "100",
        ],
    );
    let v = isola.container("sized");
    assert_eq!(v["VM"]["Vcpus"], 2, "{}", v["VM"]);
    assert_eq!(v["VM"]["MemoryMib"], 64 + 96, "{}", v["VM"]);
    assert_eq!(isola.ok_timed(&["exec", "sized", "nproc"]), "2\n");
    // The guest's RAM is the limit plus the documented overhead; the cgroup inside still limits
    // the container to 64 MiB.
    let limit = isola.ok_timed(&["exec", "sized", "cat", "/sys/fs/cgroup/memory.max"]);
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    isola.ok_timed(&["rm", "-f", "sized"]);
    isola.assert_clean();
}

#[test]
fn vm_killed_vmm_leaves_an_exited_container() {
    let Some(isola) = isola("vm") else { return };
    let id = run_d(
        &isola,
        "vm",
        &["--name", "victim", "busybox", "sleep", "1000"],
    );
    let qemu = isola.container("victim")["State"]["Pid"].as_i64().unwrap() as i32;
    // SAFETY: kill(2) on the VMM isola just started for this test.
    unsafe { libc::kill(qemu, libc::SIGKILL) };
    assert!(
        eventually(Duration::from_secs(10), || isola.container("victim")
            ["State"]["Status"]
            == "exited"),
        "the container is marked exited"
    );
    let s = &isola.container("victim")["State"];
    assert_eq!(s["ExitCode"], 137, "{s}");
    assert!(s["Error"].as_str().unwrap().contains("QEMU"), "{s}");
    isola.ok_timed(&["rm", "victim"]);
    isola.assert_container_gone(&id);
}

#[test]
fn vm_rm_force_kills_the_vm() {
    let Some(isola) = isola("vm") else { return };
    let id = run_d(
        &isola,
        "vm",
        &["--name", "doomed", "busybox", "sleep", "1000"],
    );
    let qemu = isola.container("doomed")["State"]["Pid"].as_i64().unwrap() as i32;
    assert_eq!(isola.ok_timed(&["rm", "-f", "doomed"]), "doomed\n");
    assert!(!common::process_alive(qemu), "QEMU {qemu} is gone");
    isola.assert_container_gone(&id);
    assert_eq!(isola.container_dirs(), Vec::<PathBuf>::new());
}

#[test]
fn vm_refuses_what_cannot_apply() {
    let Some(isola) = isola("vm") else { return };
    let out = run(&isola, "vm", &["--rm", "--network=host", "busybox", "true"]);
    assert_error(&out, 125, &["--network=host"]);
    let out = run(
        &isola,
        "hyperv",
        &["--rm", "--network=host", "busybox", "true"],
    );
    assert_error(&out, 125, &["--network=host"]);
    assert_eq!(isola.ok_timed(&["ps", "-aq"]), "");
    isola.assert_clean();
}
