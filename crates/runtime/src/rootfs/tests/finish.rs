//! finish: masked paths, read-only paths, root.readonly, rootfsPropagation; and no_pivot.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde_json::json;

use super::{busybox_rootfs, ensure, errno_of, isolated, mountinfo, spec};
use crate::rootfs::{ensure_cwd, finish, pivot, prepare, RootfsOptions};

fn open_for_write(p: &str) -> std::io::Result<fs::File> {
    fs::OpenOptions::new().write(true).open(p)
}

#[test]
fn masked_readonly_and_root_readonly() {
    let t = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(t.path());
    fs::create_dir_all(rootfs.join("secret")).unwrap();
    fs::write(rootfs.join("secret/key"), b"k").unwrap();
    fs::write(rootfs.join("etc/secret"), b"s").unwrap();
    fs::create_dir_all(rootfs.join("etc/ro/sub")).unwrap();
    isolated("masked_readonly_and_root_readonly", || {
        let s = spec(json!({
            "root": {"path": "rootfs", "readonly": true},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/etc/ro/sub", "type": "tmpfs", "source": "tmpfs"}
            ],
            "linux": {
                "maskedPaths": ["/proc/kcore", "/proc/meminfo", "/secret", "/etc/secret", "/does/not/exist"],
                "readonlyPaths": ["/proc/sys", "/etc/ro", "/missing"]
            }
        }));
        let prepared =
            prepare(&s, &rootfs, &RootfsOptions::default(), None).map_err(|e| e.to_string())?;
        pivot(&rootfs, false).map_err(|e| e.to_string())?;
        finish(&s, prepared).map_err(|e| e.to_string())?;

        let md = fs::metadata("/etc/secret").map_err(|e| e.to_string())?;
        ensure!(
            md.file_type().is_char_device() && md.rdev() == libc::makedev(1, 3),
            "/etc/secret"
        );
        ensure!(
            fs::read("/etc/secret")
                .map_err(|e| e.to_string())?
                .is_empty(),
            "secret readable"
        );
        ensure!(
            fs::read("/proc/meminfo")
                .map_err(|e| e.to_string())?
                .is_empty(),
            "meminfo readable"
        );
        let listed = fs::read_dir("/secret").map_err(|e| e.to_string())?.count();
        ensure!(listed == 0, "/secret lists {listed} entries");
        ensure!(
            errno_of(fs::write("/secret/x", b"")) == Some(libc::EROFS),
            "/secret writable"
        );

        ensure!(
            errno_of(open_for_write("/proc/sys/kernel/hostname")) == Some(libc::EROFS),
            "/proc/sys writable"
        );
        ensure!(
            errno_of(fs::write("/etc/ro/sub/x", b"")) == Some(libc::EROFS),
            "mount below a read-only path is writable"
        );
        ensure!(
            errno_of(fs::write("/newfile", b"")) == Some(libc::EROFS),
            "root writable"
        );
        fs::write("/tmp/ok", b"").map_err(|e| format!("/tmp not writable: {e}"))?;

        ensure_cwd(Path::new("/tmp/work/dir")).map_err(|e| e.to_string())?;
        ensure!(Path::new("/tmp/work/dir").is_dir(), "cwd not created");
        let e = ensure_cwd(Path::new("relative")).unwrap_err().to_string();
        ensure!(e.contains("process.cwd"), "{e}");
        Ok(())
    });
}

#[test]
fn rootfs_propagation_shared() {
    let t = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(t.path());
    isolated("rootfs_propagation_shared", || {
        let s = spec(json!({
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"rootfsPropagation": "rshared"}
        }));
        let prepared =
            prepare(&s, &rootfs, &RootfsOptions::default(), None).map_err(|e| e.to_string())?;
        pivot(&rootfs, false).map_err(|e| e.to_string())?;
        finish(&s, prepared).map_err(|e| e.to_string())?;
        let root = mountinfo()
            .into_iter()
            .find(|m| m.mount_point == Path::new("/"));
        let root = root.ok_or("no / in mountinfo")?;
        ensure!(
            root.optional.iter().any(|o| o.starts_with("shared:")),
            "{root:?}"
        );
        Ok(())
    });
}

#[test]
fn no_pivot_moves_and_chroots() {
    let t = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(t.path());
    isolated("no_pivot_moves_and_chroots", || {
        let s = spec(json!({
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"maskedPaths": ["/proc/meminfo"]}
        }));
        let opts = RootfsOptions {
            no_pivot: true,
            ..Default::default()
        };
        let prepared = prepare(&s, &rootfs, &opts, None).map_err(|e| e.to_string())?;
        pivot(&rootfs, true).map_err(|e| e.to_string())?;
        finish(&s, prepared).map_err(|e| e.to_string())?;
        ensure!(
            Path::new("/bin/busybox").exists(),
            "no /bin/busybox after chroot"
        );
        let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
        ensure!(cwd == Path::new("/"), "cwd {cwd:?}");
        ensure!(
            fs::read("/proc/meminfo")
                .map_err(|e| e.to_string())?
                .is_empty(),
            "meminfo readable"
        );
        Ok(())
    });
}
