//! Containers of real images: the Debian bookworm rootfs from `scripts/test-assets.sh` runs
//! bash and apt as root and as users of its own /etc/passwd, and a two-layer image with
//! whiteouts and an opaque directory shows the upper layer's view, with users and groups of its
//! own. They need root; each uses its own roots.

mod common;

use std::path::Path;

use common::archive::*;
use common::fixtures::Format;
use common::{assert_error, describe, Engine, Isola};

/// An isola with private roots, or `None` (the test reports why) without root.
fn isola() -> Option<Engine> {
    common::require_root().then(Engine::new)
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `isola run --rm ARGS…`, which must exit 0; its stdout.
fn run_ok(isola: &Isola, args: &[&str]) -> String {
    let mut all = vec!["run", "--rm"];
    all.extend_from_slice(args);
    let out = isola.run_timed(&all);
    assert_eq!(
        out.status.code(),
        Some(0),
        "isola {all:?}:\n{}",
        describe(&out)
    );
    stdout(&out)
}

/// Imports the Debian test asset as `debian:12`; `None` when the asset is missing.
fn with_debian() -> Option<Engine> {
    let isola = isola()?;
    let tar = common::debian_tar()?;
    isola.ok_timed(&[
        "import".as_ref(),
        "-q".as_ref(),
        tar.as_os_str(),
        "debian:12".as_ref(),
    ]);
    Some(isola)
}

/// The line of `name` in the image's /etc/passwd, split into its fields.
fn passwd_entry(passwd: &str, name: &str) -> Option<Vec<String>> {
    passwd
        .lines()
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .find(|f| f.len() == 7 && f[0] == name)
}

/// One import of the Debian image (the slow part) for all Debian checks.
#[test]
fn debian_image() {
    let Some(isola) = with_debian() else { return };
    runs_bash_and_apt_as_root(&isola);
    runs_as_image_users(&isola);
    workdir_and_environment(&isola);
    assert_eq!(isola.ok_timed(&["ps", "-aq"]), "", "--rm removed them all");
    isola.assert_clean();
}

fn runs_bash_and_apt_as_root(isola: &Isola) {
    let out = run_ok(
        isola,
        &["debian:12", "bash", "-c", "cat /etc/os-release; id; ls /"],
    );
    assert!(out.contains("Debian GNU/Linux 12"), "{out}");
    assert!(out.contains("VERSION_CODENAME=bookworm"), "{out}");
    assert!(
        out.lines()
            .any(|l| l == "uid=0(root) gid=0(root) groups=0(root)"),
        "{out}"
    );
    let entries: Vec<&str> = out.lines().collect();
    for dir in ["bin", "etc", "usr", "var", "tmp", "proc", "dev"] {
        assert!(entries.contains(&dir), "ls / shows {dir}: {out}");
    }
    // The container's /proc and /dev are its own: PID 1 is bash, /dev/null works.
    let out = run_ok(
        isola,
        &[
            "debian:12",
            "bash",
            "-c",
            "echo pid=$$; echo x > /dev/null && echo null-ok; read c < /proc/1/comm; echo $c",
        ],
    );
    assert_eq!(out, "pid=1\nnull-ok\nbash\n");

    let out = run_ok(isola, &["debian:12", "apt-get", "--version"]);
    assert!(out.starts_with("apt 2."), "{out}");
    // apt can read its own state, as root.
    let out = run_ok(
        isola,
        &["debian:12", "bash", "-c", "apt-cache policy bash | head -1"],
    );
    assert_eq!(out, "bash:\n");
    assert_eq!(isola.ok_timed(&["ps", "-aq"]), "", "--rm removed them");
    isola.assert_clean();
}

fn runs_as_image_users(isola: &Isola) {
    let passwd = run_ok(isola, &["debian:12", "cat", "/etc/passwd"]);
    let nobody = passwd_entry(&passwd, "nobody").expect("nobody in /etc/passwd");
    assert_eq!(nobody[2], "65534");

    let out = run_ok(
        isola,
        &[
            "-u",
            "nobody",
            "debian:12",
            "bash",
            "-c",
            "id; apt-get --version | head -1; echo home=$HOME; touch /root/x 2>&1 || echo denied",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0], "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)",
        "{out}"
    );
    assert!(lines[1].starts_with("apt 2."), "{out}");
    assert_eq!(
        lines[2],
        format!("home={}", nobody[5]),
        "HOME from /etc/passwd"
    );
    assert_eq!(lines.last(), Some(&"denied"), "nobody is not root: {out}");

    // A numeric user that /etc/passwd names gets the same identity.
    let out = run_ok(isola, &["-u", "65534", "debian:12", "id"]);
    assert_eq!(
        out,
        "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n"
    );

    // _apt (the sandbox user of apt) when the image defines it.
    match passwd_entry(&passwd, "_apt") {
        Some(apt) => {
            let out = run_ok(
                isola,
                &[
                    "-u",
                    "_apt",
                    "debian:12",
                    "bash",
                    "-c",
                    "id -u; id -g; id -un; apt-get --version | head -1",
                ],
            );
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(
                lines[..3],
                [apt[2].as_str(), apt[3].as_str(), "_apt"],
                "{out}"
            );
            assert!(lines[3].starts_with("apt 2."), "{out}");
        }
        None => eprintln!("note: the Debian image has no _apt user; -u _apt not checked"),
    }

    // USER:GROUP by name.
    let out = run_ok(isola, &["-u", "nobody:mail", "debian:12", "id", "-g"]);
    assert_eq!(out, "8\n");
    // A user the image does not have is an error naming it, and leaves nothing.
    let out = isola.run_timed(&["run", "--rm", "-u", "nosuchuser", "debian:12", "id"]);
    assert_error(&out, 125, &["nosuchuser"]);
    assert_eq!(isola.ok_timed(&["ps", "-aq"]), "");
    isola.assert_clean();
}

fn workdir_and_environment(isola: &Isola) {
    let env_file = isola.scratch().join("env");
    std::fs::write(&env_file, "# a comment\nFROM_FILE=file value\n\n").unwrap();
    let env_file = env_file.to_str().unwrap().to_string();
    let mut cmd = isola.command(&[
        "run",
        "--rm",
        "-w",
        "/tmp",
        "-e",
        "FOO=bar",
        "-e",
        "SPACED=a b  c",
        "-e",
        "PASSED",
        "--env-file",
        &env_file,
        "debian:12",
        "bash",
        "-c",
        "pwd; echo \"$FOO|$SPACED|$PASSED|$FROM_FILE\"; echo $PATH",
    ]);
    cmd.env("PASSED", "from isola's environment");
    let out = common::output_within(&mut cmd, "isola run -e …");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "/tmp");
    assert_eq!(lines[1], "bar|a b  c|from isola's environment|file value");
    assert!(lines[2].contains("/usr/bin"), "image PATH kept: {text}");

    // -w to a directory the image lacks is created (as Docker does), also for a user.
    let out = run_ok(
        isola,
        &[
            "-u",
            "nobody",
            "-w",
            "/tmp",
            "debian:12",
            "bash",
            "-c",
            "pwd; touch f && echo wrote",
        ],
    );
    assert_eq!(out, "/tmp\nwrote\n");
    let out = run_ok(isola, &["-w", "/srv/new/dir", "debian:12", "pwd"]);
    assert_eq!(out, "/srv/new/dir\n");
    isola.assert_clean();
}

/// A static busybox for images built by the tests.
const BUSYBOX: &str = "/bin/busybox";

/// The lower layer: busybox with sh, ls, id and cat, users and groups, and the files the upper
/// layer hides.
fn lower_layer(busybox: &[u8]) -> Layer {
    let mut b = LayerBuilder::new()
        .dir("bin")
        .file("bin/busybox", busybox)
        .mode(0o755);
    for tool in ["sh", "ls", "id", "cat", "echo"] {
        b = b.symlink(format!("bin/{tool}"), "busybox");
    }
    b.dir("etc")
        .file(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .file(
            "etc/group",
            "root:x:0:\naudio:x:29:alice\nvideo:x:44:bob,alice\nalice:x:1000:\n",
        )
        .dir("a")
        .file("a/file", "lower a/file\n")
        .file("a/kept", "lower a/kept\n")
        .dir("b")
        .file("b/x", "lower b/x\n")
        .dir("c")
        .file("c/deep", "lower c/deep\n")
        .dir("opq")
        .file("opq/y", "lower opq/y\n")
        .dir("tmp")
        .mode(0o1777)
        .build(Compression::Gzip)
}

/// The upper layer: whites out /a/file and the whole /c, makes /opq opaque with /opq/z, and
/// replaces /b/x.
fn upper_layer() -> Layer {
    LayerBuilder::new()
        .dir("a")
        .whiteout("a/file")
        .dir("b")
        .file("b/x", "upper b/x\n")
        .whiteout("c")
        .dir("opq")
        .opaque("opq")
        .file("opq/z", "upper opq/z\n")
        .build(Compression::Zstd)
}

fn layered_image() -> Option<Image> {
    if !Path::new(BUSYBOX).is_file() {
        common::skip("no static busybox at /bin/busybox (scripts/install-deps.sh installs it)");
        return None;
    }
    let busybox = std::fs::read(BUSYBOX).unwrap();
    let mut image = Image::new(vec![lower_layer(&busybox), upper_layer()]);
    image.user = "alice".into();
    image.working_dir = "/opq".into();
    Some(image)
}

#[test]
fn whiteouts_show_the_upper_layer() {
    let Some(isola) = isola() else { return };
    let Some(image) = layered_image() else { return };
    for (format, name) in [
        (Format::DockerModern, "layered:docker"),
        (Format::OciTar, "layered:oci"),
    ] {
        let archive = format.write(&image, name, &isola.scratch());
        isola.ok_timed(&["load".as_ref(), "-i".as_ref(), archive.as_os_str()]);
        let out = run_ok(&isola, &[name, "sh", "-c", "ls /a /opq; ls /; cat /b/x"]);
        assert_eq!(
            out, "/a:\nkept\n\n/opq:\nz\na\nb\nbin\ndev\netc\nopq\nproc\nsys\ntmp\nupper b/x\n",
            "{format:?}"
        );
        let out = run_ok(
            &isola,
            &[name, "sh", "-c", "cat /a/file /opq/y /c/deep 2>&1; echo $?"],
        );
        assert_eq!(
            out.lines().filter(|l| l.contains("No such file")).count(),
            3,
            "{out}"
        );
        // Whiteout markers never show in the container.
        let out = run_ok(&isola, &[name, "ls", "-a", "/a", "/opq"]);
        assert!(!out.contains(".wh."), "{out}");
    }
    // Changes in the container go to its own layer: the image stays as it was.
    let out = run_ok(
        &isola,
        &[
            "-u",
            "root",
            "layered:docker",
            "sh",
            "-c",
            "echo new > /a/file; rm /opq/z; ls /a /opq",
        ],
    );
    assert_eq!(out, "/a:\nfile\nkept\n\n/opq:\n");
    let out = run_ok(&isola, &["layered:docker", "ls", "/a", "/opq"]);
    assert_eq!(out, "/a:\nkept\n\n/opq:\nz\n");
    isola.assert_clean();
}

#[test]
fn image_users_and_groups() {
    let Some(isola) = isola() else { return };
    let Some(image) = layered_image() else { return };
    let archive = Format::DockerModern.write(&image, "users:1", &isola.scratch());
    isola.ok_timed(&["load".as_ref(), "-i".as_ref(), archive.as_os_str()]);
    // The image's User and WorkingDir; supplementary groups from the image's /etc/group.
    // (The kernel keeps supplementary groups sorted; busybox id prints them in that order.)
    let out = run_ok(&isola, &["users:1", "sh", "-c", "id; pwd; echo $HOME"]);
    assert_eq!(
        out,
        "uid=1000(alice) gid=1000(alice) groups=29(audio),44(video),1000(alice)\n/opq\n/home/alice\n"
    );
    let out = run_ok(&isola, &["-u", "root", "users:1", "id"]);
    assert_eq!(out, "uid=0(root) gid=0(root) groups=0(root)\n");
    let out = run_ok(
        &isola,
        &["-u", "1000:44", "users:1", "sh", "-c", "id -u; id -g"],
    );
    assert_eq!(out, "1000\n44\n");
    // A numeric user the image does not name: group 0, as Docker.
    let out = run_ok(
        &isola,
        &["-u", "4242", "users:1", "sh", "-c", "id -u; id -g"],
    );
    assert_eq!(out, "4242\n0\n");
    let out = isola.run_timed(&["run", "--rm", "-u", "alice:nogroup", "users:1", "id"]);
    assert_error(&out, 125, &["nogroup"]);
    isola.assert_clean();
}

/// The Debian image in a VM: the same bash, apt and users as in process isolation, with the
/// guest's own kernel underneath.
#[test]
fn debian_image_in_a_vm() {
    if !common::require_vm() {
        return;
    }
    let Some(isola) = with_debian() else { return };
    let out = run_ok(
        &isola,
        &[
            "--isolation=vm",
            "debian:12",
            "bash",
            "-c",
            "cat /etc/os-release; id; echo pid=$$; uname -r",
        ],
    );
    assert!(out.contains("VERSION_CODENAME=bookworm"), "{out}");
    assert!(
        out.contains("uid=0(root) gid=0(root) groups=0(root)"),
        "{out}"
    );
    assert!(out.contains("pid=1\n"), "{out}");
    assert!(
        out.trim_end().ends_with("-isola"),
        "the guest's kernel runs it: {out}"
    );
    let id = isola
        .ok_timed(&[
            "run",
            "-d",
            "--isolation=vm",
            "--name",
            "deb",
            "debian:12",
            "sleep",
            "1000",
        ])
        .trim()
        .to_owned();
    let exec = |args: &[&str]| {
        let mut all = vec!["exec"];
        all.extend_from_slice(args);
        isola.ok_timed(&all)
    };
    assert!(exec(&["deb", "apt-get", "--version"]).starts_with("apt 2."));
    assert_eq!(
        exec(&["deb", "bash", "-c", "apt-cache policy bash | head -1"]),
        "bash:\n"
    );
    assert_eq!(
        exec(&["-u", "_apt", "deb", "id", "-un"]),
        "_apt\n",
        "users of the image's own /etc/passwd"
    );
    assert_eq!(
        exec(&[
            "-w",
            "/usr/share",
            "deb",
            "bash",
            "-c",
            "pwd; dpkg -s bash | grep -c '^Status: install ok installed'"
        ]),
        "/usr/share\n1\n"
    );
    isola.ok_timed(&["rm", "-f", "deb"]);
    isola.assert_container_gone(&id);
}
