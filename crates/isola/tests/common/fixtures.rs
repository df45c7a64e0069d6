//! Test images shared by several test files, and the checks of what isola makes of them.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::archive::*;
use super::{xattr, Isola};

/// The formats an image can be handed to `isola load` in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    DockerModern,
    DockerWithIndex,
    DockerLegacy,
    OciDir,
    OciTar,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::DockerModern,
        Format::DockerWithIndex,
        Format::DockerLegacy,
        Format::OciDir,
        Format::OciTar,
    ];

    /// Writes `image`, named `name` (e.g. `layered:gzip`), in this format under `dir`; returns
    /// the path to hand to `isola load -i`.
    pub fn write(self, image: &Image, name: &str, dir: &Path) -> PathBuf {
        let tags = [name];
        let files = match self {
            Format::DockerModern => docker_archive(&[(image, &tags)], DockerStyle::Modern),
            Format::DockerWithIndex => {
                docker_archive(&[(image, &tags)], DockerStyle::ModernWithIndex)
            }
            Format::DockerLegacy => docker_archive(&[(image, &tags)], DockerStyle::Legacy),
            Format::OciDir | Format::OciTar => {
                oci_layout(&[(Node::Image(image.clone()), Some(&qualify(name)))])
            }
        };
        let stem = format!("{self:?}-{}", name.replace(['/', ':'], "_"));
        if self == Format::OciDir {
            let p = dir.join(stem);
            files.write_dir(&p);
            p
        } else {
            let p = dir.join(format!("{stem}.tar"));
            files.write_tar(&p);
            p
        }
    }
}

/// Deterministic bytes that do not compress.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Three layers exercising every kind of change:
///
/// 1. base: files, a hard link, relative and absolute symlinks, a device, a fifo, an xattr,
///    setuid bits and a non-root owner, `etc/gone` and `etc/dir-gone/` to delete later,
///    `opq/` with old content, and `replaced/` (a directory later replaced by a file).
/// 2. whiteouts of `etc/gone` and `etc/dir-gone`, `opq/` made opaque with new content,
///    `replaced` as a file, `etc/link` retargeted, a hard link between two new names.
/// 3. `etc/gone` back with new content, `bin/tool` whited out (its hard link stays).
pub fn layered_image(c: Compression) -> Image {
    let l1 = LayerBuilder::new()
        .dir("bin")
        .file("bin/tool", b"#!/bin/sh\necho tool\n")
        .mode(0o755)
        .hardlink("bin/tool-link", "bin/tool")
        .dir("etc")
        .file("etc/keep", b"keep\n")
        .file("etc/gone", b"gone\n")
        .dir("etc/dir-gone")
        .file("etc/dir-gone/inner", b"inner\n")
        .symlink("etc/link", "keep")
        .symlink("etc/abslink", "/etc/keep")
        .file("etc/xattr", b"x\n")
        .xattr("user.isola.test", b"value")
        .file("etc/suid", b"s\n")
        .mode(0o4755)
        .owner(1000, 1001)
        .dir("dev")
        .char_device("dev/null", 1, 3)
        .fifo("etc/fifo")
        .dir("opq")
        .file("opq/old", b"old\n")
        .dir("opq/sub")
        .file("opq/sub/old2", b"old2\n")
        .dir("replaced")
        .file("replaced/child", b"child\n")
        .dir("tmp")
        .mode(0o1777)
        .build(c);
    let l2 = LayerBuilder::new()
        .dir("etc")
        .whiteout("etc/gone")
        .whiteout("etc/dir-gone")
        .file("etc/added", b"added\n")
        .symlink("etc/link", "added")
        .hardlink("etc/added-link", "etc/added")
        .dir("opq")
        .opaque("opq")
        .file("opq/new", b"new\n")
        .file("replaced", b"now a file\n")
        .build(c);
    let l3 = LayerBuilder::new()
        .dir("etc")
        .file("etc/gone", b"back\n")
        .dir("bin")
        .whiteout("bin/tool")
        .build(c);
    let mut img = Image::new(vec![l1, l2, l3]);
    img.env.push("LAYERED=1".into());
    img.cmd = Some(vec!["/bin/tool-link".into()]);
    img.working_dir = "/etc".into();
    img.user = "1000:1001".into();
    img.exposed_ports = vec!["8080/tcp".into()];
    img.label("org.example.test", "layered")
}

/// A one-layer image with one file, distinct per `seed`.
pub fn small_image(seed: u64) -> Image {
    Image::new(vec![LayerBuilder::new()
        .dir("data")
        .file("data/seed", seed.to_string())
        .build(Compression::Gzip)])
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

pub fn link(p: &Path) -> String {
    std::fs::read_link(p)
        .unwrap_or_else(|e| panic!("readlink {}: {e}", p.display()))
        .to_string_lossy()
        .into_owned()
}

fn meta(p: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// Asserts `p` is an overlayfs whiteout: a 0:0 character device.
pub fn assert_whiteout(p: &Path) {
    let m = meta(p);
    assert!(
        m.file_type().is_char_device(),
        "{} is not a whiteout device",
        p.display()
    );
    assert_eq!(m.rdev(), 0, "{} is a device but not 0:0", p.display());
}

/// Asserts no `.wh.` name is left anywhere under `dir`.
pub fn assert_no_wh_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".wh."),
            "tar whiteout file left at {}",
            e.path().display()
        );
        if e.file_type().unwrap().is_dir() {
            assert_no_wh_files(&e.path());
        }
    }
}

/// Checks each unpacked layer directory of [`layered_image`] (bottom first).
pub fn check_layered_dirs(dirs: &[PathBuf]) {
    assert_eq!(dirs.len(), 3, "three layers");
    let l1 = &dirs[0];
    assert_eq!(read(&l1.join("bin/tool")), "#!/bin/sh\necho tool\n");
    assert_eq!(meta(&l1.join("bin/tool")).mode() & 0o7777, 0o755);
    assert_eq!(
        meta(&l1.join("bin/tool")).ino(),
        meta(&l1.join("bin/tool-link")).ino(),
        "hard link must share the inode"
    );
    assert_eq!(link(&l1.join("etc/link")), "keep");
    assert_eq!(link(&l1.join("etc/abslink")), "/etc/keep");
    assert_eq!(
        xattr(&l1.join("etc/xattr"), "user.isola.test").as_deref(),
        Some(&b"value"[..])
    );
    let suid = meta(&l1.join("etc/suid"));
    assert_eq!(suid.mode() & 0o7777, 0o4755, "setuid bit kept");
    assert_eq!((suid.uid(), suid.gid()), (1000, 1001), "owner kept");
    let null = meta(&l1.join("dev/null"));
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc_makedev(1, 3));
    assert!(meta(&l1.join("etc/fifo")).file_type().is_fifo());
    assert_eq!(meta(&l1.join("tmp")).permissions().mode() & 0o7777, 0o1777);
    assert!(l1.join("etc/dir-gone/inner").is_file());
    assert!(xattr(&l1.join("opq"), "trusted.overlay.opaque").is_none());

    let l2 = &dirs[1];
    assert_whiteout(&l2.join("etc/gone"));
    assert_whiteout(&l2.join("etc/dir-gone"));
    assert_eq!(
        xattr(&l2.join("opq"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..]),
        "opaque directory needs trusted.overlay.opaque=y"
    );
    let mut opq: Vec<String> = std::fs::read_dir(l2.join("opq"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    opq.sort();
    assert_eq!(opq, ["new"]);
    assert_eq!(read(&l2.join("replaced")), "now a file\n");
    assert_eq!(link(&l2.join("etc/link")), "added");
    assert_eq!(
        meta(&l2.join("etc/added")).ino(),
        meta(&l2.join("etc/added-link")).ino()
    );
    assert!(
        !exists(&l2.join("etc/keep")),
        "a layer holds only its own changes"
    );

    let l3 = &dirs[2];
    assert_eq!(read(&l3.join("etc/gone")), "back\n");
    assert_whiteout(&l3.join("bin/tool"));

    for d in dirs {
        assert_no_wh_files(d);
    }
}

/// Checks the merged view (overlay of all layers) of [`layered_image`].
pub fn check_layered_merged(root: &Path) {
    assert_eq!(read(&root.join("etc/keep")), "keep\n");
    assert_eq!(
        read(&root.join("etc/gone")),
        "back\n",
        "re-created after a whiteout"
    );
    assert!(
        !exists(&root.join("etc/dir-gone")),
        "whited-out directory is gone"
    );
    assert!(!exists(&root.join("bin/tool")), "whited-out file is gone");
    assert_eq!(read(&root.join("bin/tool-link")), "#!/bin/sh\necho tool\n");
    assert_eq!(link(&root.join("etc/link")), "added");
    assert_eq!(read(&root.join("etc/link")), "added\n");
    assert_eq!(read(&root.join("etc/added-link")), "added\n");
    let mut opq: Vec<String> = std::fs::read_dir(root.join("opq"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    opq.sort();
    assert_eq!(opq, ["new"], "opaque directory hides the lower content");
    assert_eq!(read(&root.join("replaced")), "now a file\n");
    assert!(meta(&root.join("dev/null")).file_type().is_char_device());
    assert_eq!(
        xattr(&root.join("etc/xattr"), "user.isola.test").as_deref(),
        Some(&b"value"[..])
    );
    assert_no_wh_files(root);
}

/// `makedev` as glibc encodes it (the `st_rdev` of a device node).
pub fn libc_makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xffff_f000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff)
}

/// Asserts the store has image `image` with the config digest `id` and the layers' diff IDs.
pub fn assert_image(isola: &Isola, name: &str, image: &Image) -> serde_json::Value {
    let v = isola.inspect(name);
    assert_eq!(v["Id"], image.id(), "image ID is the config digest");
    let layers: Vec<String> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(v["RootFS"]["Layers"], serde_json::json!(layers));
    assert_eq!(v["RootFS"]["Type"], "layers");
    for chain in image.chain_ids() {
        assert!(
            isola.layer_dir(&chain).is_dir(),
            "layer directory for {chain} missing"
        );
    }
    v
}

/// True when the short or full ID `shown` names the image ID `id`.
pub fn same_id(shown: &str, id: &str) -> bool {
    let shown = hex_of(shown);
    shown.len() >= 12 && hex_of(id).starts_with(shown)
}
