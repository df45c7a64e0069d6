//! Image indexes: platform selection from multi-platform indexes (the host's by default,
//! `--platform` otherwise) and indexes nested in indexes.

mod common;

use common::archive::*;
use common::fixtures::*;
use common::Isola;

fn arch_image(arch: &str, variant: Option<&str>) -> Image {
    Image::new(vec![LayerBuilder::new()
        .dir("etc")
        .file("etc/arch", arch)
        .build(Compression::Gzip)])
    .arch(arch, variant)
}

fn multi_layout(isola: &Isola, nested: bool) -> (std::path::PathBuf, Image, Image) {
    let amd = arch_image("amd64", None);
    let arm = arch_image("arm64", Some("v8"));
    let node = Node::multi(vec![arm.clone(), amd.clone()]);
    let node = if nested {
        Node::Index(vec![node])
    } else {
        node
    };
    let p = isola
        .scratch()
        .join(if nested { "nested-multi" } else { "multi" });
    oci_layout(&[(node, Some("docker.io/library/multi:1"))]).write_dir(&p);
    (p, amd, arm)
}

fn host_is_amd64() -> bool {
    if std::env::consts::ARCH != "x86_64" {
        common::skip("expects an x86_64 host");
        return false;
    }
    true
}

#[test]
fn default_platform_is_the_hosts() {
    if !common::require_root() || !host_is_amd64() {
        return;
    }
    let isola = Isola::new();
    let (p, amd, _) = multi_layout(&isola, false);
    assert_eq!(isola.load(&p), ["Loaded image: docker.io/library/multi:1"]);
    let v = assert_image(&isola, "multi:1", &amd);
    assert_eq!(v["Architecture"], "amd64");
    assert_eq!(
        read(&isola.layer_dirs("multi:1")[0].join("etc/arch")),
        "amd64"
    );
    assert_eq!(
        isola.image_ids().len(),
        1,
        "only the selected platform is loaded"
    );
    isola.assert_clean();
}

#[test]
fn explicit_platform() {
    if !common::require_root() {
        return;
    }
    for platform in ["linux/arm64", "linux/arm64/v8"] {
        let isola = Isola::new();
        let (p, _, arm) = multi_layout(&isola, false);
        isola.ok(&["load", "--platform", platform, "-i", p.to_str().unwrap()]);
        let v = assert_image(&isola, "multi:1", &arm);
        assert_eq!(v["Architecture"], "arm64", "{platform}");
        assert_eq!(
            read(&isola.layer_dirs("multi:1")[0].join("etc/arch")),
            "arm64"
        );
        isola.assert_clean();
    }
    let isola = Isola::new();
    let (p, amd, _) = multi_layout(&isola, false);
    isola.ok(&[
        "load",
        "--platform",
        "linux/amd64",
        "-i",
        p.to_str().unwrap(),
    ]);
    assert_image(&isola, "multi:1", &amd);
}

#[test]
fn missing_platform_fails_naming_it() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let (p, _, _) = multi_layout(&isola, false);
    let err = isola.fail_clean(
        &[
            "load",
            "--platform",
            "linux/s390x",
            "-i",
            p.to_str().unwrap(),
        ],
        &["linux/s390x"],
    );
    assert!(
        err.contains("linux/amd64") && err.contains("linux/arm64"),
        "names what exists: {err}"
    );
    isola.assert_empty_store();
}

#[test]
fn malformed_platform_is_refused() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let (p, _, _) = multi_layout(&isola, false);
    let out = isola.run(&["load", "--platform", "linux", "-i", p.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", common::describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("linux"));
    isola.assert_clean();
    assert!(isola.image_ids().is_empty());
}

#[test]
fn nested_indexes() {
    if !common::require_root() || !host_is_amd64() {
        return;
    }
    for depth in [1, 2, 3] {
        let isola = Isola::new();
        let image = small_image(70 + depth as u64);
        let p = isola.scratch().join(format!("nested{depth}.tar"));
        oci_layout(&[(
            Node::nested(image.clone(), depth),
            Some("docker.io/library/deep:1"),
        )])
        .write_tar(&p);
        assert_eq!(
            isola.load(&p),
            ["Loaded image: docker.io/library/deep:1"],
            "depth {depth}"
        );
        assert_image(&isola, "deep:1", &image);
        isola.assert_clean();
    }
    // index → index → (amd64, arm64)
    let isola = Isola::new();
    let (p, amd, _) = multi_layout(&isola, true);
    isola.load(&p);
    assert_image(&isola, "multi:1", &amd);
    let isola = Isola::new();
    let (p, _, arm) = multi_layout(&isola, true);
    isola.ok(&[
        "load",
        "--platform",
        "linux/arm64",
        "-i",
        p.to_str().unwrap(),
    ]);
    assert_image(&isola, "multi:1", &arm);
}

#[test]
fn several_named_entries_in_one_layout() {
    if !common::require_root() || !host_is_amd64() {
        return;
    }
    let isola = Isola::new();
    let (a, b) = (small_image(80), small_image(81));
    let p = isola.scratch().join("two");
    oci_layout(&[
        (Node::Image(a.clone()), Some("docker.io/library/one:1")),
        (
            Node::multi(vec![b.clone(), arch_image("arm64", None)]),
            Some("example.com/two:2"),
        ),
    ])
    .write_dir(&p);
    let mut lines = isola.load(&p);
    lines.sort();
    assert_eq!(
        lines,
        [
            "Loaded image: docker.io/library/one:1",
            "Loaded image: example.com/two:2"
        ]
    );
    assert_image(&isola, "one:1", &a);
    assert_image(&isola, "example.com/two:2", &b);
}
