//! Namespaces from `linux.namespaces`, as the container sees them.

mod common;

use std::process::{Child, Command};

use common::{host_ns, ns_of, proc_status, Ctx, USERNS_BASE};
use serde_json::json;

const NEW_NAMESPACES: [(&str, &str); 6] = [
    ("mount", "mnt"),
    ("pid", "pid"),
    ("network", "net"),
    ("uts", "uts"),
    ("ipc", "ipc"),
    ("cgroup", "cgroup"),
];

#[test]
fn each_namespace_is_new() {
    let Some(ctx) = Ctx::new("each_namespace_is_new") else {
        return;
    };
    let r = ctx.report();
    for (_, link) in NEW_NAMESPACES {
        assert_ne!(
            r["namespaces"][link],
            host_ns(link),
            "{link} namespace is the host's"
        );
    }
    assert_eq!(
        r["namespaces"]["user"],
        host_ns("user"),
        "no user namespace was asked for"
    );
    assert_eq!(r["hostname"], "isola");
}

#[test]
fn namespaces_not_listed_are_shared_with_the_host() {
    let Some(mut ctx) = Ctx::new("namespaces_not_listed_are_shared") else {
        return;
    };
    for kind in ["network", "uts", "ipc", "cgroup"] {
        ctx.drop_namespace(kind);
    }
    ctx.config.as_object_mut().unwrap().remove("hostname");
    let r = ctx.report();
    for link in ["net", "uts", "ipc", "cgroup"] {
        assert_eq!(r["namespaces"][link], host_ns(link), "{link}");
    }
    for link in ["mnt", "pid"] {
        assert_ne!(r["namespaces"][link], host_ns(link), "{link}");
    }
}

#[test]
fn pid_namespace_makes_the_process_pid_1() {
    let Some(ctx) = Ctx::new("pid_namespace_pid_1") else {
        return;
    };
    let r = ctx.report();
    assert_eq!(r["pid"], 1);
    assert_eq!(r["ppid"], 0);
}

#[test]
fn network_namespace_has_only_loopback_and_it_is_up() {
    let Some(mut ctx) = Ctx::new("netns_only_lo_up") else {
        return;
    };
    ctx.sh("cat /proc/net/dev; echo flags=$(cat /sys/class/net/lo/flags); echo op=$(cat /sys/class/net/lo/operstate)");
    let out = ctx.run().ok().stdout;
    let ifaces: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim()))
        .filter(|n| !n.contains('|') && !n.starts_with("flags") && !n.starts_with("op"))
        .collect();
    assert_eq!(ifaces, ["lo"], "{out}");
    let flags = out
        .lines()
        .find_map(|l| l.strip_prefix("flags=0x"))
        .unwrap_or_else(|| panic!("no flags in {out}"));
    let flags = u32::from_str_radix(flags.trim(), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is not IFF_UP: {out}");
}

/// Kills and reaps a helper process when the test ends.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Deletes a named network namespace (`ip netns add`) when the test ends.
struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn joins_existing_namespaces_by_path() {
    let Some(mut ctx) = Ctx::new("join_ns_by_path") else {
        return;
    };
    let name = format!("isola-t-{}", std::process::id());
    let added = Command::new("ip").args(["netns", "add", &name]).status();
    if !added.is_ok_and(|s| s.success()) {
        common::skip("join_ns_by_path", "needs `ip netns add` (iproute2)");
        return;
    }
    let _netns = NetnsGuard(name.clone());
    let holder = Command::new("unshare")
        .args(["--uts", "--ipc", "sleep", "120"])
        .spawn()
        .expect("unshare (util-linux)");
    let holder = Reap(holder);
    let pid = holder.0.id().to_string();
    assert!(common::eventually(10, || ns_of(&pid, "uts") != host_ns("uts")));
    let netns_path = format!("/run/netns/{name}");
    ctx.namespace("network", Some(&netns_path))
        .namespace("uts", Some(&format!("/proc/{pid}/ns/uts")))
        .namespace("ipc", Some(&format!("/proc/{pid}/ns/ipc")));
    ctx.config.as_object_mut().unwrap().remove("hostname");
    let r = ctx.report();
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&netns_path).unwrap());
    assert_eq!(r["namespaces"]["net"], format!("net:[{inode}]"));
    assert_eq!(r["namespaces"]["uts"], ns_of(&pid, "uts"));
    assert_eq!(r["namespaces"]["ipc"], ns_of(&pid, "ipc"));
    assert_ne!(r["namespaces"]["net"], host_ns("net"));
}

#[test]
fn user_namespace_maps_root_to_an_unprivileged_host_uid() {
    let Some(mut ctx) = Ctx::new("userns_mapping") else {
        return;
    };
    let chown = Command::new("chown")
        .args(["-R", "-h", &format!("{USERNS_BASE}:{USERNS_BASE}")])
        .arg(&ctx.rootfs)
        .status()
        .unwrap();
    assert!(chown.success());
    ctx.namespace("user", None);
    let map = json!([{ "containerID": 0, "hostID": USERNS_BASE, "size": 65536 }]);
    ctx.linux().insert("uidMappings".into(), map.clone());
    ctx.linux().insert("gidMappings".into(), map);
    ctx.sh("/probe report; exec /probe sleep 120");
    let create = ctx.create(&[]).ok();
    ctx.oci(&["start", &ctx.id]).ok();
    let pid = ctx.pid();
    let text = common::wait_for_text(&create.stdout_path, "\n", 30);
    let r: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(r["uid"], 0);
    assert_eq!(r["gid"], 0);
    assert_ne!(r["namespaces"]["user"], host_ns("user"));
    let uids = proc_status(pid, "Uid").unwrap();
    let gids = proc_status(pid, "Gid").unwrap();
    assert!(
        uids.split_whitespace().all(|u| u == "100000"),
        "host sees Uid {uids}"
    );
    assert!(
        gids.split_whitespace().all(|g| g == "100000"),
        "host sees Gid {gids}"
    );
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/uid_map"))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
}

#[test]
fn hostname_without_uts_namespace_is_refused() {
    let Some(mut ctx) = Ctx::new("hostname_without_uts") else {
        return;
    };
    ctx.drop_namespace("uts");
    let out = ctx.create(&[]);
    let line = out.one_line_error();
    assert!(line.contains("hostname"), "{line}");
    assert!(!ctx.root.join(&ctx.id).exists());
}
