//! A container in the foreground (`run` without -d, `start -a`, `attach`): attach to its monitor,
//! forward the CLI's signals to it (without a terminal, as Docker's `--sig-proxy`), and end with
//! its exit status once the engine has recorded the exit.

use std::time::{Duration, Instant};

use isola_engine::client::{self, AttachOptions};
use isola_engine::db::Record;
use isola_engine::state::Status;
use isola_engine::{Engine, Roots};

use crate::exit::Exit;

/// Signals the CLI passes on to a container attached without a terminal.
const FORWARDED: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// How long the monitor may take to record the exit (and for `--rm`, remove the container) after
/// it reported it.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Attaches to `record`'s monitor until the container exits. `Ok` for status 0, otherwise an
/// [`Exit`] with the status (and the monitor's error, if any).
pub fn attach(engine: &Engine, record: &Record, stdin: bool) -> anyhow::Result<()> {
    let tty = record.config.tty;
    let proxy = (!tty).then(|| SignalProxy::start(engine.roots().clone(), record.id.clone()));
    let result = client::attach(
        &engine.roots().socket(&record.id),
        AttachOptions { stdin, tty },
    );
    if let Some(Some(p)) = proxy {
        p.stop();
    }
    let exit = result?;
    settle(engine, &record.id);
    match (exit.code, exit.error.is_empty()) {
        (0, true) => Ok(()),
        (code, true) => Err(Exit::code(code)),
        (code, false) => Err(Exit::with_message(code, exit.error)),
    }
}

/// Waits until the engine records the container as stopped (or, with `--rm`, removed), so that
/// what runs after the CLI sees the container as Docker's would.
pub fn settle(engine: &Engine, id: &str) {
    let started = Instant::now();
    let deadline = started + SETTLE_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    while Instant::now() < deadline {
        match engine.get(id) {
            // An exit was reported, so the container ends up exited (or removed, with --rm).
            Ok(r)
                if !matches!(r.state.status, Status::Exited | Status::Dead)
                    || r.host_config.auto_remove => {}
            _ => {
                tracing::debug!(
                    "container {id}: exit recorded {:?} after it was reported",
                    started.elapsed()
                );
                return;
            }
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    tracing::warn!("container {id}: its exit was not recorded within {SETTLE_TIMEOUT:?}");
}

/// Passes the CLI's signals to a container until stopped.
struct SignalProxy {
    handle: signal_hook::iterator::Handle,
}

impl SignalProxy {
    fn start(roots: Roots, id: String) -> Option<Self> {
        let mut signals = match signal_hook::iterator::Signals::new(FORWARDED) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot forward signals to the container: {e}");
                return None;
            }
        };
        let handle = signals.handle();
        std::thread::spawn(move || {
            // Opened on the first signal: most runs never get one.
            let mut engine: Option<Engine> = None;
            let mut interrupts = 0;
            for sig in signals.forever() {
                if engine.is_none() {
                    engine = Engine::open(roots.clone()).ok();
                }
                if let Some(e) = &engine {
                    if let Err(err) = e.kill(&id, sig) {
                        tracing::debug!("forwarding signal {sig}: {err}");
                    }
                }
                // As Docker: a third interrupt ends the CLI even if the container ignores them.
                if sig == libc::SIGINT || sig == libc::SIGTERM {
                    interrupts += 1;
                    if interrupts >= 3 {
                        eprintln!("got 3 SIGTERM/SIGINTs, forcefully exiting");
                        std::process::exit(128 + sig);
                    }
                }
            }
        });
        Some(Self { handle })
    }

    fn stop(self) {
        self.handle.close();
    }
}
