//! Malformed or hostile config.json and images: a one-line error naming the field, a non-zero exit,
//! and nothing left mounted, in a cgroup or in the state root (checked when each context drops); a
//! symlink in the image never makes a mount land outside the rootfs.

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use common::{host_mounts_under, mount_at, Ctx};
use serde_json::json;

#[track_caller]
fn refused(ctx: &Ctx, words: &[&str]) {
    let out = ctx.run();
    let line = out.one_line_error();
    for w in words {
        assert!(line.contains(w), "error does not name {w:?}: {line}");
    }
    assert!(!ctx.root.join(&ctx.id).exists(), "state left behind");
}

#[test]
fn unknown_namespace_type() {
    let Some(mut ctx) = Ctx::new("bad_namespace") else {
        return;
    };
    ctx.namespace("bogus", None);
    refused(&ctx, &["namespaces", "bogus"]);
}

#[test]
fn bad_capability_name() {
    let Some(mut ctx) = Ctx::new("bad_capability") else {
        return;
    };
    ctx.config["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .unwrap()
        .push(json!("CAP_BOGUS"));
    refused(&ctx, &["capabilities", "CAP_BOGUS"]);
}

#[test]
fn relative_rootfs_outside_the_bundle() {
    let Some(mut ctx) = Ctx::new("rootfs_outside") else {
        return;
    };
    let outside = ctx.path("outside");
    fs::create_dir(&outside).unwrap();
    common::make_busybox_rootfs(&outside);
    ctx.config["root"]["path"] = json!("../outside");
    refused(&ctx, &["root.path"]);
}

#[test]
fn mount_destination_escaping_with_dotdot() {
    let Some(mut ctx) = Ctx::new("mount_dotdot") else {
        return;
    };
    ctx.mount(json!({"destination": "/a/../../etc", "type": "tmpfs", "source": "tmpfs"}));
    refused(&ctx, &["mounts", "destination"]);
}

#[test]
fn symlink_in_the_image_cannot_move_a_mount_outside() {
    let Some(mut ctx) = Ctx::new("mount_symlink") else {
        return;
    };
    let canary = tempfile::Builder::new()
        .prefix("isola-canary-")
        .tempdir_in("/tmp")
        .unwrap();
    fs::write(canary.path().join("keep"), "keep\n").unwrap();
    let name = canary
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let file_target = format!("/tmp/{name}-file");
    symlink(
        format!("/../../../..{}", canary.path().display()),
        ctx.rootfs.join("etc/evil"),
    )
    .unwrap();
    symlink(
        format!("/../../../..{file_target}"),
        ctx.rootfs.join("etc/evilfile"),
    )
    .unwrap();
    let src = ctx.path("srcfile");
    fs::write(&src, "bound\n").unwrap();
    ctx.mount(json!({"destination": "/etc/evil", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}));
    ctx.mount(
        json!({"destination": "/etc/evilfile", "type": "bind", "source": src, "options": ["bind"]}),
    );
    ctx.sh("/probe report; ls -A /etc/evil/; cat /etc/evilfile");
    let out = ctx.run();

    // Whatever the runtime decided, the host is untouched.
    let entries: Vec<_> = fs::read_dir(canary.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(entries, ["keep"], "{out:#?}");
    assert!(
        host_mounts_under(canary.path()).is_empty(),
        "mount on the host canary"
    );
    assert!(
        !std::path::Path::new(&file_target).exists(),
        "created {file_target} on the host"
    );

    // And the mounts landed inside the rootfs, where the symlinks resolve within it.
    let out = out.ok().stdout;
    let mut lines = out.lines();
    let r: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let inside = canary.path().to_str().unwrap();
    let m = mount_at(&r, inside).unwrap_or_else(|| panic!("no mount at {inside}: {}", r["mounts"]));
    assert_eq!(m["fstype"], "tmpfs");
    assert!(mount_at(&r, &file_target).is_some(), "{}", r["mounts"]);
    let rest: Vec<&str> = lines.collect();
    assert_eq!(
        rest,
        ["bound"],
        "the tmpfs is empty and the file is bound: {out}"
    );
}
