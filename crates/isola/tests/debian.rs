//! A real root filesystem: the Debian bookworm minbase tarball from `scripts/test-assets.sh`,
//! imported as a rootfs and loaded as a layer of a docker-archive and of an OCI layout.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use common::archive::*;
use common::fixtures::*;
use common::Isola;

/// Checks the Debian root filesystem at `root` (a layer directory or a merged view).
fn check_debian(root: &Path) {
    let version = read(&root.join("etc/debian_version"));
    assert!(version.starts_with("12."), "not bookworm: {version}");
    assert!(read(&root.join("etc/os-release")).contains("bookworm"));
    assert_eq!(link(&root.join("bin")), "usr/bin", "merged /usr symlink");
    let bash = std::fs::metadata(root.join("usr/bin/bash")).unwrap();
    assert!(bash.is_file() && bash.mode() & 0o111 != 0);
    assert_eq!(bash.uid(), 0);
    // hard links of the rootfs stay hard links
    let perl = std::fs::metadata(root.join("usr/bin/perl")).unwrap();
    let perl2 = std::fs::metadata(root.join("usr/bin/perl5.36.0")).unwrap();
    assert_eq!(perl.ino(), perl2.ino(), "perl hard link");
    assert!(perl.nlink() >= 2);
    let null = std::fs::symlink_metadata(root.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc_makedev(1, 3));
    // setuid root binaries keep their bits and owner
    let su = std::fs::metadata(root.join("usr/bin/su")).unwrap();
    assert_eq!(su.mode() & 0o4000, 0o4000, "su is setuid");
    assert_eq!(su.uid(), 0);
    let tmp = std::fs::metadata(root.join("tmp")).unwrap();
    assert_eq!(tmp.mode() & 0o7777, 0o1777);
    // a non-root owner from the rootfs
    let mail = std::fs::metadata(root.join("var/mail")).unwrap();
    assert_eq!(mail.gid(), 8, "var/mail is group mail");
}

/// The Debian tarball as a layer stored as it comes (gzip).
fn debian_layer(tar: &Path) -> Layer {
    Layer::from_file(tar, Compression::Gzip.oci_media_type())
}

/// A second layer on top of Debian with a whiteout, an opaque directory and a hard link.
fn debian_top() -> Layer {
    LayerBuilder::new()
        .dir("etc")
        .whiteout("etc/motd")
        .file("etc/isola-test", b"on top\n")
        .hardlink("etc/isola-test-link", "etc/isola-test")
        .dir("var")
        .dir("var/log")
        .opaque("var/log")
        .file("var/log/fresh", b"fresh\n")
        .build(Compression::Zstd)
}

fn check_debian_top(root: &Path) {
    assert!(
        std::fs::symlink_metadata(root.join("etc/motd")).is_err(),
        "etc/motd whited out"
    );
    assert_eq!(read(&root.join("etc/isola-test")), "on top\n");
    let names: Vec<String> = std::fs::read_dir(root.join("var/log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["fresh"], "var/log is opaque");
}

#[test]
fn import_debian_rootfs() {
    if !common::require_root() {
        return;
    }
    let Some(tar) = common::debian_tar() else {
        return;
    };
    let isola = Isola::new();
    let out = isola.ok(&[
        "import",
        tar.to_str().unwrap(),
        "debian:bookworm",
        "-c",
        "ENV LANG=C.UTF-8",
        "--change",
        r#"CMD ["/bin/bash", "-l"]"#,
        "-c",
        "WORKDIR /root",
        "-c",
        "LABEL org.example.origin=debootstrap",
        "-c",
        "EXPOSE 80/tcp",
        "-c",
        "USER root",
    ]);
    let id = out.trim();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "import prints the image ID: {out}"
    );
    let v = isola.inspect("debian:bookworm");
    assert_eq!(v["Id"], id);
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Architecture"], "amd64");
    let diff_id = digest_of(&decompress(&std::fs::read(&tar).unwrap()));
    assert_eq!(v["RootFS"]["Layers"], serde_json::json!([diff_id]));
    let c = &v["Config"];
    assert!(
        c["Env"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("LANG=C.UTF-8")),
        "{c}"
    );
    assert_eq!(c["Cmd"], serde_json::json!(["/bin/bash", "-l"]));
    assert_eq!(c["WorkingDir"], "/root");
    assert_eq!(c["Labels"]["org.example.origin"], "debootstrap");
    assert!(c["ExposedPorts"].get("80/tcp").is_some(), "{c}");
    assert_eq!(c["User"], "root");
    assert!(
        v["Size"].as_u64().unwrap() > 50_000_000,
        "size {}",
        v["Size"]
    );

    let dirs = isola.layer_dirs("debian:bookworm");
    assert_eq!(dirs, [isola.layer_dir(&diff_id)]);
    check_debian(&dirs[0]);
    {
        let merged = isola.mount_merged("debian:bookworm");
        check_debian(&merged.path());
    }
    isola.assert_clean();
    isola.assert_blobs_valid();
}

#[test]
fn import_debian_plain_and_zstd_share_the_layer() {
    if !common::require_root() {
        return;
    }
    let Some(tar) = common::debian_tar() else {
        return;
    };
    let isola = Isola::new();
    let plain = decompress(&std::fs::read(&tar).unwrap());
    let dir = isola.scratch();
    let (p_plain, p_zstd) = (dir.join("rootfs.tar"), dir.join("rootfs.tar.zst"));
    std::fs::write(&p_zstd, Compression::Zstd.compress(&plain)).unwrap();
    std::fs::write(&p_plain, plain).unwrap();
    isola.ok(&["import", p_plain.to_str().unwrap(), "deb:plain"]);
    isola.ok(&["import", p_zstd.to_str().unwrap(), "deb:zstd"]);
    let a = isola.inspect("deb:plain");
    let b = isola.inspect("deb:zstd");
    assert_eq!(
        a["RootFS"]["Layers"], b["RootFS"]["Layers"],
        "same content, same diff ID"
    );
    let layers = std::fs::read_dir(isola.root.join("layers"))
        .unwrap()
        .count();
    assert_eq!(layers, 1, "one unpacked layer shared by both images");
    check_debian(&isola.layer_dirs("deb:zstd")[0]);
    // Without a tag the import is untagged.
    let out = isola.ok(&["import", tar.to_str().unwrap()]);
    assert!(isola
        .images_json()
        .iter()
        .any(|r| r["Repository"] == "<none>" && r["Id"] == out.trim()));
    isola.assert_clean();
}

#[test]
fn load_debian_from_oci_layout() {
    if !common::require_root() {
        return;
    }
    let Some(tar) = common::debian_tar() else {
        return;
    };
    let isola = Isola::new();
    let mut image = Image::new(vec![debian_layer(&tar), debian_top()]);
    image.cmd = Some(vec!["/bin/bash".into()]);
    let p = isola.scratch().join("debian-oci");
    oci_layout(&[(
        Node::Image(image.clone()),
        Some("docker.io/library/debian:layered"),
    )])
    .write_dir(&p);
    assert_eq!(
        isola.load(&p),
        ["Loaded image: docker.io/library/debian:layered"]
    );
    assert_image(&isola, "debian:layered", &image);
    let dirs = isola.layer_dirs("debian:layered");
    check_debian(&dirs[0]);
    assert_whiteout(&dirs[1].join("etc/motd"));
    {
        let merged = isola.mount_merged("debian:layered");
        check_debian(&merged.path());
        check_debian_top(&merged.path());
    }
    // Importing the same rootfs reuses the unpacked base layer.
    isola.ok(&["import", tar.to_str().unwrap(), "debian:imported"]);
    assert_eq!(
        std::fs::read_dir(isola.root.join("layers"))
            .unwrap()
            .count(),
        2
    );
    isola.assert_clean();
    isola.assert_blobs_valid();
}

#[test]
fn load_debian_from_docker_archive() {
    if !common::require_root() {
        return;
    }
    let Some(tar) = common::debian_tar() else {
        return;
    };
    let isola = Isola::new();
    // docker save writes uncompressed layers
    let base = Layer::from_tar(decompress(&std::fs::read(&tar).unwrap()), Compression::None);
    let image = Image::new(vec![base, debian_top()]);
    for (style, name) in [
        (DockerStyle::Modern, "debian:modern"),
        (DockerStyle::Legacy, "debian:legacy"),
    ] {
        let p = isola.scratch().join(format!("{name}.tar"));
        docker_archive(&[(&image, &[name])], style).write_tar(&p);
        assert_eq!(
            isola.load(&p),
            [format!("Loaded image: docker.io/library/{name}")]
        );
        assert_image(&isola, name, &image);
        std::fs::remove_file(&p).unwrap();
    }
    let merged = isola.mount_merged("debian:legacy");
    check_debian(&merged.path());
    check_debian_top(&merged.path());
    drop(merged);
    isola.assert_clean();
}
