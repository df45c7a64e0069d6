//! Multi-layer images with whiteouts, opaque directories, hard links, symlinks, devices and
//! xattrs, loaded in every archive format and compression: each unpacked layer directory is
//! checked on disk, and the merged view through a real overlayfs mount.

mod common;

use common::archive::*;
use common::fixtures::*;
use common::Isola;

fn load_layered(format: Format) {
    if !common::require_root() {
        return;
    }
    for c in Compression::ALL {
        let isola = Isola::new();
        let image = layered_image(c);
        let name = format!("layered:{c:?}").to_lowercase();
        let archive = format.write(&image, &name, &isola.scratch());
        let lines = isola.load(&archive);
        assert_eq!(
            lines,
            [format!("Loaded image: docker.io/library/{name}")],
            "{format:?} {c:?}"
        );
        let v = assert_image(&isola, &name, &image);
        assert_eq!(v["RepoTags"], serde_json::json!([name]));
        let dirs = isola.layer_dirs(&name);
        check_layered_dirs(&dirs);
        {
            let merged = isola.mount_merged(&name);
            check_layered_merged(&merged.path());
        }
        isola.assert_clean();
    }
}

#[test]
fn docker_archive_modern() {
    load_layered(Format::DockerModern);
}

#[test]
fn docker_archive_modern_with_oci_index() {
    load_layered(Format::DockerWithIndex);
}

#[test]
fn docker_archive_legacy() {
    load_layered(Format::DockerLegacy);
}

#[test]
fn oci_layout_directory() {
    load_layered(Format::OciDir);
}

#[test]
fn oci_layout_tar() {
    load_layered(Format::OciTar);
}

#[test]
fn compressed_oci_layout_tar() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let image = layered_image(Compression::None);
    let tar = oci_layout(&[(
        Node::Image(image.clone()),
        Some("docker.io/library/wrapped:1"),
    )])
    .tar();
    for (c, ext) in [
        (Compression::Gzip, "tar.gz"),
        (Compression::Zstd, "tar.zst"),
    ] {
        let p = isola.scratch().join(format!("layout.{ext}"));
        std::fs::write(&p, c.compress(&tar)).unwrap();
        isola.load(&p);
        assert_image(&isola, "wrapped:1", &image);
    }
    isola.assert_clean();
}

#[test]
fn archive_order_does_not_matter() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let image = layered_image(Compression::Gzip);
    // manifest.json first, before the blobs it names
    let mut files = docker_archive(&[(&image, &["first:1"])], DockerStyle::Modern);
    files.move_to_front("manifest.json");
    let p = isola.scratch().join("first.tar");
    files.write_tar(&p);
    isola.load(&p);
    assert_image(&isola, "first:1", &image);
    // index.json last, after its blobs
    let mut files = oci_layout(&[(Node::Image(image.clone()), Some("docker.io/library/last:1"))]);
    for p in files
        .paths()
        .into_iter()
        .filter(|p| p.starts_with("blobs/"))
    {
        files.move_to_front(&p);
    }
    let p = isola.scratch().join("last.tar");
    files.write_tar(&p);
    isola.load(&p);
    assert_image(&isola, "last:1", &image);
    isola.assert_clean();
}

#[test]
fn shared_layers_are_unpacked_once() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let base = layered_image(Compression::Gzip);
    let mut child = base.clone();
    child.layers.push(
        LayerBuilder::new()
            .file("child", b"c")
            .build(Compression::Gzip),
    );
    let dir = isola.scratch();
    isola.load(&Format::OciTar.write(&base, "base:1", &dir));
    let before = std::fs::metadata(isola.layer_dir(&base.chain_ids()[2])).unwrap();
    isola.load(&Format::DockerModern.write(&child, "child:1", &dir));
    assert_image(&isola, "child:1", &child);
    let after = std::fs::metadata(isola.layer_dir(&base.chain_ids()[2])).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        before.ino(),
        after.ino(),
        "an existing layer directory is reused, not redone"
    );
    let layers = std::fs::read_dir(isola.root.join("layers"))
        .unwrap()
        .count();
    assert_eq!(layers, 4);
    isola.assert_clean();
}

#[test]
fn untagged_image_prints_its_id() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let image = small_image(7);
    let p = isola.scratch().join("untagged");
    oci_layout(&[(Node::Image(image.clone()), None)]).write_dir(&p);
    assert_eq!(isola.load(&p), [format!("Loaded image ID: {}", image.id())]);
    let rows = isola.images_json();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["Id"], image.id());
    isola.assert_clean();
}

#[test]
fn several_images_in_one_archive() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let (a, b) = (small_image(1), small_image(2));
    let p = isola.scratch().join("two.tar");
    docker_archive(
        &[(&a, &["a:1", "a:latest"]), (&b, &["example.com/b/c:2"])],
        DockerStyle::Modern,
    )
    .write_tar(&p);
    let mut lines = isola.load(&p);
    lines.sort();
    assert_eq!(
        lines,
        [
            "Loaded image: docker.io/library/a:1",
            "Loaded image: docker.io/library/a:latest",
            "Loaded image: example.com/b/c:2",
        ]
    );
    assert_image(&isola, "a", &a);
    assert_image(&isola, "example.com/b/c:2", &b);
    isola.assert_clean();
}
