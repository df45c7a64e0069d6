use std::os::unix::fs::PermissionsExt;

use super::*;

/// Assets whose "QEMU" is a shell script; the kernel and initramfs are never read by it.
fn assets(dir: &Path, qemu_script: &str) -> Assets {
    let qemu = dir.join("qemu");
    fs::write(&qemu, format!("#!/bin/sh\n{qemu_script}\n")).unwrap();
    fs::set_permissions(&qemu, fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["vmlinux", "initramfs"] {
        fs::write(dir.join(f), f).unwrap();
    }
    Assets {
        qemu,
        qemu_version: "9.9.9".into(),
        kernel: dir.join("vmlinux"),
        kernel_version: "6.1.0-test".into(),
        initramfs: dir.join("initramfs"),
        agent_version: "sha256:0".into(),
        agent_sha256: "0".repeat(64),
        kernel_sha256: "1".repeat(64),
    }
}

#[test]
fn forced_choices_do_not_probe() {
    let d = tempfile::tempdir().unwrap();
    // A QEMU that would fail the test if it ran.
    let a = assets(d.path(), "touch \"$0.ran\"; exit 1");
    let k = decide(AccelChoice::Kvm, &a, d.path());
    assert_eq!(k.accel, Accel::Kvm);
    assert!(k.reason.contains("forced by settings"), "{}", k.reason);
    let t = decide(AccelChoice::Tcg, &a, d.path());
    assert_eq!(t.accel, Accel::Tcg);
    assert!(t.reason.contains("forced by settings"), "{}", t.reason);
    assert!(!d.path().join("qemu.ran").exists());
}

#[test]
fn no_kvm_device_means_tcg() {
    let d = tempfile::tempdir().unwrap();
    let a = assets(d.path(), "exit 1");
    let dev = d.path().join("kvm");
    let t = decide_with(AccelChoice::Auto, &a, d.path(), &dev, PROBE_DEADLINE);
    assert_eq!(t.accel, Accel::Tcg);
    assert_eq!(t.reason, format!("no {}", dev.display()));
    assert!(!d.path().join(CACHE_FILE).exists());
}

#[test]
fn settings_spelling() {
    #[derive(serde::Deserialize)]
    struct S {
        a: AccelChoice,
    }
    let p = |s: &str| serde_json::from_str::<S>(&format!("{{\"a\":\"{s}\"}}")).map(|s| s.a);
    assert_eq!(p("auto").unwrap(), AccelChoice::Auto);
    assert_eq!(p("kvm").unwrap(), AccelChoice::Kvm);
    assert_eq!(p("tcg").unwrap(), AccelChoice::Tcg);
    assert!(p("KVM").is_err());
    assert_eq!(AccelChoice::default(), AccelChoice::Auto);
}

/// A "KVM device" the test can open: a regular file stands in for /dev/kvm.
fn fake_kvm(dir: &Path) -> PathBuf {
    let p = dir.join("kvm");
    fs::write(&p, "").unwrap();
    p
}

#[test]
fn qemu_that_exits_means_tcg_and_is_cached() {
    let d = tempfile::tempdir().unwrap();
    let a = assets(
        d.path(),
        "echo 'KVM internal error. Suberror: 1' >&2; echo run >> \"$0.runs\"; exit 1",
    );
    let kvm = fake_kvm(d.path());
    let state = d.path().join("vm");
    let t0 = Instant::now();
    let first = decide_with(AccelChoice::Auto, &a, &state, &kvm, Duration::from_secs(5));
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    assert_eq!(first.accel, Accel::Tcg);
    assert!(first.reason.contains("QEMU exited"), "{}", first.reason);
    assert!(
        first.reason.contains("KVM internal error"),
        "{}",
        first.reason
    );
    assert!(first.reason.ends_with("using TCG"), "{}", first.reason);
    // The second call reads the cache: QEMU does not run again.
    let second = decide_with(AccelChoice::Auto, &a, &state, &kvm, Duration::from_secs(5));
    assert_eq!(second.reason, first.reason);
    let runs = fs::read_to_string(d.path().join("qemu.runs")).unwrap();
    assert_eq!(runs.lines().count(), 1);
    // Another agent (the initramfs is keyed by the agent's hash) probes again.
    let mut b = a.clone();
    b.agent_version = "sha256:1".into();
    decide_with(AccelChoice::Auto, &b, &state, &kvm, Duration::from_secs(5));
    let runs = fs::read_to_string(d.path().join("qemu.runs")).unwrap();
    assert_eq!(runs.lines().count(), 2);
    // No scratch directory left.
    let left: Vec<_> = fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("probe-") || n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn silent_guest_times_out_and_leaves_no_process() {
    let d = tempfile::tempdir().unwrap();
    // Connects nothing, prints its PID, and would sleep for a minute.
    let a = assets(d.path(), "echo $$ > \"$0.pid\"; exec sleep 60");
    let kvm = fake_kvm(d.path());
    let state = d.path().join("vm");
    let deadline = Duration::from_millis(1500);
    let t0 = Instant::now();
    let t = decide_with(AccelChoice::Auto, &a, &state, &kvm, deadline);
    let took = t0.elapsed();
    assert!(
        took >= deadline && took < deadline + Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(t.accel, Accel::Tcg);
    assert!(
        t.reason.contains("did not reach the agent in 1.5 s")
            && t.reason.contains("nested/paravirtual KVM?"),
        "{}",
        t.reason
    );
    let pid: i32 = fs::read_to_string(d.path().join("qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Killed and reaped: the PID is gone (not even a zombie).
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU {pid} left behind"
    );
}

#[test]
fn cache_is_keyed_by_boot_and_files() {
    let d = tempfile::tempdir().unwrap();
    let a = assets(d.path(), "exit 1");
    let k1 = cache_key(&a);
    assert_eq!(k1, cache_key(&a));
    let mut b = a.clone();
    b.qemu_version = "10.0".into();
    assert_ne!(k1, cache_key(&b));
    write_cache(d.path(), &k1, &forced(Accel::Kvm), Duration::from_millis(7));
    assert_eq!(read_cache(d.path(), &k1).unwrap().accel, Accel::Kvm);
    assert!(read_cache(d.path(), &cache_key(&b)).is_none());
    fs::write(d.path().join(CACHE_FILE), "garbage").unwrap();
    assert!(read_cache(d.path(), &k1).is_none());
}
