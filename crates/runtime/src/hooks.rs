//! Lifecycle hooks (config.md "POSIX-platform Hooks"): each runs with the container's `state` JSON on
//! its standard input, its own args and env, and an optional timeout in seconds.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, State};

use crate::error::{Error, Result};

/// Runs `hooks` in order; the first failure stops the rest and is returned.
pub fn run(kind: &'static str, hooks: Option<&Vec<Hook>>, state: &State) -> Result<()> {
    let state_json = serde_json::to_vec(state).expect("state serializes");
    for hook in hooks.into_iter().flatten() {
        run_one(kind, hook, &state_json)?;
    }
    Ok(())
}

fn run_one(kind: &'static str, hook: &Hook, state: &[u8]) -> Result<()> {
    let path = hook.path();
    let err = |source: std::io::Error| Error::Hook {
        kind,
        path: path.clone(),
        source,
    };
    let mut cmd = Command::new(path);
    if let Some(args) = hook.args() {
        if let Some((argv0, rest)) = args.split_first() {
            cmd.arg0(argv0).args(rest);
        }
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin (or exits first) must not fail the write, nor kill
        // the runtime with SIGPIPE (its callers restore SIGPIPE's default action): ignore the
        // signal for the write, so it becomes an EPIPE error, then put the old action back.
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
        // SAFETY: installing SIG_IGN runs no handler code; the previous action is restored below.
        let old = unsafe { sigaction(Signal::SIGPIPE, &ignore) };
        let _ = stdin.write_all(state);
        drop(stdin);
        if let Ok(old) = old {
            // SAFETY: restores the action that was installed before.
            let _ = unsafe { sigaction(Signal::SIGPIPE, &old) };
        }
    }
    let deadline = hook
        .timeout()
        .map(|t| Instant::now() + Duration::from_secs(t.max(1) as u64));
    loop {
        if let Some(status) = child.try_wait().map_err(err)? {
            if status.success() {
                return Ok(());
            }
            return Err(err(std::io::Error::other(format!("exited with {status}"))));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err(std::io::Error::other(format!(
                "timed out after {} s",
                hook.timeout().unwrap_or_default()
            ))));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
