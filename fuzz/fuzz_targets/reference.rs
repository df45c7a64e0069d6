//! Image references and `--change` instructions typed by users or found in archives.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(r) = isola_image::Reference::parse(s) {
        // Whatever parses must print as something that parses to the same reference.
        let again = isola_image::Reference::parse(&r.to_string()).expect("display round-trips");
        assert_eq!(again, r);
    }
    let mut config = oci_spec::image::Config::default();
    let _ = isola_image::changes::apply_changes(&mut config, &[s.to_owned()]);
});
