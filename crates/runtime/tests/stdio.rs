//! `CreateOptions::stdio` and `ExecOptions::stdio`: the container's and an exec'd process's
//! standard streams are the descriptors the caller names, not the caller's own 0, 1 and 2.
//!
//! Privileged: needs root (namespaces, cgroups, mounts) and the static busybox of Debian's
//! `busybox-static` at `/bin/busybox`. Without either the test says why and passes, unless `CI`
//! is set, where a missing requirement is a failure.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::path::Path;

use isola_runtime::{CreateOptions, ExecOptions, Runtime};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

const APPLETS: &[&str] = &["sh", "cat", "echo", "sleep", "true"];

fn skip(why: &str) {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false");
    assert!(!ci, "stdio test: {why} (required in CI)");
    eprintln!("skipped: stdio test: {why}");
}

fn pipe() -> (OwnedFd, OwnedFd) {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap()
}

fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    fs::File::from(fd).read_to_string(&mut s).unwrap();
    s
}

/// A bundle whose rootfs is busybox; `args` is the container's process.
fn bundle(dir: &Path, args: &[&str]) {
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for a in APPLETS {
        symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    let mut spec = isola_runtime::spec::default_spec();
    let mut process = spec.process().clone().unwrap();
    process.set_args(Some(args.iter().map(|s| (*s).to_owned()).collect()));
    process.set_env(Some(vec!["PATH=/bin".into()]));
    spec.set_process(Some(process));
    let mut root = spec.root().clone().unwrap();
    root.set_path(rootfs);
    root.set_readonly(Some(false));
    spec.set_root(Some(root));
    fs::write(dir.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
}

fn wait_exit(pid: i32) -> WaitStatus {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return r.unwrap(),
        }
    }
}

#[test]
fn create_and_exec_use_the_given_stdio() {
    if !nix::unistd::geteuid().is_root() {
        return skip("needs root");
    }
    if !Path::new("/bin/busybox").is_file() {
        return skip("no /bin/busybox (apt-get install busybox-static)");
    }
    // The container's init and exec'd processes are grandchildren: adopt them to wait for them.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let bundle_dir = tmp.path().join("bundle");
    bundle(
        &bundle_dir,
        &[
            "sh",
            "-c",
            "read x; echo \"out:$x\"; echo err >&2; exec sleep 60",
        ],
    );
    let rt = Runtime::new(tmp.path().join("state")).unwrap();
    let id = format!("stdio-test-{}", std::process::id());

    let (in_r, in_w) = pipe();
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let opts = CreateOptions {
        stdio: Some([in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()]),
        ..Default::default()
    };
    let (mut c, _warnings) = rt.create(&id, &bundle_dir, &opts).unwrap();
    drop((in_r, out_w, err_w));
    let mut stdin = fs::File::from(in_w);
    stdin.write_all(b"hello\n").unwrap();
    drop(stdin);
    c.start().unwrap();
    let mut out = fs::File::from(out_r);
    let mut line = [0u8; 10];
    out.read_exact(&mut line).unwrap();
    assert_eq!(&line, b"out:hello\n");
    let mut err = fs::File::from(err_r);
    let mut e = [0u8; 4];
    err.read_exact(&mut e).unwrap();
    assert_eq!(&e, b"err\n");

    // An exec'd process with its own pipes; the container's stay untouched.
    let (in_r, in_w) = pipe();
    let (out2_r, out2_w) = pipe();
    let (err2_r, err2_w) = pipe();
    let bundle = isola_runtime::spec::load_bundle(&bundle_dir).unwrap();
    let mut p = bundle.spec.process().clone().unwrap();
    p.set_args(Some(
        ["sh", "-c", "cat; echo exec-err >&2; exit 5"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    ));
    let opts = ExecOptions {
        stdio: Some([in_r.as_raw_fd(), out2_w.as_raw_fd(), err2_w.as_raw_fd()]),
        ..Default::default()
    };
    let pid = c.exec(&p, &opts).unwrap();
    drop((in_r, out2_w, err2_w));
    let mut stdin = fs::File::from(in_w);
    stdin.write_all(b"through cat\n").unwrap();
    drop(stdin);
    assert_eq!(read_all(out2_r), "through cat\n");
    assert_eq!(read_all(err2_r), "exec-err\n");
    assert_eq!(wait_exit(pid), WaitStatus::Exited(Pid::from_raw(pid), 5));

    // A descriptor that is not open is refused before anything is forked.
    let opts = ExecOptions {
        stdio: Some([0, 1, 999_999]),
        ..Default::default()
    };
    let e = c.exec(&p, &opts).unwrap_err().to_string();
    assert!(e.contains("stderr descriptor 999999"), "{e}");

    let init = c.pid().unwrap();
    c.kill(9, false).unwrap();
    assert!(matches!(
        wait_exit(init),
        WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
    ));
    // The init's stdout now reads EOF: nothing else held the pipe.
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    c.delete(true).unwrap();
}
