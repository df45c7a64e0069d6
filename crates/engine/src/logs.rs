//! Container logs in Docker's json-file shape: one JSON object per line,
//! `{"log":"<text>","stream":"stdout"|"stderr","time":"<RFC 3339 with nanoseconds>"}`, where `log` is
//! a chunk of output up to and including a newline (a long line without newline is split at 16 KiB).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest chunk of a line stored in one record, in bytes.
const MAX_CHUNK: usize = 16 * 1024;

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The text, usually ending in a newline.
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When the text was read, RFC 3339 with nanoseconds.
    pub time: String,
}

/// Appends output to a log file, splitting it into line records; holds back an unfinished line.
#[derive(Debug)]
pub struct Writer {
    file: File,
    pending: [Vec<u8>; 2],
}

impl Writer {
    /// Opens (creating) the log file for appending.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        Ok(Self {
            file,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Adds output of `stream` (1 stdout, 2 stderr).
    pub fn write(&mut self, stream: u8, data: &[u8]) {
        let idx = usize::from(stream == 2);
        self.pending[idx].extend_from_slice(data);
        loop {
            let buf = &self.pending[idx];
            let cut = match buf.iter().position(|b| *b == b'\n') {
                Some(i) if i < MAX_CHUNK => i + 1,
                _ if buf.len() >= MAX_CHUNK => MAX_CHUNK,
                _ => break,
            };
            let chunk: Vec<u8> = self.pending[idx].drain(..cut).collect();
            self.record(idx, &chunk);
        }
    }

    /// Writes whatever unfinished lines are held back (at exit).
    pub fn flush(&mut self) {
        for idx in 0..2 {
            if !self.pending[idx].is_empty() {
                let chunk = std::mem::take(&mut self.pending[idx]);
                self.record(idx, &chunk);
            }
        }
    }

    fn record(&mut self, idx: usize, chunk: &[u8]) {
        let entry = Entry {
            log: String::from_utf8_lossy(chunk).into_owned(),
            stream: if idx == 1 { "stderr" } else { "stdout" }.into(),
            time: crate::state::now(),
        };
        let mut line = serde_json::to_vec(&entry).expect("log entry serializes");
        line.push(b'\n');
        if let Err(e) = self.file.write_all(&line) {
            tracing::warn!("writing the container log: {e}");
        }
    }
}

/// What `isola logs` shows.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Keep printing new output until the container stops.
    pub follow: bool,
    /// Prefix each line with its time.
    pub timestamps: bool,
    /// Only records at or after this RFC 3339 time.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only the last N records.
    pub tail: Option<usize>,
}

/// Prints the log to `stdout`/`stderr` by stream. With `follow`, keeps reading until `running()`
/// turns false and no more output arrives.
pub fn read(
    path: &Path,
    opts: &ReadOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    running: &dyn Fn() -> bool,
) -> Result<()> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let mut reader = BufReader::new(file);
    let mut entries = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| Error::io("read", path, e))?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        if let Ok(e) = serde_json::from_str::<Entry>(&line) {
            entries.push(e);
        }
    }
    // Keep a partially written last line for the follow loop.
    let mut offset = reader
        .stream_position()
        .map_err(|e| Error::io("read", path, e))?
        - line.len() as u64;
    let start = opts.tail.map_or(0, |t| entries.len().saturating_sub(t));
    for e in &entries[start..] {
        emit(e, opts, out, err)?;
    }
    if !opts.follow {
        return Ok(());
    }
    let mut file = reader.into_inner();
    let mut buf = String::new();
    loop {
        let was_running = running();
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io("read", path, e))?;
        let mut r = BufReader::new(&mut file);
        let mut progressed = false;
        loop {
            buf.clear();
            let n = r
                .read_line(&mut buf)
                .map_err(|e| Error::io("read", path, e))?;
            if n == 0 || !buf.ends_with('\n') {
                break;
            }
            offset += n as u64;
            progressed = true;
            if let Ok(e) = serde_json::from_str::<Entry>(&buf) {
                emit(&e, opts, out, err)?;
            }
        }
        if !was_running && !progressed {
            return Ok(());
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn emit(e: &Entry, opts: &ReadOptions, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    if let Some(since) = opts.since {
        let t =
            chrono::DateTime::parse_from_rfc3339(&e.time).map(|t| t.with_timezone(&chrono::Utc));
        if t.is_ok_and(|t| t < since) {
            return Ok(());
        }
    }
    let w: &mut dyn Write = if e.stream == "stderr" { err } else { out };
    let res = if opts.timestamps {
        write!(w, "{} {}", e.time, e.log)
    } else {
        w.write_all(e.log.as_bytes())
    };
    res.and_then(|()| w.flush())
        .map_err(|e| Error::io("write", "standard output", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = Writer::open(&path).unwrap();
        w.write(1, b"hello\nwor");
        w.write(2, b"oops\n");
        w.write(1, b"ld\n");
        w.write(1, b"no newline");
        w.flush();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        read(&path, &ReadOptions::default(), &mut out, &mut err, &|| {
            false
        })
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "hello\nworld\nno newline");
        assert_eq!(String::from_utf8(err).unwrap(), "oops\n");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let opts = ReadOptions {
            tail: Some(1),
            ..Default::default()
        };
        read(&path, &opts, &mut out, &mut err, &|| false).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "no newline");
    }
}
