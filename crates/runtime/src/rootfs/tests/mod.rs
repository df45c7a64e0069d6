//! Privileged tests of the rootfs module. Each runs in a forked child that first unshares its
//! mount namespace, so the test process's (and the host's) mounts are never touched; the child
//! reports "ok" or what went wrong over a pipe. Without root they print why they are skipped.

mod filesystems;
mod finish;
mod hostile;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;
use oci_spec::runtime::Spec;

/// Fails the isolated test body with a message.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}
pub(crate) use ensure;

/// Runs `body` in a forked child in a new mount namespace and asserts that it returned `Ok`.
pub(super) fn isolated(name: &str, body: impl FnOnce() -> Result<(), String>) {
    if !rustix::process::geteuid().is_root() {
        println!("skipped: {name} needs root (mount namespaces, mounts, mknod)");
        return;
    }
    let (reader, writer) = nix::unistd::pipe().expect("pipe");
    let (mut reader, writer) = (fs::File::from(reader), fs::File::from(writer));
    // SAFETY: the child only runs `body` (which uses no lock another test thread could hold
    // across fork beyond malloc's, which glibc resets in the child) and then `_exit`s.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        ForkResult::Child => {
            drop(reader);
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                nix::sched::unshare(CloneFlags::CLONE_NEWNS)
                    .map_err(|e| format!("unshare: {e}"))?;
                body()
            }));
            let msg = match result {
                Ok(Ok(())) => "ok".to_string(),
                Ok(Err(e)) => e,
                Err(p) => format!(
                    "panic: {}",
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                ),
            };
            let mut writer = writer;
            let _ = writer.write_all(msg.as_bytes());
            drop(writer);
            // SAFETY: `_exit` ends the child without running the parent's atexit handlers or
            // unwinding into the test harness.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(writer);
            let mut msg = String::new();
            reader.read_to_string(&mut msg).expect("read from child");
            waitpid(child, None).expect("waitpid");
            assert_eq!(msg, "ok", "{name}");
        }
    }
}

/// A small busybox tree: `bin/busybox`, `bin/sh`, and empty `dev`, `proc`, `sys`, `etc`, `tmp`.
pub(super) fn busybox_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "dev", "proc", "sys", "etc", "tmp"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    symlink("busybox", root.join("bin/sh")).unwrap();
    root
}

/// A spec from the JSON of its interesting parts.
pub(super) fn spec(mut value: serde_json::Value) -> Spec {
    let obj = value.as_object_mut().unwrap();
    obj.insert("ociVersion".into(), "1.2.0".into());
    obj.entry("root")
        .or_insert(serde_json::json!({"path": "rootfs"}));
    serde_json::from_value(value).unwrap()
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone)]
pub(super) struct MountLine {
    pub mount_point: PathBuf,
    pub options: Vec<String>,
    pub optional: Vec<String>,
    pub fstype: String,
    pub super_options: Vec<String>,
}

pub(super) fn mountinfo() -> Vec<MountLine> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-").unwrap();
            MountLine {
                mount_point: PathBuf::from(f[4].replace("\\040", " ")),
                options: f[5].split(',').map(String::from).collect(),
                optional: f[6..sep].iter().map(|s| s.to_string()).collect(),
                fstype: f[sep + 1].to_string(),
                super_options: f[sep + 3].split(',').map(String::from).collect(),
            }
        })
        .collect()
}

/// The topmost mount at `path`, if `path` is a mount point.
pub(super) fn mount_at(path: &Path) -> Option<MountLine> {
    mountinfo()
        .into_iter()
        .rev()
        .find(|m| m.mount_point == path)
}

/// `mount_at` or an error naming the path.
pub(super) fn need_mount(path: &Path) -> Result<MountLine, String> {
    mount_at(path).ok_or_else(|| format!("{path:?} is not a mount point"))
}

/// The raw errno of an io result that should have failed.
pub(super) fn errno_of<T>(r: std::io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}
