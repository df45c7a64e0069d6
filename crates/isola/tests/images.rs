//! The built-in busybox image, reference forms, `images`, `image inspect`, `tag`, `rmi` and the
//! garbage collection of blobs and layer directories.

mod common;

use std::os::unix::fs::MetadataExt;

use common::archive::*;
use common::fixtures::*;
use common::Isola;

fn builtin(isola: &Isola) -> String {
    isola.ok(&["image", "builtin"]);
    isola.inspect("busybox")["Id"].as_str().unwrap().to_string()
}

fn require_busybox() -> bool {
    if !std::path::Path::new("/bin/busybox").is_file() {
        common::skip("/bin/busybox missing (package busybox-static)");
        return false;
    }
    true
}

#[test]
fn builtin_busybox_image() {
    if !common::require_root() || !require_busybox() {
        return;
    }
    let isola = Isola::new();
    let id = builtin(&isola);
    let v = isola.inspect("busybox");
    assert_eq!(v["RepoTags"], serde_json::json!(["busybox:latest"]));
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Architecture"], "amd64");
    assert!(
        v["Size"].as_u64().unwrap() > 500_000,
        "busybox is not tiny: {}",
        v["Size"]
    );
    assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    let env = v["Config"]["Env"].as_array().unwrap();
    assert!(
        env.iter().any(|e| e.as_str().unwrap().starts_with("PATH=")),
        "{env:?}"
    );
    assert!(v["Config"]["Cmd"].is_array());

    let dirs = isola.layer_dirs("busybox");
    let root = &dirs[0];
    let bb = std::fs::metadata(root.join("bin/busybox")).unwrap();
    assert_eq!(bb.len(), std::fs::metadata("/bin/busybox").unwrap().len());
    assert!(bb.mode() & 0o111 != 0, "busybox is executable");
    for applet in ["bin/sh", "bin/ls", "bin/cat"] {
        let m = std::fs::metadata(root.join(applet))
            .unwrap_or_else(|e| panic!("applet {applet} missing: {e}"));
        assert_eq!(m.ino(), bb.ino(), "{applet} is a link to busybox");
    }
    let passwd = read(&root.join("etc/passwd"));
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
    assert!(read(&root.join("etc/group")).starts_with("root:x:0:"));

    // Creating it again is a no-op: same ID, still one image.
    isola.ok(&["image", "builtin"]);
    assert_eq!(isola.inspect("busybox")["Id"], id);
    assert_eq!(isola.image_ids().len(), 1);

    // The merged view has a working shell layout.
    let merged = isola.mount_merged("busybox");
    assert!(merged.path().join("bin/sh").is_file());
    drop(merged);
    isola.assert_clean();
}

#[test]
fn builtin_from_explicit_binary_and_missing_binary() {
    if !common::require_root() || !require_busybox() {
        return;
    }
    let isola = Isola::new();
    isola.ok(&["image", "builtin", "--busybox", "/bin/busybox"]);
    assert_eq!(isola.image_ids().len(), 1);
    let isola = Isola::new();
    isola.fail_clean(
        &["image", "builtin", "--busybox", "/nonexistent/busybox"],
        &["/nonexistent/busybox"],
    );
}

#[test]
fn reference_forms() {
    if !common::require_root() || !require_busybox() {
        return;
    }
    let isola = Isola::new();
    let id = builtin(&isola);
    let hex = hex_of(&id).to_string();
    for r in [
        "busybox",
        "busybox:latest",
        "library/busybox",
        "docker.io/library/busybox:latest",
        &hex[..12],
        &hex,
        &id,
    ] {
        assert_eq!(isola.inspect(r)["Id"], id, "reference {r}");
    }
    let err = isola.fail(&["image", "inspect", "busybox:nope"]);
    assert!(err.contains("busybox:nope"), "{err}");
    let err = isola.fail(&["image", "inspect", "Invalid//Name"]);
    assert!(err.contains("Invalid//Name"), "{err}");
}

#[test]
fn digest_references() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let image = small_image(20);
    let p = isola.scratch().join("layout");
    oci_layout(&[(
        Node::Image(image.clone()),
        Some("docker.io/library/pinned:1"),
    )])
    .write_dir(&p);
    isola.load(&p);
    let v = isola.inspect("pinned:1");
    let manifest = image.manifest_digest();
    assert_eq!(
        v["RepoDigests"],
        serde_json::json!([format!("pinned@{manifest}")])
    );
    for r in [
        format!("pinned@{manifest}"),
        format!("docker.io/library/pinned@{manifest}"),
        format!("docker.io/library/pinned:1@{manifest}"),
    ] {
        assert_eq!(isola.inspect(&r)["Id"], image.id(), "reference {r}");
    }
    isola.fail(&[
        "image",
        "inspect",
        &format!("pinned@{}", digest_of(b"other")),
    ]);
}

#[test]
fn ambiguous_id_prefix() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    // Find two images whose IDs share a first hex digit.
    let mut images: Vec<Image> = Vec::new();
    let mut seed = 100;
    let (a, b) = loop {
        let img = small_image(seed);
        seed += 1;
        if let Some(other) = images
            .iter()
            .find(|o| hex_of(&o.id())[..1] == hex_of(&img.id())[..1])
        {
            break (other.clone(), img);
        }
        images.push(img);
    };
    let p = isola.scratch().join("two.tar");
    docker_archive(&[(&a, &["a:1"]), (&b, &["b:1"])], DockerStyle::Modern).write_tar(&p);
    isola.load(&p);
    let a_id = a.id();
    let prefix = &hex_of(&a_id)[..1];
    let err = isola.fail(&["image", "inspect", prefix]);
    assert!(err.contains(prefix), "{err}");
}

#[test]
fn images_table_json_and_quiet() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    assert_eq!(isola.images_json().len(), 0);
    let table = isola.ok(&["images"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .filter(|s| !s.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(header, ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);

    let image = layered_image(Compression::Gzip);
    let p = Format::OciTar.write(&image, "example.com/team/app:v1", &isola.scratch());
    isola.load(&p);
    isola.ok(&["tag", "example.com/team/app:v1", "app"]);
    let rows = isola.images_json();
    assert_eq!(rows.len(), 2, "one row per name: {rows:?}");
    let mut names: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["Repository"].as_str().unwrap().into(),
                r["Tag"].as_str().unwrap().into(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("app".into(), "latest".into()),
            ("example.com/team/app".into(), "v1".into())
        ]
    );
    for r in &rows {
        assert_eq!(r["Id"], image.id());
        assert!(r["Size"].as_u64().unwrap() > 0);
        assert_eq!(r["Created"], "2023-11-14T22:13:20Z");
    }
    let ids = isola.image_ids();
    assert_eq!(ids.len(), 1, "-q lists each image once: {ids:?}");
    assert!(same_id(&ids[0], &image.id()), "{ids:?}");
    let table = isola.ok(&["images"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("example.com/team/app") && l.contains("v1")),
        "{table}"
    );
    assert!(table.contains(&hex_of(&image.id())[..12]), "{table}");
}

#[test]
fn inspect_fields() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let image = layered_image(Compression::Zstd);
    isola.load(&Format::DockerModern.write(&image, "fields:1", &isola.scratch()));
    let v = assert_image(&isola, "fields:1", &image);
    assert_eq!(v["RepoTags"], serde_json::json!(["fields:1"]));
    assert_eq!(v["Created"], "2023-11-14T22:13:20Z");
    assert_eq!(v["Architecture"], "amd64");
    assert_eq!(v["Os"], "linux");
    let c = &v["Config"];
    assert_eq!(c["Cmd"], serde_json::json!(["/bin/tool-link"]));
    assert!(c["Env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("LAYERED=1")));
    assert_eq!(c["WorkingDir"], "/etc");
    assert_eq!(c["User"], "1000:1001");
    assert!(c["ExposedPorts"].get("8080/tcp").is_some(), "{c}");
    assert_eq!(c["Labels"]["org.example.test"], "layered");
    assert!(v["Size"].as_u64().unwrap() > 0);
    // several images in one call, in order
    let both = isola.ok(&["image", "inspect", "fields:1", &image.id()]);
    let both: serde_json::Value = serde_json::from_str(&both).unwrap();
    assert_eq!(both.as_array().unwrap().len(), 2);
    // one missing name fails the command
    let err = isola.fail(&["image", "inspect", "fields:1", "missing:1"]);
    assert!(err.contains("missing:1"), "{err}");
}

#[test]
fn tag_and_untag() {
    if !common::require_root() || !require_busybox() {
        return;
    }
    let isola = Isola::new();
    let id = builtin(&isola);
    isola.ok(&["tag", "busybox", "mybox:1"]);
    isola.ok(&["tag", &hex_of(&id)[..12], "registry.example:5000/x/y:2"]);
    assert_eq!(isola.inspect("mybox:1")["Id"], id);
    let tags = isola.inspect("busybox")["RepoTags"].clone();
    for t in ["busybox:latest", "mybox:1", "registry.example:5000/x/y:2"] {
        assert!(
            tags.as_array().unwrap().contains(&serde_json::json!(t)),
            "{t} in {tags}"
        );
    }
    // Removing by ID with several names needs -f.
    let err = isola.fail(&["rmi", &id]);
    assert!(
        err.contains(&id) || err.contains(&hex_of(&id)[..12]),
        "{err}"
    );
    // Removing a name keeps the image.
    let out = isola.ok(&["rmi", "mybox:1"]);
    assert_eq!(out.trim(), "Untagged: mybox:1");
    assert_eq!(isola.image_ids().len(), 1);
    isola.fail(&["image", "inspect", "mybox:1"]);
    let err = isola.fail(&["tag", "nothing:here", "x:1"]);
    assert!(err.contains("nothing:here"), "{err}");
    let err = isola.fail(&["tag", "busybox", "Bad Name"]);
    assert!(err.contains("Bad Name"), "{err}");
    // -f by ID removes every name and the image.
    let out = isola.ok(&["rmi", "-f", &id]);
    assert!(out.contains("Untagged: busybox:latest"), "{out}");
    assert!(
        out.contains("Untagged: registry.example:5000/x/y:2"),
        "{out}"
    );
    assert!(out.trim_end().ends_with(&format!("Deleted: {id}")), "{out}");
    assert!(isola.image_ids().is_empty());
    isola.assert_empty_store();
    isola.assert_clean();
}

#[test]
fn rmi_last_name_deletes_and_collects() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let image = layered_image(Compression::Gzip);
    isola.load(&Format::OciDir.write(&image, "gc:1", &isola.scratch()));
    let out = isola.ok(&["rmi", "gc:1"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["Untagged: gc:1", &format!("Deleted: {}", image.id())]
    );
    isola.assert_empty_store();
    isola.assert_clean();
    let err = isola.fail(&["rmi", "gc:1"]);
    assert!(err.contains("gc:1"), "{err}");
}

#[test]
fn gc_keeps_shared_layers() {
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
    child.env.push("CHILD=1".into());
    let dir = isola.scratch();
    isola.load(&Format::OciTar.write(&base, "base:1", &dir));
    isola.load(&Format::OciTar.write(&child, "child:1", &dir));

    isola.ok(&["rmi", "base:1"]);
    // base's own config and manifest are gone; every shared layer stays.
    assert!(
        !isola.blob(&base.config_digest()).exists(),
        "unreferenced config kept"
    );
    assert!(
        !isola.blob(&base.manifest_digest()).exists(),
        "unreferenced manifest kept"
    );
    for chain in child.chain_ids() {
        assert!(
            isola.layer_dir(&chain).is_dir(),
            "shared layer {chain} removed"
        );
    }
    for l in &child.layers {
        assert!(
            isola.blob(&l.digest).is_file(),
            "shared layer blob {} removed",
            l.digest
        );
    }
    let dirs = isola.layer_dirs("child:1");
    check_layered_dirs(&dirs[..3]);
    {
        let merged = isola.mount_merged("child:1");
        check_layered_merged(&merged.path());
        assert_eq!(read(&merged.path().join("child")), "c");
    }
    isola.ok(&["rmi", "child:1"]);
    isola.assert_empty_store();
    isola.assert_clean();
}

#[test]
fn untagged_image_removed_by_id() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let image = small_image(30);
    let p = isola.scratch().join("layout");
    oci_layout(&[(Node::Image(image.clone()), None)]).write_dir(&p);
    isola.load(&p);
    let rows = isola.images_json();
    assert_eq!(
        (rows[0]["Repository"].as_str(), rows[0]["Tag"].as_str()),
        (Some("<none>"), Some("<none>"))
    );
    let out = isola.ok(&["rmi", &hex_of(&image.id())[..12]]);
    assert_eq!(out.trim(), format!("Deleted: {}", image.id()));
    isola.assert_empty_store();
}

#[test]
fn retag_moves_name() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let (a, b) = (small_image(40), small_image(41));
    let dir = isola.scratch();
    isola.load(&Format::OciTar.write(&a, "moving:1", &dir));
    isola.load(&Format::DockerModern.write(&b, "other:1", &dir));
    isola.ok(&["tag", "other:1", "moving:1"]);
    assert_eq!(isola.inspect("moving:1")["Id"], b.id());
    // a lost its only name but is still there, untagged
    let v = isola.inspect(&a.id());
    assert_eq!(v["RepoTags"], serde_json::json!([]));
    // loading a again under the same name moves the name back
    isola.load(&Format::OciTar.write(&a, "moving:1", &dir));
    assert_eq!(isola.inspect("moving:1")["Id"], a.id());
    assert_eq!(isola.image_ids().len(), 2);
}
