//! Unit tests of whiteouts and opaque directories (OCI image-spec `layer.md`, "Whiteouts"),
//! whatever the order of the entries.

use std::fs;

use tar::EntryType;

use super::tests::{is_whiteout, lmeta, root_or_skip, unpack_err, unpack_ok, xattr, Tar};
use std::os::unix::fs::MetadataExt;

#[test]
fn whiteouts_become_0_0_char_devices() {
    if !root_or_skip("whiteouts_become_0_0_char_devices") {
        return;
    }
    let dir = unpack_ok(
        &Tar::new()
            .file(".wh.gone", b"")
            .file("d/e/.wh.x", b"")
            .finish(),
    );
    let p = dir.path();
    assert!(is_whiteout(&p.join("gone")));
    assert!(is_whiteout(&p.join("d/e/x")));
    assert!(!p.join(".wh.gone").exists() && !p.join("d/e/.wh.x").exists());
}

#[test]
fn whiteout_and_same_layer_entry_in_either_order() {
    if !root_or_skip("whiteout_and_same_layer_entry_in_either_order") {
        return;
    }
    // The whiteout hides only lower layers: this layer's own entry stays, and a directory becomes
    // opaque so that the lower directory's contents stay hidden.
    for tar in [
        Tar::new()
            .file("f", b"new")
            .file(".wh.f", b"")
            .dir("d")
            .file("d/c", b"")
            .file(".wh.d", b"")
            .finish(),
        Tar::new()
            .file(".wh.f", b"")
            .file("f", b"new")
            .file(".wh.d", b"")
            .dir("d")
            .file("d/c", b"")
            .finish(),
        Tar::new()
            .file(".wh.d", b"")
            .file("d/c", b"")
            .file(".wh.f", b"")
            .file("f", b"new")
            .finish(),
    ] {
        let dir = unpack_ok(&tar);
        let p = dir.path();
        assert_eq!(fs::read(p.join("f")).unwrap(), b"new");
        assert!(p.join("d/c").exists());
        assert_eq!(
            xattr(&p.join("d"), "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..])
        );
    }
}

#[test]
fn opaque_markers_in_every_entry_order() {
    if !root_or_skip("opaque_markers_in_every_entry_order") {
        return;
    }
    let parts: [&dyn Fn(&mut Tar); 3] = [
        &|t| {
            t.raw(b"d/", EntryType::Directory, b"", |h| h.set_mtime(777));
        },
        &|t| {
            t.file("d/.wh..wh..opq", b"");
        },
        &|t| {
            t.file("d/child", b"c");
        },
    ];
    for order in [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ] {
        let mut t = Tar::new();
        order.iter().for_each(|i| parts[*i](&mut t));
        let dir = unpack_ok(&t.finish());
        let d = dir.path().join("d");
        assert_eq!(
            xattr(&d, "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..]),
            "order {order:?}"
        );
        assert_eq!(fs::read(d.join("child")).unwrap(), b"c");
        assert!(!d.join(".wh..wh..opq").exists());
        assert_eq!(lmeta(&d).mtime(), 777, "order {order:?}");
    }
    let dir = unpack_ok(&Tar::new().file("x/y/.wh..wh..opq", b"").finish());
    assert_eq!(
        xattr(&dir.path().join("x/y"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
}

#[test]
fn aufs_metadata_is_skipped() {
    let mut t = Tar::new();
    t.dir(".wh..wh.plnk")
        .file(".wh..wh.plnk/1.2", b"")
        .file(".wh..wh.aufs", b"")
        .file("kept", b"");
    let dir = unpack_ok(&t.finish());
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("kept")]);
}

#[test]
fn invalid_whiteouts_are_rejected() {
    for name in [".wh.", ".wh..", "d/.wh...", ".wh.x/y"] {
        let err = unpack_err(&Tar::new().file(name, b"").finish());
        assert_eq!(err, format!("layer entry \"{name}\": invalid whiteout"));
    }
}
