//! An image archive (docker-archive or OCI layout tar) read and loaded into a fresh store: every
//! malformed index, manifest, config or layer must end in an error, never a panic.
#![no_main]

use isola_image::layer::ApplyOptions;
use isola_image::load::{load, LoadOptions, NoProgress};
use isola_image::Store;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let archive = dir.path().join("archive.tar");
    if std::fs::write(&archive, data).is_err() {
        return;
    }
    let Ok(store) = Store::open(&dir.path().join("root")) else { return };
    let opts = LoadOptions {
        platform: None,
        apply: ApplyOptions { max_size: 1 << 20, max_entries: 1000, ..ApplyOptions::default() },
    };
    let _ = load(&store, &archive, &opts, &NoProgress);
});
