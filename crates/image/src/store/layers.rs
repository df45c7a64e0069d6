//! Unpacking a layer blob into the store: one pass over the blob that stores it, verifies its digest,
//! decompresses it, verifies the diff ID and unpacks the changeset into `layers/<chain ID>`.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};

use super::{remove_any, BlobWriter, Store};
use crate::compression::Compression;
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, IoContext, Result};
use crate::layer::{apply_layer, ApplyOptions};
use crate::media;

/// What unpacking one layer produced.
#[derive(Debug, Clone)]
pub struct UnpackedLayer {
    /// Digest of the blob as stored.
    pub blob_digest: Digest,
    /// Size of the blob in bytes.
    pub blob_size: u64,
    /// Media type recorded for the blob (from its descriptor, or derived from its magic bytes).
    pub media_type: String,
    /// Digest of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Bytes of regular-file content.
    pub size: u64,
}

/// What the caller knows about a layer before reading it.
#[derive(Debug, Clone)]
pub struct LayerExpect<'a> {
    /// The descriptor's media type; `None` when the archive format has none (docker-archive, import).
    pub media_type: Option<&'a str>,
    /// The descriptor's digest and size, when known.
    pub blob: Option<(&'a Digest, u64)>,
    /// The diff ID from the image config, when known.
    pub diff_id: Option<&'a Digest>,
    /// How to name the layer in errors (digest or path in the archive).
    pub name: &'a str,
}

/// Copies every byte read into a blob writer.
struct Tee<'a, R> {
    inner: R,
    blob: &'a mut BlobWriter,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.blob.write_all(&buf[..n])?;
        Ok(n)
    }
}

impl Store {
    /// Reads a layer blob from `stream`, stores the blob and unpacks it as the layer with `chain_id`
    /// (computed by the caller from the expected diff IDs, or from the diff ID this returns).
    ///
    /// Errors: media type unknown or disagreeing with the magic bytes, blob or diff ID digest mismatch,
    /// blob size mismatch, and any unpacking error ([`crate::layer::LayerError`]); nothing is left in the
    /// store on error.
    pub fn unpack_layer(
        &self,
        stream: impl Read,
        expect: &LayerExpect<'_>,
        chain_id: impl FnOnce(&Digest) -> Digest,
        opts: &ApplyOptions,
    ) -> Result<UnpackedLayer> {
        let declared = match expect.media_type {
            Some(mt) => {
                Some(
                    media::layer_compression(mt).ok_or_else(|| Error::UnknownMediaType {
                        what: "layer",
                        media_type: mt.to_owned(),
                        digest: expect.name.to_owned(),
                    })?,
                )
            }
            None => None,
        };
        let mut blob = BlobWriter::new(self)?;
        let tmp_dir = self.tmp_path("layer");
        fs::create_dir(&tmp_dir).ctx("create directory", &tmp_dir)?;
        let result = self.unpack_into(stream, &mut blob, &tmp_dir, declared, expect, opts);
        let (compression, diff_id, size) = match result {
            Ok(v) => v,
            Err(e) => {
                remove_any(&tmp_dir);
                return Err(e);
            }
        };
        let blob_size = blob.len();
        if let Some((digest, expected_size)) = expect.blob {
            if blob_size != expected_size {
                remove_any(&tmp_dir);
                return Err(Error::SizeMismatch {
                    what: "layer",
                    digest: digest.clone(),
                    expected: expected_size,
                    actual: blob_size,
                });
            }
        }
        let (blob_digest, blob_size) = match blob.commit("layer blob", expect.blob.map(|(d, _)| d))
        {
            Ok(v) => v,
            Err(e) => {
                remove_any(&tmp_dir);
                return Err(e);
            }
        };
        let chain = chain_id(&diff_id);
        let dest = self.layer_path(&chain);
        if let Err(e) = fs::rename(&tmp_dir, &dest) {
            // Another process finished the same layer first: its copy is complete, keep it.
            remove_any(&tmp_dir);
            if !dest.is_dir() {
                return Err(Error::Io {
                    op: "rename into place",
                    path: dest,
                    source: e,
                });
            }
        }
        let media_type = match expect.media_type {
            Some(mt) => mt.to_owned(),
            None => media::oci_layer_type(compression).to_owned(),
        };
        Ok(UnpackedLayer {
            blob_digest,
            blob_size,
            media_type,
            diff_id,
            size,
        })
    }

    fn unpack_into(
        &self,
        stream: impl Read,
        blob: &mut BlobWriter,
        dir: &std::path::Path,
        declared: Option<Compression>,
        expect: &LayerExpect<'_>,
        opts: &ApplyOptions,
    ) -> Result<(Compression, Digest, u64)> {
        let corrupt = |source: io::Error| Error::Io {
            op: "read layer",
            path: expect.name.into(),
            source,
        };
        let mut input = BufReader::with_capacity(
            256 * 1024,
            Tee {
                inner: stream,
                blob,
            },
        );
        let magic = input.fill_buf().map_err(corrupt)?;
        let found = Compression::detect(magic);
        if let Some(declared) = declared {
            if declared != found {
                return Err(Error::CompressionMismatch {
                    digest: expect.name.to_owned(),
                    media_type: expect.media_type.unwrap_or_default().to_owned(),
                    found: found.as_str(),
                });
            }
        }
        let (diff_id, stats) = {
            let decoder = found.decoder(&mut input).map_err(corrupt)?;
            // apply_layer reads the stream to its end (through its size limit), so the diff ID
            // covers every byte.
            let mut diff = HashingReader::new(decoder);
            let stats = apply_layer(&mut diff, dir, opts).map_err(|source| Error::Layer {
                digest: expect.name.to_owned(),
                source,
            })?;
            let (diff_id, _) = diff.finish();
            (diff_id, stats)
        };
        // Whatever follows the compressed stream is part of the blob and its digest.
        io::copy(&mut input, &mut io::sink()).map_err(corrupt)?;
        if let Some(expected) = expect.diff_id {
            if *expected != diff_id {
                return Err(Error::DigestMismatch {
                    what: "layer diff ID",
                    expected: expected.clone(),
                    actual: diff_id,
                });
            }
        }
        Ok((found, diff_id, stats.content_bytes))
    }
}
