//! A bundle's config.json: parsing and validation must refuse bad input with an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    if std::fs::create_dir(dir.path().join("rootfs")).is_err()
        || std::fs::write(dir.path().join("config.json"), data).is_err()
    {
        return;
    }
    let _ = isola_runtime::spec::load_bundle(dir.path());
});
