//! The built-in default image, `busybox:latest`: made on the host, without network, from an upstream
//! static busybox binary (Debian's busybox-static package installs it as `/bin/busybox`), with one hard
//! link per applet, `/etc/passwd`, `/etc/group` and the usual top-level directories.

use std::io::{self, Cursor};
use std::path::Path;
use std::process::Command;

use crate::error::{Error, IoContext, Result};
use crate::import::{import, ImportOptions};
use crate::layer::ApplyOptions;
use crate::load::{Loaded, Progress};
use crate::reference::Reference;
use crate::store::Store;

/// Where Debian's busybox-static package installs the binary.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";

/// The name the built-in image gets.
pub const BUILTIN_NAME: &str = "docker.io/library/busybox:latest";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
";

const GROUP: &str = "root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
www-data:x:33:
operator:x:37:
staff:x:50:
users:x:100:
nogroup:x:65534:
";

const SHADOW: &str = "root:*:10933:0:99999:7:::
daemon:*:10933:0:99999:7:::
bin:*:10933:0:99999:7:::
sys:*:10933:0:99999:7:::
sync:*:10933:0:99999:7:::
mail:*:10933:0:99999:7:::
www-data:*:10933:0:99999:7:::
operator:*:10933:0:99999:7:::
nobody:*:10933:0:99999:7:::
";

const DIRS: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("home", 0o755),
    ("proc", 0o755),
    ("root", 0o700),
    ("sbin", 0o755),
    ("sys", 0o755),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("var", 0o755),
    ("var/spool", 0o755),
    ("var/spool/mail", 0o755),
    ("var/www", 0o755),
];

/// Builds the root filesystem tarball of the built-in image from `busybox` (a static binary).
/// Every entry has the binary's mtime, so the same binary always gives the same image ID.
pub fn busybox_rootfs(busybox: &Path) -> Result<(Vec<u8>, i64)> {
    let binary = std::fs::read(busybox).ctx("read", busybox)?;
    let meta = std::fs::metadata(busybox).ctx("stat", busybox)?;
    let mtime = std::os::unix::fs::MetadataExt::mtime(&meta);
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .ctx("run", busybox)?;
    if !out.status.success() {
        return Err(Error::Io {
            op: "list applets of",
            path: busybox.to_path_buf(),
            source: io::Error::other(format!("busybox --list-full exited with {}", out.status)),
        });
    }
    let applets = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut tar = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime.max(0) as u64);
        h
    };
    let io_err = |e: io::Error| Error::Io {
        op: "build image from",
        path: busybox.to_path_buf(),
        source: e,
    };
    for (dir, mode) in DIRS {
        let mut h = header(tar::EntryType::Directory, *mode, 0);
        tar.append_data(&mut h, format!("{dir}/"), io::empty())
            .map_err(io_err)?;
    }
    let mut h = header(tar::EntryType::Regular, 0o755, binary.len() as u64);
    tar.append_data(&mut h, "bin/busybox", Cursor::new(&binary))
        .map_err(io_err)?;
    for (name, text, mode) in [
        ("etc/passwd", PASSWD, 0o644),
        ("etc/group", GROUP, 0o644),
        ("etc/shadow", SHADOW, 0o640),
    ] {
        let mut h = header(tar::EntryType::Regular, mode, text.len() as u64);
        tar.append_data(&mut h, name, text.as_bytes())
            .map_err(io_err)?;
    }
    let mut seen = std::collections::BTreeSet::new();
    for applet in applets.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let ok = applet.starts_with("bin/")
            || applet.starts_with("sbin/")
            || applet.starts_with("usr/bin/")
            || applet.starts_with("usr/sbin/");
        if !ok
            || applet == "bin/busybox"
            || applet.contains("..")
            || !seen.insert(applet.to_owned())
        {
            continue;
        }
        let mut h = header(tar::EntryType::Link, 0o755, 0);
        tar.append_link(&mut h, applet, "bin/busybox")
            .map_err(io_err)?;
    }
    let data = tar.into_inner().map_err(io_err)?;
    Ok((data, mtime))
}

/// Creates (or re-creates, which is a no-op for the same binary) the built-in `busybox:latest` image.
pub fn create_busybox(store: &Store, busybox: &Path, progress: &dyn Progress) -> Result<Loaded> {
    let (rootfs, mtime) = busybox_rootfs(busybox)?;
    let created = chrono::DateTime::from_timestamp(mtime, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let opts = ImportOptions {
        name: Some(Reference::parse(BUILTIN_NAME)?),
        changes: vec![
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            r#"CMD ["sh"]"#.into(),
        ],
        source: format!("{} (busybox)", busybox.display()),
        created: Some(created),
        apply: ApplyOptions::default(),
    };
    import(store, Cursor::new(rootfs), &opts, progress)
}
