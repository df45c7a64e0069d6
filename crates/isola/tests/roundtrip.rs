//! `isola save` output: an OCI layout tar with a docker-compatible `manifest.json`, whose
//! manifest and config digests survive load → save → load, and which other tools (skopeo,
//! umoci) read back.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::archive::*;
use common::fixtures::*;
use common::{describe, Isola};
use serde_json::Value;

/// The files of a saved archive, after checking that every blob matches its name.
fn read_saved(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let mut a = tar::Archive::new(&data[..]);
    let mut files = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut buf).unwrap();
        if let Some(hex) = p.strip_prefix("blobs/sha256/") {
            assert_eq!(
                sha256_hex(&buf),
                hex,
                "saved blob {p} does not match its name"
            );
        }
        assert!(
            files.insert(p.clone(), buf).is_none(),
            "{p} twice in the archive"
        );
    }
    for f in ["oci-layout", "index.json", "manifest.json"] {
        assert!(
            files.contains_key(f),
            "saved archive lacks {f}: {:?}",
            files.keys()
        );
    }
    files
}

fn json(files: &BTreeMap<String, Vec<u8>>, path: &str) -> Value {
    serde_json::from_slice(files.get(path).unwrap_or_else(|| panic!("{path} missing"))).unwrap()
}

/// Checks the saved archive holds `image` under `name`: the index names the manifest, the
/// manifest the config and layers, and manifest.json points at files that exist.
fn check_saved(files: &BTreeMap<String, Vec<u8>>, manifest_digest: &str, id: &str, name: &str) {
    let index = json(files, "index.json");
    let descs = index["manifests"].as_array().unwrap();
    let d = descs
        .iter()
        .find(|d| d["annotations"][REF_NAME] == qualify(name))
        .unwrap_or_else(|| panic!("no index entry named {name}: {index}"));
    assert_eq!(d["digest"], manifest_digest);
    let manifest = json(files, &blob_path(manifest_digest));
    assert_eq!(d["size"], files[&blob_path(manifest_digest)].len());
    assert_eq!(manifest["config"]["digest"], id);
    for l in manifest["layers"].as_array().unwrap() {
        let p = blob_path(l["digest"].as_str().unwrap());
        assert_eq!(
            l["size"],
            files.get(&p).unwrap_or_else(|| panic!("{p} missing")).len()
        );
    }
    let docker = json(files, "manifest.json");
    let entry = docker
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["RepoTags"].as_array().unwrap().iter().any(|t| t == name))
        .unwrap_or_else(|| panic!("no manifest.json entry tagged {name}: {docker}"));
    assert_eq!(entry["Config"], blob_path(id));
    let layers = entry["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), manifest["layers"].as_array().unwrap().len());
    for l in layers {
        assert!(
            files.contains_key(l.as_str().unwrap()),
            "manifest.json names missing {l}"
        );
    }
}

fn manifest_digest(isola: &Isola, name: &str) -> String {
    let v = isola.inspect(name);
    let rd = v["RepoDigests"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no RepoDigests: {v}"));
    rd.split_once('@').unwrap().1.to_string()
}

fn save(isola: &Isola, out: &Path, images: &[&str]) {
    let mut args = vec!["save", "-o", out.to_str().unwrap()];
    args.extend_from_slice(images);
    isola.ok(&args);
    isola.assert_clean();
}

#[test]
fn oci_round_trip_keeps_digests() {
    if !common::require_root() {
        return;
    }
    let first = Isola::new();
    let image = layered_image(Compression::Gzip);
    first.load(&Format::OciTar.write(&image, "round:1", &first.scratch()));
    let out = first.scratch().join("saved.tar");
    save(&first, &out, &["round:1"]);
    let files = read_saved(&out);
    check_saved(&files, &image.manifest_digest(), &image.id(), "round:1");
    // blobs as stored: the layers keep their compression and digests
    for l in &image.layers {
        assert_eq!(files[&blob_path(&l.digest)], l.blob);
    }

    let second = Isola::new();
    assert_eq!(
        second.load(&out),
        ["Loaded image: docker.io/library/round:1"]
    );
    assert_image(&second, "round:1", &image);
    assert_eq!(manifest_digest(&second, "round:1"), image.manifest_digest());
    check_layered_dirs(&second.layer_dirs("round:1"));
    second.assert_clean();
}

#[test]
fn docker_archive_round_trip_keeps_digests() {
    if !common::require_root() {
        return;
    }
    let first = Isola::new();
    let image = layered_image(Compression::None);
    first.load(&Format::DockerLegacy.write(&image, "legacy:1", &first.scratch()));
    let digest = manifest_digest(&first, "legacy:1");
    let out = first.scratch().join("saved.tar");
    save(&first, &out, &["legacy:1"]);
    let files = read_saved(&out);
    check_saved(&files, &digest, &image.id(), "legacy:1");

    let second = Isola::new();
    second.load(&out);
    assert_image(&second, "legacy:1", &image);
    assert_eq!(manifest_digest(&second, "legacy:1"), digest);
    let again = second.scratch().join("again.tar");
    save(&second, &again, &["legacy:1"]);
    let files2 = read_saved(&again);
    assert_eq!(
        files2["index.json"], files["index.json"],
        "saving is deterministic"
    );
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&out).unwrap());
}

#[test]
fn save_several_images_and_ids() {
    if !common::require_root() {
        return;
    }
    let first = Isola::new();
    let (a, b, c) = (
        small_image(50),
        layered_image(Compression::Zstd),
        small_image(51),
    );
    let dir = first.scratch();
    first.load(&Format::OciDir.write(&a, "a:1", &dir));
    first.load(&Format::DockerModern.write(&b, "example.com/b:2", &dir));
    first.load(&Format::OciTar.write(&c, "c:3", &dir));
    first.ok(&["tag", "a:1", "a:also"]);
    let out = dir.join("three.tar");
    // by name, by second name, and by ID (saved without a name)
    save(&first, &out, &["a:1", "a:also", "example.com/b:2", &c.id()]);
    let files = read_saved(&out);
    check_saved(&files, &a.manifest_digest(), &a.id(), "a:1");
    check_saved(&files, &a.manifest_digest(), &a.id(), "a:also");
    // b came from a docker-archive: isola made its manifest
    let b_manifest = manifest_digest(&first, "example.com/b:2");
    check_saved(&files, &b_manifest, &b.id(), "example.com/b:2");

    let second = Isola::new();
    let mut lines = second.load(&out);
    lines.sort();
    assert_eq!(
        lines,
        [
            "Loaded image ID: ".to_string() + &c.id(),
            "Loaded image: docker.io/library/a:1".into(),
            "Loaded image: docker.io/library/a:also".into(),
            "Loaded image: example.com/b:2".into(),
        ]
    );
    assert_image(&second, "a:also", &a);
    assert_image(&second, "example.com/b:2", &b);
    assert_image(&second, &c.id(), &c);
    assert_eq!(second.image_ids().len(), 3);
}

#[test]
fn save_failures_leave_nothing() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    isola.load(&Format::OciTar.write(&small_image(60), "s:1", &isola.scratch()));
    let dir = isola.scratch().join("out");
    std::fs::create_dir(&dir).unwrap();
    let out = dir.join("x.tar");
    let err = isola.fail(&["save", "-o", out.to_str().unwrap(), "s:1", "nothing:1"]);
    assert!(err.contains("nothing:1"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "save left files: {left:?}");
    let err = isola.fail(&["save", "-o", "/nonexistent-dir/x.tar", "s:1"]);
    assert!(err.contains("/nonexistent-dir"), "{err}");
    isola.assert_clean();
}

fn tool(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        args.join(" "),
        describe(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn skopeo_reads_saved_archive() {
    if !common::require_root() || !common::require_tool("skopeo") {
        return;
    }
    let isola = Isola::new();
    let image = layered_image(Compression::Gzip);
    isola.load(&Format::DockerModern.write(&image, "skopeo:1", &isola.scratch()));
    let out = isola.scratch().join("saved.tar");
    save(&isola, &out, &["skopeo:1"]);
    let archive = format!("oci-archive:{}", out.display());
    let v: Value = serde_json::from_str(&tool(&["skopeo", "inspect", &archive])).unwrap();
    assert_eq!(v["Digest"], manifest_digest(&isola, "skopeo:1"));
    assert_eq!(v["Architecture"], "amd64");
    assert_eq!(v["Os"], "linux");
    let layers: Vec<&str> = image.layers.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(v["Layers"], serde_json::json!(layers));
    let cfg: Value =
        serde_json::from_str(&tool(&["skopeo", "inspect", "--config", &archive])).unwrap();
    assert_eq!(cfg["config"]["WorkingDir"], "/etc");

    // skopeo copies it (verifying every blob) into a layout and a docker-archive of its own;
    // isola loads both.
    let layout = isola.scratch().join("skopeo-layout");
    let darchive = isola.scratch().join("skopeo-docker.tar");
    tool(&[
        "skopeo",
        "copy",
        "-q",
        &archive,
        &format!("oci:{}:copied", layout.display()),
    ]);
    tool(&[
        "skopeo",
        "copy",
        "-q",
        &archive,
        &format!("docker-archive:{}:skopeo/copied:2", darchive.display()),
    ]);
    let other = Isola::new();
    other.load(&layout);
    other.load(&darchive);
    let v = other.inspect("skopeo/copied:2");
    assert_eq!(v["Id"], image.id());
    check_layered_dirs(&other.layer_dirs("skopeo/copied:2"));
    assert_eq!(other.image_ids().len(), 1, "both copies are the same image");
    other.assert_clean();
}

#[test]
fn umoci_reads_saved_archive() {
    if !common::require_root() || !common::require_tool("umoci") {
        return;
    }
    let isola = Isola::new();
    let image = layered_image(Compression::Gzip);
    isola.load(&Format::OciTar.write(&image, "umoci:1", &isola.scratch()));
    let out = isola.scratch().join("saved.tar");
    save(&isola, &out, &["umoci:1"]);
    // umoci works on a layout directory
    let layout = isola.scratch().join("layout");
    std::fs::create_dir(&layout).unwrap();
    tar::Archive::new(std::fs::File::open(&out).unwrap())
        .unpack(&layout)
        .unwrap();
    let tags = tool(&["umoci", "ls", "--layout", layout.to_str().unwrap()]);
    assert!(
        tags.lines().any(|t| t == "docker.io/library/umoci:1"),
        "umoci ls: {tags}"
    );
    // umoci's tag syntax cannot address that name: give the manifest a plain tag too.
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut d = index["manifests"][0].clone();
    d["annotations"] = serde_json::json!({REF_NAME: "plain"});
    index["manifests"].as_array_mut().unwrap().push(d);
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let stat = tool(&[
        "umoci",
        "stat",
        "--image",
        &format!("{}:plain", layout.display()),
    ]);
    assert!(stat.contains("LAYER"), "umoci stat: {stat}");
    let bundle = isola.scratch().join("bundle");
    tool(&[
        "umoci",
        "unpack",
        "--image",
        &format!("{}:plain", layout.display()),
        bundle.to_str().unwrap(),
    ]);
    check_layered_merged(&bundle.join("rootfs"));
}
