//! `isola import`: a root filesystem tarball (plain, gzip or zstd) as a one-layer image, with
//! Dockerfile-style `--change` instructions applied to its config, as `docker import` does.

use std::io::Read;

use serde_json::json;

use crate::archive::Document;
use crate::changes::apply_changes;
use crate::digest::Digest;
use crate::error::Result;
use crate::layer::ApplyOptions;
use crate::load::{make_manifest, Loaded, Progress};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::{ImageRecord, LayerExpect, LayerRecord, Store};

/// What to import and how to describe it.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The name to tag the image with, if any.
    pub name: Option<Reference>,
    /// `--change` instructions (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL, …).
    pub changes: Vec<String>,
    /// Where the tarball came from, for the history entry and errors.
    pub source: String,
    /// `created` of the image, RFC 3339; now when `None`.
    pub created: Option<String>,
    /// Limits on unpacking.
    pub apply: ApplyOptions,
}

/// Imports the rootfs tarball read from `input`. The change instructions are checked before anything
/// is read; on error nothing is recorded and nothing left in the store.
pub fn import(
    store: &Store,
    input: impl Read,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<Loaded> {
    let mut config = oci_spec::image::Config::default();
    apply_changes(&mut config, &opts.changes)?;
    progress.start(&opts.source, None);
    let expect = LayerExpect {
        media_type: None,
        blob: None,
        diff_id: None,
        name: &opts.source,
    };
    let reader = crate::load::ProgressReader {
        inner: input,
        progress,
    };
    let layer = store.unpack_layer(reader, &expect, Digest::clone, &opts.apply)?;
    progress.finish(&opts.source, false);
    let created = opts
        .created
        .clone()
        .unwrap_or_else(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let host = Platform::host();
    let config_json = json!({
        "created": created,
        "architecture": host.arch,
        "os": host.os,
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": [layer.diff_id.to_string()] },
        "history": [{ "created": created, "created_by": "isola import", "comment": format!("Imported from {}", opts.source) }],
    });
    let data = serde_json::to_vec(&config_json).expect("config serializes");
    let config_doc = Document {
        digest: Digest::of(&data),
        media_type: crate::media::OCI_CONFIG.into(),
        data,
    };
    let record = LayerRecord {
        chain_id: layer.diff_id.clone(),
        diff_id: layer.diff_id,
        blob_digest: layer.blob_digest,
        media_type: layer.media_type,
        blob_size: layer.blob_size,
        size: layer.size,
    };
    let manifest = make_manifest(&config_doc, std::slice::from_ref(&record))?;
    store.put_blob("config", &config_doc.data, Some(&config_doc.digest))?;
    store.put_blob("manifest", &manifest.data, Some(&manifest.digest))?;
    let image = ImageRecord {
        id: config_doc.digest.clone(),
        manifest_digest: manifest.digest,
        manifest_media_type: manifest.media_type,
        created: Some(created),
        size: record.size,
        layers: vec![record],
    };
    let names: Vec<Reference> = opts.name.iter().cloned().collect();
    let tags: Vec<String> = names.iter().map(ToString::to_string).collect();
    store.db().insert_image(&image, &tags)?;
    Ok(Loaded {
        id: image.id,
        names,
    })
}
