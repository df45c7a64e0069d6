//! A real image: Debian bookworm (from scripts/test-assets.sh) runs bash and apt-get, as root and as
//! an unprivileged user.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Ctx;
use serde_json::json;

/// The Debian tarball: `$ISOLA_TEST_DEBIAN_TAR`, or the one recorded in
/// /var/cache/isola-test/assets.env.
fn debian_tar() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ISOLA_TEST_DEBIAN_TAR") {
        return Some(PathBuf::from(p));
    }
    let env = std::fs::read_to_string("/var/cache/isola-test/assets.env").ok()?;
    env.lines()
        .find_map(|l| l.strip_prefix("ISOLA_TEST_DEBIAN_TAR="))
        .map(|p| PathBuf::from(p.trim().trim_matches('"')))
        .filter(|p| p.exists())
}

#[test]
fn debian_bash_and_apt_as_root_and_as_nobody() {
    let Some(mut ctx) = Ctx::new("debian") else {
        return;
    };
    let Some(tar) = debian_tar() else {
        return common::skip(
            "debian",
            "needs the Debian tarball (scripts/test-assets.sh)",
        );
    };
    std::fs::remove_dir_all(&ctx.rootfs).unwrap();
    std::fs::create_dir(&ctx.rootfs).unwrap();
    let st = Command::new("tar")
        .args(["-xzf"])
        .arg(&tar)
        .args(["--numeric-owner", "-p", "-C"])
        .arg(&ctx.rootfs)
        .status()
        .unwrap();
    assert!(st.success(), "extract {}", tar.display());

    for (uid, gid) in [(0, 0), (65534, 65534)] {
        ctx.config["process"]["user"] = json!({"uid": uid, "gid": gid});
        ctx.args(&["bash", "-c", "cat /etc/os-release; id; apt-get --version"]);
        let out = ctx.run();
        assert_eq!(out.code, 0, "uid {uid}: {out:#?}");
        assert!(
            out.stdout.contains("Debian GNU/Linux 12"),
            "uid {uid}: {}",
            out.stdout
        );
        assert!(out.stdout.contains("apt "), "uid {uid}: {}", out.stdout);
        assert!(
            out.stdout.contains(&format!("uid={uid}(")),
            "uid {uid}: {}",
            out.stdout
        );
    }
}
