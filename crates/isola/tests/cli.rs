//! Command-line conventions shared by every command.

mod common;

use common::Isola;

#[test]
fn usage_errors_exit_125() {
    let isola = Isola::new();
    for args in [
        &["bogus"][..],
        &["images", "--no-such-flag"],
        &["load"],
        &["tag", "only-one"],
    ] {
        let out = isola.run(args);
        assert_eq!(
            out.status.code(),
            Some(125),
            "isola {args:?}:\n{}",
            common::describe(&out)
        );
    }
}

#[test]
fn help_and_version_succeed() {
    let isola = Isola::new();
    let help = isola.ok(&["--help"]);
    for cmd in ["load", "import", "save", "images", "rmi", "tag", "image"] {
        assert!(help.contains(cmd), "--help lists {cmd}:\n{help}");
    }
    isola.ok(&["image", "--help"]);
}

#[test]
fn root_from_environment() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    let out = std::process::Command::new(common::BIN)
        .env("ISOLA_ROOT", &isola.root)
        .env("ISOLA_RUN_ROOT", &isola.run_root)
        .args(["images", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::describe(&out));
    assert!(
        isola.root.join("blobs/sha256").is_dir(),
        "ISOLA_ROOT is used"
    );
}

#[test]
fn missing_image_errors() {
    if !common::require_root() {
        return;
    }
    let isola = Isola::new();
    for args in [
        &["image", "inspect", "nothing:1"][..],
        &["rmi", "nothing:1"],
        &["tag", "nothing:1", "x:1"],
        &["save", "-o", "/dev/null", "nothing:1"],
    ] {
        let err = isola.fail(args);
        assert!(err.contains("nothing:1"), "isola {args:?}: {err}");
    }
    isola.assert_clean();
}
