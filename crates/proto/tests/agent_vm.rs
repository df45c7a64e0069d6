//! Privileged end-to-end check: boot isola's guest kernel with the isola-agent initramfs under
//! QEMU microvm (TCG), talk to the agent over virtio-serial, shut it down.
//!
//! Needs: the cached guest kernel (`vm/build-kernel.sh`; `ISOLA_KERNEL_DIR` picks one), and
//! `qemu-system-x86_64`. Without a cached kernel the test is skipped with a message, even with
//! CI set: building the kernel takes ~8 minutes, too long for every run. Without QEMU it is
//! skipped, unless CI is set, where it fails. The initramfs is built with `vm/initramfs.sh` into
//! `target/agent-static` (a separate target dir, so the outer cargo's lock is not contended).

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use isola_proto::Client;

const NAME: &str = "isola-vm-test";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn skip(reason: &str) {
    eprintln!("SKIPPED agent_boots_answers_and_powers_off: {reason}");
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

/// Kills QEMU if the test ends early.
struct Vm(Child);
impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn agent_boots_answers_and_powers_off() {
    let ci = std::env::var_os("CI").is_some();
    let Some(kdir) = kernel_dir() else {
        return skip("no cached guest kernel (run vm/build-kernel.sh, or set ISOLA_KERNEL_DIR)");
    };
    let qemu_ok = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !qemu_ok {
        assert!(
            !ci,
            "qemu-system-x86_64 is missing (CI is set, so this is a failure)"
        );
        return skip("qemu-system-x86_64 not found");
    }

    let work = tempfile_dir();
    let initrd = work.join("initramfs.cpio.gz");
    let st = Command::new(repo().join("vm/initramfs.sh"))
        .arg(&initrd)
        .env("CARGO_TARGET_DIR", repo().join("target/agent-static"))
        .status()
        .expect("run vm/initramfs.sh");
    assert!(st.success(), "vm/initramfs.sh failed: {st}");

    let sock = work.join("agent.sock");
    let append = format!(
        "console=ttyS0 reboot=t panic=-1 tsc_early_khz={} tsc=reliable quiet",
        tsc_khz()
    );
    let t0 = Instant::now();
    let mut vm = Vm(Command::new("qemu-system-x86_64")
        .args(["-name", &format!("{NAME},process={NAME}")])
        .args([
            "-M",
            "microvm,acpi=off,pic=on,pit=on,rtc=on",
            "-accel",
            "tcg",
            "-cpu",
            "max",
        ])
        .args([
            "-m",
            "256",
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-nographic",
        ])
        .args(["-no-reboot", "-serial"])
        .arg(format!("file:{}", work.join("console.log").display()))
        .arg("-kernel")
        .arg(kdir.join("vmlinux"))
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            &append,
            "-device",
            "virtio-serial-device",
            "-chardev",
        ])
        .arg(format!(
            "socket,id=agent,path={},server=on,wait=off",
            sock.display()
        ))
        .args(["-device", "virtserialport,chardev=agent,name=isola.agent"])
        .stdin(Stdio::null())
        .spawn()
        .expect("start qemu-system-x86_64"));

    let deadline = t0 + Duration::from_secs(20);
    let stream = loop {
        match UnixStream::connect(&sock) {
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
    let comm = fs::read_to_string(format!("/proc/{}/comm", vm.0.id())).unwrap_or_default();
    assert_eq!(comm.trim_end(), NAME, "QEMU's process name");

    let mut client = Client::new(stream);
    let console = || fs::read_to_string(work.join("console.log")).unwrap_or_default();
    let info = client
        .wait_hello(deadline.saturating_duration_since(Instant::now()))
        .unwrap_or_else(|e| panic!("no Hello: {e}\nconsole:\n{}", console()));
    let hello = t0.elapsed();
    client.ping(Duration::from_secs(5)).expect("ping");
    let pong = t0.elapsed();
    client.shutdown(Duration::from_secs(5)).expect("shutdown");
    eprintln!(
        "agent {} hello after {hello:?}, pong after {pong:?}",
        info.agent_version
    );

    let stop = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = vm.0.try_wait().expect("wait for qemu") {
            break s;
        }
        assert!(
            Instant::now() < stop,
            "QEMU did not exit after Shutdown\nconsole:\n{}",
            console()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // -no-reboot: the guest's reboot ends QEMU with status 0.
    assert!(
        status.success(),
        "QEMU exit status {status}\nconsole:\n{}",
        console()
    );
    let _ = fs::remove_dir_all(&work);
}

fn tempfile_dir() -> PathBuf {
    let base = std::env::temp_dir().join(format!("isola-agent-vm-{}", std::process::id()));
    fs::create_dir_all(&base).expect("create the test's temp dir");
    base
}
