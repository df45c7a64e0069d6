//! Privileged test: two unpacked layers stacked by a real overlayfs mount show the merged view
//! that OCI image-spec `layer.md` describes (whiteouts hide, opaque directories hide lower
//! contents).

use std::fs;
use std::path::Path;
use std::process::Command;

use super::tests::{root_or_skip, unpack_ok, Tar};

/// Unmounts on drop, so a failed assertion does not leave the mount behind.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn overlayfs_stacks_unpacked_layers() {
    if !root_or_skip("overlayfs_stacks_unpacked_layers") {
        return;
    }
    let lower = unpack_ok(
        &Tar::new()
            .file("a", b"lower a")
            .file("b", b"lower b")
            .file("d/x", b"")
            .file("d/y", b"")
            .file("e/z", b"")
            .file("e/keep", b"")
            .file("g/old", b"")
            .finish(),
    );
    // The upper layer whites out `a`, `e/z` and the directory `g`, makes `d` opaque (marker after
    // the directory's content), and re-creates `g` as an opaque directory in the same layer.
    let upper = unpack_ok(
        &Tar::new()
            .file(".wh.a", b"")
            .file("d/new", b"")
            .file("d/.wh..wh..opq", b"")
            .file("e/.wh.z", b"")
            .file("g/fresh", b"")
            .file(".wh.g", b"")
            .file("f", b"upper f")
            .finish(),
    );
    let merged = tempfile::tempdir().unwrap();
    let opts = format!(
        "lowerdir={}:{}",
        upper.path().display(),
        lower.path().display()
    );
    let status = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(merged.path())
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => {
            eprintln!(
                "skipping overlayfs_stacks_unpacked_layers: cannot mount overlayfs ({other:?})"
            );
            return;
        }
    }
    let m = merged.path();
    let _mounted = Mounted(m);
    assert_eq!(names(m), ["b", "d", "e", "f", "g"]);
    assert_eq!(fs::read(m.join("b")).unwrap(), b"lower b");
    assert_eq!(fs::read(m.join("f")).unwrap(), b"upper f");
    assert_eq!(names(&m.join("d")), ["new"]);
    assert_eq!(names(&m.join("e")), ["keep"]);
    assert_eq!(names(&m.join("g")), ["fresh"]);
}
