//! Whole-spec tests: an image config and `isola run` flags in, a config.json the runtime accepts
//! out.

use std::fs;
use std::path::Path;

use isola_runtime::oci::{LinuxNamespaceType, Spec};
use oci_spec::image::ImageConfiguration;

use super::*;
use crate::config::{Bind, Tmpfs, Ulimit};

const ID: &str = "4f0c1b2a3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";

struct Fixture {
    dir: tempfile::TempDir,
    paths: BundlePaths,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nweb:x:33:33:www:/var/www:/usr/sbin/nologin\n",
    )
    .unwrap();
    fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\nweb:x:33:\nlogs:x:4:web\nshadow:x:42:web,root\n",
    )
    .unwrap();
    let (hosts, hostname, resolv_conf) =
        write_etc_files(dir.path(), "box", NetworkMode::None).unwrap();
    let paths = BundlePaths {
        rootfs,
        hosts,
        hostname,
        resolv_conf,
        init: None,
    };
    Fixture { dir, paths }
}

fn image(config: &str) -> ImageConfiguration {
    serde_json::from_str(&format!(
        r#"{{"architecture":"amd64","os":"linux","config":{config},
            "rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    ))
    .unwrap()
}

fn busybox() -> ImageConfiguration {
    image(
        r#"{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]}"#,
    )
}

fn facts() -> HostFacts {
    HostFacts {
        bounding: caps::caps_of_mask(0x1ff_feff_ffff),
        swap_accounting: true,
        cpus: 2,
    }
}

fn run(
    f: &Fixture,
    image: &ImageConfiguration,
    config: &ContainerConfig,
    host: &HostConfig,
) -> Result<Spec, SpecError> {
    let env = |k: &str| (k == "FROM_CLI").then(|| "yes".to_owned());
    build_with(image, config, host, ID, &f.paths, &facts(), &env)
}

/// The spec passes the runtime's checks, both in memory and written as a bundle's config.json.
fn assert_runtime_accepts(f: &Fixture, spec: &Spec) {
    let path = f.dir.path().join("config.json");
    let warnings = isola_runtime::spec::validate(spec, &path).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    fs::write(&path, serde_json::to_vec_pretty(spec).unwrap()).unwrap();
    let bundle = isola_runtime::spec::load_bundle(f.dir.path()).unwrap();
    assert_eq!(&bundle.spec, spec);
    assert_eq!(bundle.rootfs, f.paths.rootfs);
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_plain_run_is_what_docker_gives() {
    let f = fixture();
    let spec = run(
        &f,
        &busybox(),
        &ContainerConfig::default(),
        &HostConfig::default(),
    )
    .unwrap();
    assert_runtime_accepts(&f, &spec);

    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.args().as_deref().unwrap(), ["sh"]);
    assert_eq!(
        p.env().as_deref().unwrap(),
        [
            format!("PATH={DEFAULT_PATH}"),
            "HOSTNAME=4f0c1b2a3d4e".into(),
            "HOME=/root".into()
        ]
    );
    assert_eq!(p.cwd(), Path::new("/"));
    assert_eq!(p.terminal(), Some(false));
    assert_eq!(p.user().uid(), 0);
    assert_eq!(p.user().gid(), 0);
    assert_eq!(p.user().umask(), Some(0o022));
    assert_eq!(p.user().additional_gids().as_deref(), Some(&[0, 42][..]));
    assert_eq!(p.no_new_privileges(), Some(false));
    assert!(p.rlimits().is_none());
    let c = p.capabilities().as_ref().unwrap();
    assert_eq!(c.bounding().as_ref().unwrap().len(), DEFAULT_CAPS.len());
    assert_eq!(c.effective(), c.bounding());
    assert!(c.ambient().as_ref().unwrap().is_empty());

    assert_eq!(spec.hostname().as_deref(), Some("4f0c1b2a3d4e"));
    let root = spec.root().as_ref().unwrap();
    assert_eq!(root.path(), &f.paths.rootfs);
    assert_eq!(root.readonly(), Some(false));

    let linux = spec.linux().as_ref().unwrap();
    let mut ns: Vec<String> = linux
        .namespaces()
        .as_deref()
        .unwrap()
        .iter()
        .map(|n| {
            serde_json::to_value(n.typ())
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ns.sort();
    assert_eq!(ns, ["cgroup", "ipc", "mount", "network", "pid", "uts"]);
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new("/isola").join(ID).as_path())
    );
    assert_eq!(
        linux.masked_paths().as_deref().unwrap(),
        strings(MASKED_PATHS)
    );
    assert_eq!(
        linux.readonly_paths().as_deref().unwrap(),
        strings(READONLY_PATHS)
    );
    let json = serde_json::to_value(linux).unwrap();
    assert_eq!(
        json["resources"],
        serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]})
    );
    assert_eq!(json["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
    assert!(spec.annotations().is_none());
    assert_eq!(spec.mounts().as_ref().unwrap().len(), 10);
}

#[test]
fn every_flag_at_once() {
    let f = fixture();
    let data = f.dir.path().join("data");
    fs::create_dir(&data).unwrap();
    let init = f.dir.path().join("tini-static");
    fs::write(&init, "").unwrap();
    let mut paths = f.paths.clone();
    paths.init = Some(init);
    let img = image(
        r#"{"User":"web","Env":["PATH=/opt/bin:/bin","MODE=prod"],"Entrypoint":["/entry"],
            "Cmd":["serve"],"WorkingDir":"/var/www","StopSignal":"SIGQUIT"}"#,
    );
    let config = ContainerConfig {
        image: "web".into(),
        cmd: Some(strings(&["check", "--all"])),
        env: strings(&["MODE=dev", "FROM_CLI", "NOT_SET"]),
        working_dir: Some("/srv".into()),
        user: Some("1000:logs".into()),
        hostname: Some("web1".into()),
        tty: true,
        ..Default::default()
    };
    let host = HostConfig {
        binds: vec![Bind {
            source: data.display().to_string(),
            destination: "/data".into(),
            read_only: true,
        }],
        tmpfs: vec![Tmpfs {
            destination: "/run".into(),
            options: "size=16m".into(),
        }],
        read_only: true,
        memory: Some(256 << 20),
        nano_cpus: Some(500_000_000),
        pids_limit: Some(64),
        shm_size: Some(8 << 20),
        ulimits: vec![Ulimit {
            name: "nofile".into(),
            soft: 512,
            hard: 1024,
        }],
        cap_add: strings(&["SYS_PTRACE"]),
        cap_drop: strings(&["NET_RAW"]),
        init: true,
        network_mode: NetworkMode::Host,
        ..Default::default()
    };
    let env = |k: &str| (k == "FROM_CLI").then(|| "yes".to_owned());
    let spec = build_with(&img, &config, &host, ID, &paths, &facts(), &env).unwrap();
    assert_runtime_accepts(&f, &spec);

    let p = spec.process().as_ref().unwrap();
    assert_eq!(
        p.args().as_deref().unwrap(),
        [INIT_PATH, "--", "/entry", "check", "--all"]
    );
    assert_eq!(
        p.env().as_deref().unwrap(),
        [
            "PATH=/opt/bin:/bin",
            "HOSTNAME=web1",
            "TERM=xterm",
            "MODE=dev",
            "FROM_CLI=yes",
            "HOME=/"
        ]
    );
    assert_eq!(p.cwd(), Path::new("/srv"));
    assert_eq!(p.terminal(), Some(true));
    assert_eq!((p.user().uid(), p.user().gid()), (1000, 4));
    assert_eq!(p.user().additional_gids().as_deref(), Some(&[4][..]));
    let c = p.capabilities().as_ref().unwrap();
    let bounding = serde_json::to_value(c.bounding()).unwrap();
    assert!(bounding
        .as_array()
        .unwrap()
        .contains(&"CAP_SYS_PTRACE".into()));
    assert!(!bounding.as_array().unwrap().contains(&"CAP_NET_RAW".into()));
    // Not root: nothing effective or permitted.
    assert!(c.effective().as_ref().unwrap().is_empty());
    assert!(c.permitted().as_ref().unwrap().is_empty());
    let rl = serde_json::to_value(p.rlimits()).unwrap();
    assert_eq!(
        rl,
        serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}])
    );

    assert_eq!(spec.hostname().as_deref(), Some("web1"));
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    let linux = spec.linux().as_ref().unwrap();
    assert!(!linux
        .namespaces()
        .as_deref()
        .unwrap()
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Network));
    let res = serde_json::to_value(linux.resources()).unwrap();
    assert_eq!(res["memory"]["limit"], 256 << 20);
    assert_eq!(res["memory"]["swap"], 512 << 20);
    assert_eq!(res["cpu"]["quota"], 50_000);
    assert_eq!(res["pids"]["limit"], 64);

    let dests: Vec<String> = spec
        .mounts()
        .as_deref()
        .unwrap()
        .iter()
        .map(|m| m.destination().display().to_string())
        .collect();
    assert_eq!(
        dests[7..],
        [
            "/etc/hosts",
            "/etc/hostname",
            "/etc/resolv.conf",
            "/data",
            "/run",
            INIT_PATH
        ]
    );
    let shm = &spec.mounts().as_deref().unwrap()[6];
    assert!(shm
        .options()
        .as_deref()
        .unwrap()
        .contains(&"size=8388608".to_owned()));
}

#[test]
fn image_user_and_errors_name_their_source() {
    let f = fixture();
    let host = HostConfig::default();
    let img = image(r#"{"User":"web","Cmd":["sh"]}"#);
    let spec = run(&f, &img, &ContainerConfig::default(), &host).unwrap();
    let u = spec.process().as_ref().unwrap().user().clone();
    assert_eq!((u.uid(), u.gid()), (33, 33));
    assert_eq!(u.additional_gids().as_deref(), Some(&[33, 4, 42][..]));
    assert!(spec
        .process()
        .as_ref()
        .unwrap()
        .env()
        .as_deref()
        .unwrap()
        .contains(&"HOME=/var/www".to_owned()));

    let ghost = image(r#"{"User":"ghost","Cmd":["sh"]}"#);
    assert_eq!(
        run(&f, &ghost, &ContainerConfig::default(), &host)
            .unwrap_err()
            .to_string(),
        r#"image User "ghost": no such user in the image's /etc/passwd"#
    );
    let config = ContainerConfig {
        user: Some("nosuchuser".into()),
        ..Default::default()
    };
    assert_eq!(
        run(&f, &img, &config, &host).unwrap_err().to_string(),
        r#"-u "nosuchuser": no such user in the image's /etc/passwd"#
    );
    // `-u` wins over the image's User.
    let config = ContainerConfig {
        user: Some("0".into()),
        ..Default::default()
    };
    let spec = run(&f, &ghost, &config, &host).unwrap();
    assert_eq!(spec.process().as_ref().unwrap().user().uid(), 0);
}

#[test]
fn flag_errors() {
    let f = fixture();
    let img = busybox();
    let c = ContainerConfig::default();
    let err = |config: &ContainerConfig, host: &HostConfig| {
        run(&f, &img, config, host).unwrap_err().to_string()
    };
    let host = HostConfig {
        cap_add: strings(&["CAP_FOO"]),
        ..Default::default()
    };
    assert_eq!(err(&c, &host), r#"--cap-add "CAP_FOO": unknown capability"#);
    let host = HostConfig {
        ulimits: vec![Ulimit {
            name: "nofile".into(),
            soft: 10,
            hard: 5,
        }],
        ..Default::default()
    };
    assert_eq!(
        err(&c, &host),
        r#"--ulimit "nofile=10:5": soft limit above hard"#
    );
    let host = HostConfig {
        binds: vec![Bind {
            source: "relative".into(),
            destination: "/x".into(),
            read_only: false,
        }],
        ..Default::default()
    };
    assert_eq!(
        err(&c, &host),
        r#"-v "relative:/x": the host path must be absolute"#
    );
    let host = HostConfig {
        init: true,
        ..Default::default()
    };
    assert_eq!(
        err(&c, &host),
        "--init: no init binary is available on this host"
    );
    let bad_host = ContainerConfig {
        hostname: Some("bad name".into()),
        ..Default::default()
    };
    assert!(err(&bad_host, &HostConfig::default()).starts_with(r#"--hostname "bad name""#));
    let empty = image("{}");
    assert_eq!(
        run(&f, &empty, &c, &HostConfig::default())
            .unwrap_err()
            .to_string(),
        "no command: the image has no Cmd or Entrypoint and none was given"
    );
    let r = build_with(
        &img,
        &c,
        &HostConfig::default(),
        "../x",
        &f.paths,
        &facts(),
        &|_| None,
    );
    assert!(r
        .unwrap_err()
        .to_string()
        .starts_with(r#"container ID "../x""#));
}

#[test]
fn cap_add_all_keeps_to_the_host_and_lifts_cap_gated_seccomp_rules() {
    let f = fixture();
    let host = HostConfig {
        cap_add: strings(&["ALL"]),
        ..Default::default()
    };
    let spec = run(&f, &busybox(), &ContainerConfig::default(), &host).unwrap();
    assert_runtime_accepts(&f, &spec);
    let caps = serde_json::to_value(
        spec.process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding(),
    )
    .unwrap();
    let caps = caps.as_array().unwrap();
    assert_eq!(caps.len(), 40);
    assert!(!caps.contains(&"CAP_SYS_RESOURCE".into()));
    let seccomp = spec.linux().as_ref().unwrap().seccomp().as_ref().unwrap();
    let names = seccomp.syscalls().as_deref().unwrap()[0].names();
    assert!(!names.contains(&"mount".to_owned()));
    assert!(names.contains(&"keyctl".to_owned()));
    isola_runtime::process::compile_seccomp(seccomp).unwrap();

    // Dropping everything leaves nothing, and the spec is still valid.
    let host = HostConfig {
        cap_drop: strings(&["all"]),
        ..Default::default()
    };
    let spec = run(&f, &busybox(), &ContainerConfig::default(), &host).unwrap();
    assert_runtime_accepts(&f, &spec);
    let c = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    assert!(c.bounding().as_ref().unwrap().is_empty());
}

#[test]
fn the_probing_entry_point_works_on_this_host() {
    let f = fixture();
    let spec = build(
        &busybox(),
        &ContainerConfig::default(),
        &HostConfig::default(),
        ID,
        &f.paths,
    )
    .unwrap();
    assert_runtime_accepts(&f, &spec);
    assert_eq!(
        stop_signal(&busybox(), &ContainerConfig::default()).unwrap(),
        15
    );
    assert_eq!(hostname(&ContainerConfig::default(), ID), "4f0c1b2a3d4e");
}
