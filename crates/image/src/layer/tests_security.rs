//! Unit tests of the unpacker's defences: escaping names, writes through symlinks, hard links out
//! of the layer.

use std::fs;
use std::os::unix::fs::MetadataExt;

use tar::EntryType;

use super::tests::{lmeta, unpack, unpack_err, xattr, Tar};

/// A directory outside the layer holding `passwd`, which must never change.
fn outside() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("passwd"), b"root:x:0:0").unwrap();
    dir
}

fn assert_untouched(out: &tempfile::TempDir) {
    assert_eq!(fs::read(out.path().join("passwd")).unwrap(), b"root:x:0:0");
    let names: Vec<_> = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("passwd")]);
}

#[test]
fn escaping_and_empty_names_are_rejected() {
    for name in ["../x", "a/../../x", "a/..", "./../x", ".."] {
        let err = unpack_err(&Tar::new().file(name, b"").finish());
        assert_eq!(
            err,
            format!("layer entry \"{name}\": path escapes the layer root")
        );
    }
    for name in ["/etc/passwd", "/", "//x"] {
        let err = unpack_err(&Tar::new().file(name, b"").finish());
        assert_eq!(
            err,
            format!("layer entry \"{name}\": path escapes the layer root")
        );
    }
    assert_eq!(
        unpack_err(&Tar::new().file("", b"").finish()),
        "layer entry \"\": empty path"
    );
    let err = unpack_err(&Tar::new().pax(&[("path", b"a\0b")]).file("x", b"").finish());
    assert_eq!(err, "layer entry \"a\\0b\": invalid path");
}

#[test]
fn no_write_through_a_symlink_to_the_outside() {
    let out = outside();
    let target = out.path().to_str().unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            Tar::new()
                .symlink("link", target)
                .file("link/passwd", b"pwned")
                .finish(),
            "link/passwd",
        ),
        (
            Tar::new()
                .symlink("link", target)
                .file("link/new/file", b"x")
                .finish(),
            "link/new/file",
        ),
        (
            Tar::new().symlink("link", target).dir("link/sub").finish(),
            "link/sub",
        ),
        (
            Tar::new()
                .symlink("link", target)
                .symlink("link/s", "/")
                .finish(),
            "link/s",
        ),
        (
            Tar::new()
                .symlink("link", target)
                .file("link/.wh.passwd", b"")
                .finish(),
            "link/.wh.passwd",
        ),
        (
            Tar::new()
                .symlink("link", target)
                .file("link/.wh..wh..opq", b"")
                .finish(),
            "link/.wh..wh..opq",
        ),
        (
            Tar::new()
                .file("f", b"")
                .symlink("link", target)
                .hardlink("link/x", "f")
                .finish(),
            "link/x",
        ),
        (
            Tar::new()
                .dir("a")
                .symlink("a/l", target)
                .file("a/l/passwd", b"x")
                .finish(),
            "a/l/passwd",
        ),
        (
            Tar::new()
                .symlink("link", target)
                .raw(b"link/fifo", EntryType::Fifo, b"", |_| {})
                .finish(),
            "link/fifo",
        ),
    ];
    for (tar, entry) in cases {
        let err = unpack_err(&tar);
        assert_eq!(
            err,
            format!("layer entry \"{entry}\": parent path goes through a symlink")
        );
        assert_untouched(&out);
    }
}

#[test]
fn no_write_through_a_symlink_inside_the_layer() {
    let tar = Tar::new()
        .dir("d")
        .symlink("l", "d")
        .file("l/f", b"x")
        .finish();
    assert_eq!(
        unpack_err(&tar),
        "layer entry \"l/f\": parent path goes through a symlink"
    );
    let tar = Tar::new().dir("d").symlink("l", "./d").dir("l/e").finish();
    assert_eq!(
        unpack_err(&tar),
        "layer entry \"l/e\": parent path goes through a symlink"
    );
}

#[test]
fn a_symlink_in_the_final_component_is_replaced_not_followed() {
    let out = outside();
    let passwd = out.path().join("passwd");
    let passwd = passwd.to_str().unwrap();
    let mut t = Tar::new();
    t.symlink("f", passwd).file("f", b"mine");
    t.symlink("d", out.path().to_str().unwrap()).dir("d");
    t.symlink("h", passwd)
        .file("src", b"src")
        .hardlink("h", "src");
    t.symlink("s", passwd).symlink("s", "other");
    t.pax(&[("SCHILY.xattr.user.x", b"1")]);
    t.symlink("x", passwd);
    let before = lmeta(out.path().join("passwd").as_path());
    let (dir, res) = unpack(&t.finish());
    // user.* xattrs cannot be set on symlinks: the layer fails there, after the other entries.
    let err = res.unwrap_err().to_string();
    assert_eq!(err, "layer entry \"x\": cannot set xattr user.x");
    let p = dir.path();
    assert_eq!(fs::read(p.join("f")).unwrap(), b"mine");
    assert!(lmeta(&p.join("d")).is_dir());
    assert_eq!(fs::read(p.join("h")).unwrap(), b"src");
    assert_eq!(
        fs::read_link(p.join("s")).unwrap(),
        std::path::Path::new("other")
    );
    assert_untouched(&out);
    assert_eq!(xattr(&out.path().join("passwd"), "user.x"), None);
    let after = lmeta(out.path().join("passwd").as_path());
    assert_eq!(
        (after.mtime(), after.mode()),
        (before.mtime(), before.mode())
    );
}

#[test]
fn symlink_attributes_do_not_reach_the_target() {
    let out = outside();
    let passwd = out.path().join("passwd");
    let before = lmeta(&passwd);
    let target = passwd.to_str().unwrap().to_owned();
    let mut t = Tar::new();
    t.raw(b"o", EntryType::Symlink, b"", |h| {
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        h.set_mtime(5);
        h.set_mode(0o777);
    });
    let (dir, res) = unpack(&t.finish());
    res.unwrap();
    assert_eq!(lmeta(&dir.path().join("o")).mtime(), 5);
    let after = lmeta(&passwd);
    assert_eq!(
        (after.mtime(), after.mode(), after.uid()),
        (before.mtime(), before.mode(), before.uid())
    );
}

#[test]
fn hard_links_cannot_leave_the_layer() {
    let out = outside();
    let abs = out.path().join("passwd");
    let abs = abs.to_str().unwrap();
    let err = unpack_err(&Tar::new().hardlink("h", abs).finish());
    assert_eq!(
        err,
        format!("layer entry \"h\": hard link target \"{abs}\" escapes the layer root")
    );
    let err = unpack_err(&Tar::new().hardlink("h", "../../../../etc/passwd").finish());
    assert_eq!(
        err,
        "layer entry \"h\": hard link target \"../../../../etc/passwd\" escapes the layer root"
    );
    let tar = Tar::new()
        .symlink("l", out.path().to_str().unwrap())
        .hardlink("h", "l/passwd")
        .finish();
    assert_eq!(
        unpack_err(&tar),
        "layer entry \"h\": hard link target \"l/passwd\" goes through a symlink"
    );
    let tar = Tar::new()
        .dir("d")
        .symlink("l", "d")
        .file("d/f", b"")
        .hardlink("h", "l/f")
        .finish();
    assert_eq!(
        unpack_err(&tar),
        "layer entry \"h\": hard link target \"l/f\" goes through a symlink"
    );
    assert_eq!(lmeta(&out.path().join("passwd")).nlink(), 1);
    assert_untouched(&out);
}

#[test]
fn a_file_cannot_become_a_parent() {
    let tar = Tar::new().file("f", b"").file("f/x", b"").finish();
    assert_eq!(
        unpack_err(&tar),
        "layer entry \"f/x\": parent path is not a directory"
    );
}
