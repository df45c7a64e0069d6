//! The root filesystem: pivot_root, read-only root, the `mounts` array, `/dev`, `linux.devices`,
//! masked and read-only paths, `--no-pivot`.

mod common;

use std::fs;
use std::process::Command;

use common::{has_opt, mount_at, Ctx};
use serde_json::{json, Value};

#[test]
fn pivot_root_hides_the_host() {
    let Some(ctx) = Ctx::new("pivot_hides_host") else {
        return;
    };
    let r = ctx.report();
    let host_dir = ctx.dir.path().to_str().unwrap();
    let text = r["mounts"].to_string();
    assert!(!text.contains(host_dir), "host path visible: {text}");
    let targets: Vec<&str> = r["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["target"].as_str().unwrap())
        .collect();
    assert!(targets.contains(&"/"), "{targets:?}");
    for t in &targets {
        let known = ["/", "/proc", "/dev", "/sys"]
            .iter()
            .any(|p| *t == *p || t.starts_with(&format!("{p}/")));
        assert!(known, "unexpected mount {t} in the container: {targets:?}");
    }
    // The host's own cgroup and /work mounts are not there.
    assert!(!targets.contains(&"/work"), "{targets:?}");
}

#[test]
fn readonly_root() {
    let Some(mut ctx) = Ctx::new("readonly_root") else {
        return;
    };
    ctx.config["root"]["readonly"] = json!(true);
    ctx.sh("/probe try mkdir /newdir; /probe try open-write /etc/passwd; /probe try mkdir /tmp/x");
    let out = ctx.run().ok().stdout;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["EROFS", "EROFS", "EROFS"],
        "{out}"
    );

    ctx.config["root"]["readonly"] = json!(false);
    ctx.sh("/probe try mkdir /newdir; /probe try open-write /etc/passwd");
    let out = ctx.run().ok().stdout;
    assert_eq!(out.lines().collect::<Vec<_>>(), ["ok", "ok"], "{out}");
}

#[test]
fn tmpfs_mount_with_size_and_mode() {
    let Some(mut ctx) = Ctx::new("tmpfs_size_mode") else {
        return;
    };
    ctx.mount(json!({
        "destination": "/data", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "size=1m", "mode=1750"]
    }));
    let r = ctx.report();
    let m = mount_at(&r, "/data").unwrap_or_else(|| panic!("no /data: {}", r["mounts"]));
    assert_eq!(m["fstype"], "tmpfs");
    let sup = m["super_options"].as_str().unwrap();
    assert!(sup.contains("size=1024k"), "{sup}");
    assert!(sup.contains("mode=1750"), "{sup}");
    assert!(has_opt(m, "nosuid") && has_opt(m, "nodev"), "{m}");
}

#[test]
fn bind_mount_options_ro_nosuid_nodev_noexec() {
    let Some(mut ctx) = Ctx::new("bind_options") else {
        return;
    };
    let src = ctx.path("shared");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("hello"), "from the host\n").unwrap();
    ctx.mount(json!({
        "destination": "/mnt/b", "type": "bind", "source": src,
        "options": ["bind", "ro", "nosuid", "nodev", "noexec"]
    }));
    ctx.mount(json!({
        "destination": "/mnt/rw", "type": "none", "source": src, "options": ["rbind", "rw"]
    }));
    ctx.sh("/probe report; /probe read /mnt/b/hello; /probe try open-write /mnt/b/hello; /probe try open-write /mnt/rw/hello");
    let out = ctx.run().ok().stdout;
    let mut lines = out.lines();
    let r: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let m = mount_at(&r, "/mnt/b").unwrap_or_else(|| panic!("no /mnt/b: {}", r["mounts"]));
    for opt in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(has_opt(m, opt), "{opt} missing: {m}");
    }
    let rw = mount_at(&r, "/mnt/rw").unwrap();
    assert!(has_opt(rw, "rw"), "{rw}");
    assert_eq!(lines.collect::<Vec<_>>(), ["from the host", "EROFS", "ok"]);
}

/// Unmounts a host mount when the test ends (before the context checks for leftovers).
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn rbind_takes_submounts_and_bind_does_not() {
    let Some(mut ctx) = Ctx::new("rbind_submounts") else {
        return;
    };
    let src = ctx.path("tree");
    fs::create_dir_all(src.join("sub")).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "subtmp"])
        .arg(src.join("sub"))
        .status()
        .unwrap();
    assert!(st.success());
    let _sub = Unmount(src.join("sub"));
    fs::write(src.join("sub/inner"), "inner\n").unwrap();
    ctx.mount(json!({"destination": "/r", "type": "bind", "source": src, "options": ["rbind"]}));
    ctx.mount(json!({"destination": "/b", "type": "bind", "source": src, "options": ["bind"]}));
    let r = ctx.report();
    let sub = mount_at(&r, "/r/sub").unwrap_or_else(|| panic!("rbind lost /sub: {}", r["mounts"]));
    assert_eq!(sub["fstype"], "tmpfs");
    assert!(mount_at(&r, "/b").is_some());
    assert!(
        mount_at(&r, "/b/sub").is_none(),
        "bind (not rbind) took the submount"
    );
}

#[test]
fn mount_propagation_flags() {
    let Some(mut ctx) = Ctx::new("mount_propagation") else {
        return;
    };
    let src = ctx.path("prop");
    fs::create_dir(&src).unwrap();
    for (dest, prop) in [
        ("/shared", "rshared"),
        ("/private", "rprivate"),
        ("/slave", "rslave"),
    ] {
        ctx.mount(json!({
            "destination": dest, "type": "bind", "source": src, "options": ["rbind", prop]
        }));
    }
    let r = ctx.report();
    let opt = |t: &str| {
        mount_at(&r, t).unwrap_or_else(|| panic!("no {t}"))["optional"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(opt("/shared").contains("shared:"), "{}", opt("/shared"));
    assert_eq!(opt("/private"), "", "rprivate mount has propagation");
    assert!(!opt("/slave").contains("shared:"), "{}", opt("/slave"));
}

#[test]
fn rootfs_propagation_shared() {
    let Some(mut ctx) = Ctx::new("rootfs_propagation") else {
        return;
    };
    ctx.linux()
        .insert("rootfsPropagation".into(), json!("shared"));
    let r = ctx.report();
    let root = mount_at(&r, "/").unwrap();
    assert!(
        root["optional"].as_str().unwrap().contains("shared:"),
        "{root}"
    );

    ctx.linux()
        .insert("rootfsPropagation".into(), json!("private"));
    let r = ctx.report();
    assert_eq!(mount_at(&r, "/").unwrap()["optional"], "");
}

#[test]
fn special_filesystems_are_mounted() {
    let Some(ctx) = Ctx::new("special_filesystems") else {
        return;
    };
    let r = ctx.report();
    for (target, fstype) in [
        ("/proc", "proc"),
        ("/sys", "sysfs"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
    ] {
        let m = mount_at(&r, target).unwrap_or_else(|| panic!("no {target}: {}", r["mounts"]));
        assert_eq!(m["fstype"], fstype, "{target}");
    }
    let cgroups: Vec<&Value> = r["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["target"].as_str().unwrap().starts_with("/sys/fs/cgroup"))
        .collect();
    assert!(
        cgroups
            .iter()
            .any(|m| m["fstype"] == "cgroup" || m["fstype"] == "cgroup2"),
        "no cgroup filesystem: {cgroups:?}"
    );
    for m in &cgroups {
        if m["fstype"] == "cgroup" || m["fstype"] == "cgroup2" {
            assert!(has_opt(m, "ro"), "cgroup mount is not read-only: {m}");
        }
    }
    assert!(has_opt(mount_at(&r, "/sys").unwrap(), "ro"));
}

#[test]
fn default_dev_nodes_and_links() {
    let Some(mut ctx) = Ctx::new("default_dev") else {
        return;
    };
    let nodes = [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ];
    let links = [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ];
    let mut script = String::new();
    for (name, _, _) in nodes.iter() {
        script += &format!("/probe stat /dev/{name}; ");
    }
    for (name, _) in links.iter() {
        script += &format!("/probe stat /dev/{name}; ");
    }
    script += "echo x > /dev/null && /probe try open-read /dev/zero";
    ctx.sh(&script);
    let out = ctx.run().ok().stdout;
    let mut lines = out.lines();
    for (name, major, minor) in nodes {
        let st: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(st["type"], "char", "/dev/{name}: {st}");
        assert_eq!(
            (st["major"].as_u64(), st["minor"].as_u64()),
            (Some(major), Some(minor)),
            "/dev/{name}"
        );
        assert_eq!(st["mode"], "0666", "/dev/{name}: {st}");
    }
    for (name, target) in links {
        let st: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(st["type"], "symlink", "/dev/{name}: {st}");
        assert_eq!(st["link"], target, "/dev/{name}");
    }
    assert_eq!(lines.next(), Some("ok"));
}

#[test]
fn linux_devices_are_created() {
    let Some(mut ctx) = Ctx::new("linux_devices") else {
        return;
    };
    ctx.linux().insert(
        "devices".into(),
        json!([{"path": "/dev/myfull", "type": "c", "major": 1, "minor": 7,
                "fileMode": 0o600, "uid": 1000, "gid": 1000}]),
    );
    // Owned by 1000 with mode 0600: usable by that user (and allowed by the device cgroup).
    ctx.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    ctx.sh("/probe stat /dev/myfull; /probe try open-read /dev/myfull");
    let out = ctx.run().ok().stdout;
    let mut lines = out.lines();
    let st: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(st["type"], "char", "{st}");
    assert_eq!(
        (st["major"].as_u64(), st["minor"].as_u64()),
        (Some(1), Some(7))
    );
    assert_eq!(st["mode"], "0600");
    assert_eq!(st["uid"], 1000);
    assert_eq!(st["gid"], 1000);
    assert_eq!(lines.next(), Some("ok"), "the device is usable: {out}");
}

#[test]
fn masked_and_readonly_paths() {
    let Some(mut ctx) = Ctx::new("masked_readonly") else {
        return;
    };
    fs::write(ctx.rootfs.join("etc/secret"), "top secret\n").unwrap();
    fs::create_dir(ctx.rootfs.join("etc/secretdir")).unwrap();
    fs::write(ctx.rootfs.join("etc/secretdir/key"), "k\n").unwrap();
    fs::create_dir(ctx.rootfs.join("etc/rodir")).unwrap();
    fs::write(ctx.rootfs.join("etc/rodir/file"), "r\n").unwrap();
    ctx.config["root"]["readonly"] = json!(false);
    ctx.linux().insert(
        "maskedPaths".into(),
        json!(["/etc/secret", "/etc/secretdir", "/etc/absent"]),
    );
    ctx.linux()
        .insert("readonlyPaths".into(), json!(["/etc/rodir", "/proc/sys"]));
    ctx.sh(
        "echo \"[$(cat /etc/secret)]\"; echo \"[$(ls -A /etc/secretdir)]\"; \
         /probe try open-write /etc/rodir/file; /probe try mkdir /etc/rodir/new; \
         /probe try open-write /proc/sys/kernel/hostname; /probe try mkdir /etc/writable",
    );
    let out = ctx.run().ok().stdout;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["[]", "[]", "EROFS", "EROFS", "EROFS", "ok"],
        "{out}"
    );
    assert_eq!(
        fs::read_to_string(ctx.rootfs.join("etc/secret")).unwrap(),
        "top secret\n"
    );
}

#[test]
fn no_pivot_runs_in_the_rootfs() {
    let Some(mut ctx) = Ctx::new("no_pivot") else {
        return;
    };
    fs::write(ctx.rootfs.join("MARKER"), "inside\n").unwrap();
    ctx.sh("/probe read /MARKER; /probe report");
    ctx.write_config();
    let out = ctx
        .oci(&[
            "run",
            "--no-pivot",
            "--bundle",
            ctx.bundle.to_str().unwrap(),
            &ctx.id,
        ])
        .ok();
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("inside"));
    let r: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert!(mount_at(&r, "/proc").is_some());
    assert_eq!(r["cwd"], "/");
    let text = r["mounts"].to_string();
    assert!(!text.contains(ctx.dir.path().to_str().unwrap()), "{text}");
}
