//! Hostile and broken input: every case must fail with exit code 125 and one `Error:` line
//! naming the culprit (entry, digest or media type), leave nothing in the store's `tmp/`, no
//! mount, no image record, and never touch anything outside the store.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::archive::*;
use common::fixtures::{noise, small_image};
use common::Isola;

/// Writes `image` as an OCI layout tar, lets `tamper` change its files, returns the path.
fn oci_tar(isola: &Isola, image: &Image, tamper: impl FnOnce(&mut Files)) -> PathBuf {
    let mut files = oci_layout(&[(Node::Image(image.clone()), Some("docker.io/library/evil:1"))]);
    tamper(&mut files);
    let p = isola.scratch().join("evil.tar");
    files.write_tar(&p);
    p
}

/// An OCI layout tar of a one-layer image made by `layer`.
fn one_layer(isola: &Isola, layer: LayerBuilder) -> PathBuf {
    oci_tar(
        isola,
        &Image::new(vec![layer.build(Compression::Gzip)]),
        |_| {},
    )
}

fn load_fails(isola: &Isola, archive: &Path, needles: &[&str]) -> String {
    let a = archive.to_str().unwrap();
    isola.fail_clean(&["load", "-i", a], needles)
}

fn short(digest: &str) -> &str {
    &hex_of(digest)[..12]
}

/// A directory outside the store that hostile archives aim at; must stay empty.
fn outside(isola: &Isola) -> PathBuf {
    let p = isola.scratch().join("outside");
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn assert_empty(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        left.is_empty(),
        "something was written outside the store: {left:?}"
    );
}

#[test]
fn dotdot_entry() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let p = one_layer(
        &isola,
        LayerBuilder::new()
            .dir("a")
            .file("a/../../escape-dotdot", b"x"),
    );
    load_fails(&isola, &p, &["a/../../escape-dotdot"]);
    assert!(!isola.root.join("escape-dotdot").exists());
    assert!(!isola.root.parent().unwrap().join("escape-dotdot").exists());
}

#[test]
fn leading_dotdot_entry() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let p = one_layer(&isola, LayerBuilder::new().file("../escape-lead", b"x"));
    load_fails(&isola, &p, &["../escape-lead"]);
}

#[test]
fn absolute_entry() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let target = outside(&isola).join("abs-written");
    let name = target.to_str().unwrap().to_string();
    let p = one_layer(&isola, LayerBuilder::new().file(&name, b"x"));
    load_fails(&isola, &p, &[&name]);
    assert!(!target.exists());
}

#[test]
fn write_through_absolute_symlink() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let out = outside(&isola);
    let p = one_layer(
        &isola,
        LayerBuilder::new()
            .symlink("evil", out.to_str().unwrap())
            .file("evil/pwned", b"x"),
    );
    load_fails(&isola, &p, &["evil/pwned"]);
    assert_empty(&out);
}

#[test]
fn write_through_relative_symlink() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let out = outside(&isola);
    // From <layer dir>, enough ".." reach "/", then down to the outside directory.
    let target = format!(
        "{}{}",
        "../".repeat(32),
        out.to_str().unwrap().trim_start_matches('/')
    );
    let p = one_layer(
        &isola,
        LayerBuilder::new()
            .dir("d")
            .symlink("d/up", &target)
            .file("d/up/pwned", b"x"),
    );
    load_fails(&isola, &p, &["d/up/pwned"]);
    assert_empty(&out);
}

#[test]
fn symlink_replaced_parent_directory() {
    // A directory entry, then a symlink with the same name, then a file below it.
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let out = outside(&isola);
    let p = one_layer(
        &isola,
        LayerBuilder::new()
            .dir("swap")
            .symlink("swap", out.to_str().unwrap())
            .file("swap/pwned", b"x"),
    );
    load_fails(&isola, &p, &["swap/pwned"]);
    assert_empty(&out);
}

#[test]
fn hard_link_to_outside() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let victim = outside(&isola).join("victim");
    std::fs::write(&victim, b"secret").unwrap();
    let before = std::fs::metadata(&victim).unwrap().nlink();
    let target = format!(
        "{}{}",
        "../".repeat(32),
        victim.to_str().unwrap().trim_start_matches('/')
    );
    let p = one_layer(&isola, LayerBuilder::new().hardlink("stolen", &target));
    load_fails(&isola, &p, &["stolen"]);
    assert_eq!(
        std::fs::metadata(&victim).unwrap().nlink(),
        before,
        "no link to the victim"
    );
}

#[test]
fn hard_link_through_symlink() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let out = outside(&isola);
    let victim = out.join("victim");
    std::fs::write(&victim, b"secret").unwrap();
    let p = one_layer(
        &isola,
        LayerBuilder::new()
            .symlink("door", out.to_str().unwrap())
            .hardlink("stolen", "door/victim"),
    );
    load_fails(&isola, &p, &["stolen"]);
    assert_eq!(
        std::fs::metadata(&victim).unwrap().nlink(),
        1,
        "no link to the victim"
    );
}

#[test]
fn layer_over_size_limit() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let layer = LayerBuilder::new()
        .file("big", noise(256 * 1024, 1))
        .build(Compression::Gzip);
    let p = oci_tar(&isola, &Image::new(vec![layer]), |_| {});
    let a = p.to_str().unwrap();
    isola.fail_clean(&["load", "--max-layer-size", "65536", "-i", a], &["65536"]);
    // The same archive loads without the limit.
    isola.load(&p);
}

#[test]
fn truncated_archive() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let layer = LayerBuilder::new()
        .file("big", noise(256 * 1024, 2))
        .build(Compression::None);
    let image = Image::new(vec![layer.clone()]);
    let mut files = oci_layout(&[(Node::Image(image), Some("docker.io/library/cut:1"))]);
    // The layer blob last, cut in its middle.
    let paths = files.paths();
    for p in paths
        .iter()
        .filter(|p| **p != blob_path(&layer.digest))
        .rev()
    {
        files.move_to_front(p);
    }
    let mut tar = files.tar();
    let end = tar.len() - 1024 - 128 * 1024;
    tar.truncate(end);
    let p = isola.scratch().join("cut.tar");
    std::fs::write(&p, tar).unwrap();
    load_fails(&isola, &p, &[short(&layer.digest)]);
}

#[test]
fn truncated_layer_blob() {
    // The archive is whole, but the gzip stream of the layer stops early (descriptor matches).
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let good = LayerBuilder::new()
        .file("big", noise(64 * 1024, 3))
        .build(Compression::Gzip);
    let cut = good.blob[..good.blob.len() / 2].to_vec();
    let layer = good.with_blob(cut);
    let p = oci_tar(&isola, &Image::new(vec![layer.clone()]), |_| {});
    load_fails(&isola, &p, &[short(&layer.digest)]);
}

#[test]
fn corrupt_gzip() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let good = LayerBuilder::new()
        .file("f", noise(64 * 1024, 4))
        .build(Compression::Gzip);
    let mut bad = good.blob.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 64] {
        *b = !*b;
    }
    let layer = good.with_blob(bad);
    let p = oci_tar(&isola, &Image::new(vec![layer.clone()]), |_| {});
    load_fails(&isola, &p, &[short(&layer.digest)]);
}

#[test]
fn layer_digest_mismatch() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let layer = LayerBuilder::new()
        .file("f", b"data")
        .build(Compression::None);
    let p = oci_tar(&isola, &Image::new(vec![layer.clone()]), |f| {
        f.corrupt_blob(&layer.digest)
    });
    load_fails(&isola, &p, &[short(&layer.digest)]);
}

#[test]
fn config_digest_mismatch() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let image = small_image(10);
    let config = image.config_digest();
    let p = oci_tar(&isola, &image, |f| {
        // Same length, still valid JSON, different content.
        let c = String::from_utf8(f.get(&blob_path(&config)).unwrap().to_vec()).unwrap();
        let c = c.replacen("2023-", "2024-", 1);
        f.put(&blob_path(&config), c);
    });
    load_fails(&isola, &p, &[short(&config)]);
}

#[test]
fn diff_id_mismatch() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let mut layer = LayerBuilder::new()
        .file("f", b"data")
        .build(Compression::Gzip);
    let claimed = digest_of(b"something else");
    layer.diff_id = claimed.clone();
    let p = oci_tar(&isola, &Image::new(vec![layer]), |_| {});
    load_fails(&isola, &p, &[short(&claimed)]);
}

#[test]
fn missing_layer_blob() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let image = small_image(11);
    let digest = image.layers[0].digest.clone();
    let p = oci_tar(&isola, &image, |f| f.remove_blob(&digest));
    load_fails(&isola, &p, &[short(&digest)]);
}

#[test]
fn missing_config_blob() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let image = small_image(12);
    let digest = image.config_digest();
    let p = oci_tar(&isola, &image, |f| f.remove_blob(&digest));
    load_fails(&isola, &p, &[short(&digest)]);
}

#[test]
fn missing_manifest_blob_in_directory() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let image = small_image(13);
    let digest = image.manifest_digest();
    let mut files = oci_layout(&[(Node::Image(image), Some("docker.io/library/evil:1"))]);
    files.remove_blob(&digest);
    let p = isola.scratch().join("layout");
    files.write_dir(&p);
    load_fails(&isola, &p, &[short(&digest)]);
}

#[test]
fn docker_archive_missing_layer_file() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let image = small_image(14);
    let mut files = docker_archive(&[(&image, &["evil:1"])], DockerStyle::Legacy);
    let layer_path = files
        .paths()
        .into_iter()
        .find(|p| p.ends_with("/layer.tar"))
        .unwrap();
    files.remove(&layer_path);
    let p = isola.scratch().join("evil.tar");
    files.write_tar(&p);
    load_fails(&isola, &p, &[&layer_path]);
}

#[test]
fn unknown_layer_media_type() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let mt = "application/vnd.example.unknown.layer";
    let layer = LayerBuilder::new()
        .file("f", b"x")
        .build(Compression::Gzip)
        .with_media_type(mt);
    let p = oci_tar(&isola, &Image::new(vec![layer]), |_| {});
    load_fails(&isola, &p, &[mt]);
}

#[test]
fn media_type_disagrees_with_magic() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    // Declared gzip, actually zstd.
    let layer = LayerBuilder::new()
        .file("f", b"x")
        .build(Compression::Zstd)
        .with_media_type(Compression::Gzip.oci_media_type());
    let p = oci_tar(&isola, &Image::new(vec![layer.clone()]), |_| {});
    load_fails(&isola, &p, &[short(&layer.digest)]);
    // Declared uncompressed, actually gzip.
    let isola = Isola::new();
    let layer = LayerBuilder::new()
        .file("f", b"y")
        .build(Compression::Gzip)
        .with_media_type(Compression::None.oci_media_type());
    let p = oci_tar(&isola, &Image::new(vec![layer.clone()]), |_| {});
    load_fails(&isola, &p, &[short(&layer.digest)]);
}

#[test]
fn invalid_index_json() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let p = oci_tar(&isola, &small_image(15), |f| {
        f.put("index.json", b"{not json".to_vec())
    });
    load_fails(&isola, &p, &["index.json"]);
}

#[test]
fn not_an_archive() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let p = isola.scratch().join("noise.bin");
    std::fs::write(&p, noise(10_000, 5)).unwrap();
    load_fails(&isola, &p, &["noise.bin"]);
    let missing = isola.scratch().join("does-not-exist.tar");
    load_fails(&isola, &missing, &["does-not-exist.tar"]);
}

#[test]
fn second_layer_fails_after_first_unpacked() {
    // A failure in a later layer must not leave the image half-recorded.
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let good = LayerBuilder::new()
        .file("ok", b"ok")
        .build(Compression::Gzip);
    let bad = LayerBuilder::new()
        .file("../late-escape", b"x")
        .build(Compression::Gzip);
    let p = oci_tar(&isola, &Image::new(vec![good, bad]), |_| {});
    load_fails(&isola, &p, &["../late-escape"]);
}

#[test]
fn import_rejects_hostile_rootfs() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let p = isola.scratch().join("rootfs.tar");
    std::fs::write(
        &p,
        LayerBuilder::new()
            .dir("etc")
            .file("../import-escape", b"x")
            .tar(),
    )
    .unwrap();
    isola.fail_clean(
        &["import", p.to_str().unwrap(), "evil:1"],
        &["../import-escape"],
    );
}

#[test]
fn entry_name_with_control_characters() {
    // The error names the entry, escaped: still one line, no raw control characters.
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let p = one_layer(
        &isola,
        LayerBuilder::new().file("../evil\nname\x1b[2J", b"x"),
    );
    let err = load_fails(&isola, &p, &["evil"]);
    assert!(
        !err.contains('\x1b'),
        "raw escape character in error: {err:?}"
    );
}

#[test]
fn digest_with_path_traversal() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let image = small_image(16);
    let mut files = oci_layout(&[(Node::Image(image.clone()), Some("docker.io/library/evil:1"))]);
    let bad = "sha256:../../../../../../etc/passwd";
    let index = String::from_utf8(files.get("index.json").unwrap().to_vec()).unwrap();
    files.put("index.json", index.replace(&image.manifest_digest(), bad));
    let p = isola.scratch().join("layout");
    files.write_dir(&p);
    load_fails(&isola, &p, &["../../etc/passwd"]);
}

#[test]
fn docker_manifest_names_path_outside() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let image = small_image(17);
    let mut files = docker_archive(&[(&image, &["evil:1"])], DockerStyle::Modern);
    let m = String::from_utf8(files.get("manifest.json").unwrap().to_vec()).unwrap();
    let bad = "../../../../../../etc/passwd";
    files.put(
        "manifest.json",
        m.replace(&blob_path(&image.layers[0].digest), bad),
    );
    let p = isola.scratch().join("evil.tar");
    files.write_tar(&p);
    load_fails(&isola, &p, &[bad]);
    // the same as a directory (docker-archive extracted): nothing outside is read
    let d = isola.scratch().join("evil-dir");
    files.write_dir(&d);
    let out = isola.run(&["load", "-i", d.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", common::describe(&out));
    isola.assert_clean();
    assert!(isola.image_ids().is_empty());
}
