//! The on-disk image store under `--root`:
//!
//! ```text
//! <root>/images.db           SQLite: images, tags, layers (WAL mode, safe across processes)
//! <root>/blobs/sha256/<hex>  content-addressed blobs: manifests, configs, layer archives as loaded
//! <root>/layers/<chain hex>  one unpacked layer per chain ID, in overlayfs form
//! <root>/tmp/                in-flight writes; renamed into place when complete
//! <root>/store.lock          flock: shared while writing content, exclusive to collect garbage
//! ```
//!
//! A directory or blob is only ever visible under its final name once it is complete and verified, and
//! the database names an image only after all its content is in place. Whatever an interrupted command
//! leaves in `tmp/` is swept by the next command that can take the lock exclusively.

mod blobs;
mod db;
mod gc;
mod layers;

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{flock, FlockOperation};

pub use blobs::BlobWriter;
pub(crate) use db::Db;
pub use db::{ImageRecord, LayerRecord};
pub use layers::{LayerExpect, UnpackedLayer};

use crate::error::{IoContext, Result};

/// Handle on an image store rooted at a directory.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    db: Db,
    lock: File,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens (creating if needed) the store at `root`, and sweeps leftovers of interrupted commands when
    /// no other isola process is using the store.
    pub fn open(root: &Path) -> Result<Self> {
        // The root may be shared with other state (containers), so others may traverse it; the
        // store's own directories are root's alone: unpacked layers keep their setuid binaries and
        // world-writable directories, which must not be reachable by other host users.
        private_dir(root, 0o711)?;
        for dir in ["blobs", "blobs/sha256", "layers", "tmp"] {
            private_dir(&root.join(dir), 0o700)?;
        }
        let lock_path = root.join("store.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .ctx("open", &lock_path)?;
        let db = Db::open(&root.join("images.db"))?;
        let store = Self {
            root: root.to_path_buf(),
            db,
            lock,
        };
        if flock(store.lock.as_fd(), FlockOperation::NonBlockingLockExclusive).is_ok() {
            // No other isola process is writing: whatever a failed or interrupted command left
            // (temporary files, blobs and layers no image references) can go.
            store.sweep_tmp();
            if let Err(e) = store.collect_garbage() {
                tracing::warn!("collecting unreferenced content: {e}");
            }
        }
        flock(store.lock.as_fd(), FlockOperation::LockShared)
            .map_err(std::io::Error::from)
            .ctx("lock", &lock_path)?;
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Path of a blob by digest (it may not exist).
    pub fn blob_path(&self, digest: &crate::digest::Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Path of the unpacked layer with chain ID `chain_id` (it may not exist).
    pub fn layer_path(&self, chain_id: &crate::digest::Digest) -> PathBuf {
        self.root.join("layers").join(chain_id.hex())
    }

    /// A fresh, unique path under `tmp/` (nothing is created).
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{seq}", std::process::id()))
    }

    /// Runs `f` holding the store lock exclusively (no other process writes content meanwhile), then
    /// returns to the shared lock.
    pub(crate) fn exclusive<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let path = self.root.join("store.lock");
        flock(self.lock.as_fd(), FlockOperation::LockExclusive)
            .map_err(std::io::Error::from)
            .ctx("lock", &path)?;
        self.sweep_tmp();
        let out = f();
        flock(self.lock.as_fd(), FlockOperation::LockShared)
            .map_err(std::io::Error::from)
            .ctx("lock", &path)?;
        out
    }

    fn sweep_tmp(&self) {
        let tmp = self.root.join("tmp");
        let Ok(entries) = fs::read_dir(&tmp) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            tracing::debug!(path = %path.display(), "removing leftover of an interrupted command");
            remove_any(&path);
        }
    }
}

/// Creates `path` (and its parents) if missing and sets its mode to `mode` either way.
fn private_dir(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(path).ctx("create directory", path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).ctx("set permissions of", path)
}

/// Removes a file or a directory tree, ignoring errors (used for temporary content only).
pub(crate) fn remove_any(path: &Path) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = fs::remove_file(path);
        }
        Err(_) => {}
    }
}

impl Store {
    /// The record of an already unpacked layer with `chain_id`, when its directory and (if `blob` is
    /// given) that exact blob are in the store.
    pub(crate) fn reusable_layer(
        &self,
        chain_id: &crate::digest::Digest,
        blob: Option<&crate::digest::Digest>,
    ) -> Result<Option<LayerRecord>> {
        let Some(rec) = self.db.layer(chain_id)? else {
            return Ok(None);
        };
        if !self.layer_path(chain_id).is_dir() || !self.has_blob(&rec.blob_digest) {
            return Ok(None);
        }
        match blob {
            Some(b) if *b != rec.blob_digest => Ok(None),
            _ => Ok(Some(rec)),
        }
    }
}
