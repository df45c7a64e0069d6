//! The client side of attach (`isola run` in the foreground, `start -a`, `attach`): connects to the
//! container's monitor, copies the terminal or the CLI's stdin to the container and its output back,
//! forwards the window size, and returns the container's exit.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::monitor::proto::{read_frame, write_frame, Exit, Hello, Kind};

/// What to attach.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttachOptions {
    /// Send the CLI's stdin to the container.
    pub stdin: bool,
    /// The container has a terminal: put ours in raw mode and forward its size.
    pub tty: bool,
}

/// Restores a terminal's settings when dropped.
struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enter() -> Option<Self> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

fn winsize_frame() -> Option<[u8; 4]> {
    let ws = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    let [r0, r1] = ws.ws_row.to_be_bytes();
    let [c0, c1] = ws.ws_col.to_be_bytes();
    Some([r0, r1, c0, c1])
}

/// Connects to the monitor socket of a container, retrying briefly while the monitor sets it up.
pub fn connect(socket: &Path) -> Result<UnixStream> {
    let mut last = None;
    for _ in 0..200 {
        match crate::paths::connect_unix(socket) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(Error::io(
        "connect to",
        socket,
        last.unwrap_or_else(|| std::io::Error::other("no monitor")),
    ))
}

/// Attaches to the monitor at `socket` until the container exits; returns the exit. `on_started` is
/// called once the program runs (the caller may print or record it).
pub fn attach(socket: &Path, opts: AttachOptions) -> Result<Exit> {
    let mut stream = connect(socket)?;
    let hello = Hello {
        stdin: opts.stdin,
        stdout: true,
        stderr: true,
    };
    let mut line = serde_json::to_vec(&hello).expect("hello serializes");
    line.push(b'\n');
    stream
        .write_all(&line)
        .map_err(|e| Error::io("write to", socket, e))?;
    let _raw = if opts.tty && rustix::termios::isatty(std::io::stdin()) {
        RawMode::enter()
    } else {
        None
    };
    let done = Arc::new(AtomicBool::new(false));
    if opts.tty {
        if let Some(ws) = winsize_frame() {
            let _ = write_frame(&mut stream, Kind::Resize, &ws);
        }
        spawn_resize_forwarder(
            stream
                .try_clone()
                .map_err(|e| Error::io("clone", socket, e))?,
            done.clone(),
        );
    }
    if opts.stdin {
        let mut writer = stream
            .try_clone()
            .map_err(|e| Error::io("clone", socket, e))?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 32 * 1024];
            let mut stdin = std::io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = write_frame(&mut writer, Kind::StdinClose, &[]);
                        return;
                    }
                    Ok(n) => {
                        if write_frame(&mut writer, Kind::Stdin, &buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let result = loop {
        match read_frame(&mut stream) {
            Ok(Some((Kind::Stdout, data))) => {
                let _ = out.write_all(&data);
                let _ = out.flush();
            }
            Ok(Some((Kind::Stderr, data))) => {
                let _ = err.write_all(&data);
                let _ = err.flush();
            }
            Ok(Some((Kind::Exit, data))) => {
                break serde_json::from_slice::<Exit>(&data).map_err(|e| Error::Monitor {
                    id: socket.display().to_string(),
                    reason: format!("malformed exit: {e}"),
                });
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                break Err(Error::Monitor {
                    id: socket.display().to_string(),
                    reason: "the monitor closed the connection without reporting an exit".into(),
                })
            }
            Err(e) => break Err(Error::io("read from", socket, e)),
        }
    };
    done.store(true, Ordering::Relaxed);
    result
}

/// Sends the terminal size again whenever it changes (SIGWINCH), until `done`.
fn spawn_resize_forwarder(mut stream: UnixStream, done: Arc<AtomicBool>) {
    let changed = Arc::new(AtomicBool::new(false));
    if signal_hook::flag::register(signal_hook::consts::SIGWINCH, changed.clone()).is_err() {
        return;
    }
    std::thread::spawn(move || {
        while !done.load(Ordering::Relaxed) {
            if changed.swap(false, Ordering::Relaxed) {
                if let Some(ws) = winsize_frame() {
                    if write_frame(&mut stream, Kind::Resize, &ws).is_err() {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}
