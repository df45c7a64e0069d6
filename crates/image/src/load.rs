//! `isola load`: images from an archive into the store, and the shared step that commits one image
//! (layers, config, manifest, database record) for load and import alike.

use std::io::Read;
use std::path::Path;

use oci_spec::image::{DescriptorBuilder, ImageConfiguration, ImageManifestBuilder, MediaType};

use crate::archive::{self, Document, ImageSource, Selection};
use crate::digest::{chain_ids, Digest};
use crate::error::{Error, Result};
use crate::layer::ApplyOptions;
use crate::media;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::{remove_any, ImageRecord, LayerExpect, LayerRecord, Store};

/// Reports progress of long operations (a terminal progress bar, or nothing).
pub trait Progress {
    /// A layer of `total` bytes (when known) starts; `name` is its digest or path.
    fn start(&self, name: &str, total: Option<u64>);
    /// `n` more bytes were read.
    fn advance(&self, n: u64);
    /// The layer is done; `reused` when it was already in the store.
    fn finish(&self, name: &str, reused: bool);
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn finish(&self, _: &str, _: bool) {}
}

/// Options of [`load`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Platform to pick from multi-platform images; `None` = the host's, without insisting on it for
    /// single-platform images.
    pub platform: Option<Platform>,
    /// Limits on unpacking.
    pub apply: ApplyOptions,
}

/// One image that was loaded.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The image ID (config digest).
    pub id: Digest,
    /// The names it was tagged with.
    pub names: Vec<Reference>,
}

pub(crate) struct ProgressReader<'a, R> {
    pub(crate) inner: R,
    pub(crate) progress: &'a dyn Progress,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// Loads every image of the archive at `path` (docker-archive, OCI layout directory or tar, possibly
/// gzip- or zstd-compressed). On error nothing of the failing image is recorded, and no temporary file
/// is left.
pub fn load(
    store: &Store,
    path: &Path,
    opts: &LoadOptions,
    progress: &dyn Progress,
) -> Result<Vec<Loaded>> {
    let scratch = store.tmp_path("archive");
    let result = (|| {
        // A compressed archive holds layers and JSON: bound it by a generous multiple of the layer limit.
        let src = archive::open(path, &scratch, opts.apply.max_size.saturating_mul(16))?;
        let sel = Selection {
            platform: opts.platform.clone().unwrap_or_else(Platform::host),
            explicit: opts.platform.is_some(),
        };
        let images = archive::read_images(&src, &sel)?;
        let mut loaded = Vec::with_capacity(images.len());
        for image in images {
            loaded.push(commit_image(
                store,
                &image,
                &|layer| {
                    let (r, _) = src.open(&layer.path)?.ok_or_else(|| Error::Archive {
                        archive: path.to_path_buf(),
                        reason: format!("layer {:?} is referenced but missing", layer.path),
                    })?;
                    Ok(r)
                },
                &opts.apply,
                progress,
            )?);
        }
        Ok(loaded)
    })();
    remove_any(&scratch);
    result
}

type OpenLayer<'a> = dyn Fn(&archive::LayerSource) -> Result<Box<dyn Read + Send + 'a>> + 'a;

/// Stores one image: unpacks the layers not yet in the store, stores config and manifest (making an
/// OCI manifest when the source has none), and records the image with its names.
pub(crate) fn commit_image(
    store: &Store,
    image: &ImageSource,
    open_layer: &OpenLayer<'_>,
    apply: &ApplyOptions,
    progress: &dyn Progress,
) -> Result<Loaded> {
    let config_id = image.config.digest.clone();
    // Also parse it as plain JSON (depth-limited), as `image inspect` will: an image whose config
    // cannot be shown later is refused now.
    serde_json::from_slice::<serde_json::Value>(&image.config.data).map_err(|source| {
        Error::Json {
            what: "image config",
            name: config_id.to_string(),
            source,
        }
    })?;
    let config: ImageConfiguration =
        serde_json::from_slice(&image.config.data).map_err(|source| Error::Json {
            what: "image config",
            name: config_id.to_string(),
            source,
        })?;
    let diff_ids = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if diff_ids.len() != image.layers.len() {
        return Err(Error::BadConfig {
            config: config_id,
            reason: format!(
                "rootfs.diff_ids lists {} layers, the manifest {}",
                diff_ids.len(),
                image.layers.len()
            ),
        });
    }
    let chains = chain_ids(&diff_ids);
    let mut layers = Vec::with_capacity(image.layers.len());
    for (i, layer) in image.layers.iter().enumerate() {
        let name = match &layer.blob {
            Some((d, _)) => d.to_string(),
            None => layer.path.clone(),
        };
        if let Some(rec) = store.reusable_layer(&chains[i], layer.blob.as_ref().map(|(d, _)| d))? {
            progress.finish(&name, true);
            layers.push(rec);
            continue;
        }
        let total = layer.blob.as_ref().map(|(_, s)| *s);
        progress.start(&name, total);
        let reader = open_layer(layer)?;
        // Never read more than the descriptor promises, plus one byte to notice a longer blob.
        let reader: Box<dyn Read + Send> = match total {
            Some(s) => Box::new(reader.take(s.saturating_add(1))),
            None => reader,
        };
        let expect = LayerExpect {
            media_type: layer.media_type.as_deref(),
            blob: layer.blob.as_ref().map(|(d, s)| (d, *s)),
            diff_id: Some(&diff_ids[i]),
            name: &name,
        };
        let chain = chains[i].clone();
        let unpacked = store.unpack_layer(
            ProgressReader {
                inner: reader,
                progress,
            },
            &expect,
            |_| chain,
            apply,
        )?;
        progress.finish(&name, false);
        layers.push(LayerRecord {
            chain_id: chains[i].clone(),
            diff_id: unpacked.diff_id,
            blob_digest: unpacked.blob_digest,
            media_type: unpacked.media_type,
            blob_size: unpacked.blob_size,
            size: unpacked.size,
        });
    }
    store.put_blob("config", &image.config.data, Some(&config_id))?;
    let manifest = match &image.manifest {
        Some(m) => m.clone(),
        None => make_manifest(&image.config, &layers)?,
    };
    store.put_blob("manifest", &manifest.data, Some(&manifest.digest))?;
    let record = ImageRecord {
        id: config_id.clone(),
        manifest_digest: manifest.digest,
        manifest_media_type: manifest.media_type,
        created: config.created().clone(),
        size: layers.iter().map(|l| l.size).sum(),
        layers,
    };
    let tags: Vec<String> = image.names.iter().map(ToString::to_string).collect();
    store.db().insert_image(&record, &tags)?;
    Ok(Loaded {
        id: config_id,
        names: image.names.clone(),
    })
}

/// An OCI image manifest (image-spec "manifest.md") for an image that came without one.
pub(crate) fn make_manifest(config: &Document, layers: &[LayerRecord]) -> Result<Document> {
    let bad = |e: oci_spec::OciSpecError| Error::BadConfig {
        config: config.digest.clone(),
        reason: format!("cannot describe image: {e}"),
    };
    let descriptor = |mt: &str, digest: &Digest, size: u64| {
        DescriptorBuilder::default()
            .media_type(MediaType::from(mt))
            .digest(
                oci_spec::image::Digest::try_from(digest.to_string()).expect("valid sha256 digest"),
            )
            .size(size)
            .build()
    };
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(
            descriptor(media::OCI_CONFIG, &config.digest, config.data.len() as u64).map_err(bad)?,
        )
        .layers(
            layers
                .iter()
                .map(|l| descriptor(&l.media_type, &l.blob_digest, l.blob_size))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(bad)?,
        )
        .build()
        .map_err(bad)?;
    let data = serde_json::to_vec(&manifest).expect("manifest serializes");
    Ok(Document {
        digest: Digest::of(&data),
        media_type: media::OCI_MANIFEST.into(),
        data,
    })
}
