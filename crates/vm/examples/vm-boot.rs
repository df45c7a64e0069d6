//! Boots isola's guest over and over with the VM driver isola itself uses ([`Vm`] and the
//! agent [`Client`]), for `bench/vm-boot.sh`.
//!
//! ```text
//! vm-boot [--boots N] [--deadline-s S] [--accel auto|kvm|tcg] [--compression plain|gzip|alternate]
//!         [--memory-mib M] [--idle-s S] [--agent PATH]
//!         [--baseline-kernel PATH --baseline-initrd PATH [--baseline-boots N]]
//! ```
//!
//! Locates the assets as isola does (default settings, a throwaway state directory), decides
//! the accelerator (`auto` runs the real probe), then boots N times (default 100): QEMU start →
//! the agent's Hello (the time printed), Ping, Shutdown, and QEMU's own exit (killed after 5 s
//! otherwise). A boot with no Hello within the deadline (default 20 s) is a hang; QEMU is
//! killed. `alternate` interleaves the plain initramfs of [`assets::locate`] with a gzip copy of
//! it. Then, with `--idle-s` > 0 (default 5), one more VM is left idle that long after its Hello
//! and QEMU's RSS, PSS and peak RSS are read from `/proc`.
//!
//! With `--baseline-kernel`, it then boots that kernel (a stock distribution kernel) with that
//! initramfs (whose `/init` prints [`BASELINE_MARKER`] on the console) N times (default 20) the
//! naive way: `-M microvm` with its defaults (ACPI on), the same CPU model, memory, TSC hint and
//! serial console, no isola devices; the time is QEMU start → the marker on the console.
//!
//! Prints one line per event on stdout:
//! `boot I plain|gzip hello_ms=F guest_init_ms=N guest_hello_ms=N exit=self|killed`,
//! `hang I KIND REASON`, `fail I KIND REASON`, `idle rss_kib=N pss_kib=N hwm_kib=N`,
//! `baseline I init_ms=F hwm_kib=N exit=self|killed` (or `hang`/`fail I baseline ...`), and first
//! `accel ACCEL REASON`, `assets KEY VALUE` lines. Exit status 0 when every boot succeeded.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use isola_proto::Client;
use isola_vm::accel::{self, AccelChoice};
use isola_vm::assets::{self, AssetSettings, Compression};
use isola_vm::qemu::{Accel, Share, Vm, VmConfig};

struct Opts {
    boots: u32,
    deadline: Duration,
    accel: AccelChoice,
    compression: String,
    memory_mib: u64,
    idle: Duration,
    agent: Option<PathBuf>,
    baseline_kernel: Option<PathBuf>,
    baseline_initrd: Option<PathBuf>,
    baseline_boots: u32,
}

/// What the baseline's `/init` prints on the console.
pub const BASELINE_MARKER: &str = "ISOLA-BASELINE-UP";

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        boots: 100,
        deadline: Duration::from_secs(20),
        accel: AccelChoice::Auto,
        compression: "plain".into(),
        memory_mib: 512,
        idle: Duration::from_secs(5),
        agent: None,
        baseline_kernel: None,
        baseline_initrd: None,
        baseline_boots: 20,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} wants a value"));
        match a.as_str() {
            "--boots" => o.boots = val()?.parse().map_err(|e| format!("--boots: {e}"))?,
            "--deadline-s" => {
                o.deadline = Duration::from_secs_f64(
                    val()?.parse().map_err(|e| format!("--deadline-s: {e}"))?,
                )
            }
            "--accel" => {
                o.accel = match val()?.as_str() {
                    "auto" => AccelChoice::Auto,
                    "kvm" => AccelChoice::Kvm,
                    "tcg" => AccelChoice::Tcg,
                    v => return Err(format!("--accel {v}: auto, kvm or tcg")),
                }
            }
            "--compression" => {
                o.compression = val()?;
                if !["plain", "gzip", "alternate"].contains(&o.compression.as_str()) {
                    return Err("--compression: plain, gzip or alternate".into());
                }
            }
            "--memory-mib" => {
                o.memory_mib = val()?.parse().map_err(|e| format!("--memory-mib: {e}"))?
            }
            "--idle-s" => {
                o.idle =
                    Duration::from_secs_f64(val()?.parse().map_err(|e| format!("--idle-s: {e}"))?)
            }
            "--agent" => o.agent = Some(val()?.into()),
            "--baseline-kernel" => o.baseline_kernel = Some(val()?.into()),
            "--baseline-initrd" => o.baseline_initrd = Some(val()?.into()),
            "--baseline-boots" => {
                o.baseline_boots = val()?
                    .parse()
                    .map_err(|e| format!("--baseline-boots: {e}"))?
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    Ok(o)
}

/// One VM: the config, its listener, and the scratch paths.
fn config(
    work: &Path,
    assets: &assets::Assets,
    initramfs: &Path,
    accel: Accel,
    memory_mib: u64,
) -> VmConfig {
    VmConfig {
        name: "isola-vm-bench".into(),
        qemu: assets.qemu.clone(),
        kernel: assets.kernel.clone(),
        initramfs: initramfs.to_path_buf(),
        accel,
        vcpus: 1,
        memory_mib,
        // As a container: its root filesystem shared over 9p (not mounted: the boot ends at Hello).
        shares: vec![Share {
            tag: "rootfs".into(),
            path: work.join("rootfs"),
            readonly: false,
        }],
        log: work.join("console.log"),
        kernel_args: Vec::new(),
        memory: Default::default(),
        incoming: None,
    }
}

enum Outcome {
    Up {
        hello_ms: f64,
        init_ms: u64,
        guest_hello_ms: u64,
        vm: Vm,
        client: Client<std::os::unix::net::UnixStream>,
    },
    Hang(String),
    Fail(String),
}

fn boot_once(cfg: &VmConfig, deadline: Duration) -> Outcome {
    let _ = std::fs::remove_file(&cfg.log);
    let t0 = Instant::now();
    let mut vm = match Vm::spawn(cfg) {
        Ok(vm) => vm,
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    let until = t0 + deadline;
    let stream = match vm.agent() {
        Ok(s) => s,
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    let mut client = Client::new(stream);
    match client.wait_hello(until.saturating_duration_since(Instant::now())) {
        Ok(h) => Outcome::Up {
            hello_ms: t0.elapsed().as_secs_f64() * 1000.0,
            init_ms: h.init_ms,
            guest_hello_ms: h.hello_ms,
            vm,
            client,
        },
        Err(e) => {
            let exited = vm.try_wait();
            let tail = vm.log_tail(300);
            vm.kill();
            match exited {
                Some(s) => Outcome::Fail(format!("QEMU exited ({s}): {e}: {tail}")),
                None => Outcome::Hang(format!("{e}: console: {tail}")),
            }
        }
    }
}

/// Shutdown, then QEMU's own exit within 5 s; `true` when it exited by itself.
fn end(mut vm: Vm, mut client: Client<std::os::unix::net::UnixStream>) -> bool {
    let asked = client.shutdown(Duration::from_secs(5)).is_ok();
    let exited = asked && vm.wait_timeout(Duration::from_secs(5)).is_some();
    vm.kill();
    exited
}

fn kib(pid: i32, file: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("vm-boot: {e}");
            return ExitCode::from(2);
        }
    };
    let work = match tempfile::Builder::new().prefix("isola-vm-boot.").tempdir() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("vm-boot: scratch directory: {e}");
            return ExitCode::from(2);
        }
    };
    let state = work.path().join("vm");
    let settings = AssetSettings {
        agent: o.agent.clone(),
        ..Default::default()
    };
    let assets = match assets::locate(&settings, &state) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("vm-boot: {e}");
            return ExitCode::from(2);
        }
    };
    let _ = std::fs::create_dir(work.path().join("rootfs"));
    let mut gzip: Option<PathBuf> = None;
    if o.compression != "plain" {
        let (agent, path) = match assets::find_agent(&settings) {
            Ok(a) => (a.path, work.path().join("initramfs.cpio.gz")),
            Err(e) => {
                eprintln!("vm-boot: {e}");
                return ExitCode::from(2);
            }
        };
        if let Err(e) = assets::write_initramfs(&agent, Compression::Gzip, &path) {
            eprintln!("vm-boot: {e}");
            return ExitCode::from(2);
        }
        gzip = Some(path);
    }
    for (k, v) in [
        (
            "qemu",
            format!("{} {}", assets.qemu.display(), assets.qemu_version),
        ),
        (
            "kernel",
            format!("{} {}", assets.kernel.display(), assets.kernel_version),
        ),
        ("agent", assets.agent_version.clone()),
        ("initramfs_plain_bytes", size(&assets.initramfs)),
        (
            "initramfs_gzip_bytes",
            gzip.as_deref().map_or("-".into(), size),
        ),
        ("memory_mib", o.memory_mib.to_string()),
    ] {
        println!("assets {k} {v}");
    }
    let t = Instant::now();
    let decision = accel::decide(o.accel, &assets, &state);
    println!(
        "accel {} {} (decided in {} ms)",
        decision.accel,
        decision.reason,
        t.elapsed().as_millis()
    );

    let mut bad = 0;
    for i in 1..=o.boots {
        let kind = match o.compression.as_str() {
            "plain" => "plain",
            "gzip" => "gzip",
            _ if i % 2 == 1 => "plain",
            _ => "gzip",
        };
        let initramfs = if kind == "gzip" {
            gzip.clone().unwrap_or_else(|| assets.initramfs.clone())
        } else {
            assets.initramfs.clone()
        };
        let cfg = config(
            work.path(),
            &assets,
            &initramfs,
            decision.accel,
            o.memory_mib,
        );
        match boot_once(&cfg, o.deadline) {
            Outcome::Up {
                hello_ms,
                init_ms,
                guest_hello_ms,
                vm,
                client,
            } => {
                let selfexit = end(vm, client);
                println!(
                    "boot {i} {kind} hello_ms={hello_ms:.1} guest_init_ms={init_ms} guest_hello_ms={guest_hello_ms} exit={}",
                    if selfexit { "self" } else { "killed" }
                );
            }
            Outcome::Hang(why) => {
                bad += 1;
                keep_log(&cfg.log, work.path(), i);
                println!("hang {i} {kind} {why}");
            }
            Outcome::Fail(why) => {
                bad += 1;
                keep_log(&cfg.log, work.path(), i);
                println!("fail {i} {kind} {why}");
            }
        }
    }

    if !o.idle.is_zero() {
        let cfg = config(
            work.path(),
            &assets,
            &assets.initramfs,
            decision.accel,
            o.memory_mib,
        );
        match boot_once(&cfg, o.deadline) {
            Outcome::Up { vm, client, .. } => {
                std::thread::sleep(o.idle);
                let pid = vm.pid();
                println!(
                    "idle rss_kib={} pss_kib={} hwm_kib={} idle_s={}",
                    kib(pid, "smaps_rollup", "Rss:"),
                    kib(pid, "smaps_rollup", "Pss:"),
                    kib(pid, "status", "VmHWM:"),
                    o.idle.as_secs_f64()
                );
                end(vm, client);
            }
            Outcome::Hang(why) | Outcome::Fail(why) => {
                bad += 1;
                println!("fail idle - {why}");
            }
        }
    }
    if let (Some(kernel), Some(initrd)) = (&o.baseline_kernel, &o.baseline_initrd) {
        for i in 1..=o.baseline_boots {
            match baseline_once(&assets.qemu, kernel, initrd, o.memory_mib, o.deadline) {
                Ok((ms, hwm, selfexit)) => println!(
                    "baseline {i} init_ms={ms:.1} hwm_kib={hwm} exit={}",
                    if selfexit { "self" } else { "killed" }
                ),
                Err((hang, why)) => {
                    bad += 1;
                    println!("{} {i} baseline {why}", if hang { "hang" } else { "fail" });
                }
            }
        }
    }
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn size(p: &Path) -> String {
    std::fs::metadata(p).map_or("?".into(), |m| m.len().to_string())
}

/// Keeps a failed boot's console log where the bench script can find it.
fn keep_log(log: &Path, work: &Path, i: u32) {
    let dest = std::env::temp_dir().join(format!(
        "isola-vm-boot-{}-{i}.log",
        work.file_name().unwrap_or_default().to_string_lossy()
    ));
    if std::fs::copy(log, &dest).is_ok() {
        eprintln!("vm-boot: console of boot {i} kept in {}", dest.display());
    }
}

/// One naive boot: ms from QEMU's start to [`BASELINE_MARKER`] on the console, QEMU's peak RSS
/// then, and whether QEMU exited by itself within 3 s after (the `/init` reboots). Errors:
/// (hang?, why).
fn baseline_once(
    qemu: &Path,
    kernel: &Path,
    initrd: &Path,
    memory_mib: u64,
    deadline: Duration,
) -> Result<(f64, u64, bool), (bool, String)> {
    let mut append = "console=ttyS0 reboot=t panic=-1 quiet".to_owned();
    if let Some(k) = isola_vm::qemu::tsc_khz() {
        append.push_str(&format!(" tsc_early_khz={k} tsc=reliable"));
    }
    let t0 = Instant::now();
    let mut child = Command::new(qemu)
        .args(["-M", "microvm", "-accel", "tcg", "-cpu", "max", "-m"])
        .arg(memory_mib.to_string())
        .args([
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-no-reboot",
        ])
        .args(["-serial", "stdio", "-kernel"])
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(&append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| (false, format!("start {}: {e}", qemu.display())))?;
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take();
    let reader = std::thread::spawn(move || {
        if let Some(out) = out {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        }
    });
    let until = t0 + deadline;
    let mut result = Err((true, "no marker within the deadline".to_owned()));
    loop {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains(BASELINE_MARKER) => {
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                let hwm = kib(child.id() as i32, "status", "VmHWM:");
                result = Ok((ms, hwm, false));
                break;
            }
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                result = Err((false, "QEMU ended before the marker".into()));
                break;
            }
        }
    }
    if let Ok((ms, hwm, _)) = result {
        let stop = Instant::now() + Duration::from_secs(3);
        let mut exited = false;
        while Instant::now() < stop {
            if let Ok(Some(_)) = child.try_wait() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        result = Ok((ms, hwm, exited));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    result
}
