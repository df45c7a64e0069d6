//! Layer tarballs for the integration tests, written byte by byte, independent of isola's code.
//!
//! [`LayerBuilder`] copies every header name raw, so hostile names (`../x`, `/abs`) reach isola
//! exactly as written; long names, long link targets and xattrs go into PAX records.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `sha256:<hex>` digest of `data`.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// The hex part of a `sha256:<hex>` digest.
pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub const ALL: [Compression; 3] = [Compression::None, Compression::Gzip, Compression::Zstd];

    pub fn compress(self, data: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => data.to_vec(),
            Compression::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(data).unwrap();
                enc.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(data, 3).unwrap(),
        }
    }

    /// The OCI layer media type for this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tar writing

#[derive(Clone, Debug)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(Vec<u8>),
    HardLink(Vec<u8>),
    CharDevice(u32, u32),
    BlockDevice(u32, u32),
    Fifo,
}

#[derive(Clone, Debug)]
struct Entry {
    path: Vec<u8>,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// Fixed modification time of every entry (2023-11-14), so equal inputs give equal bytes.
const MTIME: u64 = 1_700_000_000;

/// Builds one layer tarball, entry by entry, in the order the methods are called.
///
/// Paths are written exactly as given (no normalisation, no checks). Methods that change an
/// entry's attributes ([`mode`](Self::mode), [`owner`](Self::owner), [`xattr`](Self::xattr))
/// apply to the entry added last.
#[derive(Clone, Debug, Default)]
pub struct LayerBuilder {
    entries: Vec<Entry>,
}

impl LayerBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(mut self, path: impl AsRef<[u8]>, kind: Kind, mode: u32) -> Self {
        self.entries.push(Entry {
            path: path.as_ref().to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: MTIME,
            xattrs: Vec::new(),
        });
        self
    }

    fn last(&mut self) -> &mut Entry {
        self.entries.last_mut().expect("no entry to modify")
    }

    /// A regular file, mode 0644.
    pub fn file(self, path: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Self {
        self.push(path, Kind::File(data.as_ref().to_vec()), 0o644)
    }

    /// A directory, mode 0755.
    pub fn dir(self, path: impl AsRef<[u8]>) -> Self {
        self.push(path, Kind::Dir, 0o755)
    }

    pub fn symlink(self, path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        self.push(path, Kind::Symlink(target.as_ref().to_vec()), 0o777)
    }

    /// A hard link to `target`, a path of an earlier entry of the layer.
    pub fn hardlink(self, path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        self.push(path, Kind::HardLink(target.as_ref().to_vec()), 0o644)
    }

    pub fn char_device(self, path: impl AsRef<[u8]>, major: u32, minor: u32) -> Self {
        self.push(path, Kind::CharDevice(major, minor), 0o666)
    }

    pub fn block_device(self, path: impl AsRef<[u8]>, major: u32, minor: u32) -> Self {
        self.push(path, Kind::BlockDevice(major, minor), 0o660)
    }

    pub fn fifo(self, path: impl AsRef<[u8]>) -> Self {
        self.push(path, Kind::Fifo, 0o644)
    }

    /// A whiteout deleting `path` of the layers below: the empty file `dir/.wh.name`.
    pub fn whiteout(self, path: &str) -> Self {
        let (dir, name) = match path.trim_end_matches('/').rsplit_once('/') {
            Some((dir, name)) => (format!("{dir}/"), name),
            None => (String::new(), path),
        };
        self.file(format!("{dir}.wh.{name}"), b"")
    }

    /// Marks directory `dir` opaque: nothing of the layers below shows through it.
    pub fn opaque(self, dir: &str) -> Self {
        self.file(format!("{}/.wh..wh..opq", dir.trim_end_matches('/')), b"")
    }

    /// Permission bits of the last entry.
    pub fn mode(mut self, mode: u32) -> Self {
        self.last().mode = mode;
        self
    }

    /// Owner of the last entry.
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        let e = self.last();
        e.uid = uid;
        e.gid = gid;
        self
    }

    /// An extended attribute of the last entry, written as a PAX `SCHILY.xattr.` record.
    pub fn xattr(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.last()
            .xattrs
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    /// The uncompressed tarball.
    pub fn tar(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.entries {
            write_entry(&mut out, e);
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    /// The layer, compressed with `compression`.
    pub fn build(&self, compression: Compression) -> Layer {
        Layer::from_tar(self.tar(), compression)
    }
}

fn pad512(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.resize(out.len() + 512 - rem, 0);
    }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "<len> <key>=<value>\n", where <len> counts the whole record including itself.
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut rec = format!("{len} {key}=").into_bytes();
    rec.extend_from_slice(value);
    rec.push(b'\n');
    assert_eq!(rec.len(), len);
    rec
}

fn raw_header(name: &[u8], link: &[u8], kind: tar::EntryType, size: u64, e: &Entry) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(e.mode);
    h.set_uid(e.uid);
    h.set_gid(e.gid);
    h.set_mtime(e.mtime);
    h.set_size(size);
    match e.kind {
        Kind::CharDevice(major, minor) | Kind::BlockDevice(major, minor) => {
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
        }
        _ => {}
    }
    let old = h.as_old_mut();
    let n = name.len().min(old.name.len());
    old.name[..n].copy_from_slice(&name[..n]);
    let n = link.len().min(old.linkname.len());
    old.linkname[..n].copy_from_slice(&link[..n]);
    h.set_cksum();
    *h.as_bytes()
}

fn write_entry(out: &mut Vec<u8>, e: &Entry) {
    let mut name = e.path.clone();
    if matches!(e.kind, Kind::Dir) && !name.ends_with(b"/") {
        name.push(b'/');
    }
    let (kind, link, data): (tar::EntryType, &[u8], &[u8]) = match &e.kind {
        Kind::File(d) => (tar::EntryType::Regular, b"", d),
        Kind::Dir => (tar::EntryType::Directory, b"", b""),
        Kind::Symlink(t) => (tar::EntryType::Symlink, t, b""),
        Kind::HardLink(t) => (tar::EntryType::Link, t, b""),
        Kind::CharDevice(..) => (tar::EntryType::Char, b"", b""),
        Kind::BlockDevice(..) => (tar::EntryType::Block, b"", b""),
        Kind::Fifo => (tar::EntryType::Fifo, b"", b""),
    };
    // Anything the 100-byte ustar fields cannot hold goes into a PAX header first.
    let mut pax = Vec::new();
    if name.len() > 100 {
        pax.extend(pax_record("path", &name));
    }
    if link.len() > 100 {
        pax.extend(pax_record("linkpath", link));
    }
    for (k, v) in &e.xattrs {
        pax.extend(pax_record(&format!("SCHILY.xattr.{k}"), v));
    }
    if !pax.is_empty() {
        let pax_entry = Entry {
            path: Vec::new(),
            kind: Kind::File(Vec::new()),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: e.mtime,
            xattrs: Vec::new(),
        };
        let mut pax_name = b"PaxHeaders/".to_vec();
        pax_name.extend(name.iter().rev().take(80).rev());
        out.extend_from_slice(&raw_header(
            &pax_name,
            b"",
            tar::EntryType::XHeader,
            pax.len() as u64,
            &pax_entry,
        ));
        out.extend_from_slice(&pax);
        pad512(out);
    }
    out.extend_from_slice(&raw_header(&name, link, kind, data.len() as u64, e));
    out.extend_from_slice(data);
    pad512(out);
}

// ---------------------------------------------------------------------------------------------
// Layers and images

/// One layer: its uncompressed tar (whose digest is the diff ID) and the blob as stored.
#[derive(Clone, Debug)]
pub struct Layer {
    pub tar: Vec<u8>,
    pub blob: Vec<u8>,
    pub media_type: String,
    pub diff_id: String,
    pub digest: String,
}

impl Layer {
    pub fn from_tar(tar: Vec<u8>, compression: Compression) -> Self {
        let blob = compression.compress(&tar);
        Layer {
            diff_id: digest_of(&tar),
            digest: digest_of(&blob),
            media_type: compression.oci_media_type().to_string(),
            tar,
            blob,
        }
    }

    /// A layer from an existing tarball file (plain, gzip or zstd), stored as it is.
    pub fn from_file(path: &Path, media_type: &str) -> Self {
        let blob = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let tar = decompress(&blob);
        Layer {
            diff_id: digest_of(&tar),
            digest: digest_of(&blob),
            media_type: media_type.to_string(),
            tar,
            blob,
        }
    }

    /// Replaces the stored bytes (the descriptor follows: new digest and size), keeping the
    /// diff ID: for blobs whose content disagrees with what they claim to be.
    pub fn with_blob(mut self, blob: Vec<u8>) -> Self {
        self.digest = digest_of(&blob);
        self.blob = blob;
        self
    }

    /// Declares another media type in the manifest.
    pub fn with_media_type(mut self, media_type: &str) -> Self {
        self.media_type = media_type.to_string();
        self
    }
}

/// Decompresses a blob by its magic bytes.
pub fn decompress(blob: &[u8]) -> Vec<u8> {
    if blob.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(blob), &mut out).unwrap();
        out
    } else if blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::decode_all(blob).unwrap()
    } else {
        blob.to_vec()
    }
}
