//! Random container names, `adjective_name` as Docker makes them.

use std::io::Read;

use crate::error::{Error, Result};

const LEFT: &[&str] = &[
    "agile", "bold", "brave", "bright", "calm", "clever", "cosmic", "crisp", "daring", "eager",
    "fancy", "gentle", "happy", "jolly", "keen", "lively", "lucid", "merry", "nimble", "quiet",
    "rapid", "serene", "sharp", "steady", "swift", "tender", "upbeat", "vivid", "witty", "zesty",
];

const RIGHT: &[&str] = &[
    "bassi",
    "curie",
    "darwin",
    "euler",
    "fermi",
    "gauss",
    "hopper",
    "hypatia",
    "kepler",
    "lovelace",
    "maxwell",
    "meitner",
    "newton",
    "noether",
    "pascal",
    "planck",
    "ramanujan",
    "riemann",
    "shannon",
    "tesla",
    "turing",
    "volta",
    "wiles",
    "wright",
    "yalow",
    "zuse",
    "bohr",
    "dirac",
    "galois",
    "knuth",
];

/// A random name such as `swift_noether`.
pub fn random() -> Result<String> {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| Error::io("read", "/dev/urandom", e))?;
    let l = LEFT[usize::from(u16::from_le_bytes([b[0], b[1]])) % LEFT.len()];
    let r = RIGHT[usize::from(u16::from_le_bytes([b[2], b[3]])) % RIGHT.len()];
    Ok(format!("{l}_{r}"))
}
