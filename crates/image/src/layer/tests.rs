//! Unit tests of layer unpacking: entry kinds, attributes, whiteouts and replacement rules.
//! Shared helpers build tar streams in memory with raw (unvalidated) names.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use tar::{EntryType, Header};

use super::{apply_layer, ApplyOptions, LayerError, LayerStats};

/// A tar stream under construction.
pub(super) struct Tar {
    b: tar::Builder<Vec<u8>>,
}

impl Tar {
    pub(super) fn new() -> Tar {
        Tar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    /// Append an entry with a raw name (written into the header unchecked, up to 100 bytes).
    pub(super) fn raw(
        &mut self,
        name: &[u8],
        kind: EntryType,
        data: &[u8],
        f: impl FnOnce(&mut Header),
    ) -> &mut Tar {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        // The caller's own ids, so that tests not needing root pass without it.
        h.set_uid(rustix::process::geteuid().as_raw().into());
        h.set_gid(rustix::process::getegid().as_raw().into());
        h.set_mtime(1_500_000_000);
        h.set_size(data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        f(&mut h);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub(super) fn file(&mut self, name: &str, data: &[u8]) -> &mut Tar {
        self.raw(name.as_bytes(), EntryType::Regular, data, |_| {})
    }

    pub(super) fn dir(&mut self, name: &str) -> &mut Tar {
        self.raw(name.as_bytes(), EntryType::Directory, b"", |_| {})
    }

    pub(super) fn link(&mut self, kind: EntryType, name: &str, target: &str) -> &mut Tar {
        self.raw(name.as_bytes(), kind, b"", |h| {
            h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        })
    }

    pub(super) fn symlink(&mut self, name: &str, target: &str) -> &mut Tar {
        self.link(EntryType::Symlink, name, target)
    }

    pub(super) fn hardlink(&mut self, name: &str, target: &str) -> &mut Tar {
        self.link(EntryType::Link, name, target)
    }

    /// PAX records for the next entry.
    pub(super) fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Tar {
        self.b
            .append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
            .unwrap();
        self
    }

    pub(super) fn finish(&mut self) -> Vec<u8> {
        self.b.finish().unwrap();
        std::mem::take(self.b.get_mut())
    }
}

/// Unpack `tar` into a new temp dir.
pub(super) fn unpack(tar: &[u8]) -> (tempfile::TempDir, Result<LayerStats, LayerError>) {
    let dir = tempfile::tempdir().unwrap();
    let res = apply_layer(tar, dir.path(), &ApplyOptions::default());
    (dir, res)
}

/// Unpack `tar`, which must succeed.
pub(super) fn unpack_ok(tar: &[u8]) -> tempfile::TempDir {
    let (dir, res) = unpack(tar);
    res.unwrap();
    dir
}

/// The error message of unpacking `tar`, which must fail.
pub(super) fn unpack_err(tar: &[u8]) -> String {
    match unpack(tar).1 {
        Ok(_) => panic!("unpacking succeeded"),
        Err(e) => e.to_string(),
    }
}

/// True when running as root; otherwise prints why the calling test is skipped.
pub(super) fn root_or_skip(test: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!("skipping {test}: needs root (ownership, devices, trusted xattrs)");
    }
    root
}

pub(super) fn lmeta(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap()
}

pub(super) fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(p, name, &mut buf[..]) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

pub(super) fn is_whiteout(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

#[test]
fn regular_files_with_modes_owners_and_mtimes() {
    if !root_or_skip("regular_files_with_modes_owners_and_mtimes") {
        return;
    }
    let mut t = Tar::new();
    t.raw(b"suid", EntryType::Regular, b"hello", |h| {
        h.set_mode(0o4755);
        h.set_uid(1000);
        h.set_gid(1001);
        h.set_mtime(1_600_000_000);
    });
    t.raw(b"./sgid", EntryType::Regular, b"", |h| {
        h.set_mode(0o2711);
        h.set_uid(7);
        h.set_gid(8);
    });
    t.raw(b"sticky/", EntryType::Directory, b"", |h| {
        h.set_mode(0o1777)
    });
    let tar = t.finish();
    let (dir, res) = unpack(&tar);
    let stats = res.unwrap();
    assert_eq!(
        stats,
        LayerStats {
            tar_bytes: tar.len() as u64 - 512,
            trailing_bytes: 512,
            content_bytes: 5,
            entries: 3
        }
    );
    let m = lmeta(&dir.path().join("suid"));
    assert_eq!(fs::read(dir.path().join("suid")).unwrap(), b"hello");
    assert_eq!(
        (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime()),
        (0o4755, 1000, 1001, 1_600_000_000)
    );
    let m = lmeta(&dir.path().join("sgid"));
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o2711, 7, 8));
    assert_eq!(lmeta(&dir.path().join("sticky")).mode() & 0o7777, 0o1777);
}

#[test]
fn directory_mtimes_and_modes_are_set_after_their_children() {
    let mut t = Tar::new();
    t.raw(b"./", EntryType::Directory, b"", |h| {
        h.set_mode(0o750);
        h.set_mtime(1_000);
    });
    t.raw(b"d/", EntryType::Directory, b"", |h| {
        h.set_mode(0o555);
        h.set_mtime(2_000);
    });
    t.raw(b"d/e/", EntryType::Directory, b"", |h| h.set_mtime(3_000));
    t.file("d/e/f", b"x").file("d/g", b"y");
    if rustix::process::geteuid().is_root() {
        t.file(".wh.gone", b"").file("d/.wh.gone", b"");
    }
    let dir = unpack_ok(&t.finish());
    let p = dir.path();
    assert_eq!((lmeta(p).mtime(), lmeta(p).mode() & 0o7777), (1_000, 0o750));
    assert_eq!(
        (
            lmeta(&p.join("d")).mtime(),
            lmeta(&p.join("d")).mode() & 0o7777
        ),
        (2_000, 0o555)
    );
    assert_eq!(lmeta(&p.join("d/e")).mtime(), 3_000);
    assert_eq!(lmeta(&p.join("d/e/f")).mtime(), 1_500_000_000);
    fs::set_permissions(p.join("d"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn missing_parents_are_created_0755() {
    let dir = unpack_ok(&Tar::new().file("a/b/c/file", b"x").finish());
    for d in ["a", "a/b", "a/b/c"] {
        let m = lmeta(&dir.path().join(d));
        assert!(m.is_dir());
        assert_eq!(m.mode() & 0o7777, 0o755);
        assert_eq!(m.uid(), rustix::process::geteuid().as_raw());
    }
}

#[test]
fn symlinks_are_stored_verbatim() {
    let mut t = Tar::new();
    t.symlink("abs", "/etc/passwd")
        .symlink("rel", "../../x/y")
        .symlink("dangling", "nowhere");
    t.raw(b"owned", EntryType::Symlink, b"", |h| {
        h.as_old_mut().linkname[..3].copy_from_slice(b"abs");
        h.set_mtime(12_345);
        h.set_uid(rustix::process::geteuid().as_raw().into());
    });
    let dir = unpack_ok(&t.finish());
    let p = dir.path();
    assert_eq!(
        fs::read_link(p.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(p.join("rel")).unwrap(),
        Path::new("../../x/y")
    );
    assert_eq!(
        fs::read_link(p.join("dangling")).unwrap(),
        Path::new("nowhere")
    );
    assert_eq!(lmeta(&p.join("owned")).mtime(), 12_345);
}

#[test]
fn hard_links_share_the_inode() {
    let mut t = Tar::new();
    t.file("a", b"data")
        .hardlink("b", "a")
        .hardlink("sub/c", "./a")
        .symlink("s", "/etc")
        .hardlink("s2", "s");
    let dir = unpack_ok(&t.finish());
    let p = dir.path();
    let ino = lmeta(&p.join("a")).ino();
    assert_eq!(lmeta(&p.join("b")).ino(), ino);
    assert_eq!(lmeta(&p.join("sub/c")).ino(), ino);
    assert_eq!(lmeta(&p.join("a")).nlink(), 3);
    assert!(lmeta(&p.join("s2")).file_type().is_symlink());
    assert_eq!(lmeta(&p.join("s2")).ino(), lmeta(&p.join("s")).ino());
}

#[test]
fn hard_link_errors_name_the_entry() {
    let err = unpack_err(&Tar::new().hardlink("h", "missing").finish());
    assert_eq!(
        err,
        "layer entry \"h\": hard link target \"missing\" not found in this layer"
    );
    let err = unpack_err(&Tar::new().dir("d").hardlink("h", "d").finish());
    assert_eq!(
        err,
        "layer entry \"h\": hard link target \"d\" is a directory"
    );
    if root_or_skip("hard_link_errors_name_the_entry (whiteout target)") {
        let err = unpack_err(&Tar::new().file(".wh.x", b"").hardlink("h", "x").finish());
        assert_eq!(
            err,
            "layer entry \"h\": hard link target \"x\" not found in this layer"
        );
    }
}

#[test]
fn devices_and_fifos() {
    if !root_or_skip("devices_and_fifos") {
        return;
    }
    let dev = |major, minor| {
        move |h: &mut Header| {
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
            h.set_mode(0o620);
            h.set_gid(5);
        }
    };
    let mut t = Tar::new();
    t.raw(b"dev/null", EntryType::Char, b"", dev(1, 3));
    t.raw(b"dev/loop0", EntryType::Block, b"", dev(7, 0));
    t.raw(b"fifo", EntryType::Fifo, b"", |h| h.set_mode(0o600));
    let dir = unpack_ok(&t.finish());
    let m = lmeta(&dir.path().join("dev/null"));
    assert!(m.file_type().is_char_device());
    assert_eq!(
        (m.rdev(), m.mode() & 0o7777, m.gid()),
        (rustix::fs::makedev(1, 3), 0o620, 5)
    );
    let m = lmeta(&dir.path().join("dev/loop0"));
    assert!(m.file_type().is_block_device());
    assert_eq!(m.rdev(), rustix::fs::makedev(7, 0));
    let m = lmeta(&dir.path().join("fifo"));
    assert!(m.file_type().is_fifo());
    assert_eq!(m.mode() & 0o7777, 0o600);
}

#[test]
fn xattrs_from_pax_records() {
    if !root_or_skip("xattrs_from_pax_records") {
        return;
    }
    let mut t = Tar::new();
    t.pax(&[
        ("SCHILY.xattr.user.color", b"blue"),
        ("SCHILY.xattr.security.capability", b"bogus"),
    ]);
    t.file("f", b"x");
    t.pax(&[
        ("SCHILY.xattr.trusted.note", b"dir"),
        ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
    ]);
    t.dir("d");
    t.pax(&[("SCHILY.xattr.trusted.note", b"link")]);
    t.symlink("l", "/etc/passwd");
    t.pax(&[("SCHILY.xattr.trusted.note", b"fifo")]);
    t.raw(b"p", EntryType::Fifo, b"", |_| {});
    let dir = unpack_ok(&t.finish());
    let p = dir.path();
    assert_eq!(
        xattr(&p.join("f"), "user.color").as_deref(),
        Some(&b"blue"[..])
    );
    assert_eq!(xattr(&p.join("f"), "security.capability"), None);
    assert_eq!(
        xattr(&p.join("d"), "trusted.note").as_deref(),
        Some(&b"dir"[..])
    );
    assert_eq!(xattr(&p.join("d"), "trusted.overlay.opaque"), None);
    assert_eq!(
        xattr(&p.join("l"), "trusted.note").as_deref(),
        Some(&b"link"[..])
    );
    assert_eq!(
        xattr(&p.join("p"), "trusted.note").as_deref(),
        Some(&b"fifo"[..])
    );
}

#[test]
fn pax_owner_mtime_and_long_non_utf8_names() {
    if !root_or_skip("pax_owner_mtime_and_long_non_utf8_names") {
        return;
    }
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
    let mut t = Tar::new();
    t.pax(&[
        ("uid", b"3000000000"),
        ("gid", b"3000000001"),
        ("mtime", b"1700000000.25"),
    ]);
    t.file("big", b"x");
    t.pax(&[("path", long.as_bytes())]);
    t.file("ignored-name", b"long");
    t.raw(b"caf\xe9", EntryType::Regular, b"latin1", |_| {});
    let dir = unpack_ok(&t.finish());
    let m = lmeta(&dir.path().join("big"));
    assert_eq!(
        (m.uid(), m.gid(), m.mtime(), m.mtime_nsec()),
        (3_000_000_000, 3_000_000_001, 1_700_000_000, 250_000_000)
    );
    assert_eq!(fs::read(dir.path().join(&long)).unwrap(), b"long");
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9");
    assert_eq!(fs::read(dir.path().join(name)).unwrap(), b"latin1");
}

#[test]
fn replacement_rules() {
    let mut t = Tar::new();
    // file -> dir, dir with children -> file, dir -> dir (kept, attributes updated).
    t.file("a", b"file").dir("a").file("a/in", b"");
    t.dir("b").file("b/x/y", b"").file("b", b"now a file");
    t.dir("c").file("c/keep", b"");
    t.raw(b"c/", EntryType::Directory, b"", |h| h.set_mode(0o700));
    // symlink -> file (the symlink is replaced, never followed); file -> symlink.
    t.symlink("s", "a/in")
        .file("s", b"plain")
        .file("t", b"")
        .symlink("t", "x");
    // a file replacing a hard-linked name leaves the other link alone.
    t.file("h1", b"old").hardlink("h2", "h1").file("h1", b"new");
    let dir = unpack_ok(&t.finish());
    let p = dir.path();
    assert!(lmeta(&p.join("a")).is_dir() && p.join("a/in").exists());
    assert_eq!(fs::read(p.join("b")).unwrap(), b"now a file");
    assert!(p.join("c/keep").exists());
    assert_eq!(lmeta(&p.join("c")).mode() & 0o7777, 0o700);
    assert_eq!(fs::read(p.join("s")).unwrap(), b"plain");
    assert_eq!(fs::read(p.join("a/in")).unwrap(), b"");
    assert!(lmeta(&p.join("t")).file_type().is_symlink());
    assert_eq!(fs::read(p.join("h1")).unwrap(), b"new");
    assert_eq!(fs::read(p.join("h2")).unwrap(), b"old");
}

#[test]
fn dot_entry_applies_to_the_root() {
    let uid = rustix::process::geteuid().as_raw();
    let mut t = Tar::new();
    t.raw(b".", EntryType::Directory, b"", |h| {
        h.set_mode(0o711);
        h.set_uid(uid.into());
        h.set_mtime(4_242);
    });
    let dir = unpack_ok(&t.finish());
    let m = lmeta(dir.path());
    assert_eq!((m.mode() & 0o7777, m.mtime()), (0o711, 4_242));
    let err = unpack_err(&Tar::new().symlink("./", "/etc").finish());
    assert_eq!(
        err,
        "layer entry \"./\": the layer root can only be a directory"
    );
}

#[test]
fn unsupported_entry_types_are_rejected() {
    let err = unpack_err(
        &Tar::new()
            .raw(b"vol", EntryType::new(b'V'), b"", |_| {})
            .finish(),
    );
    assert_eq!(err, "layer entry \"vol\": unsupported entry type 'V'");
    let err = unpack_err(
        &Tar::new()
            .pax(&[("GNU.sparse.major", b"1")])
            .file("sp", b"")
            .finish(),
    );
    assert_eq!(
        err,
        "layer entry \"sp\": unsupported entry type pax sparse file"
    );
}

#[test]
fn size_limit_is_enforced_while_reading() {
    let tar = Tar::new().file("big", &[7u8; 10_000]).finish();
    let needed = tar.len() as u64 - 512;
    let dir = tempfile::tempdir().unwrap();
    let err = apply_layer(&tar[..], dir.path(), &opts(5_000)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer exceeds the size limit of 5000 bytes"
    );
    let dir = tempfile::tempdir().unwrap();
    let err = apply_layer(&tar[..], dir.path(), &opts(needed - 1)).unwrap_err();
    assert!(matches!(err, LayerError::SizeLimit { .. }));
    let dir = tempfile::tempdir().unwrap();
    let stats = apply_layer(&tar[..], dir.path(), &opts(tar.len() as u64)).unwrap();
    assert_eq!((stats.tar_bytes, stats.trailing_bytes), (needed, 512));
    // The rest of the stream counts too.
    let dir = tempfile::tempdir().unwrap();
    let err = apply_layer(&tar[..], dir.path(), &opts(tar.len() as u64 - 1)).unwrap_err();
    assert!(matches!(err, LayerError::SizeLimit { .. }));
}

/// The default options with this size limit.
pub(super) fn opts(max_size: u64) -> ApplyOptions {
    ApplyOptions {
        max_size,
        ..ApplyOptions::default()
    }
}

#[test]
fn truncated_streams_are_corrupt() {
    let tar = Tar::new().file("a", &[1u8; 3000]).file("b", b"x").finish();
    for cut in [1000, 512 * 8, 512 * 9, 100, 0] {
        let (_dir, res) = unpack(&tar[..cut]);
        let err = res.unwrap_err();
        assert_eq!(
            err.to_string(),
            "truncated or corrupt tar stream",
            "cut at {cut}"
        );
        assert!(std::error::Error::source(&err).is_some());
    }
    let mut bad = tar.clone();
    bad[0] ^= 0x55;
    assert_eq!(unpack_err(&bad), "truncated or corrupt tar stream");
}

#[test]
fn reads_the_stream_to_its_end() {
    let mut stream = Tar::new().file("a", b"x").finish();
    let tar_len = stream.len();
    stream.extend_from_slice(b"trailing bytes");
    let mut reader = &stream[..];
    let dir = tempfile::tempdir().unwrap();
    let stats = apply_layer(&mut reader, dir.path(), &ApplyOptions::default()).unwrap();
    assert_eq!(stats.tar_bytes as usize, tar_len - 512);
    assert_eq!(stats.trailing_bytes as usize, 512 + b"trailing bytes".len());
    assert_eq!(reader.len(), 0);
    assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"x");
}

#[test]
fn compressed_layers_unpack_through_decoders() {
    use crate::compression::Compression;
    use std::io::Write;
    let tar = Tar::new().file("dir/f", b"compressed").finish();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::stream::encode_all(&tar[..], 3).unwrap();
    for (blob, kind) in [
        (gz, Compression::Gzip),
        (zst, Compression::Zstd),
        (tar.clone(), Compression::None),
    ] {
        assert_eq!(Compression::detect(&blob[..4]), kind);
        let dir = tempfile::tempdir().unwrap();
        let reader = kind.decoder(&blob[..]).unwrap();
        apply_layer(reader, dir.path(), &ApplyOptions::default()).unwrap();
        assert_eq!(fs::read(dir.path().join("dir/f")).unwrap(), b"compressed");
    }
}
