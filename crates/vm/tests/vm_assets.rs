//! Privileged tests of the guest assets and the accelerator probe against the real thing: QEMU,
//! the guest kernel cached by `vm/build-kernel.sh` and the static agent that
//! `scripts/build-agent.sh` puts in `target/<profile>/isola-agent`.
//!
//! A test that cannot run prints `skipped: <test>: <reason>` and returns. With `CI` set, once
//! QEMU and the kernel are there nothing may be missing: no agent, or a dynamic one, fails.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use isola_vm::accel::{self, AccelChoice};
use isola_vm::assets::{self, AssetSettings, Assets};
use isola_vm::qemu::{Accel, Vm, VmConfig};

fn test_name() -> String {
    std::thread::current().name().unwrap_or("test").to_string()
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The located assets (in a fresh state directory under `dir`), or `None` after printing why
/// the test cannot run.
fn real_assets(dir: &Path) -> Option<Assets> {
    let euid = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
    if euid != 0 {
        eprintln!("skipped: {}: needs root (/dev/kvm, QEMU)", test_name());
        return None;
    }
    let settings = AssetSettings::default();
    let missing = assets::find_qemu(&settings)
        .err()
        .or_else(|| assets::find_kernel(&settings).err());
    if let Some(e) = missing {
        eprintln!("skipped: {}: {e}", test_name());
        return None;
    }
    match assets::locate(&settings, &dir.join("vm")) {
        Ok(a) => Some(a),
        Err(e) if in_ci() => panic!("{}: cannot run in CI: {e}", test_name()),
        Err(e) => {
            eprintln!("skipped: {}: {e}", test_name());
            None
        }
    }
}

/// Processes whose name is `comm`.
fn processes_named(comm: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .collect()
}

/// Boots `assets` once and returns the agent's greeting; QEMU is gone afterwards.
fn boot(
    assets: &Assets,
    dir: &Path,
    accel: Accel,
    deadline: Duration,
) -> Result<isola_proto::AgentInfo, String> {
    let config = VmConfig {
        name: "isola-vm-test".into(),
        qemu: assets.qemu.clone(),
        kernel: assets.kernel.clone(),
        initramfs: assets.initramfs.clone(),
        accel,
        vcpus: 1,
        memory_mib: 128,
        shares: Vec::new(),
        log: dir.join("console.log"),
        kernel_args: Vec::new(),
        memory: Default::default(),
        incoming: None,
    };
    let until = Instant::now() + deadline;
    let mut vm = Vm::spawn(&config).map_err(|e| e.to_string())?;
    let result = vm.agent().map_err(|e| e.to_string()).and_then(|s| {
        let mut c = isola_proto::Client::new(s);
        let hello = c
            .wait_hello(until.saturating_duration_since(Instant::now()))
            .map_err(|e| format!("{e} (console: {})", vm.log_tail(400)))?;
        c.ping(Duration::from_secs(5)).map_err(|e| e.to_string())?;
        c.shutdown(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        Ok(hello)
    });
    if result.is_ok() && vm.wait_timeout(Duration::from_secs(10)).is_none() {
        vm.kill();
        return Err("QEMU did not exit after the agent's Shutdown".into());
    }
    vm.kill();
    result
}

#[test]
fn locate_builds_an_initramfs_that_boots() {
    let d = tempfile::tempdir().unwrap();
    let Some(a) = real_assets(d.path()) else {
        return;
    };
    eprintln!("assets: {a:#?}");
    assert!(!a.qemu_version.is_empty() && !a.kernel_version.is_empty());
    assert!(a.initramfs.starts_with(d.path().join("vm")));
    let mode = std::fs::metadata(d.path().join("vm")).unwrap().mode();
    assert_eq!(mode & 0o777, 0o700);
    // newc magic at the start of the uncompressed archive, /init inside.
    let data = std::fs::read(&a.initramfs).unwrap();
    assert!(data.starts_with(b"070701"), "not a newc cpio archive");
    assert!(data.windows(5).any(|w| w == b"init\0"));

    let t0 = Instant::now();
    let hello = boot(&a, d.path(), Accel::Tcg, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("TCG boot of the located assets failed: {e}"));
    eprintln!(
        "TCG boot to Hello: {} ms (guest: kernel {} ms, Hello at {} ms)",
        t0.elapsed().as_millis(),
        hello.init_ms,
        hello.hello_ms
    );
    assert_eq!(hello.agent_version, env!("CARGO_PKG_VERSION"));
}

#[test]
fn probe_decides_with_a_reason_and_caches_it() {
    let d = tempfile::tempdir().unwrap();
    let Some(a) = real_assets(d.path()) else {
        return;
    };
    let state = d.path().join("vm");
    let t0 = Instant::now();
    let first = accel::decide(AccelChoice::Auto, &a, &state);
    let took = t0.elapsed();
    eprintln!("probe: {first:?} in {} ms", took.as_millis());
    // The probe's deadline is 5 s; killing QEMU and cleaning up must not add much.
    assert!(took < Duration::from_secs(8), "probe took {took:?}");
    assert!(
        processes_named(accel::PROBE_NAME).is_empty(),
        "the probe left QEMU running"
    );
    assert!(!first.reason.is_empty());
    if !Path::new(accel::KVM_DEVICE).exists() {
        assert_eq!(first.accel, Accel::Tcg);
        assert_eq!(first.reason, "no /dev/kvm");
    } else if first.accel == Accel::Tcg {
        // Our build machines: PVM nested KVM cannot run the guest.
        assert!(
            first
                .reason
                .starts_with("KVM: /dev/kvm present but a test boot")
                && first.reason.ends_with("using TCG"),
            "{}",
            first.reason
        );
    } else {
        // KVM works here: then a real boot under KVM must work too.
        assert!(
            first.reason.contains("reached the agent"),
            "{}",
            first.reason
        );
        boot(&a, d.path(), Accel::Kvm, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("the probe chose KVM but a KVM boot failed: {e}"));
    }

    // Cached: the second answer is immediate and the same.
    let t1 = Instant::now();
    let second = accel::decide(AccelChoice::Auto, &a, &state);
    assert!(
        t1.elapsed() < Duration::from_millis(500),
        "{:?}",
        t1.elapsed()
    );
    assert_eq!(second.accel, first.accel);
    assert_eq!(second.reason, first.reason);

    let forced = accel::decide(AccelChoice::Tcg, &a, &state);
    assert_eq!(forced.accel, Accel::Tcg);
    assert!(forced.reason.contains("forced by settings"));
}
