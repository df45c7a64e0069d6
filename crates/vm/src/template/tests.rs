use super::*;
use crate::qemu::{Accel, Share};

fn config() -> VmConfig {
    VmConfig {
        name: "isola-vm-t".into(),
        qemu: "/usr/bin/qemu-system-x86_64".into(),
        kernel: "/k/vmlinux".into(),
        initramfs: "/k/initramfs".into(),
        accel: Accel::Tcg,
        vcpus: 1,
        memory_mib: 512,
        shares: ["rootfs", "shared", "v0"]
            .iter()
            .map(|t| Share {
                tag: (*t).into(),
                path: "/empty".into(),
                readonly: true,
            })
            .collect(),
        log: "/tmp/log".into(),
        kernel_args: vec![],
        memory: GuestMemory::Anonymous,
        incoming: None,
    }
}

fn assets() -> Assets {
    Assets {
        qemu: "/usr/bin/qemu-system-x86_64".into(),
        qemu_version: "7.2.22".into(),
        kernel: "/k/vmlinux".into(),
        kernel_version: "6.1".into(),
        initramfs: "/k/initramfs".into(),
        agent_version: "sha256:0".into(),
        agent_sha256: "a".repeat(64),
        kernel_sha256: "b".repeat(64),
    }
}

#[test]
fn key_names_what_a_saved_guest_depends_on() {
    let base = key(&config(), &assets(), 1);
    assert!(valid_key(&base), "{base}");
    // Host paths, read-only flags, the log and the process name do not matter.
    let mut c = config();
    c.shares[0].path = "/var/lib/isola/c1/rootfs".into();
    c.shares[2].readonly = false;
    c.name = "isola-vm-other".into();
    c.log = "/elsewhere".into();
    assert_eq!(key(&c, &assets(), 1), base);
    // Everything else does.
    let mut changed = Vec::new();
    let mut a = assets();
    a.agent_sha256 = "c".repeat(64);
    changed.push(key(&config(), &a, 1));
    let mut a = assets();
    a.kernel_sha256 = "c".repeat(64);
    changed.push(key(&config(), &a, 1));
    let mut a = assets();
    a.qemu_version = "8.0".into();
    changed.push(key(&config(), &a, 1));
    changed.push(key(&config(), &assets(), 2));
    let edits: [fn(&mut VmConfig); 6] = [
        |c| c.memory_mib = 256,
        |c| c.vcpus = 2,
        |c| c.accel = Accel::Kvm,
        |c| drop(c.shares.pop()),
        |c| c.kernel_args.push("debug".into()),
        |c| c.qemu = "/opt/qemu".into(),
    ];
    for edit in edits {
        let mut c = config();
        edit(&mut c);
        changed.push(key(&c, &assets(), 1));
    }
    for (i, k) in changed.iter().enumerate() {
        assert_ne!(k, &base, "change {i} kept the key");
    }
}

fn fake_make(dir: &Path) -> Result<Meta> {
    fs::write(dir.join(MEMORY_FILE), b"ram").unwrap();
    fs::write(dir.join(STATE_FILE), b"state").unwrap();
    Ok(Meta {
        format: 0,
        key: String::new(),
        memory_mib: 512,
        tags: vec!["rootfs".into()],
        guest_uptime_ms: 1500,
        agent_version: "test".into(),
        build_ms: 1,
        created_unix_ms: 1,
    })
}

const K: &str = "0123456789abcdef0123456789abcdef";
const WAIT: Duration = Duration::from_secs(5);

#[test]
fn made_once_then_found() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("templates"));
    assert!(store.find(K).unwrap().is_none());
    let (t, made) = store.get_or_make(K, WAIT, fake_make).unwrap();
    assert!(made);
    assert_eq!(t.meta.key, K);
    assert_eq!(t.meta.format, FORMAT);
    assert_eq!(t.dir(), store.dir().join(K));
    let mode = fs::metadata(store.dir()).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let (again, made) = store
        .get_or_make(K, WAIT, |_| panic!("made twice"))
        .unwrap();
    assert!(!made);
    assert_eq!(again.meta, t.meta);
    // Nothing but the template and its lock is left in the store.
    let mut names: Vec<_> = fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [format!(".lock-{K}"), K.to_owned()]);
}

#[test]
fn a_failed_make_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("templates"));
    let e = store
        .get_or_make(K, WAIT, |dir| {
            fs::write(dir.join(MEMORY_FILE), b"half").unwrap();
            Err(Error::Boot("no hello".into()))
        })
        .unwrap_err();
    assert_eq!(e.to_string(), "no hello");
    assert!(store.find(K).unwrap().is_none());
    assert!(!fs::read_dir(store.dir()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(".tmp")));
}

#[test]
fn leftovers_of_a_dead_maker_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("templates"));
    store.create().unwrap();
    let stale = store.dir().join(format!(".tmp-{K}-999-0"));
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join(MEMORY_FILE), b"x").unwrap();
    store.get_or_make(K, WAIT, fake_make).unwrap();
    assert!(!stale.exists());
}

#[test]
fn concurrent_callers_make_it_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("templates"));
    let made = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                store
                    .get_or_make(K, WAIT, |d| {
                        made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                        fake_make(d)
                    })
                    .unwrap();
            });
        }
    });
    assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn a_held_lock_times_out() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("templates"));
    store.create().unwrap();
    // flock locks belong to the open file, so a second open in this process contends.
    let _held = store.lock(K, WAIT).unwrap();
    let e = store
        .get_or_make(K, Duration::from_millis(100), fake_make)
        .unwrap_err();
    assert!(e.to_string().contains("another process"), "{e}");
}

#[test]
fn symlinks_bad_keys_and_foreign_meta_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("templates"));
    store.get_or_make(K, WAIT, fake_make).unwrap();
    assert!(store.find("../etc").is_err());
    assert!(store.find(&K.to_uppercase()).is_err());
    // A template directory that is a symlink.
    let other = "fedcba9876543210fedcba9876543210";
    std::os::unix::fs::symlink(store.dir().join(K), store.dir().join(other)).unwrap();
    let e = store.find(other).unwrap_err().to_string();
    assert!(e.contains("symlinks are refused"), "{e}");
    fs::remove_file(store.dir().join(other)).unwrap();
    // A meta.json that is a symlink.
    let third = "00000000000000000000000000000000";
    let dir = store.dir().join(third);
    fs::create_dir(&dir).unwrap();
    std::os::unix::fs::symlink(store.dir().join(K).join(META_FILE), dir.join(META_FILE)).unwrap();
    assert!(store.find(third).is_err());
    // A meta.json made for another key.
    fs::remove_file(dir.join(META_FILE)).unwrap();
    fs::copy(store.dir().join(K).join(META_FILE), dir.join(META_FILE)).unwrap();
    let e = store.find(third).unwrap_err().to_string();
    assert!(e.contains("made for key"), "{e}");
    // The store itself a symlink.
    let linked = Store::new(tmp.path().join("linked"));
    std::os::unix::fs::symlink(store.dir(), linked.dir()).unwrap();
    assert!(linked.find(K).is_err());
}

#[test]
fn discard_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("templates"));
    store.get_or_make(K, WAIT, fake_make).unwrap();
    store.discard(K);
    assert!(store.find(K).unwrap().is_none());
    let (_, made) = store.get_or_make(K, WAIT, fake_make).unwrap();
    assert!(made);
}

#[test]
fn restore_refuses_a_config_that_does_not_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("templates"));
    let (t, _) = store.get_or_make(K, WAIT, fake_make).unwrap();
    let e = restore(&config(), &t, WAIT).unwrap_err().to_string();
    assert!(e.contains("does not fit template"), "{e}");
}

#[test]
fn a_damaged_template_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("templates"));
    store.get_or_make(K, WAIT, fake_make).unwrap();
    fs::write(store.dir().join(K).join(META_FILE), b"{not json").unwrap();
    assert!(store.find(K).is_err());
    let (t, made) = store.get_or_make(K, WAIT, fake_make).unwrap();
    assert!(made);
    assert_eq!(t.meta.key, K);
    // A symlink in its place is removed, not followed.
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::write(elsewhere.join("keep"), b"x").unwrap();
    fs::remove_dir_all(store.dir().join(K)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, store.dir().join(K)).unwrap();
    let (_, made) = store.get_or_make(K, WAIT, fake_make).unwrap();
    assert!(made);
    assert!(elsewhere.join("keep").exists());
    assert!(fs::symlink_metadata(store.dir().join(K)).unwrap().is_dir());
}
