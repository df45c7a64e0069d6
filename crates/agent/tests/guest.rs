//! Privileged end-to-end test of the guest agent: boot isola's guest kernel with the agent's
//! initramfs under QEMU microvm (TCG), share a busybox root filesystem over 9p, and drive real
//! containers over the protocol: stdio streams, stdin, a terminal exec with a resize, top,
//! stats, pause/resume, signals, an OOM kill, and the shutdown.
//!
//! The containers' specs come from the engine's process-mode spec builder
//! (`isola_engine::spec::build`), with the root and the bind-mount sources moved to the guest
//! paths the 9p share produces, as the host side of VM isolation does.
//!
//! Needs: the cached guest kernel (`vm/build-kernel.sh`; `ISOLA_KERNEL_DIR` picks one),
//! `qemu-system-x86_64`, and a static `/bin/busybox` (Debian's `busybox-static`). Without a
//! cached kernel the test is skipped with a message, even with CI set (building it takes ~8
//! minutes). Without QEMU or busybox it is skipped, unless CI is set, where it fails. The
//! initramfs is built with `vm/initramfs.sh` into `target/agent-static` (as
//! `crates/proto/tests/agent_vm.rs` does), or taken from `ISOLA_AGENT_INITRD`.

mod vm;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use isola_proto::{
    Event, ExitStatus, GuestMount, Message, ProcessInfo, Request, Response, StdioStreams,
    WireErrorCode,
};
use vm::{Host, Vm};

const T: Duration = Duration::from_secs(30);

/// Applets linked in the test's root filesystem.
const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "sleep", "tty", "stty", "dd", "head", "true", "ls", "grep", "wc", "tail",
];

/// Where the 9p share is mounted in the guest by the first container.
const SHARE: &str = "/run/isola/c1/share";

/// Host directory shared into the guest: `rootfs/` (busybox) and `etc/` (hosts, hostname,
/// resolv.conf for the spec's bind mounts).
fn make_share(dir: &Path) {
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
    // What an image has, so a read-only share needs no new mount points.
    for d in ["proc", "sys", "dev", "tmp"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    for f in ["hosts", "hostname", "resolv.conf"] {
        fs::write(rootfs.join("etc").join(f), "").unwrap();
    }
    let etc = dir.join("etc");
    fs::create_dir_all(&etc).unwrap();
    fs::write(etc.join("hosts"), "127.0.0.1 localhost\n").unwrap();
    fs::write(etc.join("hostname"), "guest\n").unwrap();
    fs::write(etc.join("resolv.conf"), "").unwrap();
}

/// The engine's spec for `cmd` in container `id`, rewritten to the guest paths below `share`
/// (the guest path of the 9p share, or of a bind of it).
fn spec(
    share_host: &Path,
    share_guest: &str,
    id: &str,
    cmd: &[&str],
    host: &isola_engine::config::HostConfig,
    tty: bool,
) -> serde_json::Value {
    use isola_engine::spec::{build, BundlePaths};
    let paths = BundlePaths {
        rootfs: share_host.join("rootfs"),
        hosts: share_host.join("etc/hosts"),
        hostname: share_host.join("etc/hostname"),
        resolv_conf: share_host.join("etc/resolv.conf"),
        init: None,
    };
    let config = isola_engine::config::ContainerConfig {
        image: "busybox".into(),
        cmd: Some(cmd.iter().map(|s| (*s).to_owned()).collect()),
        tty,
        ..Default::default()
    };
    let image = oci_spec::image::ImageConfiguration::default();
    let s = build(&image, &config, host, id, &paths).expect("engine spec");
    let mut v = serde_json::to_value(&s).unwrap();
    let host_share = share_host.to_str().unwrap();
    // Host paths of the share → guest paths.
    let rewrite = |p: &mut serde_json::Value| {
        if let Some(s) = p.as_str() {
            if let Some(rest) = s.strip_prefix(host_share) {
                *p = serde_json::Value::String(format!("{share_guest}{rest}"));
            }
        }
    };
    rewrite(&mut v["root"]["path"]);
    for m in v["mounts"].as_array_mut().unwrap() {
        rewrite(&mut m["source"]);
    }
    v
}

fn stdio(
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    terminal: bool,
) -> StdioStreams {
    StdioStreams {
        stdin,
        stdout,
        stderr,
        terminal,
    }
}

/// The output of one process: bytes per stream, the order of its closes and its exit.
#[derive(Debug)]
struct Finished {
    out: HashMap<u32, Vec<u8>>,
    status: ExitStatus,
}

impl Finished {
    fn text(&self, stream: u32) -> String {
        String::from_utf8_lossy(self.out.get(&stream).map_or(&[][..], |v| v)).into_owned()
    }
}

/// Reads messages until `Event::Exited` for (`id`, `exec`); checks that every stream in
/// `outputs` was closed before it, and that no data came after its close.
fn finish(h: &mut Host, id: &str, exec: Option<&str>, outputs: &[u32]) -> Finished {
    let mut out: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut closed: Vec<u32> = Vec::new();
    let deadline = Instant::now() + T;
    loop {
        let m = h.next(deadline.saturating_duration_since(Instant::now()));
        match m {
            Message::Stream { stream, data } => {
                assert!(
                    !closed.contains(&stream),
                    "data on stream {stream} after its close"
                );
                out.entry(stream).or_default().extend(data);
            }
            Message::StreamClose { stream } => closed.push(stream),
            Message::Event(Event::Exited {
                id: eid,
                exec_id,
                status,
            }) if eid == id && exec_id.as_deref() == exec => {
                for s in outputs {
                    assert!(
                        closed.contains(s),
                        "Exited of {id}/{exec:?} before StreamClose {s}"
                    );
                }
                h.restore();
                return Finished { out, status };
            }
            other => h.keep(other),
        }
    }
}

fn code(c: i32) -> ExitStatus {
    ExitStatus {
        code: Some(c),
        signal: None,
        oom_killed: false,
    }
}

#[test]
fn containers_run_in_the_guest() {
    let Some(setup) = vm::setup("containers_run_in_the_guest") else {
        return;
    };
    let share = setup.work.join("share");
    make_share(&share);
    let t0 = Instant::now();
    let mut vm = Vm::boot(&setup, &[("share", &share)], 256);
    let mut h = vm.connect(t0);
    let default_host = isola_engine::config::HostConfig::default();

    // 1. stdout, stderr, exit code; the closes come before the exit.
    let spec1 = spec(
        &share,
        SHARE,
        "c1",
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
        &default_host,
        false,
    );
    let mounts = vec![GuestMount {
        source: "share".into(),
        target: SHARE.into(),
        fstype: "9p".into(),
        options: vec![],
    }];
    let t = Instant::now();
    let r = h.ok(Request::CreateContainer {
        id: "c1".into(),
        spec: spec1,
        mounts,
        stdio: stdio(None, Some(1), Some(2), false),
    });
    let create_ms = t.elapsed().as_millis();
    assert!(matches!(r, Response::Process { pid } if pid > 1), "{r:?}");
    let t = Instant::now();
    assert_eq!(h.ok(Request::Start { id: "c1".into() }), Response::Done);
    let start_ms = t.elapsed().as_millis();
    let f = finish(&mut h, "c1", None, &[1, 2]);
    assert_eq!((f.text(1).as_str(), f.text(2).as_str()), ("out\n", "err\n"));
    assert_eq!(f.status, code(3));
    assert_eq!(
        h.ok(Request::Wait {
            id: "c1".into(),
            exec_id: None
        }),
        Response::Exited(code(3))
    );
    eprintln!("create {create_ms} ms, start {start_ms} ms (host round trips)");

    // Later containers bind the share from c1's mount (a 9p tag can be mounted once).
    let bind = |id: &str| {
        let target = format!("/run/isola/{id}/share");
        (
            vec![GuestMount {
                source: SHARE.into(),
                target: target.clone(),
                fstype: "bind".into(),
                options: vec!["rbind".into()],
            }],
            target,
        )
    };

    // 2. stdin through cat: queued before start, closed by the host.
    let (mounts, guest_share) = bind("c2");
    h.ok(Request::CreateContainer {
        id: "c2".into(),
        spec: spec(&share, &guest_share, "c2", &["cat"], &default_host, false),
        mounts,
        stdio: stdio(Some(3), Some(4), Some(5), false),
    });
    h.send(&Message::Stream {
        stream: 3,
        data: b"hello through stdin\n".to_vec(),
    });
    h.send(&Message::StreamClose { stream: 3 });
    h.ok(Request::Start { id: "c2".into() });
    let f = finish(&mut h, "c2", None, &[4, 5]);
    assert_eq!(f.text(4), "hello through stdin\n");
    assert_eq!(f.status, code(0));

    // 3. A long-running container: a terminal exec, top, stats, pause/resume, signals.
    let (mounts, guest_share) = bind("c3");
    h.ok(Request::CreateContainer {
        id: "c3".into(),
        spec: spec(
            &share,
            &guest_share,
            "c3",
            &["sleep", "1000"],
            &default_host,
            false,
        ),
        mounts,
        stdio: stdio(None, Some(6), Some(7), false),
    });
    h.ok(Request::Start { id: "c3".into() });
    let process = |args: &[&str], terminal: bool| {
        serde_json::json!({
            "args": args,
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
            "terminal": terminal,
        })
    };
    let r = h.ok(Request::Exec {
        id: "c3".into(),
        exec_id: "term".into(),
        process: process(&["sh", "-c", "tty; read x; stty size"], true),
        stdio: stdio(Some(8), Some(9), Some(10), true),
    });
    assert!(matches!(r, Response::Process { .. }), "{r:?}");
    // Wait for `tty`'s line before resizing, so the resize lands before `stty size` runs.
    let mut seen = Vec::new();
    let mut early_close = Vec::new();
    while !String::from_utf8_lossy(&seen).contains('\n') {
        match h.next(T) {
            Message::Stream { stream: 9, data } => seen.extend(data),
            Message::StreamClose { stream: 10 } => early_close.push(10),
            other => h.keep(other),
        }
    }
    h.restore();
    let line = String::from_utf8_lossy(&seen).into_owned();
    assert!(line.starts_with("/dev/pts/"), "tty printed {line:?}");
    assert_eq!(
        early_close,
        [10],
        "a terminal's stderr stream is closed at once"
    );
    assert_eq!(
        h.ok(Request::ResizeTty {
            stream: 9,
            rows: 33,
            cols: 101
        }),
        Response::Done
    );
    h.send(&Message::Stream {
        stream: 8,
        data: b"go\n".to_vec(),
    });
    let f = finish(&mut h, "c3", Some("term"), &[9]);
    let text = f.text(9);
    assert!(text.contains("33 101"), "stty size printed {text:?}");
    assert_eq!(f.status, code(0));
    let e = h.err(Request::ResizeTty {
        stream: 6,
        rows: 1,
        cols: 1,
    });
    assert_eq!(e.code, WireErrorCode::InvalidRequest, "{e:?}");

    // The spec's isolation holds in the guest: a network namespace with only lo (up), seccomp
    // in filter mode, the container's own PID namespace.
    h.ok(Request::Exec {
        id: "c3".into(),
        exec_id: "look".into(),
        process: process(
            &[
                "sh",
                "-c",
                "ls /sys/class/net; cat /sys/class/net/lo/flags; grep Seccomp: /proc/self/status; cat /proc/1/cmdline",
            ],
            false,
        ),
        stdio: stdio(None, Some(15), Some(16), false),
    });
    let f = finish(&mut h, "c3", Some("look"), &[15, 16]);
    assert_eq!(
        (f.text(15).as_str(), f.text(16).as_str(), f.status),
        ("lo\n0x9\nSeccomp:\t2\nsleep\u{0}1000\u{0}", "", code(0))
    );
    h.ok(Request::Exec {
        id: "c3".into(),
        exec_id: "sleeper".into(),
        process: process(&["sleep", "999"], false),
        stdio: stdio(None, None, None, false),
    });
    let Response::Top { processes } = h.ok(Request::Top { id: "c3".into() }) else {
        panic!("Top answered something else")
    };
    let cmds: Vec<&str> = processes
        .iter()
        .map(|p: &ProcessInfo| p.cmd.as_str())
        .collect();
    assert!(
        cmds.contains(&"sleep 1000") && cmds.contains(&"sleep 999"),
        "{processes:?}"
    );
    assert!(
        processes.iter().all(|p| p.uid == 0 && p.pid > 1),
        "{processes:?}"
    );
    let Response::Stats(stats) = h.ok(Request::Stats { id: "c3".into() }) else {
        panic!("Stats answered something else")
    };
    assert!(
        stats["memory"]["usage_bytes"].as_u64().unwrap() > 0,
        "{stats}"
    );
    assert_eq!(stats["pids"]["current"].as_u64(), Some(2), "{stats}");
    // A process that exits while a background child still holds its stdout: the agent
    // closes the streams itself after the 2 s grace, then reports the exit.
    let t = Instant::now();
    h.ok(Request::Exec {
        id: "c3".into(),
        exec_id: "bg".into(),
        process: process(&["sh", "-c", "sleep 100 & echo bg"], false),
        stdio: stdio(None, Some(13), Some(14), false),
    });
    let f = finish(&mut h, "c3", Some("bg"), &[13, 14]);
    let waited = t.elapsed();
    assert_eq!((f.text(13).as_str(), f.status), ("bg\n", code(0)));
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(8),
        "exit reported {waited:?} after the exec"
    );
    assert_eq!(h.ok(Request::Pause { id: "c3".into() }), Response::Done);
    assert_eq!(h.ok(Request::Resume { id: "c3".into() }), Response::Done);
    // A Wait that is answered later must not hold up the requests after it.
    let wait_id = h.send_request(Request::Wait {
        id: "c3".into(),
        exec_id: None,
    });
    h.ok(Request::Ping);
    // SIGTERM to every process: the exec'd sleep dies of it; the container's init (PID 1 of
    // its PID namespace, no handler) ignores it, as in process isolation.
    h.ok(Request::Signal {
        id: "c3".into(),
        signal: 15,
        all: true,
    });
    let f = finish(&mut h, "c3", Some("sleeper"), &[]);
    assert_eq!(
        f.status,
        ExitStatus {
            code: None,
            signal: Some(15),
            oom_killed: false
        }
    );
    h.ok(Request::Signal {
        id: "c3".into(),
        signal: 9,
        all: false,
    });
    let f = finish(&mut h, "c3", None, &[6, 7]);
    let killed = ExitStatus {
        code: None,
        signal: Some(9),
        oom_killed: false,
    };
    assert_eq!(f.status, killed);
    assert_eq!(h.answer(wait_id), Response::Exited(killed));

    // 4. The OOM killer in the container's memory cgroup.
    let (mounts, guest_share) = bind("c4");
    let limited = isola_engine::config::HostConfig {
        memory: Some(32 << 20),
        ..Default::default()
    };
    h.ok(Request::CreateContainer {
        id: "c4".into(),
        spec: spec(
            &share,
            &guest_share,
            "c4",
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=96M", "count=1"],
            &limited,
            false,
        ),
        mounts,
        stdio: stdio(None, Some(11), Some(12), false),
    });
    h.ok(Request::Start { id: "c4".into() });
    let f = finish(&mut h, "c4", None, &[11, 12]);
    assert_eq!(
        f.status,
        ExitStatus {
            code: None,
            signal: Some(9),
            oom_killed: true
        },
        "stderr: {}",
        f.text(12)
    );

    // 5. Errors name what is wrong; an unknown container is NotFound.
    let e = h.err(Request::Start { id: "nope".into() });
    assert_eq!(e.code, WireErrorCode::NotFound, "{e:?}");
    let e = h.err(Request::Start { id: "c1".into() });
    assert_eq!(e.code, WireErrorCode::InvalidRequest, "{e:?}");

    h.ok(Request::Shutdown);
    vm.wait_exit(Duration::from_secs(10));
    eprintln!("guest console:\n{}", vm.console());
    let _ = fs::remove_dir_all(&setup.work);
}

/// Without a `Shutdown`, the guest powers itself off 30 s after the container's init exited
/// (and not before): a host that lost track of the VM does not leave it running.
#[test]
fn powers_off_after_the_init_exits() {
    let Some(setup) = vm::setup("powers_off_after_the_init_exits") else {
        return;
    };
    let share = setup.work.join("share");
    make_share(&share);
    let t0 = Instant::now();
    let mut vm = Vm::boot(&setup, &[("share", &share)], 256);
    let mut h = vm.connect(t0);
    let host = isola_engine::config::HostConfig::default();
    h.ok(Request::CreateContainer {
        id: "p1".into(),
        spec: spec(&share, SHARE, "p1", &["true"], &host, false),
        mounts: vec![GuestMount {
            source: "share".into(),
            target: SHARE.into(),
            fstype: "9p".into(),
            options: vec!["ro".into()],
        }],
        stdio: stdio(None, None, None, false),
    });
    h.ok(Request::Start { id: "p1".into() });
    let f = finish(&mut h, "p1", None, &[]);
    assert_eq!(f.status, code(0));
    let exited = Instant::now();
    assert!(
        !vm.exited_within(Duration::from_secs(28)),
        "the guest powered off {:?} after the init exited",
        exited.elapsed()
    );
    assert!(
        vm.exited_within(Duration::from_secs(20)),
        "the guest was still running {:?} after the init exited",
        exited.elapsed()
    );
    eprintln!(
        "guest powered off {:?} after the init exited",
        exited.elapsed()
    );
}
