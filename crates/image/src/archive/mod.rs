//! Reading image archives: OCI image layouts (image-spec "image-layout.md", as a directory or a tar
//! file) and docker-archives (`docker save`, both the legacy `<id>/layer.tar` layout and the newer one
//! whose `manifest.json` points into `blobs/sha256/`).
//!
//! Parsing turns an archive into a list of [`ImageSource`]s: verified manifest and config bytes plus the
//! location of each layer. Nothing is written to the store here; every referenced blob is checked to be
//! present and of a known media type before any layer is unpacked.

mod docker;
mod oci;
mod source;

use std::path::Path;

pub use source::Source;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::reference::Reference;

/// Largest JSON document (index, manifest, config) read from an archive, in bytes.
pub const MAX_JSON: u64 = 8 << 20;

/// Most entries an index or a docker-archive `manifest.json` may list.
pub const MAX_ENTRIES: usize = 1024;

/// A document read from an archive and verified against its digest.
#[derive(Debug, Clone)]
pub struct Document {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// Where one layer of an image is in the archive.
#[derive(Debug, Clone)]
pub struct LayerSource {
    /// Path inside the archive.
    pub path: String,
    /// Media type from the manifest; `None` for docker-archive layers, whose type is sniffed.
    pub media_type: Option<String>,
    /// Digest and size from the manifest, when there is one.
    pub blob: Option<(Digest, u64)>,
}

/// One image found in an archive.
#[derive(Debug, Clone)]
pub struct ImageSource {
    /// The manifest, when the archive has one (docker-archives do not: one is made on load).
    pub manifest: Option<Document>,
    /// The image config.
    pub config: Document,
    /// The layers, base first.
    pub layers: Vec<LayerSource>,
    /// Names the archive gives the image.
    pub names: Vec<Reference>,
}

/// How to pick images out of an archive.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The platform to pick from image indexes.
    pub platform: Platform,
    /// Whether the user asked for that platform explicitly; then a single-platform image of another
    /// platform is an error rather than loaded as is.
    pub explicit: bool,
}

/// Lists the images in an archive, choosing by `sel` where an index offers several platforms.
pub fn read_images(src: &Source, sel: &Selection) -> Result<Vec<ImageSource>> {
    let images = if src.open("index.json")?.is_some() {
        let mut images = oci::read(src, sel)?;
        docker::add_repo_tags(src, &mut images)?;
        images
    } else if src.open("manifest.json")?.is_some() {
        docker::read(src)?
    } else {
        return Err(Error::Archive {
            archive: src.path().to_path_buf(),
            reason:
                "neither index.json (OCI image layout) nor manifest.json (docker-archive) found"
                    .into(),
        });
    };
    if images.is_empty() {
        return Err(Error::Empty(src.path().to_path_buf()));
    }
    // The same image listed several times (one entry per name) is loaded once, with every name.
    let mut unique: Vec<ImageSource> = Vec::with_capacity(images.len());
    for image in images {
        let same = |u: &&mut ImageSource| {
            u.config.digest == image.config.digest
                && u.manifest.as_ref().map(|m| &m.digest)
                    == image.manifest.as_ref().map(|m| &m.digest)
        };
        match unique.iter_mut().find(|u| same(u)) {
            Some(u) => {
                for n in image.names {
                    if !u.names.contains(&n) {
                        u.names.push(n);
                    }
                }
            }
            None => unique.push(image),
        }
    }
    let images = unique;
    for image in &images {
        check_platform(image, sel)?;
        for layer in &image.layers {
            if src.open(&layer.path)?.is_none() {
                return Err(match &layer.blob {
                    Some((digest, _)) => Error::MissingBlob {
                        what: "layer",
                        digest: digest.clone(),
                    },
                    None => Error::Archive {
                        archive: src.path().to_path_buf(),
                        reason: format!("layer {:?} is referenced but missing", layer.path),
                    },
                });
            }
        }
    }
    Ok(images)
}

/// Reads a blob named by a descriptor and verifies its size and digest.
pub(crate) fn read_blob(
    src: &Source,
    what: &'static str,
    digest: &Digest,
    size: Option<u64>,
) -> Result<Vec<u8>> {
    let path = format!("blobs/sha256/{}", digest.hex());
    let data = src
        .read_small(&path, MAX_JSON)?
        .ok_or_else(|| Error::MissingBlob {
            what,
            digest: digest.clone(),
        })?;
    let actual = Digest::of(&data);
    if actual != *digest {
        return Err(Error::DigestMismatch {
            what,
            expected: digest.clone(),
            actual,
        });
    }
    if let Some(size) = size.filter(|&s| s != data.len() as u64) {
        return Err(Error::SizeMismatch {
            what,
            digest: digest.clone(),
            expected: size,
            actual: data.len() as u64,
        });
    }
    Ok(data)
}

fn check_platform(image: &ImageSource, sel: &Selection) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Head {
        architecture: Option<String>,
        os: Option<String>,
        variant: Option<String>,
    }
    let head: Head = serde_json::from_slice(&image.config.data).map_err(|source| Error::Json {
        what: "image config",
        name: image.config.digest.to_string(),
        source,
    })?;
    let (os, arch) = (
        head.os.unwrap_or_default(),
        head.architecture.unwrap_or_default(),
    );
    if sel.explicit && !sel.platform.matches(&os, &arch, head.variant.as_deref()) {
        return Err(Error::NoPlatform {
            platform: sel.platform.to_string(),
            index: image.config.digest.to_string(),
            found: format!("{os}/{arch}"),
        });
    }
    Ok(())
}

/// Largest expansion accepted for a compressed archive.
const MAX_RATIO: u64 = 100;
/// A compressed archive may always expand to this many bytes, whatever its ratio.
const MIN_SPOOL: u64 = 1 << 30;

/// Whether a 512-byte block is a tar header: its checksum field matches the sum of its bytes (with
/// the checksum field counted as spaces), as POSIX ustar and GNU tar define it.
fn is_tar_header(block: &[u8; 512]) -> bool {
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect::<String>();
    let Ok(want) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == want
}

/// Opens `path` as an archive: a directory, or a tar file. A compressed tar file is decompressed to
/// `scratch` first (the caller removes it afterwards); it may expand to at most `max_size` bytes and
/// at most 100 times its compressed size (but always 1 GiB), so a decompression bomb is refused.
pub fn open(path: &Path, scratch: &Path, max_size: u64) -> Result<Source> {
    use crate::compression::Compression;
    use crate::error::IoContext;
    use std::io::Read;

    let meta = std::fs::metadata(path).ctx("open", path)?;
    if meta.is_dir() {
        return Source::dir(path);
    }
    let mut file = std::fs::File::open(path).ctx("open", path)?;
    let mut magic = [0u8; 6];
    let n = file.read(&mut magic).ctx("read", path)?;
    let c = Compression::detect(&magic[..n]);
    if c == Compression::None {
        return Source::tar(path, path);
    }
    let limit = max_size.min(meta.len().saturating_mul(MAX_RATIO).max(MIN_SPOOL));
    let corrupt = |e: std::io::Error| Error::Archive {
        archive: path.to_path_buf(),
        reason: format!("truncated or corrupt {} stream: {e}", c.as_str()),
    };
    let file = std::fs::File::open(path).ctx("open", path)?;
    let mut dec = c.decoder(std::io::BufReader::new(file)).ctx("read", path)?;
    let mut first = [0u8; 512];
    dec.read_exact(&mut first).map_err(corrupt)?;
    if !is_tar_header(&first) {
        return Err(Error::Archive {
            archive: path.to_path_buf(),
            reason: format!("the {} stream does not hold a tar archive", c.as_str()),
        });
    }
    let mut out = std::fs::File::create(scratch).ctx("create", scratch)?;
    std::io::Write::write_all(&mut out, &first).ctx("write", scratch)?;
    let n = std::io::copy(&mut dec.take(limit), &mut out).map_err(corrupt)?;
    if n + 512 > limit {
        return Err(Error::Archive {
            archive: path.to_path_buf(),
            reason: format!(
                "decompressed archive passes {limit} bytes (100 times its compressed size, \
                 or --max-layer-size)"
            ),
        });
    }
    Source::tar(scratch, path)
}
