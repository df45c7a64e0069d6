//! docker-archive, the `docker save` format: `manifest.json` lists each image's config file, its
//! `RepoTags` and its layer files (`<id>/layer.tar` in the legacy layout, `blobs/sha256/<hex>` since the
//! archive became an OCI layout as well).

use serde::Deserialize;

use super::{Document, ImageSource, LayerSource, Source, MAX_ENTRIES, MAX_JSON};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media;
use crate::reference::Reference;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

fn entries(src: &Source) -> Result<Option<Vec<Entry>>> {
    let Some(data) = src.read_small("manifest.json", MAX_JSON)? else {
        return Ok(None);
    };
    serde_json::from_slice(&data)
        .map(Some)
        .map_err(|source| Error::Json {
            what: "manifest.json",
            name: "manifest.json".into(),
            source,
        })
}

/// The digest a config file's name promises: `<hex>.json` or `blobs/sha256/<hex>`.
fn named_digest(path: &str) -> Option<Digest> {
    let base = path.rsplit('/').next()?;
    Digest::from_hex(base.strip_suffix(".json").unwrap_or(base)).ok()
}

fn names(tags: Option<&Vec<String>>) -> Vec<Reference> {
    let mut out = Vec::new();
    for t in tags.into_iter().flatten() {
        match Reference::parse(t) {
            Ok(r) if !out.contains(&r) => out.push(r),
            Ok(_) => {}
            Err(e) => tracing::warn!("ignoring RepoTag in archive: {e}"),
        }
    }
    out
}

pub(super) fn read(src: &Source) -> Result<Vec<ImageSource>> {
    let entries = entries(src)?.unwrap_or_default();
    if entries.len() > MAX_ENTRIES {
        return Err(Error::Archive {
            archive: src.path().to_path_buf(),
            reason: format!(
                "manifest.json lists {} images, more than {MAX_ENTRIES}",
                entries.len()
            ),
        });
    }
    let mut images: Vec<ImageSource> = Vec::with_capacity(entries.len());
    for e in entries {
        // An entry repeating a config already read shares it (only the names differ).
        let known =
            named_digest(&e.config).and_then(|d| images.iter().position(|i| i.config.digest == d));
        if let Some(prev) = known {
            for n in names(e.repo_tags.as_ref()) {
                if !images[prev].names.contains(&n) {
                    images[prev].names.push(n);
                }
            }
            continue;
        }
        let data = src
            .read_small(&e.config, MAX_JSON)?
            .ok_or_else(|| Error::Archive {
                archive: src.path().to_path_buf(),
                reason: format!("config {:?} is referenced but missing", e.config),
            })?;
        let digest = Digest::of(&data);
        if let Some(expected) = named_digest(&e.config) {
            if expected != digest {
                return Err(Error::DigestMismatch {
                    what: "config",
                    expected,
                    actual: digest,
                });
            }
        }
        let layers = e
            .layers
            .iter()
            .map(|path| LayerSource {
                path: path.clone(),
                media_type: None,
                blob: path
                    .strip_prefix("blobs/sha256/")
                    .and_then(|hex| Digest::from_hex(hex).ok())
                    .and_then(|d| src.open(path).ok().flatten().map(|(_, size)| (d, size))),
            })
            .collect();
        images.push(ImageSource {
            manifest: None,
            config: Document {
                digest,
                media_type: media::OCI_CONFIG.into(),
                data,
            },
            layers,
            names: names(e.repo_tags.as_ref()),
        });
    }
    Ok(images)
}

/// Adds the `RepoTags` of a `manifest.json` beside an OCI `index.json` to the images it describes.
pub(super) fn add_repo_tags(src: &Source, images: &mut [ImageSource]) -> Result<()> {
    let Ok(Some(entries)) = entries(src) else {
        return Ok(());
    };
    for e in entries {
        let Some(config) = named_digest(&e.config) else {
            continue;
        };
        for image in images.iter_mut().filter(|i| i.config.digest == config) {
            for name in names(e.repo_tags.as_ref()) {
                if !image.names.contains(&name) {
                    image.names.push(name);
                }
            }
        }
    }
    Ok(())
}
