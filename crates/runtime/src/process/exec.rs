//! Finding and executing the container process (config.md "Process" → `args`, `env`), and keeping
//! the runtime's file descriptors out of it.

use std::ffi::{CStr, CString};
use std::fs;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{access, AccessFlags};

use super::error::ProcessError;

/// `PATH` when `process.env` has none (the value runc and Docker use).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a candidate cannot be run, if it cannot.
fn unusable(path: &Path) -> Result<(), Option<&'static str>> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => return Err(Some("not accessible")),
        Err(_) => return Err(None),
    };
    if meta.is_dir() {
        return Err(Some("a directory"));
    }
    if !meta.is_file() {
        return Err(Some("not a regular file"));
    }
    if meta.permissions().mode() & 0o111 == 0 || access(path, AccessFlags::X_OK).is_err() {
        return Err(Some("not executable"));
    }
    Ok(())
}

fn to_cstring(what: &str, s: &str) -> Result<CString, ProcessError> {
    CString::new(s).map_err(|_| ProcessError::invalid(what, s, "contains a NUL byte"))
}

/// Finds the program for `process.args[0]` (config.md "Process": `args[0]` is resolved like
/// `execvp`) in the current root: a name containing `/` is used as it is; otherwise it is looked
/// for in the directories of `PATH` from `env` (the last `PATH=` entry, [`DEFAULT_PATH`] when there
/// is none; an empty element means the working directory).
///
/// The error tells "not found" ([`ProcessError::is_not_found`], exit 127) from "found but cannot
/// be executed" ([`ProcessError::is_not_executable`], exit 126): when `PATH` has only unusable
/// matches, it names the first of them.
pub fn find_executable(arg0: &str, env: &[String]) -> Result<CString, ProcessError> {
    if arg0.is_empty() {
        return Err(ProcessError::invalid(
            "process.args[0]",
            arg0,
            "empty program name",
        ));
    }
    if arg0.contains('/') {
        return match unusable(Path::new(arg0)) {
            Ok(()) => to_cstring("process.args[0]", arg0),
            Err(None) => Err(ProcessError::NotFound {
                arg0: arg0.to_owned(),
                where_: String::new(),
            }),
            Err(Some(reason)) => Err(ProcessError::NotExecutable {
                arg0: arg0.to_owned(),
                path: arg0.to_owned(),
                reason: reason.to_owned(),
            }),
        };
    }
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let mut first_unusable: Option<(PathBuf, &'static str)> = None;
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(arg0);
        match unusable(&candidate) {
            Ok(()) => {
                return CString::new(candidate.as_os_str().as_bytes()).map_err(|_| {
                    ProcessError::invalid("process.env PATH", path_var, "contains a NUL byte")
                })
            }
            Err(Some(reason)) => {
                first_unusable.get_or_insert((candidate, reason));
            }
            Err(None) => {}
        }
    }
    match first_unusable {
        Some((path, reason)) => Err(ProcessError::NotExecutable {
            arg0: arg0.to_owned(),
            path: path.display().to_string(),
            reason: reason.to_owned(),
        }),
        None => Err(ProcessError::NotFound {
            arg0: arg0.to_owned(),
            where_: format!(" in $PATH ({path_var})"),
        }),
    }
}

/// `close_range(first, last, CLOSE_RANGE_CLOEXEC)`.
fn close_range_cloexec(first: u32, last: u32) -> Result<(), Errno> {
    // SAFETY: close_range only changes the flags of this process's descriptors; it takes no
    // pointers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            last,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    Errno::result(rc).map(drop)
}

fn set_cloexec(fd: RawFd, on: bool) -> Result<(), Errno> {
    // SAFETY: F_GETFD takes no argument and reads only the descriptor's flags; a descriptor that is
    // not open gives EBADF.
    let flags = Errno::result(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    let flags = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: F_SETFD takes an integer and changes only the descriptor's flags.
    Errno::result(unsafe { libc::fcntl(fd, libc::F_SETFD, flags) }).map(drop)
}

/// The gaps between the kept descriptors, as inclusive ranges from `first` on.
fn ranges_without(first: RawFd, keep: &[RawFd]) -> Vec<(u32, u32)> {
    let mut kept: Vec<u32> = keep
        .iter()
        .filter(|&&fd| fd >= first)
        .map(|&fd| fd as u32)
        .collect();
    kept.sort_unstable();
    kept.dedup();
    let mut ranges = Vec::new();
    let mut from = first.max(0) as u32;
    for fd in kept {
        if fd > from {
            ranges.push((from, fd - 1));
        }
        from = fd + 1;
    }
    ranges.push((from, u32::MAX));
    ranges
}

/// Marks every descriptor from `first` on close-on-exec except those in `keep`, so that no
/// descriptor of the runtime (or of the host) reaches the container process; the descriptors in
/// `keep` have close-on-exec cleared, so that they do reach it (e.g. `LISTEN_FDS`). Uses
/// `close_range(CLOSE_RANGE_CLOEXEC)` (Linux ≥ 5.11), else walks `/proc/self/fd`.
pub fn cloexec_from(first: RawFd, keep: &[RawFd]) -> Result<(), ProcessError> {
    let first = first.max(0);
    let ranges = ranges_without(first, keep);
    let mut fallback = false;
    for &(lo, hi) in &ranges {
        match close_range_cloexec(lo, hi) {
            Ok(()) => {}
            Err(Errno::ENOSYS | Errno::EINVAL) => {
                fallback = true;
                break;
            }
            Err(e) => {
                return Err(ProcessError::syscall(
                    format!("close_range({lo}, {hi}, CLOSE_RANGE_CLOEXEC)"),
                    e,
                ))
            }
        }
    }
    if fallback {
        let fds: Vec<RawFd> = fs::read_dir("/proc/self/fd")
            .map_err(|e| ProcessError::file("/proc/self/fd", e))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        for fd in fds {
            if fd < first || keep.contains(&fd) {
                continue;
            }
            match set_cloexec(fd, true) {
                // The directory's own descriptor, closed by now.
                Ok(()) | Err(Errno::EBADF) => {}
                Err(e) => {
                    return Err(ProcessError::syscall(
                        format!("fcntl({fd}, F_SETFD, FD_CLOEXEC)"),
                        e,
                    ))
                }
            }
        }
    }
    for &fd in keep.iter().filter(|&&fd| fd >= first) {
        set_cloexec(fd, false).map_err(|e| {
            ProcessError::syscall(format!("fcntl({fd}, F_SETFD, 0) for a kept descriptor"), e)
        })?;
    }
    Ok(())
}

/// Replaces the process with `path`, run with `args` (`argv`, `args[0]` included) and `env`
/// (config.md "Process": `args`, `env`). Returns only on failure; the error tells "not found"
/// from "cannot be executed" like [`find_executable`]'s.
pub fn exec(path: &CStr, args: &[String], env: &[String]) -> ProcessError {
    let shown = path.to_string_lossy().into_owned();
    let argv: Result<Vec<CString>, _> = args
        .iter()
        .enumerate()
        .map(|(i, a)| to_cstring(&format!("process.args[{i}]"), a))
        .collect();
    let envp: Result<Vec<CString>, _> = env
        .iter()
        .enumerate()
        .map(|(i, e)| to_cstring(&format!("process.env[{i}]"), e))
        .collect();
    let (argv, envp) = match (argv, envp) {
        (Ok(a), Ok(e)) => (a, e),
        (Err(err), _) | (_, Err(err)) => return err,
    };
    match nix::unistd::execve(path, &argv, &envp) {
        Err(source) => ProcessError::Exec {
            path: shown,
            source,
        },
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_between_kept_descriptors() {
        assert_eq!(ranges_without(3, &[]), [(3, u32::MAX)]);
        assert_eq!(
            ranges_without(3, &[5, 1, 3, 5, 9]),
            [(4, 4), (6, 8), (10, u32::MAX)]
        );
    }

    #[test]
    fn finds_in_path_and_tells_not_found_from_not_executable() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("plain"), "data").unwrap();
        fs::write(d.join("tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(d.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(d.join("adir")).unwrap();
        let env = [format!("PATH=/nonexistent:{}", d.display())];

        let found = find_executable("tool", &env).unwrap();
        assert_eq!(found.to_str().unwrap(), d.join("tool").to_str().unwrap());

        let err = find_executable("nope", &env).unwrap_err();
        assert!(err.is_not_found() && !err.is_not_executable(), "{err}");
        assert!(err
            .to_string()
            .contains("executable file not found in $PATH"));

        let err = find_executable("plain", &env).unwrap_err();
        assert!(err.is_not_executable() && !err.is_not_found(), "{err}");
        assert!(
            err.to_string().ends_with("plain is not executable"),
            "{err}"
        );

        let err = find_executable("adir", &env).unwrap_err();
        assert!(err.is_not_executable(), "{err}");

        let abs = d.join("plain");
        let err = find_executable(abs.to_str().unwrap(), &[]).unwrap_err();
        assert!(err.is_not_executable(), "{err}");
        let err = find_executable(d.join("missing").to_str().unwrap(), &[]).unwrap_err();
        assert!(err.is_not_found(), "{err}");
    }

    #[test]
    fn default_path_is_used_without_path_in_env() {
        let found = find_executable("sh", &["HOME=/root".to_owned()]).unwrap();
        assert!(found.to_str().unwrap().ends_with("/sh"));
    }

    #[test]
    fn exec_of_a_missing_program_is_not_found() {
        let err = exec(c"/nonexistent/prog", &["prog".to_owned()], &[]);
        assert!(err.is_not_found(), "{err}");
        let err = exec(c"/bin/sh", &["a\0b".to_owned()], &[]);
        assert!(err.to_string().starts_with("process.args[0]"), "{err}");
    }
}
