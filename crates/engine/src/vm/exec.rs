//! `isola exec` in a VM-isolated container: the CLI asks the VM's control socket to run the
//! process in the guest and carries its stdio as protocol streams (stdin 1, stdout 2, stderr 3 on
//! this connection); with a terminal, the CLI's terminal is put in raw mode and window-size
//! changes (SIGWINCH) become `ResizeTty` requests. Stdin is sent within its flow-control window:
//! the VM host forwards the agent's credits for it (and its close, when the process stops
//! reading), and refuses a client that sends more than the window. Returns the process's exit
//! status the way process isolation does (128+N for a signal).

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use isola_proto::{
    Event, Message, Request, Response, SendWindow, StdioStreams, Transport, STREAM_WINDOW,
};
use isola_runtime::oci::Process;

use super::pump::{pump, PumpEnd};
use crate::error::{Error, Result};
use crate::paths::Roots;

const STDIN: u32 = 1;
const STDOUT: u32 = 2;
const STDERR: u32 = 3;
/// Longest the guest may take to start the process.
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `process` in container `id`'s guest. `interactive`: the CLI's stdin is the process's;
/// `detach`: return 0 once it started.
///
/// # Errors
/// The control socket cannot be reached; the agent refuses the process (126/127 as
/// [`Error::StartFailed`] when the program cannot run).
pub fn run(
    roots: &Roots,
    id: &str,
    process: &Process,
    interactive: bool,
    detach: bool,
) -> Result<i32> {
    let tty = process.terminal().unwrap_or(false);
    let stream = super::connect(roots, id)?;
    let io = |e| Error::io("talk to", super::control_socket(roots, id), e);
    let writer = Arc::new(Mutex::new(Transport::new(stream.try_clone().map_err(io)?)));
    let mut reader = Transport::new(stream.try_clone().map_err(io)?);
    let exec_id = format!("exec-{}-{}", std::process::id(), super::now_epoch_ms());
    let stdio = if detach {
        StdioStreams::default()
    } else {
        StdioStreams {
            stdin: interactive.then_some(STDIN),
            stdout: Some(STDOUT),
            stderr: (!tty).then_some(STDERR),
            terminal: tty,
        }
    };
    let process_json =
        serde_json::to_value(process).map_err(|e| Error::Vm(format!("exec process: {e}")))?;
    let send = |w: &Arc<Mutex<Transport<UnixStream>>>, m: &Message| -> Result<()> {
        w.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(m)
            .map_err(|e| Error::Vm(format!("container {id}: exec: {e}")))
    };
    send(
        &writer,
        &Message::Request {
            id: 1,
            body: Request::Exec {
                id: id.to_owned(),
                exec_id: exec_id.clone(),
                process: process_json,
                stdio,
            },
        },
    )?;
    // The answer first: the process runs, or why not.
    // The stdin stream's send window (credits come from the agent as the process reads).
    let window = Arc::new(SendWindow::new(STREAM_WINDOW));
    // Output is written as it comes, even before the answer (never buffered here).
    let handle = |m: Message| -> Option<i32> {
        match m {
            Message::StreamCredit {
                stream: STDIN,
                bytes,
            } => {
                window.credit(bytes);
                None
            }
            // The process no longer reads its stdin.
            Message::StreamClose { stream: STDIN } => {
                window.close();
                None
            }
            Message::Stream { stream, data } => {
                let r = if stream == STDERR {
                    std::io::stderr().write_all(&data)
                } else {
                    let mut o = std::io::stdout();
                    o.write_all(&data).and_then(|()| o.flush())
                };
                let _ = r;
                None
            }
            Message::Event(Event::Exited {
                exec_id: Some(e),
                status,
                ..
            }) if e == exec_id => Some(match (status.code, status.signal) {
                (Some(c), _) => c.clamp(0, 255),
                (None, Some(s)) => 128 + s.clamp(1, 127),
                (None, None) => 128 + libc::SIGKILL,
            }),
            _ => None,
        }
    };
    let deadline = std::time::Instant::now() + EXEC_TIMEOUT;
    let mut early = None;
    loop {
        let m = reader
            .recv_deadline(deadline)
            .map_err(|e| Error::Vm(format!("container {id}: exec: {e}")))?;
        match m {
            Message::Response { id: 1, result } => match result {
                Ok(Response::Process { .. }) => break,
                Ok(other) => {
                    return Err(Error::Vm(format!("exec: unexpected answer {other:?}")));
                }
                Err(w) => return Err(super::host::wire_error("exec", w)),
            },
            other => {
                if let Some(code) = handle(other) {
                    early = Some(code);
                }
            }
        }
    }
    if detach {
        return Ok(0);
    }
    let _raw = tty.then(crate::exec::RawTerminal::enter);
    let done = Arc::new(AtomicBool::new(false));
    if tty {
        let w = writer.clone();
        let resize = move || {
            if let Ok(ws) = rustix::termios::tcgetwinsize(std::io::stdout()) {
                let _ = w
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .send(&Message::Request {
                        id: 2,
                        body: Request::ResizeTty {
                            stream: STDOUT,
                            rows: ws.ws_row,
                            cols: ws.ws_col,
                        },
                    });
            }
        };
        resize();
        let flag = Arc::new(AtomicBool::new(false));
        if signal_hook::flag::register(signal_hook::consts::SIGWINCH, flag.clone()).is_ok() {
            let done = done.clone();
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if flag.swap(false, Ordering::Relaxed) {
                        resize();
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
    }
    if interactive {
        let (w, window) = (writer.clone(), window.clone());
        std::thread::spawn(move || {
            let lock = || w.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let end = pump(std::io::stdin(), &window, |data| {
                let mut t = lock();
                window.take(data.len()).is_ok()
                    && t.send(&Message::Stream {
                        stream: STDIN,
                        data,
                    })
                    .is_ok()
            });
            if end == PumpEnd::Eof {
                let mut t = lock();
                if !window.is_closed() {
                    window.close();
                    let _ = t.send(&Message::StreamClose { stream: STDIN });
                }
            }
        });
    }
    if let Some(code) = early {
        done.store(true, Ordering::Relaxed);
        return Ok(code);
    }
    loop {
        match reader.recv() {
            Ok(m) => {
                if let Some(code) = handle(m) {
                    done.store(true, Ordering::Relaxed);
                    return Ok(code);
                }
            }
            Err(e) => {
                done.store(true, Ordering::Relaxed);
                return Err(Error::Vm(format!(
                    "container {id}: exec: the VM's control socket closed before the process exited ({e})"
                )));
            }
        }
    }
}
