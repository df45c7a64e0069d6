//! Unit tests of the unpacker's resource bounds: GNU sparse files, the entry count, oversized
//! long-name and PAX headers, and data after the end-of-archive block.

use std::fs;

use tar::{EntryType, Header};

use super::tests::{opts, unpack, unpack_err, unpack_ok, Tar};
use super::{apply_layer, ApplyOptions, LayerError, DEFAULT_MAX_ENTRIES};

/// A GNU sparse header for a file of `real_size` bytes whose only data is its last 512 bytes.
fn gnu_sparse(name: &[u8], real_size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_size(512);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.sparse[0].set_offset(real_size - 512);
    gnu.sparse[0].set_length(512);
    gnu.set_real_size(real_size);
    h.set_cksum();
    h
}

#[test]
fn gnu_sparse_files_are_refused() {
    let mut stream = gnu_sparse(b"big", 1 << 40).as_bytes().to_vec();
    stream.extend_from_slice(&[b'A'; 512]);
    stream.extend_from_slice(&[0; 1024]);
    let (dir, res) = unpack(&stream);
    assert_eq!(
        res.unwrap_err().to_string(),
        "layer entry \"big\": unsupported entry type gnu sparse file"
    );
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn entry_count_is_limited() {
    let mut t = Tar::new();
    t.dir("d").file("d/a", b"1");
    // Long names and PAX records are part of their entry.
    t.pax(&[("path", format!("{}f", "p/".repeat(100)).as_bytes())]);
    t.file("ignored", b"2");
    let tar = t.finish();
    let max = |max_entries| ApplyOptions {
        max_entries,
        ..ApplyOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let stats = apply_layer(&tar[..], dir.path(), &max(3)).unwrap();
    assert_eq!(stats.entries, 3);
    let dir = tempfile::tempdir().unwrap();
    let err = apply_layer(&tar[..], dir.path(), &max(2)).unwrap_err();
    assert!(matches!(err, LayerError::TooManyEntries { limit: 2 }));
    assert_eq!(err.to_string(), "layer has more than 2 entries");
    assert_eq!(ApplyOptions::default().max_entries, DEFAULT_MAX_ENTRIES);
    assert_eq!(DEFAULT_MAX_ENTRIES, 1_000_000);
}

#[test]
fn oversized_long_name_headers_are_refused_before_reading_them() {
    // A GNU long-name header announcing 1 TiB, followed by only a little data: the error comes
    // from the header alone.
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(EntryType::GNULongName);
    h.set_size(1 << 40);
    h.set_cksum();
    let mut stream = Tar::new().file("first", b"ok").finish();
    stream.truncate(stream.len() - 1024);
    stream.extend_from_slice(h.as_bytes());
    stream.extend_from_slice(&[b'a'; 4096]);
    let (dir, res) = unpack(&stream);
    let err = res.unwrap_err();
    assert!(matches!(err, LayerError::HeaderTooLarge { .. }));
    assert_eq!(
        err.to_string(),
        "layer entry \"././@LongLink\": tar header of type 'L' is 1099511627776 bytes; \
         at most 65536 are allowed"
    );
    assert_eq!(fs::read(dir.path().join("first")).unwrap(), b"ok");
}

#[test]
fn pax_headers_up_to_64_kib() {
    let record = |len: usize| vec![b'c'; len];
    // 65536 bytes of records in all: "65536 comment=ccc...\n".
    let fits = record(65536 - "65536 comment=\n".len());
    let dir = unpack_ok(
        &Tar::new()
            .pax(&[("comment", &fits)])
            .file("f", b"x")
            .finish(),
    );
    assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"x");
    let over = record(65537 - "65537 comment=\n".len());
    let err = unpack_err(
        &Tar::new()
            .pax(&[("comment", &over)])
            .file("f", b"x")
            .finish(),
    );
    assert!(
        err.ends_with("tar header of type 'x' is 65537 bytes; at most 65536 are allowed"),
        "{err}"
    );
    // Long path names written by the tar crate as GNU long names: 65535 bytes and a NUL fit
    // (the name is then refused for its length), one more does not.
    for (len, expect) in [
        (65535, "invalid path".to_owned()),
        (
            65536,
            "tar header of type 'L' is 65537 bytes; at most 65536 are allowed".to_owned(),
        ),
    ] {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(0);
        h.set_uid(rustix::process::geteuid().as_raw().into());
        h.set_gid(rustix::process::getegid().as_raw().into());
        b.append_data(&mut h, "d/".repeat(len / 2) + &"f".repeat(len % 2), &[][..])
            .unwrap();
        let err = unpack_err(&b.into_inner().unwrap());
        assert!(err.ends_with(&expect), "{err}");
        assert!(err.starts_with("layer entry \""), "{err}");
    }
}

#[test]
fn data_after_the_end_of_archive_counts_against_the_size_limit() {
    let mut stream = Tar::new().file("a", b"x").finish();
    let len = stream.len() as u64;
    stream.extend_from_slice(&[0; 10_000]);
    stream.extend_from_slice(b"not zero");
    let dir = tempfile::tempdir().unwrap();
    let stats = apply_layer(&stream[..], dir.path(), &opts(stream.len() as u64)).unwrap();
    assert_eq!(stats.tar_bytes + stats.trailing_bytes, stream.len() as u64);
    assert_eq!(stats.trailing_bytes, 512 + 10_008);
    let dir = tempfile::tempdir().unwrap();
    let err = apply_layer(&stream[..], dir.path(), &opts(len + 5_000)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("layer exceeds the size limit of {} bytes", len + 5_000)
    );
}
