//! VM templates (`<root>/vm/templates`): VM-isolated containers start from a saved template VM,
//! and that must not show. Clones get their own randomness and the host's clock; the template is
//! keyed by what it was made from (a changed agent makes a new one); when a template cannot be
//! made or restored the VM boots its kernel instead, with a warning (and a template that failed to
//! restore is made anew by the next VM); `[vm] template = false` turns them off; and a killed clone
//! leaves nothing behind, the template included.
//!
//! They need root, QEMU and the guest kernel (like the VM tests of engine_modes.rs); each makes
//! one template (a cold boot and a save) in its private store, then restores it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{describe, eventually, output_within, Engine, Isola};
use serde_json::Value;

fn engine() -> Option<Engine> {
    if !common::require_root() || !common::require_vm() {
        return None;
    }
    Some(Engine::new())
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `isola run --isolation=vm ARGS…` with extra environment.
fn run_env(isola: &Isola, env: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut all = vec!["run", "--isolation=vm"];
    all.extend_from_slice(args);
    let mut cmd = isola.command(&all);
    for (k, v) in env {
        cmd.env(k, v);
    }
    output_within(&mut cmd, &format!("isola {}", all.join(" ")))
}

/// `run -d`, then the container's `VM.Boot`.
fn boot_of(isola: &Isola, env: &[(&str, &Path)]) -> (String, Value) {
    let out = run_env(isola, env, &["-d", "busybox", "sleep", "1000"]);
    assert!(out.status.success(), "{}", describe(&out));
    let id = stdout(&out).trim().to_owned();
    let boot = isola.container(&id)["VM"]["Boot"].clone();
    (id, boot)
}

/// The template directories of the store.
fn templates(isola: &Isola) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(isola.root.join("vm/templates"))
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn clones_get_their_own_randomness_and_the_hosts_clock() {
    let Some(isola) = engine() else { return };
    // The first run makes the template; both runs are clones of it. /dev/urandom and
    // getrandom(2) read the same kernel generator.
    let script = "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s";
    let mut seen = Vec::new();
    for _ in 0..2 {
        let before = unix_now();
        let out = run_env(&isola, &[], &["--rm", "busybox", "sh", "-c", script]);
        let after = unix_now();
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let text = stdout(&out);
        let mut lines = text.lines();
        let random = lines.next().unwrap_or_default().to_owned();
        let guest: u64 = lines.next().unwrap_or_default().parse().unwrap_or(0);
        assert_eq!(random.len(), 64, "32 random bytes in hex: {text:?}");
        // The template was saved seconds ago (or, in a store used longer, much earlier): the
        // guest's clock is the host's, not the template's.
        assert!(
            guest + 2 >= before && guest <= after + 2,
            "guest time {guest}, host time {before}..{after}"
        );
        seen.push(random);
    }
    assert_ne!(seen[0], seen[1], "two clones read the same random bytes");
    let t = templates(&isola);
    assert_eq!(t.len(), 1, "one template: {t:?}");
    let (_, boot) = boot_of(&isola, &[]);
    assert_eq!(
        boot["Restore"]["Template"],
        t[0].file_name().unwrap().to_str().unwrap(),
        "{boot}"
    );
    assert_eq!(boot["Restore"]["MakeMs"], 0, "made once: {boot}");
    assert_eq!(boot["KernelMs"], 0, "no kernel boot: {boot}");
}

#[test]
fn a_changed_agent_makes_a_new_template() {
    let Some(isola) = engine() else { return };
    let info: Value = serde_json::from_str(&isola.ok_timed(&["info", "--format", "json"])).unwrap();
    let agent = PathBuf::from(info["VM"]["Agent"].as_str().expect("the agent's path"));
    let (_, first) = boot_of(&isola, &[]);
    assert!(first["Restore"]["MakeMs"].as_u64().unwrap() > 0, "{first}");
    // The same agent with a byte more: another hash, the same behaviour.
    let changed = isola.scratch().join("isola-agent");
    let mut bytes = std::fs::read(&agent).unwrap();
    bytes.push(0);
    std::fs::write(&changed, bytes).unwrap();
    std::fs::set_permissions(
        &changed,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (_, second) = boot_of(&isola, &[("ISOLA_AGENT", &changed)]);
    assert!(
        second["Restore"]["MakeMs"].as_u64().unwrap() > 0,
        "{second}"
    );
    assert_ne!(first["Restore"]["Template"], second["Restore"]["Template"]);
    assert_eq!(templates(&isola).len(), 2);
    // Back to the first agent: its template is still there.
    let (_, third) = boot_of(&isola, &[]);
    assert_eq!(third["Restore"]["Template"], first["Restore"]["Template"]);
    assert_eq!(third["Restore"]["MakeMs"], 0, "{third}");
}

#[test]
fn a_template_that_cannot_be_made_means_a_cold_boot_with_a_warning() {
    let Some(isola) = engine() else { return };
    // A file where the templates directory should be: nothing can be made there.
    std::fs::create_dir_all(isola.root.join("vm")).unwrap();
    std::fs::write(isola.root.join("vm/templates"), "in the way").unwrap();
    let out = run_env(&isola, &[], &["--rm", "busybox", "echo", "hi"]);
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), "hi\n"),
        "{}",
        describe(&out)
    );
    let (id, boot) = boot_of(&isola, &[]);
    assert!(boot.get("Restore").is_none(), "{boot}");
    assert!(
        boot["KernelMs"].as_u64().unwrap() > 0,
        "a cold boot: {boot}"
    );
    let why = boot["TemplateError"].as_str().unwrap_or_default();
    assert!(why.contains("templates"), "{boot}");
    let log = std::fs::read_to_string(
        isola
            .run_root
            .join("containers")
            .join(&id)
            .join("monitor.log"),
    )
    .unwrap_or_default();
    assert!(
        log.contains("WARN") && log.contains("VM template not used"),
        "the monitor warns: {log}"
    );
}

#[test]
fn a_template_that_cannot_be_restored_is_replaced() {
    let Some(isola) = engine() else { return };
    let (_, first) = boot_of(&isola, &[]);
    let key = first["Restore"]["Template"].as_str().unwrap().to_owned();
    // Damage the saved device state: QEMU refuses to load it.
    let state = isola.root.join("vm/templates").join(&key).join("state");
    let data = std::fs::read(&state).unwrap();
    std::fs::write(&state, &data[..data.len() / 2]).unwrap();
    let (_, second) = boot_of(&isola, &[]);
    assert!(second.get("Restore").is_none(), "{second}");
    assert!(
        second["KernelMs"].as_u64().unwrap() > 0,
        "a cold boot: {second}"
    );
    let why = second["TemplateError"].as_str().unwrap_or_default();
    assert!(why.contains(&key), "{second}");
    assert_eq!(templates(&isola), Vec::<PathBuf>::new(), "discarded");
    let (_, third) = boot_of(&isola, &[]);
    assert_eq!(third["Restore"]["Template"], key.as_str(), "{third}");
    assert!(
        third["Restore"]["MakeMs"].as_u64().unwrap() > 0,
        "made anew: {third}"
    );
}

#[test]
fn templates_can_be_turned_off() {
    let Some(isola) = engine() else { return };
    let config = isola.scratch().join("config.toml");
    std::fs::write(&config, "[vm]\ntemplate = false\n").unwrap();
    let (_, boot) = boot_of(&isola, &[("ISOLA_CONFIG", &config)]);
    assert!(boot.get("Restore").is_none(), "{boot}");
    assert!(boot.get("TemplateError").is_none(), "{boot}");
    assert!(boot["KernelMs"].as_u64().unwrap() > 0, "{boot}");
    assert_eq!(templates(&isola), Vec::<PathBuf>::new());
}

#[test]
fn a_killed_clone_leaves_nothing_behind() {
    let Some(isola) = engine() else { return };
    let (id, boot) = boot_of(&isola, &[]);
    let key = boot["Restore"]["Template"]
        .as_str()
        .unwrap_or_else(|| panic!("restored from a template: {boot}"))
        .to_owned();
    let dir = isola.root.join("vm/templates").join(&key);
    let files = ["console.log", "memory", "meta.json", "state"];
    assert_eq!(names_in(&dir), files);
    let stamp = |name: &str| {
        let m = std::fs::metadata(dir.join(name)).unwrap();
        (m.len(), m.modified().unwrap())
    };
    let before: Vec<_> = files.iter().map(|f| stamp(f)).collect();
    let state = std::fs::read(dir.join("state")).unwrap();

    // Write into the guest's memory, then kill its QEMU.
    let exec = isola.run_timed(&[
        "exec",
        &id,
        "sh",
        "-c",
        "head -c 8000000 /dev/urandom > /dev/shm/x",
    ]);
    assert_eq!(exec.status.code(), Some(0), "{}", describe(&exec));
    let qemu = isola.container(&id)["State"]["Pid"].as_i64().unwrap() as i32;
    // SAFETY: kill(2) on the VMM isola just started for this test.
    unsafe { libc::kill(qemu, libc::SIGKILL) };
    assert!(
        eventually(Duration::from_secs(10), || isola.container(&id)["State"]
            ["Status"]
            == "exited"),
        "the container is marked exited"
    );
    isola.ok_timed(&["rm", &id]);
    isola.assert_container_gone(&id);
    assert!(!common::process_alive(qemu));

    // The template is as it was made: the clone mapped its RAM private.
    assert_eq!(names_in(&dir), files);
    let after: Vec<_> = files.iter().map(|f| stamp(f)).collect();
    assert_eq!(before, after);
    assert_eq!(std::fs::read(dir.join("state")).unwrap(), state);
    // The store holds the template, its lock, and nothing half-made.
    let store = names_in(&isola.root.join("vm/templates"));
    assert_eq!(store, [format!(".lock-{key}"), key.clone()]);
    isola.assert_clean();

    // And the next clone of it works.
    let out = run_env(&isola, &[], &["--rm", "busybox", "echo", "again"]);
    assert_eq!(stdout(&out), "again\n", "{}", describe(&out));
}
