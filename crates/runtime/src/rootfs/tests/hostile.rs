//! A hostile image and a hostile config.json: nothing may land outside the rootfs.

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt};
use std::path::Path;

use serde_json::json;

use super::{busybox_rootfs, ensure, isolated, mount_at, mountinfo, need_mount, spec};
use crate::rootfs::{finish, pivot, prepare, RootfsOptions};

#[test]
fn symlink_destinations_land_inside_the_rootfs() {
    let t = tempfile::tempdir().unwrap();
    let canary = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(t.path());
    symlink(
        format!("/../../../..{}", canary.path().display()),
        rootfs.join("etc/evil"),
    )
    .unwrap();
    symlink("../../../../../../", rootfs.join("etc/up")).unwrap();
    let inside = rootfs.join(canary.path().strip_prefix("/").unwrap());
    isolated("symlink_destinations_land_inside_the_rootfs", || {
        let s = spec(json!({
            "mounts": [
                {"destination": "/etc/evil/mnt", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/etc/up/tmp", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/etc/evil/bind", "type": "bind", "source": "/etc/hostname",
                 "options": ["bind", "ro"]}
            ],
            "linux": {"devices": [{"path": "/etc/evil/dev0", "type": "c", "major": 1, "minor": 3}]}
        }));
        prepare(&s, &rootfs, &RootfsOptions::default(), None).map_err(|e| e.to_string())?;
        need_mount(&inside.join("mnt"))?;
        need_mount(&inside.join("bind"))?;
        need_mount(&rootfs.join("tmp"))?;
        let md = fs::symlink_metadata(inside.join("dev0")).map_err(|e| e.to_string())?;
        ensure!(
            md.file_type().is_char_device(),
            "dev0 not inside the rootfs"
        );
        ensure!(
            mount_at(&canary.path().join("mnt")).is_none(),
            "mounted on the canary"
        );
        let outside = mountinfo()
            .into_iter()
            .filter(|m| m.mount_point.starts_with(canary.path()))
            .count();
        ensure!(outside == 0, "{outside} mounts below the canary");
        Ok(())
    });
    assert_eq!(
        fs::read_dir(canary.path()).unwrap().count(),
        0,
        "canary touched"
    );
}

#[test]
fn dotdot_destination_is_refused_before_any_mount() {
    let t = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(t.path());
    isolated("dotdot_destination_is_refused_before_any_mount", || {
        let s = spec(json!({"mounts": [
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/tmp/../../../../etc", "type": "tmpfs", "source": "tmpfs"}
        ]}));
        let e = prepare(&s, &rootfs, &RootfsOptions::default(), None)
            .unwrap_err()
            .to_string();
        ensure!(
            e == r#"mounts[1].destination "/tmp/../../../../etc": escapes the container root"#,
            "{e}"
        );
        let under = mountinfo()
            .into_iter()
            .filter(|m| m.mount_point.starts_with(&rootfs))
            .count();
        ensure!(under == 0, "{under} mounts left under the rootfs");
        Ok(())
    });
}

#[test]
fn container_dev_null_is_never_the_mask_source() {
    let t = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(t.path());
    let host_file = t.path().join("host-file");
    fs::write(&host_file, b"host data").unwrap();
    // The image's /dev/null is a symlink to a host file, and /dev is not a tmpfs.
    symlink(&host_file, rootfs.join("dev/null")).unwrap();
    fs::write(rootfs.join("etc/secret"), b"s").unwrap();
    isolated("container_dev_null_is_never_the_mask_source", || {
        let s = spec(json!({
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"maskedPaths": ["/etc/secret", "/proc/meminfo"]}
        }));
        let prepared =
            prepare(&s, &rootfs, &RootfsOptions::default(), None).map_err(|e| e.to_string())?;
        pivot(&rootfs, false).map_err(|e| e.to_string())?;
        finish(&s, prepared).map_err(|e| e.to_string())?;
        for p in ["/etc/secret", "/proc/meminfo"] {
            let md = fs::metadata(p).map_err(|e| e.to_string())?;
            ensure!(
                md.file_type().is_char_device() && md.rdev() == libc::makedev(1, 3),
                "{p}"
            );
            ensure!(
                fs::read(p).map_err(|e| e.to_string())?.is_empty(),
                "{p} readable"
            );
        }
        Ok(())
    });
    assert_eq!(fs::read(&host_file).unwrap(), b"host data");
    assert!(fs::symlink_metadata(rootfs.join("dev/null"))
        .unwrap()
        .file_type()
        .is_symlink());
    let _ = Path::new("/");
}
