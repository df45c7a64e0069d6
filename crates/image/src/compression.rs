//! Compression of layer streams (OCI image-spec v1.1 `media-types.md`: `+gzip` and `+zstd` layer
//! media types, and uncompressed `tar`).

use std::io::{self, Read};

/// Compression of a layer stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Uncompressed tar.
    None,
    /// gzip (RFC 1952), possibly several concatenated members.
    Gzip,
    /// Zstandard (RFC 8878), possibly several concatenated frames.
    Zstd,
}

/// gzip magic bytes.
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
/// zstd frame magic bytes (little-endian `0xFD2FB528`).
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// The compression of a stream from its first bytes: gzip `1f 8b`, zstd `28 b5 2f fd`,
    /// anything else (including too few bytes) is [`Compression::None`].
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(ZSTD_MAGIC) {
            Compression::Zstd
        } else if magic.starts_with(GZIP_MAGIC) {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// Wrap `r` in the matching decoder: gzip with `flate2::read::MultiGzDecoder` (all members),
    /// zstd with `zstd::stream::read::Decoder` (all frames); [`Compression::None`] returns `r`.
    ///
    /// # Errors
    /// Creating the zstd decoder context can fail (out of memory); decoding errors are reported
    /// by the returned reader's `read`.
    pub fn decoder<'a, R: Read + 'a>(self, r: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
        })
    }

    /// The name: `"none"`, `"gzip"` or `"zstd"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sample() -> Vec<u8> {
        (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn detects_magic() {
        assert_eq!(
            Compression::detect(&[0x1f, 0x8b, 0x08, 0]),
            Compression::Gzip
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"ustar"), Compression::None);
        assert_eq!(Compression::detect(&[0x1f]), Compression::None);
        assert_eq!(Compression::detect(&[0x28, 0xb5, 0x2f]), Compression::None);
        assert_eq!(Compression::detect(&[]), Compression::None);
        assert_eq!(Compression::Gzip.as_str(), "gzip");
        assert_eq!(Compression::Zstd.as_str(), "zstd");
        assert_eq!(Compression::None.as_str(), "none");
    }

    fn decode(c: Compression, data: &[u8]) -> Vec<u8> {
        assert_eq!(Compression::detect(data), c);
        let mut out = Vec::new();
        c.decoder(data).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn gzip_round_trip_with_several_members() {
        let data = sample();
        let (a, b) = data.split_at(1000);
        let mut z = Vec::new();
        for part in [a, b] {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part).unwrap();
            z.extend(enc.finish().unwrap());
        }
        assert_eq!(decode(Compression::Gzip, &z), data);
    }

    #[test]
    fn zstd_round_trip() {
        let data = sample();
        let z = zstd::stream::encode_all(&data[..], 3).unwrap();
        assert_eq!(decode(Compression::Zstd, &z), data);
    }

    #[test]
    fn none_passes_through() {
        assert_eq!(
            decode(Compression::None, b"plain tar bytes"),
            b"plain tar bytes"
        );
    }

    #[test]
    fn corrupt_gzip_fails() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&sample()).unwrap();
        let mut z = enc.finish().unwrap();
        let n = z.len();
        z.truncate(n / 2);
        let mut out = Vec::new();
        assert!(Compression::Gzip
            .decoder(&z[..])
            .unwrap()
            .read_to_end(&mut out)
            .is_err());
    }
}
