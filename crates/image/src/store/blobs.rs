//! Content-addressed blobs (image-spec "image-layout.md", `blobs/<alg>/<encoded>`), verified on write.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use super::{remove_any, Store};
use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};

/// A blob being written: bytes go to a temporary file while they are hashed; `commit` verifies the digest
/// and renames the file into `blobs/sha256/`. Dropping an uncommitted writer removes the temporary file.
#[derive(Debug)]
pub struct BlobWriter {
    out: Option<HashingWriter<BufWriter<File>>>,
    tmp: PathBuf,
    dest_dir: PathBuf,
}

impl BlobWriter {
    /// Starts a blob in the store's `tmp/`.
    pub fn new(store: &Store) -> Result<Self> {
        let tmp = store.tmp_path("blob");
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .ctx("create", &tmp)?;
        Ok(Self {
            out: Some(HashingWriter::new(BufWriter::with_capacity(
                256 * 1024,
                file,
            ))),
            tmp,
            dest_dir: store.root().join("blobs/sha256"),
        })
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.out.as_ref().map_or(0, HashingWriter::count)
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Verifies the content against `expected` (when the caller knows the digest) and moves it into the
    /// store. Returns the digest and size in bytes. A mismatch names both digests and keeps nothing.
    pub fn commit(
        mut self,
        what: &'static str,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64)> {
        let out = self.out.take().expect("blob writer committed twice");
        let (buf, actual, size) = out.finish();
        let file = buf
            .into_inner()
            .map_err(|e| e.into_error())
            .ctx("write", &self.tmp)?;
        if let Some(expected) = expected {
            if *expected != actual {
                return Err(Error::DigestMismatch {
                    what,
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        drop(file);
        let dest = self.dest_dir.join(actual.hex());
        fs::rename(&self.tmp, &dest).ctx("rename into place", &dest)?;
        Ok((actual, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.out.as_mut() {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("blob already committed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.out.is_some() {
            remove_any(&self.tmp);
        }
    }
}

impl Store {
    /// Stores `data` as a blob, verified against `expected` when given. Returns its digest.
    pub fn put_blob(
        &self,
        what: &'static str,
        data: &[u8],
        expected: Option<&Digest>,
    ) -> Result<Digest> {
        let actual = Digest::of(data);
        if let Some(expected) = expected {
            if *expected != actual {
                return Err(Error::DigestMismatch {
                    what,
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        if self.has_blob(&actual) {
            return Ok(actual);
        }
        let mut w = BlobWriter::new(self)?;
        w.write_all(data).ctx("write", &w.tmp)?;
        Ok(w.commit(what, Some(&actual))?.0)
    }

    /// Whether the blob is present.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Reads a whole blob into memory; meant for JSON documents, bounded by `limit` bytes.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let file = File::open(&path).ctx("open blob", &path)?;
        let mut data = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(file, limit + 1), &mut data)
            .ctx("read", &path)?;
        if data.len() as u64 > limit {
            return Err(Error::Io {
                op: "read blob (too large)",
                path,
                source: io::Error::other(format!("over {limit} bytes")),
            });
        }
        Ok(data)
    }
}
