//! A layer tar stream (possibly compressed) unpacked into a fresh directory: must never panic, never
//! write outside the directory, and always stop within the size limit.
#![no_main]

use isola_image::compression::Compression;
use isola_image::layer::{apply_layer, ApplyOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let opts = ApplyOptions { max_size: 1 << 20, max_entries: 1000, ..ApplyOptions::default() };
    let Ok(reader) = Compression::detect(data).decoder(data) else { return };
    let _ = apply_layer(reader, dir.path(), &opts);
});
