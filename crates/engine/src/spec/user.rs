//! The process user: `-u` (or the image's User) resolved against the image's `/etc/passwd` and
//! `/etc/group`, as runc's `GetExecUser` resolves it for Docker.
//!
//! The image is untrusted: its `/etc/passwd` may be a symlink aimed at a host file, a FIFO, or
//! huge. Both files are resolved beneath the rootfs with `openat2(RESOLVE_IN_ROOT)`
//! ([`open_in_root`]), so a symlink is followed as if the rootfs were `/`; only a regular file is
//! reopened for reading (through `/proc/self/fd`, never by path), and at most [`MAX_DB_SIZE`] bytes
//! are read.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use isola_runtime::rootfs::{open_in_root, CreateKind, RootfsError};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use super::error::SpecError;

/// Largest `/etc/passwd` or `/etc/group` read, in bytes.
pub const MAX_DB_SIZE: u64 = 4 << 20;

/// Largest uid or gid accepted (runc's range: a non-negative 32-bit signed integer).
const MAX_ID: u32 = i32::MAX as u32;

/// Who the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
    /// Supplementary groups: the primary group first (as Docker lists it), then every group of
    /// `/etc/group` naming the user as a member, when the group was not given explicitly.
    pub additional_gids: Vec<u32>,
    /// The home directory from `/etc/passwd`, `/` without an entry.
    pub home: String,
}

/// One `/etc/passwd` line.
#[derive(Debug)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// One `/etc/group` line.
#[derive(Debug)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn records(text: &str, min_fields: usize) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(['+', '-']))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(move |f| f.len() >= min_fields)
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    records(text, 4)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).copied().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    records(text, 3)
        .filter_map(|f| {
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Reads `path` (absolute, inside the image) beneath `rootfs` without leaving it. A missing file
/// reads as empty (an image without `/etc/group` is common); a file that is not regular or is
/// larger than [`MAX_DB_SIZE`] is an error.
pub fn read_image_file(rootfs: &Path, path: &'static str) -> Result<String, SpecError> {
    let fd = match open_in_root(rootfs, Path::new(path), CreateKind::None) {
        Ok(fd) => fd,
        Err(RootfsError::Resolve { source, .. }) if source.0 == Errno::NOENT => {
            return Ok(String::new())
        }
        Err(source) => return Err(SpecError::ImageFile { path, source }),
    };
    let os = |e: Errno| SpecError::io("read the image's", path, e.into());
    let stat = rustix::fs::fstat(&fd).map_err(os)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(SpecError::ImageFileType {
            path,
            reason: "not a regular file",
        });
    }
    // Reopen the very inode the O_PATH descriptor names; O_NONBLOCK guards against a swap to a
    // FIFO between the check and the open (a descriptor's target cannot change, but be strict).
    let proc_path = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    let file = rustix::fs::open(
        proc_path.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(os)?;
    let mut data = Vec::new();
    std::fs::File::from(file)
        .take(MAX_DB_SIZE + 1)
        .read_to_end(&mut data)
        .map_err(|e| SpecError::io("read the image's", path, e))?;
    if data.len() as u64 > MAX_DB_SIZE {
        return Err(SpecError::ImageFileType {
            path,
            reason: "larger than 4 MiB",
        });
    }
    Ok(String::from_utf8_lossy(&data).into_owned())
}

/// A numeric id as runc takes one: decimal digits within [`MAX_ID`]. `Ok(None)` = not numeric
/// (a name); `Err` = numeric but out of range.
fn numeric(s: &str) -> Result<Option<u32>, ()> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match s.parse::<u32>() {
        Ok(n) if n <= MAX_ID => Ok(Some(n)),
        _ => Err(()),
    }
}

/// Resolves `spec` (`user`, `uid`, `user:group`, `uid:gid`, `uid:group`, `user:gid`; empty =
/// root) against the image's `/etc/passwd` and `/etc/group` under `rootfs`. `flag` names where the
/// value came from (`-u` or `image User`) in errors.
///
/// A name must exist in the file; a number need not (then the gid is 0 unless given, and the home
/// is `/`). Supplementary groups are looked up only when the group is not given explicitly.
pub fn resolve(rootfs: &Path, flag: &'static str, spec: &str) -> Result<ResolvedUser, SpecError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let group_part = group_part.filter(|g| !g.is_empty());
    let out_of_range =
        |what: &str| SpecError::invalid(flag, spec, format!("{what} out of range (0 to {MAX_ID})"));
    let uid_arg = numeric(user_part).map_err(|()| out_of_range("uid"))?;
    let gid_arg = match group_part {
        Some(g) => numeric(g).map_err(|()| out_of_range("gid"))?,
        None => None,
    };

    let passwd = parse_passwd(&read_image_file(rootfs, "/etc/passwd")?);
    let entry = passwd.iter().find(|u| match uid_arg {
        Some(uid) => u.uid == uid,
        None if user_part.is_empty() => u.uid == 0,
        None => u.name == user_part,
    });
    let (uid, mut gid, home, name) = match (entry, uid_arg) {
        (Some(e), _) => (e.uid, e.gid, e.home.clone(), Some(e.name.as_str())),
        (None, Some(uid)) => (uid, 0, String::new(), None),
        (None, None) if user_part.is_empty() => (0, 0, String::new(), None),
        (None, None) => {
            return Err(SpecError::invalid(
                flag,
                spec,
                "no such user in the image's /etc/passwd",
            ))
        }
    };

    let mut additional = Vec::new();
    if group_part.is_some() || name.is_some() {
        let groups = parse_group(&read_image_file(rootfs, "/etc/group")?);
        match group_part {
            Some(g) => {
                let found = groups.iter().find(|e| match gid_arg {
                    Some(gid) => e.gid == gid,
                    None => e.name == g,
                });
                gid = match (found, gid_arg) {
                    (Some(e), _) => e.gid,
                    (None, Some(gid)) => gid,
                    (None, None) => {
                        return Err(SpecError::invalid(
                            flag,
                            spec,
                            "no such group in the image's /etc/group",
                        ))
                    }
                };
            }
            None => {
                let name = name.unwrap_or_default();
                additional.extend(
                    groups
                        .iter()
                        .filter(|g| g.members.iter().any(|m| m == name))
                        .map(|g| g.gid),
                );
            }
        }
    }
    let mut additional_gids = vec![gid];
    for g in additional {
        if !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # a comment\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        broken line\n\
        app:x:1000:1000:App,,,:/home/app:/bin/bash\n\
        nohome:x:1001:1001\n";
    const GROUP: &str = "root:x:0:\n\
        wheel:x:10:root,app\n\
        app:x:1000:\n\
        audio:x:29:daemon, app\n\
        staff:x:50:\n";

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        dir
    }

    fn user(uid: u32, gid: u32, gids: &[u32], home: &str) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            additional_gids: gids.to_vec(),
            home: home.into(),
        }
    }

    #[test]
    fn names_and_numbers() {
        let r = rootfs();
        let r = r.path();
        assert_eq!(resolve(r, "-u", "").unwrap(), user(0, 0, &[0, 10], "/root"));
        assert_eq!(
            resolve(r, "-u", "root").unwrap(),
            user(0, 0, &[0, 10], "/root")
        );
        assert_eq!(
            resolve(r, "-u", "app").unwrap(),
            user(1000, 1000, &[1000, 10, 29], "/home/app")
        );
        // A uid with an entry takes the entry's group and supplementary groups.
        assert_eq!(
            resolve(r, "-u", "1000").unwrap(),
            user(1000, 1000, &[1000, 10, 29], "/home/app")
        );
        // A uid without an entry is fine: gid 0, home /.
        assert_eq!(resolve(r, "-u", "4242").unwrap(), user(4242, 0, &[0], "/"));
        assert_eq!(
            resolve(r, "-u", "nohome").unwrap(),
            user(1001, 1001, &[1001], "/")
        );
    }

    #[test]
    fn explicit_groups_replace_supplementary_groups() {
        let r = rootfs();
        let r = r.path();
        assert_eq!(
            resolve(r, "-u", "app:staff").unwrap(),
            user(1000, 50, &[50], "/home/app")
        );
        assert_eq!(
            resolve(r, "-u", "4242:4343").unwrap(),
            user(4242, 4343, &[4343], "/")
        );
        assert_eq!(
            resolve(r, "-u", "4242:wheel").unwrap(),
            user(4242, 10, &[10], "/")
        );
        assert_eq!(
            resolve(r, "-u", "app:29").unwrap(),
            user(1000, 29, &[29], "/home/app")
        );
        // `user:` is the user alone.
        assert_eq!(
            resolve(r, "-u", "app:").unwrap(),
            user(1000, 1000, &[1000, 10, 29], "/home/app")
        );
    }

    #[test]
    fn unknown_names_and_bad_numbers() {
        let r = rootfs();
        let r = r.path();
        assert_eq!(
            resolve(r, "-u", "nosuchuser").unwrap_err().to_string(),
            r#"-u "nosuchuser": no such user in the image's /etc/passwd"#
        );
        assert_eq!(
            resolve(r, "image User", "app:nogroup")
                .unwrap_err()
                .to_string(),
            r#"image User "app:nogroup": no such group in the image's /etc/group"#
        );
        assert!(resolve(r, "-u", "4294967295")
            .unwrap_err()
            .to_string()
            .contains("uid out of range"));
        assert!(resolve(r, "-u", "0:99999999999")
            .unwrap_err()
            .to_string()
            .contains("gid out of range"));
    }

    #[test]
    fn missing_files_allow_numeric_users_only() {
        let r = tempfile::tempdir().unwrap();
        assert_eq!(resolve(r.path(), "-u", "").unwrap(), user(0, 0, &[0], "/"));
        assert_eq!(
            resolve(r.path(), "-u", "5:6").unwrap(),
            user(5, 6, &[6], "/")
        );
        assert!(resolve(r.path(), "-u", "root").is_err());
    }

    #[test]
    fn symlinks_stay_inside_the_rootfs() {
        // The host file the image's symlink aims at.
        let host = tempfile::tempdir().unwrap();
        let secret = host.path().join("shadow");
        fs::write(&secret, "evil:x:0:0::/evil:/bin/sh\n").unwrap();
        let r = tempfile::tempdir().unwrap();
        fs::create_dir(r.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(&secret, r.path().join("etc/passwd")).unwrap();
        // Nothing at that path inside the rootfs: the name is not found, the host is never read.
        assert!(resolve(r.path(), "-u", "evil").is_err());
        // The same path inside the rootfs is what gets read.
        let inside = r.path().join(secret.strip_prefix("/").unwrap());
        fs::create_dir_all(inside.parent().unwrap()).unwrap();
        fs::write(&inside, "good:x:7:8::/good:/bin/sh\n").unwrap();
        assert!(resolve(r.path(), "-u", "evil").is_err());
        assert_eq!(
            resolve(r.path(), "-u", "good").unwrap(),
            user(7, 8, &[8], "/good")
        );
        // `..` climbing out is clamped at the rootfs.
        fs::remove_file(r.path().join("etc/passwd")).unwrap();
        let climb = format!("../../../../../../..{}", secret.display());
        std::os::unix::fs::symlink(climb, r.path().join("etc/passwd")).unwrap();
        assert_eq!(
            resolve(r.path(), "-u", "good").unwrap(),
            user(7, 8, &[8], "/good")
        );
    }

    #[test]
    fn special_and_huge_files_are_refused() {
        let r = tempfile::tempdir().unwrap();
        fs::create_dir(r.path().join("etc")).unwrap();
        nix::unistd::mkfifo(&r.path().join("etc/passwd"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(
            resolve(r.path(), "-u", "x").unwrap_err().to_string(),
            "the image's /etc/passwd: not a regular file"
        );
        fs::remove_file(r.path().join("etc/passwd")).unwrap();
        fs::create_dir(r.path().join("etc/passwd")).unwrap();
        assert!(resolve(r.path(), "-u", "x").is_err());
        fs::remove_dir(r.path().join("etc/passwd")).unwrap();
        let f = fs::File::create(r.path().join("etc/passwd")).unwrap();
        f.set_len(MAX_DB_SIZE + 1).unwrap();
        assert_eq!(
            resolve(r.path(), "-u", "x").unwrap_err().to_string(),
            "the image's /etc/passwd: larger than 4 MiB"
        );
    }
}
