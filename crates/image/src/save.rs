//! `isola save`: images from the store into an OCI image layout tar (image-spec "image-layout.md") that
//! also carries a docker-archive `manifest.json`, so that both OCI tools (skopeo, umoci, podman) and
//! `docker load` read it. Blobs are written as stored, so manifest and config digests survive a
//! load → save → load round trip.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde_json::json;

use crate::archive::MAX_JSON;
use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::load::Progress;
use crate::reference::Reference;
use crate::store::Store;

/// An image to save and the names to give it in the archive.
#[derive(Debug, Clone)]
pub struct SaveItem {
    /// The image ID.
    pub id: Digest,
    /// Names to record (`io.containerd.image.name`, `org.opencontainers.image.ref.name`, `RepoTags`).
    pub names: Vec<Reference>,
}

impl Store {
    /// Which image, and which name, a `save` argument means: a tag saves under that tag; an ID saves
    /// without names, as Docker does.
    pub fn save_item(&self, arg: &str) -> Result<SaveItem> {
        let id = self.resolve(arg)?;
        let names = match Reference::parse(arg) {
            Ok(r) if r.digest().is_none() && self.db().image_for_tag(&r.to_string())?.is_some() => {
                vec![r]
            }
            _ => Vec::new(),
        };
        Ok(SaveItem { id, names })
    }
}

/// Writes `items` as an OCI layout tar to `out`, via a temporary file beside it that is renamed into
/// place only when complete. `progress` sees the bytes of each blob.
pub fn save(store: &Store, items: &[SaveItem], out: &Path, progress: &dyn Progress) -> Result<()> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(crate::error::Error::Io {
            op: "write",
            path: out.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotFound, "no such directory"),
        });
    }
    // A device, FIFO or other special file (or a link to one) is written in place, never replaced.
    if fs::metadata(out).is_ok_and(|m| !m.is_file()) {
        let file = File::options().write(true).open(out).ctx("open", out)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        write_archive(store, items, &mut w, progress).ctx("write", out)?;
        return w.flush().ctx("write", out);
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.isola-{}.tmp", std::process::id()));
    let result = (|| {
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .ctx("create", &tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        write_archive(store, items, &mut w, progress).ctx("write", out)?;
        w.into_inner()
            .map_err(|e| e.into_error())
            .ctx("write", out)?;
        fs::rename(&tmp, out).ctx("rename into place", out)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes the archive to any writer (for `isola save` to standard output).
pub fn write_archive(
    store: &Store,
    items: &[SaveItem],
    w: &mut dyn Write,
    progress: &dyn Progress,
) -> io::Result<()> {
    let to_io = |e: crate::error::Error| io::Error::other(e.to_string());
    let mut tar = tar::Builder::new(w);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut written: HashSet<Digest> = HashSet::new();
    let mut index = Vec::new();
    let mut docker = Vec::new();
    add_dir(&mut tar, "blobs/")?;
    add_dir(&mut tar, "blobs/sha256/")?;
    for item in items {
        let rec = store.image(&item.id).map_err(to_io)?;
        let manifest = store
            .read_blob(&rec.manifest_digest, MAX_JSON)
            .map_err(to_io)?;
        let mut blobs = vec![rec.manifest_digest.clone(), rec.id.clone()];
        blobs.extend(rec.layers.iter().map(|l| l.blob_digest.clone()));
        for digest in blobs {
            if !written.insert(digest.clone()) {
                continue;
            }
            let path = store.blob_path(&digest);
            let file = File::open(&path)?;
            let size = file.metadata()?.len();
            let name = digest.to_string();
            progress.start(&name, Some(size));
            let mut header = tar::Header::new_ustar();
            header.set_size(size);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            let reader = ProgressRead {
                inner: file,
                progress,
            };
            tar.append_data(
                &mut header,
                format!("blobs/sha256/{}", digest.hex()),
                reader,
            )?;
            progress.finish(&name, false);
        }
        let descriptor = |names: serde_json::Value| {
            json!({
                "mediaType": rec.manifest_media_type,
                "digest": rec.manifest_digest.to_string(),
                "size": manifest.len(),
                "annotations": names,
            })
        };
        if item.names.is_empty() {
            let mut d = descriptor(json!({}));
            d.as_object_mut().expect("object").remove("annotations");
            index.push(d);
        }
        for n in &item.names {
            index.push(descriptor(json!({
                "io.containerd.image.name": n.to_string(),
                "org.opencontainers.image.ref.name": n.to_string(),
            })));
        }
        docker.push(json!({
            "Config": format!("blobs/sha256/{}", rec.id.hex()),
            "RepoTags": item.names.iter().map(|n| {
                format!("{}:{}", n.familiar_repository(), n.tag().unwrap_or("latest"))
            }).collect::<Vec<_>>(),
            "Layers": rec.layers.iter().map(|l| format!("blobs/sha256/{}", l.blob_digest.hex())).collect::<Vec<_>>(),
        }));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": crate::media::OCI_INDEX,
        "manifests": index,
    });
    add_file(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add_file(&mut tar, "index.json", &serde_json::to_vec(&index)?)?;
    add_file(&mut tar, "manifest.json", &serde_json::to_vec(&docker)?)?;
    tar.into_inner()?.flush()
}

fn add_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    tar.append_data(&mut h, name, io::empty())
}

fn add_file<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8]) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    tar.append_data(&mut h, name, data)
}

struct ProgressRead<'a, R> {
    inner: R,
    progress: &'a dyn Progress,
}

impl<R: io::Read> io::Read for ProgressRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}
