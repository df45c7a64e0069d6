//! `exec` into a running container, and the terminal: `process.terminal` with `--console-socket`.

mod common;

use std::fs;
use std::io::{IoSliceMut, Read as _, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{ns_of, process_gone, Ctx};
use serde_json::{json, Value};

const SHARED: [&str; 6] = ["pid", "net", "mnt", "ipc", "uts", "cgroup"];

fn sleeping(test: &str) -> Option<(Ctx, i32)> {
    let mut ctx = Ctx::new(test)?;
    ctx.args(&["/probe", "sleep", "120"]);
    let pid = ctx.start_detached();
    Some((ctx, pid))
}

#[test]
fn exec_joins_the_container_namespaces_and_cgroup() {
    let Some((ctx, pid)) = sleeping("exec_joins") else {
        return;
    };
    let out = ctx.oci(&["exec", &ctx.id, "/probe", "report"]).ok();
    let r = out.json();
    for ns in SHARED {
        assert_eq!(r["namespaces"][ns], ns_of(&pid.to_string(), ns), "{ns}");
    }
    assert!(
        r["pid"].as_u64().unwrap() > 1,
        "exec'd process is not init: {}",
        r["pid"]
    );
    assert_eq!(r["hostname"], "isola");
    // Same view of the container's cgroups (cgroup namespace root) as init.
    let init_cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        init_cgroup.contains(&format!("/isola/{}", ctx.id)),
        "{init_cgroup}"
    );
    assert_eq!(
        r["cgroup"]
            .as_str()
            .unwrap()
            .lines()
            .filter(|l| !l.ends_with(":/"))
            .count(),
        0,
        "{}",
        r["cgroup"]
    );
}

#[test]
fn exec_exit_code_propagates() {
    let Some((ctx, _)) = sleeping("exec_exit") else {
        return;
    };
    assert_eq!(ctx.oci(&["exec", &ctx.id, "/probe", "exit", "7"]).code, 7);
    assert_eq!(ctx.oci(&["exec", &ctx.id, "/probe", "exit", "0"]).code, 0);
    let out = ctx.oci(&["exec", &ctx.id, "/no/such/binary"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("/no/such/binary"), "{out:#?}");
}

#[test]
fn exec_with_process_json() {
    let Some((ctx, _)) = sleeping("exec_process_json") else {
        return;
    };
    let process = json!({
        "args": ["/probe", "report"],
        "env": ["PATH=/bin", "FROM_JSON=yes"],
        "cwd": "/tmp",
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [2000]},
        "noNewPrivileges": true,
    });
    let file = ctx.path("process.json");
    fs::write(&file, process.to_string()).unwrap();
    let r = ctx
        .oci(&["exec", "--process", file.to_str().unwrap(), &ctx.id])
        .ok()
        .json();
    assert_eq!(r["env"]["FROM_JSON"], "yes");
    assert_eq!(r["cwd"], "/tmp");
    assert_eq!(r["uid"], 1000);
    assert_eq!(r["gid"], 1000);
    assert!(r["groups"].as_array().unwrap().contains(&json!(2000)));
    assert_eq!(r["no_new_privs"], "1");
}

#[test]
fn exec_detached_writes_the_pid_file() {
    let Some((ctx, pid)) = sleeping("exec_detach") else {
        return;
    };
    let pid_file = ctx.path("exec.pid");
    let started = Instant::now();
    ctx.oci(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &ctx.id,
        "/probe",
        "sleep",
        "60",
    ])
    .ok();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "exec -d waited"
    );
    let exec_pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(exec_pid, pid);
    assert!(!process_gone(exec_pid));
    assert_eq!(
        ns_of(&exec_pid.to_string(), "pid"),
        ns_of(&pid.to_string(), "pid")
    );
    let ps = ctx.oci(&["ps", "--format", "json", &ctx.id]).ok().json();
    assert!(ps.as_array().unwrap().contains(&json!(exec_pid)), "{ps}");
}

/// Accepts one connection on `listener` and receives one file descriptor with `SCM_RIGHTS`.
fn receive_fd(listener: &UnixListener) -> OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let (conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .expect("recvmsg on the console socket");
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no file descriptor received on the console socket");
}

/// Reads from a pty master until `needle` shows up, EOF/EIO, or the timeout.
fn read_until(master: &fs::File, needle: &str, secs: u64) -> String {
    let (tx, rx) = mpsc::channel();
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut text = String::new();
    while !text.contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Err(_) => break,
        }
    }
    text
}

fn console_socket(dir: &Path) -> (UnixListener, std::path::PathBuf) {
    let path = dir.join("console.sock");
    (UnixListener::bind(&path).unwrap(), path)
}

#[test]
fn terminal_over_console_socket() {
    let Some(mut ctx) = Ctx::new("console_socket") else {
        return;
    };
    ctx.process().insert("terminal".into(), json!(true));
    ctx.args(&["/bin/sh"]);
    let (listener, sock) = console_socket(ctx.dir.path());
    let receiver = std::thread::spawn(move || receive_fd(&listener));
    ctx.create(&["--console-socket", sock.to_str().unwrap()])
        .ok();
    let master = fs::File::from(receiver.join().unwrap());
    ctx.oci(&["start", &ctx.id]).ok();
    let mut w = master.try_clone().unwrap();
    // `h''i` echoes as typed but prints "hi": the output proves the shell ran it.
    w.write_all(b"readlink /proc/self/fd/0; /probe stat /dev/console; echo h''i\n")
        .unwrap();
    let text = read_until(&master, "hi\r\n", 20);
    assert!(text.contains("\r\nhi\r\n"), "{text:?}");
    assert!(text.contains("/dev/pts/"), "stdin is not a pty: {text:?}");
    let console = text
        .lines()
        .find(|l| l.starts_with('{') && l.contains("\"type\""))
        .unwrap_or_else(|| panic!("{text:?}"));
    let st: Value = serde_json::from_str(console.trim()).unwrap();
    assert_eq!(st["type"], "char", "/dev/console: {st}");
    assert_eq!(
        st["major"], 136,
        "/dev/console is the container's pty: {st}"
    );
    w.write_all(b"exit 0\n").unwrap();
    ctx.wait_status("stopped");
}

#[test]
fn exec_with_a_terminal() {
    let Some((ctx, _)) = sleeping("exec_tty") else {
        return;
    };
    let (listener, sock) = console_socket(ctx.dir.path());
    let receiver = std::thread::spawn(move || receive_fd(&listener));
    let out = ctx.oci(&[
        "exec",
        "-t",
        "-d",
        "--console-socket",
        sock.to_str().unwrap(),
        &ctx.id,
        "/bin/sh",
    ]);
    out.ok();
    let master = fs::File::from(receiver.join().unwrap());
    let mut w = master.try_clone().unwrap();
    w.write_all(b"tty; echo h''i; exit\n").unwrap();
    let text = read_until(&master, "hi\r\n", 20);
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(text.contains("\r\nhi\r\n"), "{text:?}");
}
