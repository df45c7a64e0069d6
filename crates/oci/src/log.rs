//! runc-style logging: errors go to stderr and, with `--log`, to a file as text or JSON lines
//! (`{"level":"error","msg":"…","time":"…"}`), which conmon and containerd read back.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `--log-format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// `time="…" level=error msg="…"`.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where errors are reported.
#[derive(Debug)]
pub struct Logger {
    file: Option<PathBuf>,
    format: Format,
}

impl Logger {
    /// Sets up `tracing` on stderr (debug level with `--debug`) and remembers the log file.
    /// With a log file, warnings and debug output go only there (as runc does): the runtime's
    /// stderr is often the container's stderr (`exec`, conmon), which must carry nothing of ours.
    pub fn init(file: Option<&Path>, format: Format, debug: bool) -> Self {
        let level = if debug {
            tracing::Level::DEBUG
        } else {
            tracing::Level::WARN
        };
        let log_file = file.and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok());
        let builder = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_target(false);
        match (log_file, format) {
            (Some(f), Format::Json) => builder.json().with_writer(std::sync::Mutex::new(f)).init(),
            (Some(f), Format::Text) => builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .init(),
            (None, _) => builder
                .without_time()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .init(),
        }
        Self {
            file: file.map(Path::to_path_buf),
            format,
        }
    }

    /// Reports an error on stderr and in the log file.
    pub fn error(&self, msg: &str) {
        eprintln!("isola-oci: {msg}");
        let Some(path) = &self.file else { return };
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let line = match self.format {
            Format::Json => {
                serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
            }
            Format::Text => format!("time={time:?} level=error msg={msg:?}"),
        };
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// An error and its causes as one line, each message once.
pub fn chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let msg = cause.to_string();
        if msg.is_empty() || out.ends_with(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    out
}
