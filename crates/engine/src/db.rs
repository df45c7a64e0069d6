//! The container database: one SQLite file under `--root` (WAL mode, short transactions), shared by
//! every isola process and every monitor.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::config::{ContainerConfig, HostConfig};
use crate::error::{Error, Result};
use crate::state::State;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,          -- 64 hex
    name TEXT NOT NULL UNIQUE,    -- without the leading '/'
    created TEXT NOT NULL,        -- RFC 3339
    image_id TEXT NOT NULL,       -- sha256:… of the image config
    config TEXT NOT NULL,         -- ContainerConfig JSON
    host_config TEXT NOT NULL,    -- HostConfig JSON
    state TEXT NOT NULL           -- State JSON
);
";

/// A container as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// 64 lower-case hex characters.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// The image ID it was created from.
    pub image_id: String,
    /// What the user asked for.
    pub config: ContainerConfig,
    /// Resources, mounts, isolation.
    pub host_config: HostConfig,
    /// Lifecycle state.
    pub state: State,
}

/// Connection to the container database.
#[derive(Debug)]
pub struct Db {
    conn: Connection,
    path: PathBuf,
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("record serializes")
}

impl Db {
    /// Opens (creating) `<root>/containers.db`.
    pub fn open(root: &Path) -> Result<Self> {
        let path = root.join("containers.db");
        let err = |source| Error::Database {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(60)).map_err(err)?;
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                match conn.pragma_update(None, "journal_mode", "WAL") {
                    Ok(()) => break,
                    Err(e) if std::time::Instant::now() < deadline && busy(&e) => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(err(e)),
                }
            }
        }
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Self { conn, path })
    }

    fn err(&self, source: rusqlite::Error) -> Error {
        Error::Database {
            path: self.path.clone(),
            source,
        }
    }

    /// Inserts a new record; a taken name is an error naming it.
    pub fn insert(&self, r: &Record) -> Result<()> {
        let res = self.conn.execute(
            "INSERT INTO containers (id, name, created, image_id, config, host_config, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                r.id,
                r.name,
                r.created,
                r.image_id,
                json(&r.config),
                json(&r.host_config),
                json(&r.state)
            ],
        );
        match res {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(Error::NameInUse(r.name.clone()))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// Replaces the state of container `id`.
    pub fn set_state(&self, id: &str, state: &State) -> Result<()> {
        self.conn
            .execute(
                "UPDATE containers SET state = ?2 WHERE id = ?1",
                params![id, json(state)],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Reads, changes and writes the state of `id` in one transaction; returns the new state.
    pub fn update_state(&self, id: &str, f: impl FnOnce(&mut State)) -> Result<State> {
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )
        .map_err(|e| self.err(e))?;
        let raw: Option<String> = tx
            .query_row("SELECT state FROM containers WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let Some(raw) = raw else {
            return Err(Error::NoSuchContainer(id.to_owned()));
        };
        let mut state: State = serde_json::from_str(&raw).map_err(|e| Error::Corrupt {
            id: id.to_owned(),
            reason: e.to_string(),
        })?;
        f(&mut state);
        tx.execute(
            "UPDATE containers SET state = ?2 WHERE id = ?1",
            params![id, json(&state)],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(state)
    }

    /// Deletes a record.
    pub fn delete(&self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM containers WHERE id = ?1", [id])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn row(
        r: &rusqlite::Row<'_>,
    ) -> rusqlite::Result<(String, String, String, String, String, String, String)> {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
        ))
    }

    fn decode(raw: (String, String, String, String, String, String, String)) -> Result<Record> {
        let (id, name, created, image_id, config, host_config, state) = raw;
        let bad = |e: serde_json::Error| Error::Corrupt {
            id: id.clone(),
            reason: e.to_string(),
        };
        Ok(Record {
            config: serde_json::from_str(&config).map_err(bad)?,
            host_config: serde_json::from_str(&host_config).map_err(bad)?,
            state: serde_json::from_str(&state).map_err(bad)?,
            id: id.clone(),
            name,
            created,
            image_id,
        })
    }

    /// Every record, newest first.
    pub fn all(&self) -> Result<Vec<Record>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, created, image_id, config, host_config, state FROM containers ORDER BY created DESC")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], Self::row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        rows.into_iter().map(Self::decode).collect()
    }

    /// The record with this exact ID.
    pub fn get(&self, id: &str) -> Result<Option<Record>> {
        let raw = self
            .conn
            .query_row(
                "SELECT id, name, created, image_id, config, host_config, state FROM containers WHERE id = ?1",
                [id],
                Self::row,
            )
            .optional()
            .map_err(|e| self.err(e))?;
        raw.map(Self::decode).transpose()
    }

    /// Finds a container by full ID, name, or unique ID prefix (in that order, as Docker does).
    pub fn find(&self, key: &str) -> Result<Record> {
        let key = key.strip_prefix('/').unwrap_or(key);
        if let Some(r) = self.get(key)? {
            return Ok(r);
        }
        let by_name: Option<String> = self
            .conn
            .query_row("SELECT id FROM containers WHERE name = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        if let Some(id) = by_name {
            return self
                .get(&id)?
                .ok_or_else(|| Error::NoSuchContainer(key.to_owned()));
        }
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut stmt = self
                .conn
                .prepare("SELECT id FROM containers WHERE id LIKE ?1")
                .map_err(|e| self.err(e))?;
            let ids = stmt
                .query_map([format!("{}%", key.to_ascii_lowercase())], |r| {
                    r.get::<_, String>(0)
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| self.err(e))?;
            match ids.len() {
                0 => {}
                1 => {
                    return self
                        .get(&ids[0])?
                        .ok_or_else(|| Error::NoSuchContainer(key.to_owned()))
                }
                _ => return Err(Error::Ambiguous(key.to_owned())),
            }
        }
        Err(Error::NoSuchContainer(key.to_owned()))
    }

    /// Names of containers created from image `image_id`.
    pub fn users_of_image(&self, image_id: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM containers WHERE image_id = ?1 ORDER BY name")
            .map_err(|e| self.err(e))?;
        stmt.query_map([image_id], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))
    }
}

fn busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}
