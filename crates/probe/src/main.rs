//! `isola-probe`: a small program the tests run *inside* containers (built statically, so it runs in
//! any rootfs) that reports what the container sees, so tests assert on the container's real view.
//!
//! Usage:
//! - `isola-probe report` — JSON: ids, groups, umask, cwd, hostname, capabilities, no_new_privs,
//!   seccomp mode, rlimits, namespaces, mounts, cgroups, oom_score_adj, environment, PIDs;
//! - `isola-probe try OP PATH` — tries `mkdir`, `open-read`, `open-write`, `mknod` or `mount-tmpfs`
//!   on PATH and prints `ok` or the errno name;
//! - `isola-probe try mknod PATH c|b MAJOR MINOR` — `mknod` of that device node;
//! - `isola-probe read PATH` — prints a file (e.g. a sysctl or a cgroup limit);
//! - `isola-probe stat PATH` — JSON from `lstat`: file type, mode, uid, gid, device numbers,
//!   symlink target;
//! - `isola-probe fork N` — forks N children that sleep, then prints JSON with how many forks
//!   succeeded and the first failure's errno name;
//! - `isola-probe sleep SECS`, `isola-probe exit CODE`, `isola-probe alloc MIB` (touches MIB of memory).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;

use serde_json::{json, Value};

fn status_field(status: &str, key: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.trim().to_owned())
}

fn rlimits() -> Value {
    let names: [(&str, libc::__rlimit_resource_t); 16] = [
        ("RLIMIT_CPU", libc::RLIMIT_CPU),
        ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
        ("RLIMIT_DATA", libc::RLIMIT_DATA),
        ("RLIMIT_STACK", libc::RLIMIT_STACK),
        ("RLIMIT_CORE", libc::RLIMIT_CORE),
        ("RLIMIT_RSS", libc::RLIMIT_RSS),
        ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
        ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
        ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
        ("RLIMIT_AS", libc::RLIMIT_AS),
        ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
        ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
        ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
        ("RLIMIT_NICE", libc::RLIMIT_NICE),
        ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
        ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
    ];
    let mut out = BTreeMap::new();
    for (name, res) in names {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into `lim`, a valid rlimit struct.
        if unsafe { libc::getrlimit(res, &mut lim) } == 0 {
            out.insert(name, json!({"soft": lim.rlim_cur, "hard": lim.rlim_max}));
        }
    }
    json!(out)
}

fn namespaces() -> Value {
    let mut out = BTreeMap::new();
    for ns in ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"] {
        if let Ok(link) = fs::read_link(format!("/proc/self/ns/{ns}")) {
            out.insert(ns, link.to_string_lossy().into_owned());
        }
    }
    json!(out)
}

fn mounts() -> Value {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let list: Vec<Value> = text
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(json!({
                "target": f.get(4)?,
                "options": f.get(5)?,
                "optional": f.get(6..).map(|o| o.join(" ")).unwrap_or_default(),
                "fstype": r.first()?,
                "source": r.get(1)?,
                "super_options": r.get(2).copied().unwrap_or_default(),
            }))
        })
        .collect();
    json!(list)
}

fn umask() -> u32 {
    // SAFETY: umask only swaps the process's file mode mask; it is restored at once.
    let old = unsafe { libc::umask(0o022) };
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    old
}

fn report() -> Value {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| status_field(&status, k);
    // SAFETY: plain getters without arguments.
    let (uid, euid, gid, egid, pid, ppid) = unsafe {
        (
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
            libc::getpid(),
            libc::getppid(),
        )
    };
    let mut groups = vec![0 as libc::gid_t; 256];
    // SAFETY: getgroups writes at most `groups.len()` entries into the buffer.
    let n = unsafe { libc::getgroups(groups.len() as i32, groups.as_mut_ptr()) };
    groups.truncate(n.max(0) as usize);
    let env: BTreeMap<String, String> = std::env::vars().collect();
    json!({
        "uid": uid, "euid": euid, "gid": gid, "egid": egid,
        "groups": groups,
        "pid": pid, "ppid": ppid,
        "umask": format!("{:04o}", umask()),
        "cwd": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_else(|e| format!("error: {e}")),
        "hostname": fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim(),
        "domainname": fs::read_to_string("/proc/sys/kernel/domainname").unwrap_or_default().trim(),
        "caps": {
            "inheritable": field("CapInh"), "permitted": field("CapPrm"), "effective": field("CapEff"),
            "bounding": field("CapBnd"), "ambient": field("CapAmb"),
        },
        "no_new_privs": field("NoNewPrivs"),
        "seccomp": field("Seccomp"),
        "rlimits": rlimits(),
        "namespaces": namespaces(),
        "mounts": mounts(),
        "cgroup": fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
        "oom_score_adj": fs::read_to_string("/proc/self/oom_score_adj").unwrap_or_default().trim(),
        "env": env,
        "fds": fs::read_dir("/proc/self/fd").map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>()).unwrap_or_default(),
    })
}

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::EROFS) => "EROFS".into(),
        Some(libc::ENOENT) => "ENOENT".into(),
        Some(libc::EEXIST) => "EEXIST".into(),
        Some(libc::ENOSPC) => "ENOSPC".into(),
        Some(libc::EBUSY) => "EBUSY".into(),
        Some(n) => format!("errno {n}"),
        None => e.to_string(),
    }
}

fn file_type(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "file",
        libc::S_IFDIR => "dir",
        libc::S_IFLNK => "symlink",
        libc::S_IFCHR => "char",
        libc::S_IFBLK => "block",
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "socket",
        _ => "unknown",
    }
}

fn stat(path: &str) -> Value {
    use std::os::unix::fs::MetadataExt;
    match fs::symlink_metadata(path) {
        Ok(m) => json!({
            "type": file_type(m.mode()),
            "mode": format!("{:04o}", m.mode() & 0o7777),
            "uid": m.uid(),
            "gid": m.gid(),
            "major": libc::major(m.rdev()),
            "minor": libc::minor(m.rdev()),
            "size": m.size(),
            "link": fs::read_link(path).ok().map(|l| l.display().to_string()),
        }),
        Err(e) => json!({ "error": errno_name(&e) }),
    }
}

/// Forks `n` children that sleep (they die with the container), reporting how many forks succeeded.
fn fork_many(n: usize) -> Value {
    let mut ok = 0;
    let mut error = None;
    for _ in 0..n {
        // SAFETY: the child only sleeps and exits, calling async-signal-safe functions.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: as above.
                unsafe {
                    libc::sleep(30);
                    libc::_exit(0);
                }
            }
            -1 => {
                error = Some(errno_name(&std::io::Error::last_os_error()));
                break;
            }
            _ => ok += 1,
        }
    }
    json!({ "forked": ok, "error": error })
}

fn try_op(op: &str, path: &str, dev: &[&str]) -> String {
    let c = CString::new(path).unwrap_or_default();
    let res: std::io::Result<()> = match op {
        "mkdir" => fs::create_dir(path),
        "open-read" => fs::File::open(path).map(drop),
        "open-write" => fs::OpenOptions::new().write(true).open(path).map(drop),
        "mknod" => {
            let kind = match dev.first() {
                Some(&"b") => libc::S_IFBLK,
                _ => libc::S_IFCHR,
            };
            let num = |i: usize, d: u32| dev.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
            let rdev = libc::makedev(num(1, 1), num(2, 3));
            // SAFETY: mknod with a valid NUL-terminated path.
            let r = unsafe { libc::mknod(c.as_ptr(), kind | 0o600, rdev) };
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        }
        "mount-tmpfs" => {
            let t = CString::new("tmpfs").unwrap_or_default();
            // SAFETY: mount with valid NUL-terminated strings and no data.
            let r = unsafe { libc::mount(t.as_ptr(), c.as_ptr(), t.as_ptr(), 0, std::ptr::null()) };
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        }
        other => return format!("unknown op {other}"),
    };
    match res {
        Ok(()) => "ok".into(),
        Err(e) => errno_name(&e),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    match arg(1) {
        "report" => println!("{}", report()),
        "try" => {
            let dev: Vec<&str> = args.iter().skip(4).map(String::as_str).collect();
            println!("{}", try_op(arg(2), arg(3), &dev));
        }
        "stat" => println!("{}", stat(arg(2))),
        "fork" => println!("{}", fork_many(arg(2).parse().unwrap_or(1))),
        "read" => match fs::read_to_string(arg(2)) {
            Ok(s) => print!("{s}"),
            Err(e) => {
                println!("{}", errno_name(&e));
                std::process::exit(1);
            }
        },
        "sleep" => std::thread::sleep(std::time::Duration::from_secs(
            arg(2).parse().unwrap_or(3600),
        )),
        "exit" => std::process::exit(arg(2).parse().unwrap_or(0)),
        "alloc" => {
            let mib: usize = arg(2).parse().unwrap_or(64);
            let mut v: Vec<u8> = Vec::with_capacity(mib << 20);
            for i in 0..(mib << 20) {
                v.push((i % 251) as u8);
            }
            println!("allocated {}", v.len());
        }
        _ => {
            eprintln!("usage: isola-probe report | try OP PATH [c|b MAJ MIN] | read PATH | stat PATH | fork N | sleep SECS | exit CODE | alloc MIB");
            std::process::exit(2);
        }
    }
}
