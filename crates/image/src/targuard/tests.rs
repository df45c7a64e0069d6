use std::io::{Read, Seek, Write};

use super::*;

/// A header block with the GNU magic, or the ustar one when `ustar`.
fn header(name: &[u8], kind: u8, size: u64, ustar: bool) -> [u8; 512] {
    let mut h = if ustar {
        tar::Header::new_ustar()
    } else {
        tar::Header::new_gnu()
    };
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    *h.as_bytes()
}

/// Recompute the checksum of a header changed by hand.
fn cksum(mut h: [u8; 512]) -> [u8; 512] {
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// Tar bytes under construction.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn block(&mut self, block: [u8; 512]) -> &mut Raw {
        self.0.extend_from_slice(&block);
        self
    }

    /// Data and its padding.
    fn data(&mut self, data: &[u8]) -> &mut Raw {
        self.0.extend_from_slice(data);
        let pad = (BLOCK as usize - data.len() % 512) % 512;
        self.0.resize(self.0.len() + pad, 0);
        self
    }

    fn entry(&mut self, name: &[u8], kind: u8, data: &[u8]) -> &mut Raw {
        self.block(header(name, kind, data.len() as u64, false))
            .data(data)
    }

    /// A PAX `x` header with these records.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Raw {
        let mut data = Vec::new();
        for (key, value) in records {
            let rest = key.len() + value.len() + 3;
            let mut len = rest + 1;
            while len.to_string().len() + rest != len {
                len += 1;
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.block(header(b"PaxHeaders/x", b'x', data.len() as u64, true))
            .data(&data)
    }

    fn end(&mut self) -> Vec<u8> {
        self.0.resize(self.0.len() + 1024, 0);
        std::mem::take(&mut self.0)
    }
}

/// Hands out at most `chunk` bytes per read.
struct Chunks<'a>(&'a [u8], usize);

impl Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.1).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// Read `data` through a guard in chunks of each of several sizes, and with
/// [`check_tar_file`]; all must agree. Returns the error message, if any.
fn guard(data: &[u8]) -> Result<(), String> {
    let mut results = Vec::new();
    for chunk in [1, 7, 512, 4096, usize::MAX] {
        let mut g = TarGuard::new(Chunks(data, chunk));
        let mut out = Vec::new();
        let r = match g.read_to_end(&mut out) {
            Ok(_) => {
                assert_eq!(out, data, "the guard passes the bytes unchanged");
                Ok(())
            }
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                assert_eq!(
                    g.oversized().map(|o| o.to_string()),
                    oversized(&e).map(|o| o.to_string())
                );
                // Sticky.
                let again = g.read(&mut [0u8; 16]).unwrap_err();
                assert_eq!(again.to_string(), e.to_string());
                Err(e.to_string())
            }
        };
        results.push(r);
    }
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(data).unwrap();
    // Positioned reads: the file offset does not matter.
    file.rewind().unwrap();
    results.push(check_tar_file(&file).map_err(|e| {
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        e.to_string()
    }));
    for r in &results[1..] {
        assert_eq!(r, &results[0]);
    }
    results.pop().unwrap()
}

/// The names and contents of the entries that the `tar` crate reads through a guard.
fn entries(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(TarGuard::new(data));
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let mut content = Vec::new();
        e.read_to_end(&mut content).unwrap();
        out.push((name, content));
    }
    out
}

fn too_big(name: &str, kind: char, size: u64) -> Result<(), String> {
    Err(format!(
        "tar header \"{name}\" of type '{kind}' is {size} bytes; at most 65536 are allowed"
    ))
}

#[test]
fn normal_archives_pass_unchanged() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    b.append_data(&mut h, "a/file", &b"abc"[..]).unwrap();
    let long = format!("{}/{}", "d".repeat(200), "f".repeat(200));
    b.append_data(&mut h, &long, &b"def"[..]).unwrap();
    let mut big = tar::Header::new_ustar();
    big.set_size(5000);
    big.set_mode(0o644);
    b.append_data(&mut big, "big", &[9u8; 5000][..]).unwrap();
    b.append_pax_extensions([("SCHILY.xattr.user.x", &b"y"[..])])
        .unwrap();
    b.append_data(&mut h, "xattr", &b"ghi"[..]).unwrap();
    let mut empty = tar::Header::new_gnu();
    empty.set_size(0);
    empty.set_entry_type(tar::EntryType::Directory);
    b.append_data(&mut empty, "dir/", io::empty()).unwrap();
    let data = b.into_inner().unwrap();
    assert_eq!(guard(&data), Ok(()));
    let names: Vec<_> = entries(&data).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["a/file", long.as_str(), "big", "xattr", "dir/"]);
    assert_eq!(guard(&[]), Ok(()));
}

#[test]
fn long_names_up_to_the_limit() {
    let name = vec![b'n'; MAX_EXTENSION_SIZE as usize - 1];
    let mut with_nul = name.clone();
    with_nul.push(0);
    let data = Raw::default()
        .entry(b"././@LongLink", b'L', &with_nul)
        .entry(b"././@LongLink", b'K', &with_nul)
        .entry(b"short", b'2', b"")
        .end();
    assert_eq!(guard(&data), Ok(()));
    let got = entries(&data);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.as_bytes(), &name[..]);
    for kind in [b'L', b'K', b'x', b'g'] {
        let data = Raw::default()
            .entry(b"hdr", kind, &vec![b'a'; MAX_EXTENSION_SIZE as usize])
            .entry(b"f", b'0', b"")
            .end();
        assert_eq!(guard(&data), Ok(()), "type {}", kind as char);
    }
}

#[test]
fn oversized_extension_headers_are_refused_before_their_data() {
    for kind in ['L', 'K', 'x', 'g'] {
        // Only the header: the guard must fail without needing the data.
        let mut data = Raw::default()
            .entry(b"f", b'0', b"ok")
            .block(header(b"././@LongLink", kind as u8, 65537, false))
            .end();
        data.truncate(data.len() - 1024);
        assert_eq!(guard(&data), too_big("././@LongLink", kind, 65537));
    }
    // Without a recognized magic too, and with a ustar prefix in the name.
    let mut h = header(b"name", b'x', 1 << 40, true);
    h[345..351].copy_from_slice(b"prefix");
    let mut old = header(b"old", b'L', 1 << 20, false);
    old[257..265].fill(0);
    for (h, name, size) in [(h, "prefix/name", 1 << 40), (old, "old", 1 << 20)] {
        let data = Raw::default().block(h).end();
        assert_eq!(guard(&data), too_big(name, h[156] as char, size));
    }
    // The error names the header and says why.
    let data = Raw::default()
        .block(header(b"x\n", b'L', 1 << 33, false))
        .end();
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&data).unwrap();
    let err = check_tar_file(&file).unwrap_err();
    let o = oversized(&err).unwrap();
    assert_eq!((&o.name[..], o.kind, o.size), (&b"x\n"[..], b'L', 1 << 33));
    assert_eq!(
        err.to_string(),
        "tar header \"x\\n\" of type 'L' is 8589934592 bytes; at most 65536 are allowed"
    );
}

#[test]
fn base256_sizes() {
    // A file whose size (1000) is in GNU base-256, then an oversized long name: the guard
    // must skip exactly the file's data to find it.
    let mut h = header(b"f", b'0', 0, false);
    h[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0xe8]);
    let h = cksum(h);
    let data = Raw::default()
        .block(h)
        .data(&[b'd'; 1000])
        .block(header(b"././@LongLink", b'L', 70_000, false))
        .end();
    assert_eq!(guard(&data), too_big("././@LongLink", 'L', 70_000));
    // The data of the file looks like an oversized header, but is data.
    let fake = header(b"fake", b'L', 1 << 30, false);
    let mut content = fake.to_vec();
    content.extend_from_slice(&[0; 488]);
    let data = Raw::default().block(h).data(&content).end();
    assert_eq!(guard(&data), Ok(()));
    assert_eq!(entries(&data), [("f".to_owned(), content)]);
    // Base-256 sizes of extension headers (`tar` writes them from 8 GiB).
    let data = Raw::default()
        .block(header(b"p", b'x', 9 << 30, false))
        .end();
    assert_eq!(guard(&data), too_big("p", 'x', 9 << 30));
    let mut h = header(b"p", b'x', 0, false);
    h[124..136].copy_from_slice(&[0xff; 12]);
    assert_eq!(
        guard(&Raw::default().block(h).end()),
        too_big("p", 'x', u64::MAX)
    );
}

#[test]
fn pax_size_records_override_the_next_header() {
    let fake = header(b"fake", b'L', 1 << 30, false);
    let mut content = fake.to_vec();
    content.extend_from_slice(&[7; 100]);
    // The header says 0 bytes, the PAX record 612: the fake header is data.
    let data = Raw::default()
        .pax(&[("path", b"real"), ("size", b"612")])
        .block(header(b"f", b'0', 0, false))
        .data(&content)
        .end();
    assert_eq!(guard(&data), Ok(()));
    assert_eq!(entries(&data), [("real".to_owned(), content.clone())]);
    // The header says 612 bytes, the PAX record 0: the fake header is a header.
    let data = Raw::default()
        .pax(&[("size", b"0")])
        .block(header(b"f", b'0', 612, false))
        .data(&content)
        .end();
    assert_eq!(guard(&data), too_big("fake", 'L', 1 << 30));
    // The first size record wins; one that is not a number ends the search (as in `tar`), so
    // the header size (612) holds.
    for (records, expect) in [
        (
            &[("size", &b"0"[..]), ("size", &b"612"[..])][..],
            too_big("fake", 'L', 1 << 30),
        ),
        (&[("size", &b"x"[..]), ("size", &b"0"[..])][..], Ok(())),
    ] {
        let data = Raw::default()
            .pax(records)
            .block(header(b"f", b'0', 612, false))
            .data(&content)
            .end();
        assert_eq!(guard(&data), expect, "{records:?}");
        if expect.is_ok() {
            assert_eq!(entries(&data), [("f".to_owned(), content.clone())]);
        }
    }
    // A malformed record (wrong length) ends the search too.
    for (records, expect) in [
        (&b"9 path=p\n12 size=612\n"[..], Ok(())),
        (
            &b"8 path=p\n12 size=612\n"[..],
            too_big("fake", 'L', 1 << 30),
        ),
    ] {
        let data = Raw::default()
            .block(header(b"PaxHeaders/x", b'x', records.len() as u64, true))
            .data(records)
            .block(header(b"f", b'0', 0, false))
            .data(&content)
            .end();
        assert_eq!(guard(&data), expect);
        if expect.is_ok() {
            assert_eq!(entries(&data), [("p".to_owned(), content.clone())]);
        }
    }
    // The size record does not apply to long-name headers in between, but to the entry after.
    let data = Raw::default()
        .pax(&[("size", b"612")])
        .entry(b"././@LongLink", b'L', b"name\0")
        .block(header(b"f", b'0', 0, false))
        .data(&content)
        .end();
    assert_eq!(guard(&data), Ok(()));
    assert_eq!(entries(&data), [("name".to_owned(), content.clone())]);
    // Nor to the entry after the next one.
    let data = Raw::default()
        .pax(&[("size", b"0")])
        .entry(b"g", b'0', b"")
        .block(header(b"f", b'0', 612, false))
        .data(&content)
        .end();
    assert_eq!(guard(&data), Ok(()));
    assert_eq!(entries(&data)[1], ("f".to_owned(), content.clone()));
    // A `x` header without a recognized magic is an ordinary entry for `tar`.
    let mut old = header(b"old", b'x', 9, false);
    old[257..265].fill(0);
    let data = Raw::default()
        .block(cksum(old))
        .data(b"9 size=0\n")
        .block(header(b"f", b'0', 612, false))
        .data(&content)
        .end();
    assert_eq!(guard(&data), Ok(()));
    assert_eq!(
        entries(&data),
        [
            ("old".to_owned(), b"9 size=0\n".to_vec()),
            ("f".to_owned(), content)
        ]
    );
}

#[test]
fn gnu_sparse_extension_blocks_are_bounded() {
    let sparse = |blocks: usize| {
        let mut h = header(b"sparse", b'S', 0, false);
        h[482] = u8::from(blocks > 0);
        let mut r = Raw::default();
        r.block(h);
        for i in 0..blocks {
            let mut ext = [0u8; 512];
            ext[504] = u8::from(i + 1 < blocks);
            r.block(ext);
        }
        r.block(header(b"next", b'L', 1 << 20, false)).end()
    };
    // 128 extension blocks are 64 KiB; the guard then finds the next header.
    assert_eq!(guard(&sparse(128)), too_big("next", 'L', 1 << 20));
    assert_eq!(guard(&sparse(0)), too_big("next", 'L', 1 << 20));
    assert_eq!(
        guard(&sparse(129)),
        Err(
            "tar header \"sparse\" of type 'S' has 66048 bytes of sparse extension blocks; \
             at most 65536 are allowed"
                .to_owned()
        )
    );
}

#[test]
fn nothing_after_the_end_of_archive_is_examined() {
    let big = header(b"after", b'L', 1 << 30, false);
    // One zero block ends the archive for `tar`.
    let mut data = Raw::default().entry(b"f", b'0', b"x").end();
    data.truncate(data.len() - 512);
    data.extend_from_slice(&big);
    data.extend_from_slice(b"trailing");
    assert_eq!(guard(&data), Ok(()));
    let mut g = TarGuard::new(&data[..]);
    io::copy(&mut g, &mut io::sink()).unwrap();
    assert!(g.at_end());
}

#[test]
fn truncated_archives_are_left_to_the_tar_reader() {
    let data = Raw::default()
        .entry(b"f", b'0', &[1; 1000])
        .pax(&[("path", b"p")])
        .entry(b"././@LongLink", b'L', b"long\0")
        .entry(b"g", b'0', b"x")
        .end();
    for cut in [0, 1, 511, 512, 700, 1536, 1600, 2048, 2100, 3000, 3072] {
        assert_eq!(guard(&data[..cut]), Ok(()), "cut at {cut}");
        let mut g = TarGuard::new(&data[..cut]);
        io::copy(&mut g, &mut io::sink()).unwrap();
        assert!(!g.at_end());
    }
    // Truncated right after an oversized header: still refused.
    let data = header(b"n", b'K', 1 << 17, false);
    assert_eq!(guard(&data), too_big("n", 'K', 1 << 17));
}

#[test]
fn invalid_size_fields_are_refused() {
    let mut h = header(b"bad", b'0', 0, false);
    h[124..136].copy_from_slice(b"12345678901z");
    assert_eq!(
        guard(&Raw::default().block(h).end()),
        Err("tar header \"bad\" has an invalid size field".to_owned())
    );
    // Spaces and NULs around octal digits are accepted, as by `tar`.
    h[124..136].copy_from_slice(b" 1000\0      ");
    let data = Raw::default()
        .block(h)
        .data(&[0xff; 512])
        .block(header(b"n", b'L', 1 << 17, false))
        .end();
    assert_eq!(guard(&data), too_big("n", 'L', 1 << 17));
}
