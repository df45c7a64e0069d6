//! OCI image layout (image-spec "image-layout.md"): `oci-layout`, `index.json`, `blobs/sha256/…`.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::{
    read_blob, Document, ImageSource, LayerSource, Selection, Source, MAX_ENTRIES, MAX_JSON,
};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media;
use crate::reference::Reference;

/// Annotation naming an image in an index (image-spec "annotations.md").
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation with the full image name, as containerd and Docker write it.
pub(crate) const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Deepest index nesting followed (index → index → … → manifest).
const MAX_DEPTH: usize = 4;

pub(super) fn read(src: &Source, sel: &Selection) -> Result<Vec<ImageSource>> {
    let archive_err = |reason: String| Error::Archive {
        archive: src.path().to_path_buf(),
        reason,
    };
    if let Some(layout) = src.read_small("oci-layout", 4096)? {
        let v: serde_json::Value =
            serde_json::from_slice(&layout).map_err(|source| Error::Json {
                what: "oci-layout",
                name: "oci-layout".into(),
                source,
            })?;
        if v.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
            return Err(archive_err(
                "oci-layout: imageLayoutVersion is not \"1.0.0\"".into(),
            ));
        }
    }
    let data = src
        .read_small("index.json", MAX_JSON)?
        .ok_or_else(|| archive_err("index.json missing".into()))?;
    let index: ImageIndex = serde_json::from_slice(&data).map_err(|source| Error::Json {
        what: "index",
        name: "index.json".into(),
        source,
    })?;
    let mut images: Vec<(String, ImageSource)> = Vec::new();
    for desc in select(index.manifests(), sel, "index.json")? {
        let names = names_of(desc);
        let key = desc.digest().to_string();
        // A manifest listed once per name is read once.
        if let Some((_, image)) = images.iter_mut().find(|(k, _)| *k == key) {
            for n in names {
                if !image.names.contains(&n) {
                    image.names.push(n);
                }
            }
            continue;
        }
        let mut image = resolve(src, desc, sel, 0)?;
        image.names = names;
        images.push((key, image));
    }
    Ok(images.into_iter().map(|(_, i)| i).collect())
}

/// Names from a top-level descriptor's annotations. A `ref.name` that is only a tag (no `/` or `:`)
/// names no repository and is ignored.
fn names_of(desc: &Descriptor) -> Vec<Reference> {
    let Some(ann) = desc.annotations() else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for key in [CONTAINERD_NAME, REF_NAME] {
        let Some(value) = ann.get(key) else { continue };
        if key == REF_NAME && !value.contains(['/', ':']) {
            tracing::debug!(value, "ref.name is a bare tag; not used as an image name");
            continue;
        }
        match Reference::parse(value) {
            Ok(r) if r.tag().is_some() && !names.contains(&r) => names.push(r),
            Ok(_) => {}
            Err(e) => tracing::warn!("ignoring image name in archive: {e}"),
        }
    }
    names
}

/// Keeps descriptors without a platform, and of those with one, the best match for `sel`.
fn select<'a>(
    descs: &'a [Descriptor],
    sel: &Selection,
    index: &str,
) -> Result<Vec<&'a Descriptor>> {
    if descs.len() > MAX_ENTRIES {
        return Err(Error::NoPlatform {
            platform: sel.platform.to_string(),
            index: index.to_owned(),
            found: format!(
                "{} entries, more than the {MAX_ENTRIES} accepted",
                descs.len()
            ),
        });
    }
    let mut out: Vec<&Descriptor> = descs.iter().filter(|d| d.platform().is_none()).collect();
    let with: Vec<&Descriptor> = descs.iter().filter(|d| d.platform().is_some()).collect();
    if with.is_empty() {
        return Ok(out);
    }
    let fits = |d: &&Descriptor| {
        let p = d.platform().as_ref().expect("filtered on platform");
        sel.platform.matches(
            &p.os().to_string(),
            &p.architecture().to_string(),
            p.variant().as_deref(),
        )
    };
    let exact = |d: &&&Descriptor| {
        let p = d.platform().as_ref().expect("filtered on platform");
        p.variant().as_deref() == sel.platform.variant.as_deref()
    };
    let candidates: Vec<&Descriptor> = with.iter().copied().filter(fits).collect();
    match candidates.iter().find(exact).or(candidates.first()) {
        Some(d) => out.push(d),
        None if out.is_empty() => {
            let found: Vec<String> = with
                .iter()
                .filter_map(|d| d.platform().as_ref())
                .map(|p| {
                    let v = p
                        .variant()
                        .as_deref()
                        .map(|v| format!("/{v}"))
                        .unwrap_or_default();
                    format!("{}/{}{v}", p.os(), p.architecture())
                })
                .collect();
            return Err(Error::NoPlatform {
                platform: sel.platform.to_string(),
                index: index.to_owned(),
                found: found.join(", "),
            });
        }
        None => {}
    }
    Ok(out)
}

fn digest_of(desc: &Descriptor) -> Result<Digest> {
    Ok(Digest::parse(desc.digest().as_ref())?)
}

/// Follows a descriptor down to one image manifest.
fn resolve(src: &Source, desc: &Descriptor, sel: &Selection, depth: usize) -> Result<ImageSource> {
    let mt = desc.media_type().to_string();
    let digest = digest_of(desc)?;
    if media::is_index(&mt) {
        if depth >= MAX_DEPTH {
            return Err(Error::Archive {
                archive: src.path().to_path_buf(),
                reason: format!("index {digest} nests deeper than {MAX_DEPTH} levels"),
            });
        }
        let data = read_blob(src, "index", &digest, Some(desc.size()))?;
        let index: ImageIndex = serde_json::from_slice(&data).map_err(|source| Error::Json {
            what: "index",
            name: digest.to_string(),
            source,
        })?;
        let picked = select(index.manifests(), sel, &digest.to_string())?;
        let manifest = picked
            .iter()
            .find(|d| d.platform().is_some())
            .or(picked.first())
            .copied()
            .ok_or_else(|| Error::NoPlatform {
                platform: sel.platform.to_string(),
                index: digest.to_string(),
                found: "none".into(),
            })?;
        return resolve(src, manifest, sel, depth + 1);
    }
    if !media::is_manifest(&mt) {
        return Err(Error::UnknownMediaType {
            what: "manifest",
            media_type: mt,
            digest: digest.to_string(),
        });
    }
    let data = read_blob(src, "manifest", &digest, Some(desc.size()))?;
    let manifest: ImageManifest = serde_json::from_slice(&data).map_err(|source| Error::Json {
        what: "manifest",
        name: digest.to_string(),
        source,
    })?;
    if let Some(own) = manifest.media_type() {
        let own = own.to_string();
        if own != mt {
            return Err(Error::Archive {
                archive: src.path().to_path_buf(),
                reason: format!("manifest {digest} says media type {own:?}, its descriptor {mt:?}"),
            });
        }
    }
    let config_desc = manifest.config();
    let config_mt = config_desc.media_type().to_string();
    let config_digest = digest_of(config_desc)?;
    if !media::is_config(&config_mt) {
        return Err(Error::UnknownMediaType {
            what: "config",
            media_type: config_mt,
            digest: config_digest.to_string(),
        });
    }
    let config = read_blob(src, "config", &config_digest, Some(config_desc.size()))?;
    let mut layers = Vec::with_capacity(manifest.layers().len());
    for l in manifest.layers() {
        let lmt = l.media_type().to_string();
        let ld = digest_of(l)?;
        if media::layer_compression(&lmt).is_none() {
            return Err(Error::UnknownMediaType {
                what: "layer",
                media_type: lmt,
                digest: ld.to_string(),
            });
        }
        let path = format!("blobs/sha256/{}", ld.hex());
        if src.open(&path)?.is_none() {
            return Err(Error::MissingBlob {
                what: "layer",
                digest: ld,
            });
        }
        layers.push(LayerSource {
            path,
            media_type: Some(lmt),
            blob: Some((ld, l.size())),
        });
    }
    Ok(ImageSource {
        manifest: Some(Document {
            digest,
            media_type: mt,
            data,
        }),
        config: Document {
            digest: config_digest,
            media_type: config_mt,
            data: config,
        },
        layers,
        names: Vec::new(),
    })
}
