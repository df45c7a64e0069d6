//! Harness of the guest tests: find the kernel, QEMU and busybox (or say why the test cannot
//! run), build the initramfs, boot QEMU microvm under TCG with 9p shares and the agent's
//! virtio-serial port, and a small host-side client over `isola_proto::Transport` that keeps
//! stream data and events while it waits for answers.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use isola_proto::{Event, Message, Request, Response, Transport, WireError};

/// How long a request may take to be answered.
pub const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// QEMU's process name (`-name ...,process=`).
pub const NAME: &str = "isola-vm-test";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// What a test needs to boot guests.
#[derive(Debug)]
pub struct Setup {
    /// Directory holding `vmlinux`.
    pub kernel_dir: PathBuf,
    /// The initramfs with the agent.
    pub initrd: PathBuf,
    /// A scratch directory for this test (removed when the test passes).
    pub work: PathBuf,
}

/// The kernel dir: `ISOLA_KERNEL_DIR`, else the newest cache entry holding a vmlinux.
fn kernel_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("ISOLA_KERNEL_DIR") {
        return Some(PathBuf::from(d));
    }
    let root = std::env::var("ISOLA_CACHE").unwrap_or_else(|_| "/var/cache/isola".into());
    fs::read_dir(Path::new(&root).join("kernel"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("vmlinux").is_file())
        .max_by_key(|p| {
            fs::metadata(p.join("vmlinux"))
                .and_then(|m| m.modified())
                .ok()
        })
}

/// The host TSC frequency in kHz, for `tsc_early_khz` (see vm/README.md).
fn tsc_khz() -> u64 {
    if let Some(k) = std::env::var("ISOLA_TSC_KHZ")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return k;
    }
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(2_000_000, |mhz| (mhz * 1000.0).round() as u64)
}

/// Finds everything `test` needs and builds the initramfs; `None` (after saying why) when the
/// test cannot run here. Under CI a missing QEMU or busybox is a failure.
pub fn setup(test: &str) -> Option<Setup> {
    let skip = |why: &str, fatal_in_ci: bool| {
        assert!(
            !(fatal_in_ci && in_ci()),
            "{test}: {why} (CI is set, so this is a failure)"
        );
        eprintln!("SKIPPED {test}: {why}");
    };
    let Some(kernel_dir) = kernel_dir() else {
        skip(
            "no cached guest kernel (run vm/build-kernel.sh, or set ISOLA_KERNEL_DIR)",
            false,
        );
        return None;
    };
    let qemu_ok = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !qemu_ok {
        skip("qemu-system-x86_64 not found", true);
        return None;
    }
    if !Path::new("/bin/busybox").is_file() {
        skip(
            "no static /bin/busybox (apt-get install busybox-static)",
            true,
        );
        return None;
    }
    let work = std::env::temp_dir().join(format!("isola-guest-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).expect("create the test's work dir");
    let initrd = match std::env::var_os("ISOLA_AGENT_INITRD") {
        Some(p) => PathBuf::from(p),
        None => {
            let initrd = work.join("initramfs.cpio.gz");
            // The same separate target dir as crates/proto/tests/agent_vm.rs: one static build
            // serves both, and the outer cargo's lock is not contended.
            let target = repo().join("target/agent-static");
            let st = Command::new(repo().join("vm/initramfs.sh"))
                .arg(&initrd)
                .env("CARGO_TARGET_DIR", target)
                .status()
                .expect("run vm/initramfs.sh");
            assert!(st.success(), "vm/initramfs.sh failed: {st}");
            initrd
        }
    };
    Some(Setup {
        kernel_dir,
        initrd,
        work,
    })
}

/// A running QEMU; killed when dropped.
#[derive(Debug)]
pub struct Vm {
    child: Child,
    sock: PathBuf,
    console: PathBuf,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Vm {
    /// Boots a guest with `mem_mb` MiB of RAM and one 9p device per `(tag, host dir)`.
    pub fn boot(setup: &Setup, shares: &[(&str, &Path)], mem_mb: u32) -> Vm {
        static BOOTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = BOOTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sock = setup.work.join(format!("agent-{n}.sock"));
        let console = setup.work.join(format!("console-{n}.log"));
        let append = format!(
            "console=ttyS0 reboot=t panic=-1 tsc_early_khz={} tsc=reliable quiet",
            tsc_khz()
        );
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-name", &format!("{NAME},process={NAME}")])
            .args(["-M", "microvm,acpi=off,pic=on,pit=on,rtc=on"])
            .args(["-accel", "tcg", "-cpu", "max", "-m", &mem_mb.to_string()])
            .args(["-smp", "1", "-nodefaults", "-no-user-config", "-nographic"])
            .args(["-no-reboot", "-serial"])
            .arg(format!("file:{}", console.display()))
            .arg("-kernel")
            .arg(setup.kernel_dir.join("vmlinux"))
            .arg("-initrd")
            .arg(&setup.initrd)
            .args(["-append", &append])
            .args(["-device", "virtio-serial-device", "-chardev"])
            .arg(format!(
                "socket,id=agent,path={},server=on,wait=off",
                sock.display()
            ))
            .args(["-device", "virtserialport,chardev=agent,name=isola.agent"]);
        for (i, (tag, dir)) in shares.iter().enumerate() {
            cmd.arg("-fsdev").arg(format!(
                "local,id=fs{i},path={},security_model=passthrough,multidevs=remap",
                dir.display()
            ));
            cmd.args([
                "-device",
                &format!("virtio-9p-device,fsdev=fs{i},mount_tag={tag}"),
            ]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .expect("start qemu-system-x86_64");
        Vm {
            child,
            sock,
            console,
        }
    }

    /// The guest console so far.
    pub fn console(&self) -> String {
        fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// Connects to the agent and waits for its Hello (QEMU started at `t0`).
    pub fn connect(&self, t0: Instant) -> Host {
        let deadline = t0 + Duration::from_secs(30);
        let stream = loop {
            match UnixStream::connect(&self.sock) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "QEMU's socket never appeared: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        };
        let mut h = Host {
            t: Transport::new(stream),
            next_id: 1,
            pending: VecDeque::new(),
            kept: Vec::new(),
            answers: HashMap::new(),
            console: self.console.clone(),
        };
        match h.next(deadline.saturating_duration_since(Instant::now())) {
            Message::Hello { .. } => {}
            other => h.fail(&format!("expected Hello, got {other:?}")),
        }
        eprintln!(
            "agent Hello {} ms after QEMU started",
            t0.elapsed().as_millis()
        );
        h
    }

    /// Whether QEMU exits (cleanly) within `max`.
    pub fn exited_within(&mut self, max: Duration) -> bool {
        let stop = Instant::now() + max;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait for qemu") {
                assert!(
                    s.success(),
                    "QEMU exit status {s}\nconsole:\n{}",
                    self.console()
                );
                return true;
            }
            if Instant::now() >= stop {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for QEMU to exit by itself (after `Shutdown`) and checks it exited cleanly.
    pub fn wait_exit(&mut self, max: Duration) {
        let stop = Instant::now() + max;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for qemu") {
                break s;
            }
            assert!(
                Instant::now() < stop,
                "QEMU did not exit after Shutdown\nconsole:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // -no-reboot: the guest's reboot ends QEMU with status 0.
        assert!(
            status.success(),
            "QEMU exit status {status}\nconsole:\n{}",
            self.console()
        );
    }
}

/// `body` for messages: its first 160 characters.
fn short(body: &Request) -> String {
    let s = format!("{body:?}");
    match s.char_indices().nth(160) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// The host's end of the protocol, for tests.
#[derive(Debug)]
pub struct Host {
    t: Transport<UnixStream>,
    next_id: u64,
    /// Messages received while waiting for something else, oldest first.
    pending: VecDeque<Message>,
    /// Messages set aside by the current wait, put back by [`Host::restore`].
    kept: Vec<Message>,
    /// Answers received for requests nobody waits for yet.
    answers: HashMap<u64, Result<Response, WireError>>,
    console: PathBuf,
}

impl Host {
    /// Panics with `msg` and the guest console.
    pub fn fail(&self, msg: &str) -> ! {
        panic!(
            "{msg}\nguest console:\n{}",
            fs::read_to_string(&self.console).unwrap_or_default()
        )
    }

    /// Sends one message.
    pub fn send(&mut self, m: &Message) {
        if let Err(e) = self.t.send(m) {
            self.fail(&format!("send {m:?}: {e}"));
        }
    }

    /// Sends a request and returns its id, without waiting for the answer.
    pub fn send_request(&mut self, body: Request) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&Message::Request { id, body });
        id
    }

    /// The next message not yet consumed: the pending ones first, then the channel.
    pub fn next(&mut self, timeout: Duration) -> Message {
        if let Some(m) = self.pending.pop_front() {
            return m;
        }
        match self.t.recv_deadline(Instant::now() + timeout) {
            Ok(Message::Event(Event::AgentPanic { message })) => {
                self.fail(&format!("agent panicked: {message}"))
            }
            Ok(Message::Event(Event::ProtocolError { message })) => {
                self.fail(&format!("agent reported a protocol error: {message}"))
            }
            Ok(m) => m,
            Err(e) => self.fail(&format!("receive: {e}")),
        }
    }

    /// Sets `m` aside for later readers (see [`Host::restore`]).
    pub fn keep(&mut self, m: Message) {
        self.kept.push(m);
    }

    /// Puts the messages set aside back in front of the pending ones.
    pub fn restore(&mut self) {
        for m in self.kept.drain(..).rev() {
            self.pending.push_front(m);
        }
    }

    /// Waits for the answer to request `id`, keeping everything else.
    pub fn result(&mut self, id: u64) -> Result<Response, WireError> {
        if let Some(r) = self.answers.remove(&id) {
            return r;
        }
        let deadline = Instant::now() + ANSWER_WAIT;
        let mut others = Vec::new();
        let r = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Only the channel: pending messages are never answers.
            let m = match self.t.recv_deadline(Instant::now() + left) {
                Ok(m) => m,
                Err(e) => self.fail(&format!("waiting for the answer to request {id}: {e}")),
            };
            match m {
                Message::Response { id: rid, result } if rid == id => break result,
                Message::Response { id: rid, result } => {
                    self.answers.insert(rid, result);
                }
                Message::Event(Event::AgentPanic { message }) => {
                    self.fail(&format!("agent panicked: {message}"))
                }
                other => others.push(other),
            }
        };
        self.pending.extend(others);
        r
    }

    /// The successful answer to request `id`.
    pub fn answer(&mut self, id: u64) -> Response {
        match self.result(id) {
            Ok(r) => r,
            Err(e) => self.fail(&format!("request {id} failed: {e}")),
        }
    }

    /// Sends `body` and returns its successful answer.
    pub fn ok(&mut self, body: Request) -> Response {
        let what = short(&body);
        let id = self.send_request(body);
        match self.result(id) {
            Ok(r) => r,
            Err(e) => self.fail(&format!("{what}: {e}")),
        }
    }

    /// Sends `body` and returns its error.
    pub fn err(&mut self, body: Request) -> WireError {
        let what = short(&body);
        let id = self.send_request(body);
        match self.result(id) {
            Ok(r) => self.fail(&format!("{what} succeeded: {r:?}")),
            Err(e) => e,
        }
    }
}
