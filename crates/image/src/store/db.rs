//! The image database: SQLite (bundled), WAL mode, one short transaction per change, so several isola
//! processes can read and write it at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::digest::Digest;
use crate::error::{Error, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,                -- config digest (the image ID)
    manifest_digest TEXT NOT NULL,
    manifest_media_type TEXT NOT NULL,
    created TEXT,                       -- RFC 3339, from the config
    size INTEGER NOT NULL,              -- bytes of unpacked layer content
    added INTEGER NOT NULL              -- unix seconds
);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    chain_id TEXT NOT NULL,
    diff_id TEXT NOT NULL,
    blob_digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    blob_size INTEGER NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (image_id, idx)
);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT PRIMARY KEY,              -- full normalized reference, e.g. docker.io/library/busybox:latest
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
";

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// One image as recorded: the config digest is its ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// Image ID: the digest of the image config.
    pub id: Digest,
    /// Digest of the manifest it was loaded with (or synthesized for a docker-archive or import).
    pub manifest_digest: Digest,
    /// The manifest's media type.
    pub manifest_media_type: String,
    /// `created` from the config (RFC 3339), if any.
    pub created: Option<String>,
    /// Sum of the layers' unpacked content, in bytes.
    pub size: u64,
    /// The layers, base first.
    pub layers: Vec<LayerRecord>,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRecord {
    /// Chain ID of the stack up to and including this layer; names the unpacked directory.
    pub chain_id: Digest,
    /// Digest of the uncompressed layer tar.
    pub diff_id: Digest,
    /// Digest of the layer blob as stored (possibly compressed).
    pub blob_digest: Digest,
    /// The blob's media type.
    pub media_type: String,
    /// Size of the blob in bytes.
    pub blob_size: u64,
    /// Bytes of regular-file content in the layer.
    pub size: u64,
}

/// Connection to the image database.
#[derive(Debug)]
pub(crate) struct Db {
    conn: Connection,
    path: PathBuf,
}

impl Db {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let err = |source| Error::Database {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(60)).map_err(err)?;
        // Switching to WAL needs a moment without other connections; it is a one-time change
        // that persists in the file, so only the first open of a new store does it (and retries
        // while another process holds the database).
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                match conn.pragma_update(None, "journal_mode", "WAL") {
                    Ok(()) => break,
                    Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(err(e)),
                }
            }
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> Error {
        Error::Database {
            path: self.path.clone(),
            source,
        }
    }

    /// Records an image and points `tags` at it, in one transaction. Returns, for each tag that moved,
    /// the image it pointed at before.
    pub(crate) fn insert_image(&self, rec: &ImageRecord, tags: &[String]) -> Result<Vec<Digest>> {
        let run = || -> rusqlite::Result<Vec<Digest>> {
            let tx =
                rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            let exists: bool = tx
                .query_row(
                    "SELECT 1 FROM images WHERE id = ?1",
                    [rec.id.to_string()],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !exists {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                tx.execute(
                    "INSERT INTO images (id, manifest_digest, manifest_media_type, created, size, added)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        rec.id.to_string(),
                        rec.manifest_digest.to_string(),
                        rec.manifest_media_type,
                        rec.created,
                        rec.size as i64,
                        now as i64
                    ],
                )?;
                for (idx, l) in rec.layers.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO image_layers
                         (image_id, idx, chain_id, diff_id, blob_digest, media_type, blob_size, size)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![
                            rec.id.to_string(),
                            idx as i64,
                            l.chain_id.to_string(),
                            l.diff_id.to_string(),
                            l.blob_digest.to_string(),
                            l.media_type,
                            l.blob_size as i64,
                            l.size as i64
                        ],
                    )?;
                }
            }
            let mut moved = Vec::new();
            for tag in tags {
                let old: Option<String> = tx
                    .query_row("SELECT image_id FROM tags WHERE name = ?1", [tag], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if let Some(old) = old.filter(|o| *o != rec.id.to_string()) {
                    if let Ok(d) = Digest::parse(&old) {
                        moved.push(d);
                    }
                }
                tx.execute(
                    "INSERT INTO tags (name, image_id) VALUES (?1, ?2)
                     ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id",
                    params![tag, rec.id.to_string()],
                )?;
            }
            tx.commit()?;
            Ok(moved)
        };
        run().map_err(|e| self.err(e))
    }

    /// Points `tag` at image `id`; returns the image it pointed at before, if another.
    pub(crate) fn set_tag(&self, tag: &str, id: &Digest) -> Result<Option<Digest>> {
        let run = || -> rusqlite::Result<Option<String>> {
            let tx =
                rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            let old: Option<String> = tx
                .query_row("SELECT image_id FROM tags WHERE name = ?1", [tag], |r| {
                    r.get(0)
                })
                .optional()?;
            tx.execute(
                "INSERT INTO tags (name, image_id) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id",
                params![tag, id.to_string()],
            )?;
            tx.commit()?;
            Ok(old)
        };
        let old = run().map_err(|e| self.err(e))?;
        Ok(old.and_then(|o| Digest::parse(&o).ok()).filter(|o| o != id))
    }

    /// Removes a tag; returns whether it existed.
    pub(crate) fn remove_tag(&self, tag: &str) -> Result<bool> {
        let n = self
            .conn
            .execute("DELETE FROM tags WHERE name = ?1", [tag])
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// Removes an image record, its layer list and its tags.
    pub(crate) fn delete_image(&self, id: &Digest) -> Result<()> {
        self.conn
            .execute("DELETE FROM images WHERE id = ?1", [id.to_string()])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The image a full tag name points at.
    pub(crate) fn image_for_tag(&self, tag: &str) -> Result<Option<Digest>> {
        let id: Option<String> = self
            .conn
            .query_row("SELECT image_id FROM tags WHERE name = ?1", [tag], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(id.and_then(|i| Digest::parse(&i).ok()))
    }

    /// Images whose ID starts with `hex_prefix`.
    pub(crate) fn images_with_prefix(&self, hex_prefix: &str) -> Result<Vec<Digest>> {
        let pattern = format!("sha256:{}%", hex_prefix.replace(['%', '_'], ""));
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM images WHERE id LIKE ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([pattern], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().filter_map(|r| Digest::parse(r).ok()).collect())
    }

    /// Images whose manifest digest is `digest`.
    pub(crate) fn images_with_manifest(&self, digest: &Digest) -> Result<Vec<Digest>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM images WHERE manifest_digest = ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([digest.to_string()], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().filter_map(|r| Digest::parse(r).ok()).collect())
    }

    /// All tags of an image, sorted.
    pub(crate) fn tags_of(&self, id: &Digest) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM tags WHERE image_id = ?1 ORDER BY name")
            .map_err(|e| self.err(e))?;
        stmt.query_map([id.to_string()], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))
    }

    /// One image with its layers.
    pub(crate) fn image(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        let row = self
            .conn
            .query_row(
                "SELECT manifest_digest, manifest_media_type, created, size FROM images WHERE id = ?1",
                [id.to_string()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((manifest, media_type, created, size)) = row else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare(
                "SELECT chain_id, diff_id, blob_digest, media_type, blob_size, size
                 FROM image_layers WHERE image_id = ?1 ORDER BY idx",
            )
            .map_err(|e| self.err(e))?;
        let raw = stmt
            .query_map([id.to_string()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        let mut layers = Vec::with_capacity(raw.len());
        for (chain, diff, blob, mt, blob_size, size) in raw {
            layers.push(LayerRecord {
                chain_id: Digest::parse(&chain)?,
                diff_id: Digest::parse(&diff)?,
                blob_digest: Digest::parse(&blob)?,
                media_type: mt,
                blob_size: blob_size as u64,
                size: size as u64,
            });
        }
        Ok(Some(ImageRecord {
            id: id.clone(),
            manifest_digest: Digest::parse(&manifest)?,
            manifest_media_type: media_type,
            created,
            size: size as u64,
            layers,
        }))
    }

    /// IDs of all images, newest first.
    pub(crate) fn image_ids(&self) -> Result<Vec<Digest>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM images ORDER BY created DESC, added DESC, id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().filter_map(|r| Digest::parse(r).ok()).collect())
    }

    /// Every blob digest and chain ID that some image references.
    pub(crate) fn referenced(&self) -> Result<(Vec<String>, Vec<String>)> {
        let collect = |sql: &str| -> rusqlite::Result<Vec<String>> {
            let mut stmt = self.conn.prepare(sql)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect()
        };
        let blobs = collect(
            "SELECT id FROM images UNION SELECT manifest_digest FROM images
             UNION SELECT blob_digest FROM image_layers",
        )
        .map_err(|e| self.err(e))?;
        let layers =
            collect("SELECT DISTINCT chain_id FROM image_layers").map_err(|e| self.err(e))?;
        Ok((blobs, layers))
    }

    /// A layer record with `chain_id` from any image that uses it.
    pub(crate) fn layer(&self, chain_id: &Digest) -> Result<Option<LayerRecord>> {
        let row = self
            .conn
            .query_row(
                "SELECT diff_id, blob_digest, media_type, blob_size, size FROM image_layers
                 WHERE chain_id = ?1 LIMIT 1",
                [chain_id.to_string()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((diff, blob, media_type, blob_size, size)) = row else {
            return Ok(None);
        };
        Ok(Some(LayerRecord {
            chain_id: chain_id.clone(),
            diff_id: Digest::parse(&diff)?,
            blob_digest: Digest::parse(&blob)?,
            media_type,
            blob_size: blob_size as u64,
            size: size as u64,
        }))
    }
}
