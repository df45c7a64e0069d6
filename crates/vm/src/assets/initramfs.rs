//! The initramfs: the agent as `/init` in a newc cpio archive, assembled once per agent binary.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::memo::unique;
use super::{Agent, INITRAMFS_LAYOUT};
use crate::cpio;
use crate::error::{Error, Result};

/// Compression of an initramfs written by [`write_initramfs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain cpio archive.
    None,
    /// gzip (the only decompressor isola's guest kernel has).
    Gzip,
}

/// The compression [`locate`](super::locate) uses (see the [`assets`](super) documentation for why).
pub const INITRAMFS_COMPRESSION: Compression = Compression::None;

/// The initramfs for `agent` in `state_dir`, assembled when it is not there yet.
///
/// # Errors
/// [`Error::Io`] when it cannot be written.
pub fn initramfs(agent: &Agent, state_dir: &Path) -> Result<PathBuf> {
    let ext = match INITRAMFS_COMPRESSION {
        Compression::None => "cpio",
        Compression::Gzip => "cpio.gz",
    };
    let path = state_dir.join(format!(
        "initramfs-v{INITRAMFS_LAYOUT}-{}.{ext}",
        &agent.sha256[..16]
    ));
    if fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() > 0) {
        return Ok(path);
    }
    write_initramfs(&agent.path, INITRAMFS_COMPRESSION, &path)?;
    tracing::info!(initramfs = %path.display(), agent = %agent.path.display(), "assembled the guest initramfs");
    Ok(path)
}

/// Writes an initramfs holding `agent` as `/init` to `dest`, atomically (a temporary file in
/// the same directory, synced, then renamed over `dest`). Deterministic: the same agent gives
/// the same bytes.
///
/// Contents: `dev/` (0755), `dev/console` (character device 5:1, 0600: the kernel opens it as
/// init's stdio), `init` (0755), `proc/`, `run/`, `sys/` (0755), `tmp/` (1777).
///
/// # Errors
/// [`Error::Io`] naming the agent or the file that failed.
pub fn write_initramfs(agent: &Path, compression: Compression, dest: &Path) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        dest.file_name().unwrap_or_default().to_string_lossy(),
        unique()
    ));
    let result = (|| {
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        let out = BufWriter::new(file);
        let file = match compression {
            Compression::None => archive(agent, out, &tmp)?
                .into_inner()
                .map_err(|e| Error::io("write", &tmp, e.into_error()))?,
            Compression::Gzip => {
                let gz = flate2::GzBuilder::new()
                    .mtime(0)
                    .write(out, flate2::Compression::best());
                archive(agent, gz, &tmp)?
                    .finish()
                    .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
                    .map_err(|e| Error::io("write", &tmp, e))?
            }
        };
        file.sync_all().map_err(|e| Error::io("sync", &tmp, e))?;
        fs::rename(&tmp, dest).map_err(|e| Error::io("rename into place", dest, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The cpio entries, written to `out`.
fn archive<W: Write>(agent: &Path, out: W, tmp: &Path) -> Result<W> {
    let wio = |e| Error::io("write", tmp, e);
    let mut f = File::open(agent).map_err(|e| Error::io("open", agent, e))?;
    let size = f.metadata().map_err(|e| Error::io("stat", agent, e))?.len();
    let mut w = cpio::Writer::new(out);
    w.dir("dev", 0o755).map_err(wio)?;
    w.char_device("dev/console", 0o600, 5, 1).map_err(wio)?;
    w.file("init", 0o755, size, &mut f)
        .map_err(|e| Error::io("copy the agent", agent, e))?;
    for d in ["proc", "run", "sys"] {
        w.dir(d, 0o755).map_err(wio)?;
    }
    w.dir("tmp", 0o1777).map_err(wio)?;
    w.finish().map_err(wio)
}
