use std::fs::File;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;
use crate::cpio;
use crate::elf::tests::{fake_elf, note};

/// A fake static agent (an ELF file without PT_INTERP), optionally stating a version.
fn fake_agent(dir: &Path, name: &str, version: Option<&str>) -> PathBuf {
    let mut bytes = fake_elf(&[(1, vec![0x90; 64])]);
    if let Some(v) = version {
        bytes.extend_from_slice(AGENT_VERSION_MARKER);
        bytes.extend_from_slice(v.as_bytes());
        bytes.push(0);
    }
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A fake kernel: an ELF file with the PVH note, and a `version` file next to it.
fn fake_kernel(dir: &Path) -> PathBuf {
    let d = dir.join("kernel");
    fs::create_dir_all(&d).unwrap();
    let p = d.join("vmlinux");
    fs::write(&p, fake_elf(&[(4, note(b"Xen\0", 18, &[0; 4]))])).unwrap();
    fs::write(d.join("version"), "6.1.0-test\n").unwrap();
    p
}

fn fake_qemu(dir: &Path) -> PathBuf {
    let p = dir.join("qemu");
    fs::write(
        &p,
        "#!/bin/sh\necho 'QEMU emulator version 9.9.9 (test build)'\necho 'Copyright'\n",
    )
    .unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn settings(dir: &Path) -> AssetSettings {
    AssetSettings {
        qemu: Some(fake_qemu(dir)),
        kernel: Some(fake_kernel(dir)),
        agent: Some(fake_agent(dir, "agent", Some("1.2.3"))),
        accelerator: None,
        template: None,
    }
}

/// The tests' view of the environment: no overrides.
fn no_env() -> Env {
    Env::default()
}

fn find_kernel(s: &AssetSettings) -> Result<Kernel> {
    find_kernel_memo(s, &no_env(), &mut Memo::default())
}

fn find_agent(s: &AssetSettings) -> Result<Agent> {
    find_agent_memo(s, &no_env(), &mut Memo::default())
}

fn locate(s: &AssetSettings, state: &Path) -> Result<Assets> {
    locate_in(s, state, &no_env())
}

#[test]
fn locate_builds_the_initramfs_once() {
    let d = tempfile::tempdir().unwrap();
    let s = settings(d.path());
    let state = d.path().join("root/vm");
    let a = locate(&s, &state).unwrap();
    assert_eq!(
        fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(a.qemu_version, "9.9.9 (test build)");
    assert_eq!(a.kernel_version, "6.1.0-test");
    assert_eq!(a.agent_sha256.len(), 64);
    assert!(a.agent_version.contains(&a.agent_sha256[..16]));
    assert_eq!(
        a.kernel_sha256,
        hex::encode(Sha256::digest(fs::read(&a.kernel).unwrap()))
    );
    assert!(
        a.agent_version.starts_with("1.2.3 (sha256:"),
        "{}",
        a.agent_version
    );
    assert!(a.initramfs.starts_with(&state));
    let first = fs::metadata(&a.initramfs).unwrap();
    let entries = cpio::tests::parse(&fs::read(&a.initramfs).unwrap());
    let init = entries.iter().find(|e| e.0 == "init").unwrap();
    assert_eq!(init.3, fs::read(s.agent.as_ref().unwrap()).unwrap());

    // Again: the same file, not rewritten; the memo remembered QEMU's version.
    let b = locate(&s, &state).unwrap();
    assert_eq!(b.initramfs, a.initramfs);
    let second = fs::metadata(&b.initramfs).unwrap();
    assert_eq!(first.ino(), second.ino());
    assert_eq!(first.mtime_nsec(), second.mtime_nsec());
    let memo = fs::read_to_string(state.join(MEMO_FILE)).unwrap();
    assert!(memo.contains("9.9.9"), "{memo}");

    // A new agent binary (renamed into place, as installers do): a new initramfs.
    let new = fake_agent(d.path(), "agent.new", None);
    fs::rename(&new, s.agent.as_ref().unwrap()).unwrap();
    let c = locate(&s, &state).unwrap();
    assert_ne!(c.initramfs, a.initramfs);
    assert!(
        c.agent_version.starts_with("sha256:"),
        "{}",
        c.agent_version
    );
    // No temporary files left.
    let leftovers: Vec<_> = fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn initramfs_layout_is_exact_and_deterministic() {
    let d = tempfile::tempdir().unwrap();
    let agent = fake_agent(d.path(), "agent", None);
    let (a, b, gz) = (
        d.path().join("a"),
        d.path().join("b"),
        d.path().join("c.gz"),
    );
    write_initramfs(&agent, Compression::None, &a).unwrap();
    write_initramfs(&agent, Compression::None, &b).unwrap();
    write_initramfs(&agent, Compression::Gzip, &gz).unwrap();
    let plain = fs::read(&a).unwrap();
    assert_eq!(plain, fs::read(&b).unwrap());
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(File::open(&gz).unwrap())
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain);
    let gz_bytes = fs::read(&gz).unwrap();
    assert_eq!(&gz_bytes[4..8], &[0, 0, 0, 0], "gzip mtime must be 0");

    let entries = cpio::tests::parse(&plain);
    let layout: Vec<(&str, u32, (u32, u32))> =
        entries.iter().map(|e| (e.0.as_str(), e.1, e.2)).collect();
    assert_eq!(
        layout,
        [
            ("dev", 0o040755, (0, 0)),
            ("dev/console", 0o020600, (5, 1)),
            ("init", 0o100755, (0, 0)),
            ("proc", 0o040755, (0, 0)),
            ("run", 0o040755, (0, 0)),
            ("sys", 0o040755, (0, 0)),
            ("tmp", 0o041777, (0, 0)),
        ]
    );
}

#[test]
fn agent_must_be_static() {
    let d = tempfile::tempdir().unwrap();
    let dynamic = d.path().join("isola-agent");
    fs::write(
        &dynamic,
        fake_elf(&[(3, b"/lib64/ld-linux-x86-64.so.2\0".to_vec())]),
    )
    .unwrap();
    let s = AssetSettings {
        agent: Some(dynamic),
        ..Default::default()
    };
    let e = find_agent(&s).unwrap_err().to_string();
    assert!(e.contains("dynamically linked"), "{e}");
    assert!(e.contains("/lib64/ld-linux-x86-64.so.2"), "{e}");
    assert!(e.contains("scripts/build-agent.sh"), "{e}");
    assert!(e.contains("+crt-static"), "{e}");

    let s = AssetSettings {
        agent: Some(d.path().join("nope")),
        ..Default::default()
    };
    let e = find_agent(&s).unwrap_err().to_string();
    assert!(e.contains("not found") && e.contains("[vm] agent"), "{e}");

    let script = d.path().join("script");
    fs::write(
        &script,
        "#!/bin/sh\n# a script, long enough to have an ELF header's worth of bytes in it\n",
    )
    .unwrap();
    let s = AssetSettings {
        agent: Some(script),
        ..Default::default()
    };
    let e = find_agent(&s).unwrap_err().to_string();
    assert!(e.contains("not an ELF file"), "{e}");
}

#[test]
fn default_agent_is_next_to_the_executable() {
    let paths = default_agent_paths();
    let exe_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    assert_eq!(paths[0], exe_dir.join(AGENT_BINARY));
    // Unit tests run from target/<profile>/deps: the directory above is searched too.
    if exe_dir.ends_with("deps") {
        assert_eq!(paths[1], exe_dir.parent().unwrap().join(AGENT_BINARY));
    }
    if paths.iter().all(|p| !p.exists()) {
        let e = find_agent(&AssetSettings::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("guest agent not found at"), "{e}");
        assert!(e.contains("scripts/build-agent.sh"), "{e}");
    }
}

#[test]
fn kernel_checks() {
    let d = tempfile::tempdir().unwrap();
    // A directory holding vmlinux and version, as vm/build-kernel.sh leaves it.
    let k = fake_kernel(d.path());
    let s = AssetSettings {
        kernel: Some(k.parent().unwrap().to_path_buf()),
        ..Default::default()
    };
    assert_eq!(
        find_kernel(&s).unwrap(),
        Kernel {
            path: k.clone(),
            version: "6.1.0-test".into()
        }
    );
    // Without the version file, the banner inside the image.
    fs::remove_file(k.parent().unwrap().join("version")).unwrap();
    let mut bytes = fs::read(&k).unwrap();
    bytes.extend_from_slice(b"Linux version 6.1.99-banner (root@x) #1\0");
    fs::write(&k, bytes).unwrap();
    assert_eq!(find_kernel(&s).unwrap().version, "6.1.99-banner");

    // A bzImage-like file or an ELF without the PVH note is refused.
    let bz = d.path().join("bzImage");
    fs::write(&bz, vec![0u8; 4096]).unwrap();
    let e = find_kernel(&AssetSettings {
        kernel: Some(bz),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("vm/build-kernel.sh"), "{e}");
    let nopvh = d.path().join("vmlinux-nopvh");
    fs::write(&nopvh, fake_elf(&[(4, note(b"GNU\0", 3, &[0; 20]))])).unwrap();
    let e = find_kernel(&AssetSettings {
        kernel: Some(nopvh),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("PVH"), "{e}");

    let e = find_kernel(&AssetSettings {
        kernel: Some(d.path().join("missing")),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("not found") && e.contains("vm/build-kernel.sh"),
        "{e}"
    );
}

#[test]
fn qemu_version_and_missing_qemu() {
    let d = tempfile::tempdir().unwrap();
    let q = find_qemu(&AssetSettings {
        qemu: Some(fake_qemu(d.path())),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(q.version, "9.9.9 (test build)");

    let e = find_qemu(&AssetSettings {
        qemu: Some(d.path().join("nope")),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("qemu-system-x86") && e.contains("[vm] qemu"),
        "{e}"
    );

    let liar = d.path().join("liar");
    fs::write(&liar, "#!/bin/sh\necho hello\n").unwrap();
    fs::set_permissions(&liar, fs::Permissions::from_mode(0o755)).unwrap();
    let e = find_qemu(&AssetSettings {
        qemu: Some(liar),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("not usable"), "{e}");
}

#[test]
fn kernel_key_matches_build_kernel_sh() {
    // The formula of vm/build-kernel.sh, byte for byte; if the script changes it, this test
    // must change with kernel_key_for.
    for line in [
        "printf 'kernel.config\\0'; cat \"$FRAGMENT\"",
        "printf '\\0%s\\0%s\\0' \"$SRC_PKG\" \"$SRC_VERSION\"",
        "printf 'build-kernel.sh\\0'; cat \"$SCRIPT_PATH\"",
        "} | sha256sum | cut -c1-16)",
        "SRC_PKG=linux-source-6.1",
    ] {
        assert!(
            BUILD_KERNEL_SH.contains(line),
            "build-kernel.sh lost {line:?}"
        );
    }
    let vm_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vm");
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            "{ printf 'kernel.config\\0'; cat kernel.config; printf '\\0%s\\0%s\\0' linux-source-6.1 6.1.192-3; \
             printf 'build-kernel.sh\\0'; cat build-kernel.sh; } | sha256sum | cut -c1-16",
        )
        .current_dir(&vm_dir)
        .output()
        .unwrap();
    let shell = String::from_utf8(out.stdout).unwrap();
    assert_eq!(kernel_key_for("6.1.192-3"), shell.trim());
}

#[test]
fn dpkg_status_parsing() {
    let d = tempfile::tempdir().unwrap();
    let status = d.path().join("status");
    fs::write(
        &status,
        "Package: linux-source-6.0\nStatus: install ok installed\nVersion: 1\n\n\
         Package: linux-source-6.1\nStatus: deinstall ok config-files\nVersion: 2\n\n\
         Package: linux-source-6.1\nStatus: install ok installed\nPriority: optional\nVersion: 6.1.192-3\nDescription: x\n y\n",
    )
    .unwrap();
    assert_eq!(
        dpkg_version(&status, "linux-source-6.1").as_deref(),
        Some("6.1.192-3")
    );
    assert_eq!(dpkg_version(&status, "nothing"), None);
}

#[test]
fn finds_needles() {
    assert_eq!(find(b"aaab", b"ab"), Some(2));
    assert_eq!(find(b"abc", b"abcd"), None);
    assert_eq!(
        find(b"xISOLA_AGENT_VERSION=1\0", AGENT_VERSION_MARKER),
        Some(1)
    );
    assert_eq!(find(b"", b"a"), None);
}

#[test]
fn environment_overrides_settings() {
    let d = tempfile::tempdir().unwrap();
    let s = settings(d.path());
    let other = fake_agent(d.path(), "other-agent", Some("9.9"));
    let env = Env {
        kernel: None,
        agent: Some(other.clone()),
    };
    let a = find_agent_memo(&s, &env, &mut Memo::default()).unwrap();
    assert_eq!(a.path, other);
    assert_eq!(a.version.as_deref(), Some("9.9"));
    let env = Env {
        kernel: Some(d.path().join("no-kernel")),
        agent: Some(d.path().join("no-agent")),
    };
    let e = find_agent_memo(&s, &env, &mut Memo::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("from ISOLA_AGENT"), "{e}");
    let e = find_kernel_memo(&s, &env, &mut Memo::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("from ISOLA_KERNEL"), "{e}");
}
