//! Facts learnt by reading or running a file (QEMU's version, the agent's hash, the kernel's
//! release), remembered in `<state dir>/assets.json` while the file's `stat` is unchanged.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// A suffix no other writer uses at the same time: the process ID and a per-process counter.
pub(crate) fn unique() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Identity of a file's current contents, as far as `stat` can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let m = fs::metadata(path).ok()?;
        Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime_ns: m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec()),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MemoEntry {
    stamp: Stamp,
    value: serde_json::Value,
}

/// Facts learnt from files, keyed by `kind:path`, valid while the file's [`Stamp`] holds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Memo {
    entries: BTreeMap<String, MemoEntry>,
    #[serde(skip)]
    dirty: bool,
}

/// The memo file in the state directory.
pub(super) const MEMO_FILE: &str = "assets.json";
/// Largest memo file read.
const MEMO_MAX: u64 = 1 << 20;

impl Memo {
    /// The memo of `state_dir`; empty when missing, too large or unreadable.
    pub(super) fn load(state_dir: &Path) -> Memo {
        let path = state_dir.join(MEMO_FILE);
        File::open(&path)
            .ok()
            .and_then(|f| {
                let mut s = String::new();
                f.take(MEMO_MAX).read_to_string(&mut s).ok()?;
                serde_json::from_str(&s).ok()
            })
            .unwrap_or_default()
    }

    /// The fact of kind `kind` about `path`: remembered, or computed by `compute` (and
    /// remembered if the file has a stamp).
    pub(super) fn get_or(
        &mut self,
        kind: &str,
        path: &Path,
        compute: impl FnOnce(&Path) -> Result<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let key = format!("{kind}:{}", path.display());
        let stamp = Stamp::of(path);
        if let (Some(s), Some(e)) = (stamp, self.entries.get(&key)) {
            if e.stamp == s {
                return Ok(e.value.clone());
            }
        }
        let value = compute(path)?;
        if let Some(stamp) = stamp {
            self.entries.insert(
                key,
                MemoEntry {
                    stamp,
                    value: value.clone(),
                },
            );
            self.dirty = true;
        }
        Ok(value)
    }

    /// Writes the memo back (atomically) if it changed; failures only cost a recomputation.
    pub(super) fn save(&self, state_dir: &Path) {
        if !self.dirty {
            return;
        }
        let path = state_dir.join(MEMO_FILE);
        let tmp = state_dir.join(format!(".{MEMO_FILE}.tmp-{}", unique()));
        let ok = serde_json::to_vec_pretty(self)
            .ok()
            .is_some_and(|data| fs::write(&tmp, data).is_ok() && fs::rename(&tmp, &path).is_ok());
        if !ok {
            let _ = fs::remove_file(&tmp);
            tracing::debug!(path = %path.display(), "could not write the asset memo");
        }
    }
}
