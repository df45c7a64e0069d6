//! Terminals and standard input end to end. `run -it`, `exec -it` and `attach` run in a real
//! terminal, a tmux pane driven by the test: arithmetic, `tty`, `stty size` (the pane's size,
//! following a resize), line editing, Ctrl-C reaching the container and not isola, and the
//! shell's exit status becoming the CLI's. Piped stdin: `-i` passes input and its EOF; without
//! `-i` the container reads EOF at once. They need root (and tmux); each uses its own roots.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{describe, eventually, Engine, Isola};

/// An isola with private roots, or `None` (the test reports why) without root.
fn isola() -> Option<Engine> {
    common::require_root().then(Engine::new)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How long the pane may take to show what a step waits for.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A private tmux server (its own socket, no user config) with one session running a command;
/// the server is killed when this drops.
#[derive(Debug)]
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a detached `cols`×`rows` session, followed by
    /// `echo CLI-EXIT=$?` so the test sees how it ended.
    fn start(command: &str, cols: u16, rows: u16) -> Tmux {
        let socket = format!(
            "isola-test-{}-{}",
            std::process::id(),
            std::thread::current()
                .name()
                .unwrap_or("t")
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        let t = Tmux { socket };
        let line = format!("{command}; echo CLI-EXIT=$?; sleep 600");
        t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "main",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
            &line,
        ]);
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket, "-f", "/dev/null"]).args(args);
        let out = common::output_within(&mut cmd, &format!("tmux {}", args.join(" ")));
        assert!(out.status.success(), "tmux {args:?}:\n{}", describe(&out));
        stdout(&out)
    }

    /// Types `keys` (tmux key names, e.g. `Enter`, `C-c`, or literal text).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "main"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Types `line` literally and presses Enter.
    fn line(&self, line: &str) {
        self.tmux(&["send-keys", "-t", "main", "-l", line]);
        self.keys(&["Enter"]);
    }

    /// The pane's text, one string per line, trailing blanks trimmed.
    fn screen(&self) -> Vec<String> {
        self.tmux(&["capture-pane", "-p", "-J", "-t", "main", "-S", "-"])
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect()
    }

    /// Waits until the pane has a line equal to `line` (after `after` earlier such lines);
    /// fails with the screen otherwise.
    fn wait_line(&self, line: &str, after: usize) {
        let ok = eventually(SCREEN_TIMEOUT, || {
            self.screen().iter().filter(|l| *l == line).count() > after
        });
        assert!(
            ok,
            "the terminal shows no line {line:?} (occurrence {}):\n{}",
            after + 1,
            self.screen().join("\n")
        );
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

/// The shell command line that runs `isola ARGS…` with this store.
fn isola_line(isola: &Isola, args: &str) -> String {
    format!(
        "{} --root {} --run-root {} {args}",
        common::BIN,
        isola.root.display(),
        isola.run_root.display()
    )
}

/// The checks of an interactive busybox shell in `t` whose pane is `cols`×`rows`; leaves it
/// having exited with 7. A terminal size that does not follow a resize is returned as an error
/// (after the other checks ran) rather than failing at once.
fn drive_shell(t: &Tmux, cols: u16, rows: u16) -> Result<(), String> {
    t.wait_line("/ #", 0);
    t.line("echo $((6*7)); tty; stty size");
    t.wait_line("42", 0);
    t.wait_line("/dev/pts/0", 0);
    t.wait_line(&format!("{rows} {cols}"), 0);

    // Line editing: backspace and cursor keys work in the container's shell.
    t.keys(&["-l", "echo abX"]);
    t.keys(&["BSpace"]);
    t.keys(&["-l", "c"]);
    t.keys(&["Enter"]);
    t.wait_line("abc", 0);
    t.keys(&["-l", "echo xyz"]);
    t.keys(&["Left", "Left"]);
    t.keys(&["-l", "Q"]);
    t.keys(&["Enter"]);
    t.wait_line("xQyz", 0);

    // Ctrl-C reaches the container: sleep is interrupted, the shell and isola go on.
    t.line("sleep 30");
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    t.keys(&["C-c"]);
    t.line("echo alive-$((1+1))");
    t.wait_line("alive-2", 0);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "Ctrl-C interrupted sleep"
    );

    // The terminal size follows the client's.
    t.tmux(&["resize-window", "-t", "main", "-x", "120", "-y", "40"]);
    std::thread::sleep(Duration::from_millis(300));
    t.line("stty size");
    let resized = eventually(Duration::from_secs(3), || {
        t.screen().iter().any(|l| l == "40 120")
    });
    let result = if resized {
        Ok(())
    } else {
        Err(format!(
            "the terminal size did not follow the resize to 120x40:\n{}",
            t.screen().join("\n")
        ))
    };

    t.line("exit 7");
    t.wait_line("CLI-EXIT=7", 0);
    result
}

fn have_tmux() -> bool {
    common::require_tool("tmux")
}

/// Defines `NAME` (process isolation) and `vm_NAME` (VM isolation) from one body.
macro_rules! both_modes {
    ($($name:ident => $body:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let Some(isola) = isola() else { return };
                if have_tmux() {
                    $body(&isola, "process");
                }
            }
        )*
        mod vm {
            $(
                #[test]
                fn $name() {
                    if super::have_tmux() && common_vm() {
                        super::$body(&super::Engine::new(), "vm");
                    }
                }
            )*
            fn common_vm() -> bool {
                super::common::require_vm()
            }
        }
    };
}

both_modes!(
    run_it_is_a_real_terminal => run_it,
    exec_it_is_a_real_terminal => exec_it,
    attach_to_a_terminal_container => attach,
);

fn run_it(isola: &Isola, mode: &str) {
    let t = Tmux::start(
        &isola_line(
            isola,
            &format!("run -it --isolation={mode} --name tty busybox sh"),
        ),
        100,
        30,
    );
    let resize = drive_shell(&t, 100, 30);
    let v = isola.container("tty");
    assert_eq!(v["State"]["ExitCode"], 7);
    assert_eq!(v["State"]["Running"], false);
    isola.ok_timed(&["rm", "tty"]);
    isola.assert_clean();
    resize.unwrap();
}

fn exec_it(isola: &Isola, mode: &str) {
    let iso = format!("--isolation={mode}");
    let id = isola.ok_timed(&[
        "run", "-d", &iso, "--name", "host", "busybox", "sleep", "1000",
    ]);
    let t = Tmux::start(&isola_line(isola, "exec -it host sh"), 90, 25);
    let resize = drive_shell(&t, 90, 25);
    // The container goes on; the exec's shell is gone.
    let v = isola.container("host");
    assert_eq!(v["State"]["Running"], true);
    let top = isola.ok_timed(&["top", "host"]);
    assert!(!top.lines().skip(1).any(|l| l.ends_with(" sh")), "{top}");
    isola.ok_timed(&["rm", "-f", "host"]);
    isola.assert_container_gone(id.trim());
    resize.unwrap();
}

fn attach(isola: &Isola, mode: &str) {
    let iso = format!("--isolation={mode}");
    isola.ok_timed(&["run", "-dit", &iso, "--name", "bg", "busybox", "sh"]);
    let t = Tmux::start(&isola_line(isola, "attach bg"), 80, 24);
    // The prompt was printed before the client came: press Enter for a new one.
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["Enter"]);
    t.wait_line("/ #", 0);
    t.line("echo $((6*7)); stty size");
    t.wait_line("42", 0);
    t.wait_line("24 80", 0);
    t.line("exit 3");
    t.wait_line("CLI-EXIT=3", 0);
    assert_eq!(isola.container("bg")["State"]["ExitCode"], 3);
    isola.ok_timed(&["rm", "bg"]);
    isola.assert_clean();
}

#[test]
fn it_without_a_terminal_is_refused() {
    let Some(isola) = isola() else { return };
    let out = isola.run_timed(&["exec", "-it", "nosuch", "sh"]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    isola.ok_timed(&["run", "-d", "--name", "c", "busybox", "sleep", "1000"]);
    let out = isola.run_timed_stdin(&["exec", "-it", "c", "sh"], b"");
    common::assert_error(&out, 125, &["TTY"]);
    isola.ok_timed(&["rm", "-f", "c"]);
    isola.assert_clean();
}

#[test]
fn piped_stdin_and_its_end() {
    let Some(isola) = isola() else { return };
    let out = isola.run_timed_stdin(&["run", "-i", "--rm", "busybox", "wc", "-l"], b"a\nb\n");
    assert_eq!(
        (out.status.code(), stdout(&out).trim()),
        (Some(0), "2"),
        "{}",
        describe(&out)
    );
    let out = isola.run_timed_stdin(
        &[
            "run",
            "-i",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "read a; read b; echo \"$b-$a\"",
        ],
        b"one\ntwo\n",
    );
    assert_eq!(stdout(&out), "two-one\n", "{}", describe(&out));

    // Without -i, cat reads EOF at once though isola's stdin stays open.
    let mut child = isola
        .command(&["run", "--rm", "busybox", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let held_open = child.stdin.take();
    let start = Instant::now();
    let out = common::finish_within(child, Duration::from_secs(20), "isola run busybox cat");
    drop(held_open);
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), ""),
        "{}",
        describe(&out)
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "cat ended at once: {:?}",
        start.elapsed()
    );

    // exec -i too: input, then EOF.
    isola.ok_timed(&["run", "-d", "--name", "s", "busybox", "sleep", "1000"]);
    let out = isola.run_timed_stdin(&["exec", "-i", "s", "wc", "-l"], b"1\n2\n3\n");
    assert_eq!(stdout(&out).trim(), "3", "{}", describe(&out));
    // exec without -i: EOF at once.
    let mut child = isola
        .command(&["exec", "s", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let held_open = child.stdin.take();
    let out = common::finish_within(child, Duration::from_secs(20), "isola exec s cat");
    drop(held_open);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    isola.ok_timed(&["rm", "-f", "s"]);
    isola.assert_clean();
}

/// `isola args` with `input` on its stdin; `None` when it had to be killed after `timeout`.
fn feed(isola: &Isola, args: &[&str], input: &[u8], timeout: Duration) -> Option<Output> {
    let mut child = isola
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut stdin, &input);
    });
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => Some(out.unwrap()),
        Err(_) => {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            None
        }
    }
}

/// A megabyte through the container, all of it, for exec -i, start -ai and run -i (input that
/// is ready before the container starts and does not fit a pipe). Every case runs; the failures
/// are reported together.
#[test]
fn large_stdin() {
    let Some(isola) = isola() else { return };
    let big: Vec<u8> = (0..1 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    isola.ok_timed(&["run", "-d", "--name", "s", "busybox", "sleep", "1000"]);
    isola.ok_timed(&["create", "-i", "--name", "c", "busybox", "wc", "-c"]);
    let mut failures = Vec::new();
    for (args, input) in [
        (&["exec", "-i", "s", "wc", "-c"][..], &big[..]),
        (&["start", "-ai", "c"], &big),
        (&["run", "-i", "--rm", "busybox", "wc", "-c"], &big[..65537]),
        (&["run", "-i", "--rm", "busybox", "wc", "-c"], &big),
    ] {
        // Killed after 8 s: a megabyte takes well under one.
        match feed(&isola, args, input, Duration::from_secs(8)) {
            Some(out) if stdout(&out).trim() == input.len().to_string() => {}
            Some(out) => failures.push(format!("isola {args:?}: {}", describe(&out))),
            None => failures.push(format!(
                "isola {args:?} with {} bytes on stdin hung (killed after 8 s)",
                input.len()
            )),
        }
    }
    isola.ok_timed(&["rm", "-f", "s", "c"]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn stdin_closed_early_does_not_lose_output() {
    let Some(isola) = isola() else { return };
    // The container goes on writing after its input ended.
    let mut child = isola
        .command(&[
            "run",
            "-i",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "cat; sleep 0.3; echo after-eof",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, b"before\n").unwrap();
    drop(input);
    let out = common::finish_within(child, common::COMMAND_TIMEOUT, "isola run -i");
    assert_eq!(stdout(&out), "before\nafter-eof\n", "{}", describe(&out));
    assert_eq!(out.status.code(), Some(0));
}
