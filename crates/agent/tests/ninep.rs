//! Measurement (ignored by default): a container root shared over 9p with several cache modes and
//! message sizes, one guest boot per setting, timing what a container does to its root: create
//! (mount + runtime create), 100 fork+execs of busybox, reading a 32 MiB file twice, walking a
//! tree of 2,000 files, and writing 32 MiB. Run with
//! `cargo test -p isola-agent --test ninep -- --ignored --nocapture`; the numbers chose the
//! agent's 9p defaults (`NINEP_DEFAULTS` in `src/guest_mounts.rs`).

mod vm;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use isola_proto::{Event, GuestMount, Message, Request, Response, StdioStreams};

const APPLETS: &[&str] = &["sh", "true", "cat", "find", "wc", "dd", "rm", "sync"];

fn make_rootfs(root: &Path) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    fs::write(root.join("big"), vec![7u8; 32 << 20]).unwrap();
    for d in 0..40 {
        let dir = root.join("tree").join(d.to_string());
        fs::create_dir_all(&dir).unwrap();
        for f in 0..50 {
            fs::write(dir.join(f.to_string()), b"x").unwrap();
        }
    }
    fs::create_dir_all(root.join("out")).unwrap();
}

fn spec(cmd: &str) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "/run/isola/b/rootfs"},
        "process": {"args": ["sh", "-c", cmd], "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}
        ],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]}
    })
}

/// Runs `cmd` as container `id` (created over the already mounted root) and returns how long
/// from start to its exit; checks it exited 0.
fn run(h: &mut vm::Host, id: &str, cmd: &str, mounts: Vec<GuestMount>) -> (Duration, Duration) {
    let t = Instant::now();
    h.ok(Request::CreateContainer {
        id: id.into(),
        spec: spec(cmd),
        mounts,
        stdio: StdioStreams::default(),
    });
    let create = t.elapsed();
    let t = Instant::now();
    h.ok(Request::Start { id: id.into() });
    loop {
        match h.next(Duration::from_secs(300)) {
            Message::Event(Event::Exited { id: e, status, .. }) if e == id => {
                assert_eq!(status.code, Some(0), "{id}: {cmd}: {status:?}");
                return (create, t.elapsed());
            }
            _ => {}
        }
    }
}

#[test]
#[ignore = "measurement: boots one guest per 9p setting (about a minute)"]
fn ninep_settings() {
    let Some(setup) = vm::setup("ninep_settings") else {
        return;
    };
    let rootfs = setup.work.join("rootfs");
    make_rootfs(&rootfs);
    let settings: &[&[&str]] = &[
        &["cache=none", "msize=131072"],
        &["cache=mmap", "msize=131072"],
        &["cache=mmap", "msize=512000"],
        &["cache=loose", "msize=512000"],
    ];
    let rounds: usize = std::env::var("ISOLA_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    println!("setting | create | 100 execs | read 32 MiB | again | walk 2000 | write 32 MiB");
    for opts in (0..rounds).flat_map(|_| settings.iter()) {
        let t0 = Instant::now();
        let vm = vm::Vm::boot(&setup, &[("rootfs", &rootfs)], 256);
        let mut h = vm.connect(t0);
        let mounts = vec![GuestMount {
            source: "rootfs".into(),
            target: "/run/isola/b/rootfs".into(),
            fstype: "9p".into(),
            options: opts.iter().map(|s| (*s).to_owned()).collect(),
        }];
        let (create, _) = run(&mut h, "warm", "true", mounts);
        let (_, exec) = run(
            &mut h,
            "exec",
            "i=0; while [ $i -lt 100 ]; do /bin/true; i=$((i+1)); done",
            vec![],
        );
        let (_, read1) = run(&mut h, "read1", "cat /big > /dev/null", vec![]);
        let (_, read2) = run(&mut h, "read2", "cat /big > /dev/null", vec![]);
        let (_, walk) = run(&mut h, "walk", "find /tree | wc -l > /dev/null", vec![]);
        let (_, write) = run(
            &mut h,
            "write",
            "dd if=/dev/zero of=/out/f bs=1M count=32 2>/dev/null && sync && rm /out/f",
            vec![],
        );
        let ms = |d: Duration| d.as_millis();
        println!(
            "{} | {} ms | {} ms | {} ms | {} ms | {} ms | {} ms",
            opts.join(","),
            ms(create),
            ms(exec),
            ms(read1),
            ms(read2),
            ms(walk),
            ms(write)
        );
        assert_eq!(h.ok(Request::Shutdown), Response::ShuttingDown);
        let mut vm = vm;
        vm.wait_exit(Duration::from_secs(10));
    }
    let _ = fs::remove_dir_all(&setup.work);
}
