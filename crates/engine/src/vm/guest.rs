//! From the host's bundle to what the guest needs: the directories to share into the VM (9p), where
//! the agent mounts them, and the spec rewritten to those guest paths; the VM's size.
//!
//! Layout in the guest (all below `/run/isola/`, as the protocol requires):
//! ```text
//! /run/isola/rootfs          the container's merged root filesystem (9p tag `rootfs`)
//! /run/isola/share/shared    hosts, hostname, resolv.conf and the --init binary (tag `shared`,
//!                            the host directory `<root>/containers/<id>/shared`)
//! /run/isola/share/vN        the Nth volume's directory (`-v`), or the directory of a file volume
//! ```

use std::path::{Path, PathBuf};

use isola_proto::GuestMount;
use isola_vm::qemu::{Share, MAX_SHARES};
use serde_json::Value;

use crate::error::{Error, Result};

/// Version of the VMs' fixed device layout ([`fixed_layout`]): part of every VM template's key,
/// so a change of layout makes new templates.
pub const LAYOUT_VERSION: u32 = 1;

/// The 9p tags of a VM started from a template, in device order: the root filesystem, the
/// engine's shared directory, then one per volume directory ([`MAX_SHARES`] in all).
pub const LAYOUT_TAGS: [&str; MAX_SHARES] = ["rootfs", "shared", "v0", "v1", "v2", "v3", "v4"];

/// Guest memory added to the container's `--memory` limit, in MiB: the guest kernel, the agent,
/// the runtime and page cache for the 9p root.
pub const GUEST_OVERHEAD_MIB: u64 = 96;
/// Guest memory without `--memory`, in MiB (touched lazily: an idle guest uses far less).
pub const DEFAULT_MEMORY_MIB: u64 = 512;
/// Where the root filesystem is mounted in the guest.
pub const GUEST_ROOTFS: &str = "/run/isola/rootfs";
const GUEST_SHARES: &str = "/run/isola/share";

/// What [`prepare`] produced.
#[derive(Debug)]
pub struct Prepared {
    /// Host directories QEMU shares.
    pub shares: Vec<Share>,
    /// Where the agent mounts them.
    pub mounts: Vec<GuestMount>,
    /// The spec with guest paths.
    pub spec: Value,
}

fn nine_p(tag: &str, target: String, readonly: bool, cache: &str) -> GuestMount {
    let mut options = vec![
        "trans=virtio".to_owned(),
        "version=9p2000.L".into(),
        "msize=512000".into(),
        format!("cache={cache}"),
    ];
    if readonly {
        options.push("ro".into());
    }
    GuestMount {
        source: tag.to_owned(),
        target,
        fstype: "9p".into(),
        options,
    }
}

fn is_bind(m: &Value) -> bool {
    m.get("type").and_then(Value::as_str) == Some("bind")
        || m.get("options")
            .and_then(Value::as_array)
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
}

fn has_option(m: &Value, opt: &str) -> bool {
    m.get("options")
        .and_then(Value::as_array)
        .is_some_and(|o| o.iter().any(|x| x == opt))
}

/// Rewrites the bundle's spec for the guest. `bundle` is `<root>/containers/<id>` (the spec's host
/// paths point into it), `rootfs` the merged root filesystem, `init` the host's `--init` binary.
/// Engine-written files (hosts, hostname, resolv.conf, the init binary) are copied into a fresh
/// `<bundle>/shared`; directory volumes are shared as they are, file volumes one by one (each
/// bind-mounted into a directory of its own under `<bundle>/vols`; [`release`] undoes it).
///
/// # Errors
/// A bind source that is not an absolute existing path, or more volumes than a VM can share.
pub fn prepare(bundle: &Path, rootfs: &Path, mut spec: Value) -> Result<Prepared> {
    // Both directories were writable by the last run's guest: start them afresh (nothing the
    // guest left there, a symlink or a device node, is ever opened).
    release(bundle);
    let shared = fresh_dir(&bundle.join("shared"))?;
    let vols = bundle.join("vols");
    let mut file_volumes = 0usize;
    let root_ro = spec
        .pointer("/root/readonly")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(root) = spec.get_mut("root").and_then(Value::as_object_mut) {
        root.insert("path".into(), Value::from(GUEST_ROOTFS));
    } else {
        return Err(Error::Vm("the bundle's spec has no root".into()));
    }
    let mut shares = vec![
        Share {
            tag: "rootfs".into(),
            path: rootfs.to_path_buf(),
            readonly: root_ro,
        },
        Share {
            tag: "shared".into(),
            path: shared.clone(),
            readonly: false,
        },
    ];
    let mut mounts = vec![
        nine_p("rootfs", GUEST_ROOTFS.into(), root_ro, "loose"),
        nine_p("shared", format!("{GUEST_SHARES}/shared"), false, "none"),
    ];
    let list = spec
        .get_mut("mounts")
        .and_then(Value::as_array_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let mut out = Vec::with_capacity(list.len());
    for mut m in list {
        if !is_bind(&m) {
            out.push(m);
            continue;
        }
        let source = m
            .get("source")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let src = PathBuf::from(&source);
        if !src.is_absolute() {
            return Err(Error::Vm(format!(
                "bind mount source {source:?} is not an absolute host path"
            )));
        }
        let meta = std::fs::metadata(&src).map_err(|e| Error::io("share into the VM", &src, e))?;
        if !meta.is_file() && !meta.is_dir() {
            return Err(Error::Vm(format!(
                "-v {source}: only directories and regular files can be shared into a VM"
            )));
        }
        let guest = if src.parent() == Some(bundle) && meta.is_file() {
            // An engine-written file of this container: copy it into the shared directory.
            copy_into(&src, &shared)?
        } else if meta.is_file() && !is_volume_file(&m) {
            // The --init binary (a read-only bind of a host file the engine chose).
            copy_into(&src, &shared)?
        } else {
            let readonly = has_option(&m, "ro");
            let (dir, file) = if meta.is_dir() {
                (src.clone(), None)
            } else {
                // A file volume: only that file is shared, bind-mounted on the host into a
                // directory of its own under `<bundle>/vols` (sharing its parent directory would
                // expose its siblings).
                if file_volumes == 0 {
                    fresh_dir(&vols)?;
                }
                let name = src
                    .file_name()
                    .ok_or_else(|| Error::Vm(format!("cannot share {source:?} into the VM")))?;
                let dir = fresh_dir(&vols.join(format!("f{file_volumes}")))?;
                file_volumes += 1;
                bind_file(&src, &dir.join(name), readonly)?;
                (dir, Some(PathBuf::from(name)))
            };
            let tag = match shares
                .iter()
                .find(|s| s.path == dir && s.readonly == readonly && s.tag.starts_with('v'))
            {
                Some(s) => s.tag.clone(),
                None => {
                    if shares.len() >= MAX_SHARES {
                        return Err(Error::Vm(format!(
                            "-v {source}: a VM can share at most {} volume directories",
                            MAX_SHARES - 2
                        )));
                    }
                    let tag = format!("v{}", shares.len() - 2);
                    shares.push(Share {
                        tag: tag.clone(),
                        path: dir.clone(),
                        readonly,
                    });
                    mounts.push(nine_p(
                        &tag,
                        format!("{GUEST_SHARES}/{tag}"),
                        readonly,
                        "mmap",
                    ));
                    tag
                }
            };
            match file {
                Some(f) => format!("{GUEST_SHARES}/{tag}/{}", f.display()),
                None => format!("{GUEST_SHARES}/{tag}"),
            }
        };
        if let Some(o) = m.as_object_mut() {
            o.insert("source".into(), Value::from(guest));
        }
        out.push(m);
    }
    if let Some(o) = spec.as_object_mut() {
        o.insert("mounts".into(), Value::Array(out));
    }
    Ok(Prepared {
        shares,
        mounts,
        spec,
    })
}

/// A file volume is a read-write bind, or any bind that is not the engine's read-only init.
fn is_volume_file(m: &Value) -> bool {
    m.get("destination").and_then(Value::as_str) != Some(crate::spec::INIT_PATH)
}

/// Copies `src` into `dir` (same name, same mode), creating the copy (never following or reusing
/// what is there); returns its guest path.
fn copy_into(src: &Path, dir: &Path) -> Result<String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let name = src
        .file_name()
        .ok_or_else(|| Error::Vm(format!("cannot share {} into the VM", src.display())))?;
    let dst = dir.join(name);
    let mut from = std::fs::File::open(src).map_err(|e| Error::io("open", src, e))?;
    let mode = from
        .metadata()
        .map_err(|e| Error::io("stat", src, e))?
        .permissions()
        .mode()
        & 0o755;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&dst)
        .map_err(|e| Error::io("create", &dst, e))?;
    std::io::copy(&mut from, &mut to)
        .map_err(|e| Error::io("copy into the VM's share", &dst, e))?;
    Ok(format!(
        "{GUEST_SHARES}/shared/{}",
        Path::new(name).display()
    ))
}

/// Removes `dir` (not following symlinks) and makes it again, empty, mode 0700.
fn fresh_dir(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", dir, e)),
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("create directory", dir, e))?;
    Ok(dir.to_path_buf())
}

/// Bind-mounts the host file `src` onto a new empty file `at` (read-only when asked).
fn bind_file(src: &Path, at: &Path, readonly: bool) -> Result<()> {
    use nix::mount::{mount, MsFlags};
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(at)
        .map_err(|e| Error::io("create", at, e))?;
    let err = |e: nix::Error| Error::io("bind-mount a file volume at", at, e.into());
    mount(Some(src), at, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(err)?;
    if readonly {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        if let Err(e) = mount(None::<&str>, at, None::<&str>, flags, None::<&str>) {
            let _ = nix::mount::umount2(at, nix::mount::MntFlags::MNT_DETACH);
            return Err(err(e));
        }
    }
    Ok(())
}

/// Undoes what [`prepare`] set up on the host: unmounts the file volumes' bind mounts and
/// removes `<bundle>/vols` and `<bundle>/shared`. Best effort; safe to call again.
pub fn release(bundle: &Path) {
    let vols = bundle.join("vols");
    if let Ok(dirs) = std::fs::read_dir(&vols) {
        for d in dirs.flatten() {
            if let Ok(files) = std::fs::read_dir(d.path()) {
                for f in files.flatten() {
                    let _ = nix::mount::umount2(&f.path(), nix::mount::MntFlags::MNT_DETACH);
                }
            }
        }
    }
    for dir in [vols, bundle.join("shared")] {
        // Only once nothing is mounted there: remove_dir_all would fail on a busy mount point
        // (and never descends into a mounted file).
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The container's shares padded to the fixed device layout [`LAYOUT_TAGS`]: every VM started
/// from a template has the same devices as the template, so tags the container does not use
/// share `empty` (an empty directory) read-only; the agent never mounts them.
///
/// # Errors
/// [`Error::Vm`] when `shares` are not a prefix of the layout (a tag out of place).
pub fn fixed_layout(shares: &[Share], empty: &Path) -> Result<Vec<Share>> {
    for (s, tag) in shares.iter().zip(LAYOUT_TAGS) {
        if s.tag != tag {
            return Err(Error::Vm(format!(
                "9p tag {:?} where the fixed device layout has {tag:?}",
                s.tag
            )));
        }
    }
    if shares.len() > LAYOUT_TAGS.len() {
        return Err(Error::Vm(format!(
            "{} shares: the fixed device layout has {}",
            shares.len(),
            LAYOUT_TAGS.len()
        )));
    }
    let mut all = shares.to_vec();
    all.extend(LAYOUT_TAGS[shares.len()..].iter().map(|tag| Share {
        tag: (*tag).to_owned(),
        path: empty.to_path_buf(),
        readonly: true,
    }));
    Ok(all)
}

/// The guest's RAM in MiB: the container's memory limit plus [`GUEST_OVERHEAD_MIB`], or
/// [`DEFAULT_MEMORY_MIB`] without a limit.
pub fn memory_mib(spec: &Value) -> u64 {
    match spec
        .pointer("/linux/resources/memory/limit")
        .and_then(Value::as_i64)
    {
        Some(limit) if limit > 0 => (limit as u64).div_ceil(1 << 20) + GUEST_OVERHEAD_MIB,
        _ => DEFAULT_MEMORY_MIB,
    }
}

/// vCPUs: the CPU quota rounded up (`--cpus 1.5` → 2), at least 1, at most the host's CPUs; 1
/// without a quota.
pub fn vcpus(spec: &Value) -> u32 {
    let quota = spec
        .pointer("/linux/resources/cpu/quota")
        .and_then(Value::as_i64);
    let period = spec
        .pointer("/linux/resources/cpu/period")
        .and_then(Value::as_u64)
        .unwrap_or(100_000);
    let host = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    match quota {
        Some(q) if q > 0 && period > 0 => {
            ((q as u64).div_ceil(period) as u32).clamp(1, host.max(1))
        }
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rewrites_paths_and_shares_volumes() {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = tmp.path().join("c1");
        std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
        std::fs::write(bundle.join("hosts"), "127.0.0.1 localhost\n").unwrap();
        let vol = tmp.path().join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        std::fs::write(tmp.path().join("file.txt"), "x").unwrap();
        let spec = json!({
            "root": {"path": bundle.join("rootfs")},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/etc/hosts", "type": "bind", "source": bundle.join("hosts"), "options": ["rbind", "rprivate"]},
                {"destination": "/data", "type": "bind", "source": vol, "options": ["rbind", "ro"]},
                {"destination": "/f", "type": "bind", "source": tmp.path().join("file.txt"), "options": ["rbind"]}
            ],
            "linux": {"resources": {"memory": {"limit": 64 << 20}, "cpu": {"quota": 150000, "period": 100000}}}
        });
        let p = prepare(&bundle, &bundle.join("rootfs"), spec).unwrap();
        assert_eq!(p.spec["root"]["path"], GUEST_ROOTFS);
        assert_eq!(p.spec["mounts"][0]["source"], "proc");
        assert_eq!(
            p.spec["mounts"][1]["source"],
            "/run/isola/share/shared/hosts"
        );
        assert!(bundle.join("shared/hosts").is_file());
        assert_eq!(p.spec["mounts"][2]["source"], "/run/isola/share/v0");
        assert_eq!(
            p.spec["mounts"][3]["source"],
            "/run/isola/share/v1/file.txt"
        );
        assert_eq!(p.shares.len(), 4);
        assert!(p.shares[2].readonly && !p.shares[3].readonly);
        assert!(p.mounts[2].options.contains(&"ro".to_owned()));
        assert_eq!(memory_mib(&p.spec), 64 + GUEST_OVERHEAD_MIB);
        assert!(vcpus(&p.spec) >= 1);
    }

    #[test]
    fn shares_fill_the_fixed_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = tmp.path().join("c1");
        std::fs::create_dir_all(&bundle).unwrap();
        let vol = tmp.path().join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        let spec = json!({"root": {"path": "x"}, "mounts": [
            {"destination": "/d", "type": "bind", "source": vol, "options": ["rbind"]}
        ]});
        let p = prepare(&bundle, &bundle, spec).unwrap();
        let empty = Path::new("/var/lib/isola/vm/empty");
        let all = fixed_layout(&p.shares, empty).unwrap();
        let tags: Vec<&str> = all.iter().map(|s| s.tag.as_str()).collect();
        assert_eq!(tags, LAYOUT_TAGS);
        assert_eq!(all[..3], p.shares[..]);
        assert!(all[3..].iter().all(|s| s.path == empty && s.readonly));
        let mut odd = p.shares.clone();
        odd.swap(0, 1);
        assert!(fixed_layout(&odd, empty).is_err());
    }

    #[test]
    fn refuses_missing_sources_and_too_many_volumes() {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = tmp.path().join("c1");
        std::fs::create_dir_all(&bundle).unwrap();
        let spec = json!({"root": {"path": "x"}, "mounts": [
            {"destination": "/d", "type": "bind", "source": "/nonexistent/isola", "options": ["rbind"]}
        ]});
        let e = prepare(&bundle, &bundle, spec).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/isola"), "{e}");
        let mounts: Vec<Value> = (0..6)
            .map(|i| {
                let d = tmp.path().join(format!("d{i}"));
                std::fs::create_dir_all(&d).unwrap();
                json!({"destination": format!("/d{i}"), "type": "bind", "source": d, "options": ["rbind"]})
            })
            .collect();
        let spec = json!({"root": {"path": "x"}, "mounts": mounts});
        let e = prepare(&bundle, &bundle, spec).unwrap_err().to_string();
        assert!(e.contains("at most 5"), "{e}");
    }
}
