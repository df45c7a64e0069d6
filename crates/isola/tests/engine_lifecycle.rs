//! A container's life end to end: stop (stop signal, then SIGKILL after the timeout), kill,
//! restart and the writable layer across stop/start, rm of a running container, wait, a killed
//! monitor and a simulated host reboot, the OOM killer, logs (follow, timestamps, tail, and the
//! last output of a short-lived container), and the default isolation from isola's config file.
//! They need root; each uses its own roots.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{assert_error, describe, eventually, Engine, Isola};

/// An isola with private roots, or `None` (the test reports why) without root.
fn isola() -> Option<Engine> {
    common::require_root().then(Engine::new)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `isola run -d ARGS…`; the container's full ID.
fn run_d(isola: &Isola, args: &[&str]) -> String {
    let mut all = vec!["run", "-d"];
    all.extend_from_slice(args);
    let id = isola.ok_timed(&all).trim().to_string();
    assert_eq!(id.len(), 64, "run -d prints the ID: {id:?}");
    id
}

fn state(isola: &Isola, name: &str) -> serde_json::Value {
    isola.container(name)["State"].clone()
}

/// `isola stop ARGS…`, which must succeed; how long it took.
fn timed_stop(isola: &Isola, args: &[&str]) -> Duration {
    let mut all = vec!["stop"];
    all.extend_from_slice(args);
    let t = Instant::now();
    isola.ok_timed(&all);
    t.elapsed()
}

#[test]
fn stop_signals_then_kills() {
    let Some(isola) = isola() else { return };
    // Ignores SIGTERM: killed when the timeout ends.
    run_d(
        &isola,
        &[
            "--name",
            "deaf",
            "busybox",
            "sh",
            "-c",
            "trap '' TERM; echo ready; sleep 100",
        ],
    );
    // Dies of SIGTERM (tini passes it to sleep): 128 + 15.
    run_d(
        &isola,
        &["--name", "polite", "--init", "busybox", "sleep", "100"],
    );
    // The stop timeout of the container itself.
    run_d(
        &isola,
        &[
            "--name",
            "own-timeout",
            "--stop-timeout",
            "1",
            "busybox",
            "sh",
            "-c",
            "trap '' TERM; sleep 100",
        ],
    );
    // ping ends on SIGINT with its statistics and status 0.
    run_d(
        &isola,
        &[
            "--name",
            "pinger",
            "--stop-signal",
            "SIGINT",
            "busybox",
            "ping",
            "127.0.0.1",
        ],
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            isola.ok_timed(&["logs", "deaf"]) == "ready\n"
                && isola.ok_timed(&["logs", "pinger"]).contains("bytes from")
        }),
        "the containers started"
    );

    let took = timed_stop(&isola, &["-t", "1", "deaf"]);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "stop -t 1 of a container ignoring SIGTERM took {took:?}"
    );
    let s = state(&isola, "deaf");
    assert_eq!(
        (s["Status"].as_str(), s["ExitCode"].as_i64()),
        (Some("exited"), Some(137))
    );
    assert_eq!(s["OOMKilled"], false);

    let took = timed_stop(&isola, &["polite"]);
    assert!(
        took < Duration::from_secs(3),
        "stop of polite took {took:?}"
    );
    assert_eq!(state(&isola, "polite")["ExitCode"], 143);

    let took = timed_stop(&isola, &["own-timeout"]);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "--stop-timeout 1: stop took {took:?}"
    );
    assert_eq!(state(&isola, "own-timeout")["ExitCode"], 137);

    let took = timed_stop(&isola, &["pinger"]);
    assert!(
        took < Duration::from_secs(2),
        "SIGINT stops ping at once: {took:?}"
    );
    assert_eq!(state(&isola, "pinger")["ExitCode"], 0);
    let logs = isola.ok_timed(&["logs", "pinger"]);
    assert!(logs.contains("ping statistics"), "ping saw SIGINT: {logs}");

    // wait prints the codes, in order.
    assert_eq!(
        isola.ok_timed(&["wait", "deaf", "polite", "own-timeout", "pinger"]),
        "137\n143\n137\n0\n"
    );
    // Stopping a stopped container is fine and changes nothing.
    assert_eq!(isola.ok_timed(&["stop", "deaf"]), "deaf\n");
    assert_eq!(state(&isola, "deaf")["ExitCode"], 137);

    // kill -s KILL.
    run_d(&isola, &["--name", "victim", "busybox", "sleep", "100"]);
    let pid = state(&isola, "victim")["Pid"].as_i64().unwrap() as i32;
    assert_eq!(
        isola.ok_timed(&["kill", "-s", "KILL", "victim"]),
        "victim\n"
    );
    assert_eq!(isola.ok_timed(&["wait", "victim"]), "137\n");
    assert!(!common::process_alive(pid), "process {pid} is gone");
    // kill of a stopped container is an error naming it.
    let out = isola.run_timed(&["kill", "victim"]);
    assert_error(&out, 125, &["victim", "not running"]);

    isola.ok_timed(&["rm", "deaf", "polite", "own-timeout", "pinger", "victim"]);
    assert_eq!(isola.ok_timed(&["ps", "-aq"]), "");
    isola.assert_clean();
}

#[test]
fn restart_keeps_the_writable_layer() {
    let Some(isola) = isola() else { return };
    let id = run_d(&isola, &["--name", "keeper", "busybox", "sleep", "1000"]);
    isola.ok_timed(&[
        "exec",
        "keeper",
        "sh",
        "-c",
        "echo kept > /data; rm /bin/true",
    ]);
    let pid1 = state(&isola, "keeper")["Pid"].as_i64().unwrap();

    assert!(timed_stop(&isola, &["-t", "1", "keeper"]) < Duration::from_secs(4));
    assert_eq!(state(&isola, "keeper")["Running"], false);
    assert_eq!(isola.ok_timed(&["start", "keeper"]), "keeper\n");
    let s = state(&isola, "keeper");
    assert_eq!(s["Running"], true);
    let pid2 = s["Pid"].as_i64().unwrap();
    assert_ne!(pid2, pid1, "start runs a new process");
    assert_eq!(
        isola.ok_timed(&["exec", "keeper", "cat", "/data"]),
        "kept\n"
    );
    let out = isola.run_timed(&["exec", "keeper", "ls", "/bin/true"]);
    assert_ne!(out.status.code(), Some(0), "the deletion survived too");

    assert_eq!(
        isola.ok_timed(&["restart", "-t", "1", "keeper"]),
        "keeper\n"
    );
    let s = state(&isola, "keeper");
    let pid3 = s["Pid"].as_i64().unwrap();
    assert_eq!(s["Running"], true);
    assert_ne!(pid3, pid2, "restart runs a new process");
    assert!(
        !common::process_alive(pid2 as i32),
        "the old process is gone"
    );
    assert_eq!(
        isola.ok_timed(&["exec", "keeper", "cat", "/data"]),
        "kept\n"
    );

    // A running container is not removed without -f; the error names it.
    let out = isola.run_timed(&["rm", "keeper"]);
    assert_error(&out, 125, &["keeper"]);
    assert_eq!(state(&isola, "keeper")["Running"], true, "still running");
    assert_eq!(isola.ok_timed(&["rm", "-f", "keeper"]), "keeper\n");
    assert!(!common::process_alive(pid3 as i32));
    isola.assert_container_gone(&id);
    assert_eq!(isola.container_dirs(), Vec::<PathBuf>::new());

    // A new container of the same name starts from the image again.
    let out = isola.run_timed(&["run", "--rm", "--name", "keeper", "busybox", "cat", "/data"]);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn wait_prints_exit_codes() {
    let Some(isola) = isola() else { return };
    run_d(&isola, &["--name", "w3", "busybox", "sh", "-c", "exit 3"]);
    run_d(
        &isola,
        &["--name", "slow", "busybox", "sh", "-c", "sleep 0.5; exit 9"],
    );
    let t = Instant::now();
    assert_eq!(isola.ok_timed(&["wait", "slow", "w3"]), "9\n3\n");
    assert!(t.elapsed() >= Duration::from_millis(200), "wait waited");
    let out = isola.run_timed(&["wait", "w3", "nosuch"]);
    assert_eq!(stdout(&out), "3\n", "{}", describe(&out));
    assert_error(&out, 125, &["nosuch"]);
    isola.ok_timed(&["rm", "w3", "slow"]);
    isola.assert_clean();
}

/// PID of the monitor of container `id`, as an administrator finds it:
/// `ps -eo pid,args | grep __monitor | grep ID`.
fn monitor_pid(id: &str) -> i32 {
    let out = common::output_within(Command::new("ps").args(["-eo", "pid,args"]), "ps");
    let text = stdout(&out);
    let pids: Vec<i32> = text
        .lines()
        .filter(|l| l.contains("__monitor") && l.contains(id))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 1, "one monitor of {id}:\n{text}");
    pids[0]
}

fn sigkill(pid: i32) {
    // SAFETY: kill(2) with a PID this test looked up; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
}

#[test]
fn killed_monitor_leaves_an_exited_container() {
    let Some(isola) = isola() else { return };
    let id = run_d(&isola, &["--name", "orphan", "busybox", "sleep", "1000"]);
    let pid = state(&isola, "orphan")["Pid"].as_i64().unwrap() as i32;
    let monitor = monitor_pid(&id);
    sigkill(monitor);
    // The killed monitor may stay a zombie until the host's init reaps it.
    assert!(
        eventually(Duration::from_secs(10), || {
            isola.containers()[0]["State"] == "exited"
        }),
        "ps -a shows the container exited: {:?}",
        isola.containers()
    );
    let ps = isola.containers();
    assert!(
        ps[0]["Status"].as_str().unwrap().starts_with("Exited ("),
        "{ps:?}"
    );
    let s = state(&isola, "orphan");
    assert_eq!(s["Running"], false);
    assert_eq!(s["Pid"], 0);
    assert!(
        s["Error"].as_str().unwrap().contains("monitor"),
        "State.Error says why: {s}"
    );
    assert!(
        eventually(Duration::from_secs(5), || !common::process_alive(pid)),
        "the container's process {pid} was ended"
    );
    // Commands that need a running container say it is not running.
    assert_error(
        &isola.run_timed(&["exec", "orphan", "true"]),
        125,
        &["orphan"],
    );
    assert_eq!(isola.ok_timed(&["rm", "orphan"]), "orphan\n");
    isola.assert_container_gone(&id);
}

#[test]
fn simulated_reboot() {
    let Some(isola) = isola() else { return };
    let id = run_d(&isola, &["--name", "before", "busybox", "sleep", "1000"]);
    let again = run_d(
        &isola,
        &[
            "--name",
            "again",
            "busybox",
            "sh",
            "-c",
            "echo up; exec sleep 1000",
        ],
    );
    let mut pids = Vec::new();
    for (name, cid) in [("before", &id), ("again", &again)] {
        pids.push(state(&isola, name)["Pid"].as_i64().unwrap() as i32);
        pids.push(monitor_pid(cid));
    }
    for &p in &pids {
        sigkill(p);
    }
    // Gone for good (reaped), as after a reboot.
    assert!(
        eventually(Duration::from_secs(10), || pids
            .iter()
            .all(|&p| !std::path::Path::new(&format!("/proc/{p}")).exists())),
        "killed"
    );
    // What a reboot loses: the run directory (a tmpfs) with the monitors' sockets and state.
    std::fs::remove_dir_all(&isola.run_root).unwrap();

    let ps = isola.containers();
    assert_eq!(ps.len(), 2, "{ps:?}");
    for c in &ps {
        assert_eq!(c["State"], "exited", "{ps:?}");
    }
    let s = state(&isola, "before");
    assert_eq!(s["Running"], false);
    assert!(!s["Error"].as_str().unwrap().is_empty(), "{s}");

    // A container can start again after the reboot.
    assert_eq!(isola.ok_timed(&["start", "again"]), "again\n");
    assert_eq!(state(&isola, "again")["Running"], true);
    assert!(eventually(Duration::from_secs(5), || isola
        .ok_timed(&["logs", "again"])
        == "up\nup\n"));
    assert_eq!(isola.ok_timed(&["rm", "-f", "again"]), "again\n");
    isola.assert_container_gone(&again);

    assert_eq!(isola.ok_timed(&["rm", "before"]), "before\n");
    // A real reboot also empties the cgroup tree; here it is still there, and rm must remove
    // what isola made. Leftovers are removed (so the host stays clean) before failing.
    let left = common::container_cgroups(&id);
    for d in &left {
        let _ = std::fs::remove_dir(d);
    }
    assert_eq!(
        left,
        Vec::<PathBuf>::new(),
        "rm after the reboot left cgroups"
    );
    isola.assert_container_gone(&id);
}

#[test]
fn oom_kill_is_recorded() {
    let Some(isola) = isola() else { return };
    run_d(
        &isola,
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
    let v = isola.container("hog");
    assert_eq!(v["State"]["OOMKilled"], true, "{}", v["State"]);
    assert_eq!(v["State"]["ExitCode"], 137);
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["HostConfig"]["Memory"], 16 << 20);
    // In the foreground: the same status.
    let out = isola.run_timed(&[
        "run",
        "--rm",
        "--memory",
        "16m",
        "busybox",
        "sh",
        "-c",
        "tail /dev/zero",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", describe(&out));
    isola.ok_timed(&["rm", "hog"]);
    isola.assert_clean();
}

/// Whether `s` starts with an RFC 3339 UTC timestamp with nanoseconds and a space.
fn timestamped(s: &str) -> Option<&str> {
    let (ts, rest) = s.split_once(' ')?;
    let ok = ts.len() == 30
        && ts.ends_with('Z')
        && ts.as_bytes()[10] == b'T'
        && ts.as_bytes()[19] == b'.'
        && ts[..4].bytes().all(|b| b.is_ascii_digit());
    ok.then_some(rest)
}

#[test]
fn logs_follow_timestamps_and_tail() {
    let Some(isola) = isola() else { return };
    run_d(
        &isola,
        &[
            "--name",
            "ticker",
            "busybox",
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8; do echo line$i; sleep 0.2; done; echo err >&2",
        ],
    );
    let t = Instant::now();
    let out = isola.run_timed(&["logs", "-f", "ticker"]);
    let took = t.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let want: String = (1..=8).map(|i| format!("line{i}\n")).collect();
    assert_eq!(stdout(&out), want, "logs -f shows every line");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "err\n",
        "stderr stays stderr"
    );
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(10),
        "logs -f ends when the container ends: {took:?}"
    );
    assert_eq!(state(&isola, "ticker")["Running"], false);

    let out = isola.ok_timed(&["logs", "-t", "ticker"]);
    let mut last = String::new();
    for (i, line) in out.lines().enumerate() {
        let rest = timestamped(line).unwrap_or_else(|| panic!("no timestamp: {line:?}"));
        assert_eq!(rest, format!("line{}", i + 1));
        let ts = line.split(' ').next().unwrap().to_string();
        assert!(ts >= last, "timestamps in order: {out}");
        last = ts;
    }
    assert_eq!(out.lines().count(), 8);
    // --tail counts the lines of both streams: the last two are line8 and err.
    let out = isola.run_timed(&["logs", "--tail", "2", "ticker"]);
    assert_eq!(
        (
            stdout(&out).as_str(),
            String::from_utf8_lossy(&out.stderr).as_ref()
        ),
        ("line8\n", "err\n"),
        "{}",
        describe(&out)
    );
    assert_eq!(isola.ok_timed(&["logs", "--tail", "0", "ticker"]), "");
    // logs -f of a stopped container ends at once.
    let out = isola.run_timed(&["logs", "-f", "-t", "--tail", "1", "ticker"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        (stdout(&out).as_str(), timestamped(err.trim_end())),
        ("", Some("err")),
        "{}",
        describe(&out)
    );
    isola.ok_timed(&["rm", "ticker"]);
    isola.assert_clean();
}

#[test]
fn last_output_is_never_lost() {
    let Some(isola) = isola() else { return };
    for i in 0..20 {
        let name = format!("quick{i}");
        run_d(
            &isola,
            &["--name", &name, "busybox", "sh", "-c", "echo last; exit 0"],
        );
        assert_eq!(isola.ok_timed(&["wait", &name]), "0\n");
        assert_eq!(isola.ok_timed(&["logs", &name]), "last\n", "round {i}");
        isola.ok_timed(&["rm", &name]);
    }
    // Much output at once, in the foreground and in the log.
    for i in 0..3 {
        let out = isola.run_timed(&["run", "--name", "bulk", "busybox", "seq", "1", "20000"]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let text = stdout(&out);
        assert_eq!(text.lines().count(), 20000, "round {i}");
        assert!(text.ends_with("\n20000\n"));
        let logs = isola.ok_timed(&["logs", "bulk"]);
        assert_eq!(logs, text, "the log holds it all, round {i}");
        isola.ok_timed(&["rm", "bulk"]);
    }
    isola.assert_clean();
}

/// `isola args` with `ISOLA_CONFIG` set to a file holding `config`.
fn with_config(isola: &Isola, config: &str, args: &[&str]) -> (Output, String) {
    let path = isola.scratch().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = isola.command(args);
    cmd.env("ISOLA_CONFIG", &path);
    let out = common::output_within(&mut cmd, &format!("isola {}", args.join(" ")));
    (out, path.display().to_string())
}

#[test]
fn isolation_default_comes_from_the_config_file() {
    let Some(isola) = isola() else { return };
    let process = "[engine]\ndefault_isolation = \"process\"\n";
    for flags in [&["--isolation=default"][..], &[]] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["busybox", "echo", "ran"]);
        let (out, _) = with_config(&isola, process, &args);
        assert_eq!(
            (out.status.code(), stdout(&out).as_str()),
            (Some(0), "ran\n"),
            "{flags:?}: {}",
            describe(&out)
        );
    }
    let (out, _) = with_config(
        &isola,
        process,
        &["create", "--name", "d", "--isolation", "default", "busybox"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(isola.container("d")["HostConfig"]["Isolation"], "process");
    isola.ok_timed(&["rm", "d"]);

    // vm as the default (when VM isolation can run here): the container runs in a VM.
    let vm = "[engine]\ndefault_isolation = \"vm\"\n";
    if common::require_vm() {
        let (out, _) = with_config(&isola, vm, &["create", "--name", "v", "busybox", "true"]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        assert_eq!(isola.container("v")["HostConfig"]["Isolation"], "vm");
        isola.ok_timed(&["rm", "v"]);
    }
    // hyperv means vm.
    let (out, _) = with_config(
        &isola,
        process,
        &[
            "create",
            "--name",
            "h",
            "--isolation=hyperv",
            "busybox",
            "true",
        ],
    );
    if out.status.code() == Some(0) {
        assert_eq!(isola.container("h")["HostConfig"]["Isolation"], "vm");
        isola.ok_timed(&["rm", "h"]);
    } else {
        assert_error(&out, 125, &["--isolation=vm"]);
    }
    // An explicit process isolation does not depend on the default.
    let (out, _) = with_config(
        &isola,
        vm,
        &["run", "--rm", "--isolation=process", "busybox", "true"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // A bad config file is an error naming the file.
    let bad = "[engine]\ndefault_isolation = \"x\"\n";
    for flags in [&["--isolation=default"][..], &[]] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["busybox", "true"]);
        let (out, path) = with_config(&isola, bad, &args);
        assert_error(&out, 125, &[&path]);
    }
    let (out, path) = with_config(
        &isola,
        "[engine]\nnope = 1\n",
        &["run", "--rm", "busybox", "true"],
    );
    assert_error(&out, 125, &[&path, "nope"]);

    assert_eq!(isola.ok_timed(&["ps", "-aq"]), "", "no container was left");
    assert_eq!(isola.container_dirs(), Vec::<PathBuf>::new());
    isola.assert_clean();
}

#[test]
fn relative_store_paths() {
    let Some(isola) = isola() else { return };
    // `--root root --run-root run`, relative to the working directory, mean the same store.
    let dir = isola.root.parent().unwrap().to_path_buf();
    let relative = |args: &[&str]| {
        let mut cmd = Command::new(common::BIN);
        cmd.current_dir(&dir)
            .env_remove("ISOLA_ROOT")
            .env_remove("ISOLA_RUN_ROOT")
            .args(["--root", "root", "--run-root", "run"])
            .args(args)
            .stdin(std::process::Stdio::null());
        common::output_within(&mut cmd, &format!("isola {}", args.join(" ")))
    };
    let out = relative(&["run", "--rm", "busybox", "echo", "hi"]);
    let left = isola.ok_timed(&["ps", "-aq"]);
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), "hi\n"),
        "{}",
        describe(&out)
    );
    assert_eq!(left, "", "run --rm left a container");
    isola.assert_clean();
}
