//! Checks of the test harness's own archive writers (no isola involved): what they write must
//! be exactly what the other tests claim to feed isola.

mod common;

use common::archive::*;
use serde_json::Value;

struct Seen {
    path: String,
    kind: tar::EntryType,
    link: String,
    xattrs: Vec<(String, Vec<u8>)>,
    data: Vec<u8>,
}

fn read_tar(tar: &[u8]) -> Vec<Seen> {
    let mut a = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut xattrs = Vec::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                let x = x.unwrap();
                if let Some(k) = x.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push((k.to_string(), x.value_bytes().to_vec()));
                }
            }
        }
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let kind = e.header().entry_type();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        out.push(Seen {
            path,
            kind,
            link,
            xattrs,
            data,
        });
    }
    out
}

#[test]
fn layer_builder_writes_names_raw() {
    let long = format!("d/{}", "n".repeat(150));
    let long_target = format!("/{}", "t".repeat(120));
    let tar = LayerBuilder::new()
        .file("../escape", b"x")
        .file("/abs", b"y")
        .symlink("ln", "/etc/passwd")
        .symlink("long-ln", &long_target)
        .file(&long, b"z")
        .xattr("user.k", b"v\0w")
        .whiteout("a/b")
        .whiteout("top")
        .opaque("c/")
        .hardlink("h", "../escape")
        .char_device("dev/null", 1, 3)
        .fifo("p")
        .dir("emptydir")
        .tar();
    let seen = read_tar(&tar);
    let names: Vec<&str> = seen.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "../escape",
            "/abs",
            "ln",
            "long-ln",
            long.as_str(),
            "a/.wh.b",
            ".wh.top",
            "c/.wh..wh..opq",
            "h",
            "dev/null",
            "p",
            "emptydir/",
        ]
    );
    assert_eq!(seen[2].link, "/etc/passwd");
    assert_eq!(seen[3].link, long_target);
    assert_eq!(seen[4].data, b"z");
    assert_eq!(seen[4].xattrs, [("user.k".to_string(), b"v\0w".to_vec())]);
    assert_eq!(seen[8].kind, tar::EntryType::Link);
    assert_eq!(seen[8].link, "../escape");
    assert_eq!(seen[9].kind, tar::EntryType::Char);
    assert_eq!(seen[10].kind, tar::EntryType::Fifo);
    assert_eq!(seen[11].kind, tar::EntryType::Directory);
}

#[test]
fn gnu_tar_reads_what_the_builder_writes() {
    if !common::require_tool("tar") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layer = LayerBuilder::new()
        .dir("etc")
        .file("etc/hello", b"hello\n")
        .xattr("user.test", b"1")
        .symlink("etc/link", "hello")
        .hardlink("etc/hard", "etc/hello")
        .build(Compression::Gzip);
    let path = dir.path().join("layer.tar.gz");
    std::fs::write(&path, &layer.blob).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-tvzf")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::describe(&out));
    let listing = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "etc/hello",
        "etc/link -> hello",
        "etc/hard link to etc/hello",
    ] {
        assert!(
            listing.contains(needle),
            "missing {needle:?} in:\n{listing}"
        );
    }
}

#[test]
fn compressions_round_trip_and_digests_match() {
    let b = LayerBuilder::new().file("f", b"data");
    for c in Compression::ALL {
        let l = b.build(c);
        assert_eq!(decompress(&l.blob), l.tar);
        assert_eq!(l.diff_id, digest_of(&l.tar));
        assert_eq!(l.digest, digest_of(&l.blob));
        assert_eq!(l.media_type, c.oci_media_type());
    }
}

#[test]
fn oci_layout_blobs_are_named_by_their_digest() {
    let img = Image::new(vec![LayerBuilder::new()
        .file("a", b"1")
        .build(Compression::Gzip)]);
    let arm = img.clone().arch("arm64", Some("v8"));
    let files = oci_layout(&[
        (Node::Image(img.clone()), Some("docker.io/library/a:1")),
        (Node::nested(img.clone(), 2), None),
        (
            Node::multi(vec![img.clone(), arm.clone()]),
            Some("multi:latest"),
        ),
    ]);
    let paths = files.paths();
    assert_eq!(paths[0], "oci-layout");
    assert_eq!(paths[1], "index.json");
    for p in paths.iter().filter(|p| p.starts_with("blobs/")) {
        let data = files.get(p).unwrap();
        assert_eq!(p.as_str(), blob_path(&digest_of(data)), "blob misnamed");
    }
    let index: Value = serde_json::from_slice(files.get("index.json").unwrap()).unwrap();
    let m = index["manifests"].as_array().unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(m[0]["digest"], img.manifest_digest());
    assert_eq!(m[0]["annotations"][REF_NAME], "docker.io/library/a:1");
    assert_eq!(m[1]["mediaType"], MT_OCI_INDEX);
    // index → index → manifest
    let outer: Value = serde_json::from_slice(
        files
            .get(&blob_path(m[1]["digest"].as_str().unwrap()))
            .unwrap(),
    )
    .unwrap();
    let inner_desc = &outer["manifests"][0];
    assert_eq!(inner_desc["mediaType"], MT_OCI_INDEX);
    let inner: Value = serde_json::from_slice(
        files
            .get(&blob_path(inner_desc["digest"].as_str().unwrap()))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(inner["manifests"][0]["digest"], img.manifest_digest());
    // multi-platform
    let multi: Value = serde_json::from_slice(
        files
            .get(&blob_path(m[2]["digest"].as_str().unwrap()))
            .unwrap(),
    )
    .unwrap();
    let archs: Vec<&str> = multi["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    assert_eq!(multi["manifests"][1]["platform"]["variant"], "v8");
    // the config is a real image-spec config
    let config: Value =
        serde_json::from_slice(files.get(&blob_path(&img.config_digest())).unwrap()).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"][0], img.layers[0].diff_id);
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["Cmd"][0], "/bin/sh");
}

#[test]
fn docker_archive_shapes() {
    let l1 = LayerBuilder::new().file("a", b"1").build(Compression::None);
    let l2 = LayerBuilder::new().file("b", b"2").build(Compression::None);
    let img = Image::new(vec![l1, l2]);
    let tags: &[&str] = &["busybox:latest", "example.com/x:2"];

    let modern = docker_archive(&[(&img, tags)], DockerStyle::Modern);
    let m: Value = serde_json::from_slice(modern.get("manifest.json").unwrap()).unwrap();
    assert_eq!(m[0]["Config"], blob_path(&img.config_digest()));
    assert_eq!(m[0]["RepoTags"][1], "example.com/x:2");
    assert_eq!(m[0]["Layers"][1], blob_path(&img.layers[1].digest));
    assert!(modern.get("index.json").is_none());

    let with_index = docker_archive(&[(&img, tags)], DockerStyle::ModernWithIndex);
    let index: Value = serde_json::from_slice(with_index.get("index.json").unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/library/busybox:latest"
    );

    let legacy = docker_archive(&[(&img, tags)], DockerStyle::Legacy);
    let m: Value = serde_json::from_slice(legacy.get("manifest.json").unwrap()).unwrap();
    let layers = m[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for l in layers {
        let l = l.as_str().unwrap();
        let id = l.strip_suffix("/layer.tar").unwrap();
        assert_eq!(legacy.get(&format!("{id}/VERSION")).unwrap(), b"1.0");
        assert!(legacy.get(&format!("{id}/json")).is_some());
    }
    let repos: Value = serde_json::from_slice(legacy.get("repositories").unwrap()).unwrap();
    let top = layers[1]
        .as_str()
        .unwrap()
        .strip_suffix("/layer.tar")
        .unwrap();
    assert_eq!(repos["busybox"]["latest"], top);

    // the archive tar lists directories before their files
    let seen = read_tar(&legacy.tar());
    let first_blob = seen
        .iter()
        .position(|e| e.path.ends_with("layer.tar"))
        .unwrap();
    assert!(seen[..first_blob]
        .iter()
        .any(|e| e.kind == tar::EntryType::Directory));
}

#[test]
fn tampering_knobs() {
    let layer = LayerBuilder::new().file("a", b"1").build(Compression::None);
    let img = Image::new(vec![layer.clone()]);
    let mut files = oci_layout(&[(Node::Image(img.clone()), None)]);
    let before = files.get(&blob_path(&layer.digest)).unwrap().to_vec();
    files.corrupt_blob(&layer.digest);
    let after = files.get(&blob_path(&layer.digest)).unwrap();
    assert_eq!(before.len(), after.len());
    assert_ne!(digest_of(after), layer.digest);
    // still a readable tar: only the padding changed
    assert_eq!(read_tar(after)[0].path, "a");
    files.remove_blob(&img.config_digest());
    assert!(files.get(&blob_path(&img.config_digest())).is_none());
}

#[test]
fn chain_ids_follow_the_image_spec() {
    let d = vec![
        "sha256:a".to_string(),
        "sha256:b".to_string(),
        "sha256:c".to_string(),
    ];
    let c = chain_ids(&d);
    assert_eq!(c[0], "sha256:a");
    assert_eq!(c[1], digest_of(b"sha256:a sha256:b"));
    assert_eq!(c[2], digest_of(format!("{} sha256:c", c[1]).as_bytes()));
}

#[test]
fn qualify_names_like_docker() {
    assert_eq!(qualify("busybox"), "docker.io/library/busybox:latest");
    assert_eq!(qualify("a/b:1"), "docker.io/a/b:1");
    assert_eq!(qualify("localhost:5000/x"), "localhost:5000/x:latest");
    assert_eq!(qualify("example.com/x:2"), "example.com/x:2");
}
