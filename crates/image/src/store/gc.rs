//! Garbage collection: blobs and unpacked layers that no image references are removed.

use std::collections::HashSet;
use std::fs;

use super::{remove_any, Store};
use crate::error::{IoContext, Result};

/// What a collection removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcStats {
    /// Blobs removed.
    pub blobs: usize,
    /// Unpacked layer directories removed.
    pub layers: usize,
}

impl Store {
    /// Removes every blob and unpacked layer that no image references. Holds the store lock
    /// exclusively, so it never races with a load that is still writing content.
    pub fn gc(&self) -> Result<GcStats> {
        self.exclusive(|| self.collect_garbage())
    }

    /// The collection itself; the caller holds the store lock exclusively.
    pub(super) fn collect_garbage(&self) -> Result<GcStats> {
        {
            let (blobs, layers) = self.db().referenced()?;
            let blobs: HashSet<String> = blobs
                .iter()
                .filter_map(|d| d.strip_prefix("sha256:"))
                .map(str::to_owned)
                .collect();
            let layers: HashSet<String> = layers
                .iter()
                .filter_map(|d| d.strip_prefix("sha256:"))
                .map(str::to_owned)
                .collect();
            let mut stats = GcStats::default();
            for (dir, keep, count) in [
                ("blobs/sha256", &blobs, &mut stats.blobs),
                ("layers", &layers, &mut stats.layers),
            ] {
                let path = self.root().join(dir);
                for entry in fs::read_dir(&path).ctx("read directory", &path)?.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if !keep.contains(&name) {
                        tracing::debug!(%name, dir, "removing unreferenced content");
                        remove_any(&entry.path());
                        *count += 1;
                    }
                }
            }
            Ok(stats)
        }
    }
}
