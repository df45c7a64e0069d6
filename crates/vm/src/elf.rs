//! Just enough of ELF to check the guest's binaries before QEMU or the guest kernel trips on
//! them: whether the agent names a program interpreter (a dynamic binary cannot run in a guest
//! that has no libc), and whether the kernel carries the PVH entry note QEMU boots it by.
//!
//! The files come from the host's configuration, but are read with bounds anyway: at most
//! [`MAX_PHNUM`] program headers, notes and interpreter names of bounded size.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Most program headers read.
const MAX_PHNUM: usize = 256;
/// Largest note segment or interpreter name read, in bytes.
const MAX_SEGMENT: u64 = 1 << 20;

const PT_INTERP: u32 = 3;
const PT_NOTE: u32 = 4;
/// `EM_X86_64`.
pub const EM_X86_64: u16 = 62;
/// `XEN_ELFNOTE_PHYS32_ENTRY`: the 32-bit PVH entry point QEMU jumps to.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// What the checks need to know about one ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// `e_machine`.
    pub machine: u16,
    /// The program interpreter (`PT_INTERP`), when there is one: the binary is dynamically linked.
    pub interp: Option<String>,
    /// Whether a `PT_NOTE` segment holds the Xen `PHYS32_ENTRY` note (PVH boot).
    pub pvh: bool,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default())
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads the ELF header and program headers of `path`.
///
/// # Errors
/// `InvalidData` when the file is not a 64-bit little-endian ELF file or its headers are out of
/// bounds; other kinds for read errors.
pub fn inspect(path: &Path) -> io::Result<Info> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut eh = [0u8; 64];
    f.read_exact(&mut eh)
        .map_err(|_| invalid("too short to be an ELF file"))?;
    if &eh[..4] != b"\x7fELF" {
        return Err(invalid("not an ELF file"));
    }
    if eh[4] != 2 || eh[5] != 1 {
        return Err(invalid("not a 64-bit little-endian ELF file"));
    }
    let machine = u16_at(&eh, 18);
    let phoff = u64_at(&eh, 32);
    let phentsize = usize::from(u16_at(&eh, 54));
    let phnum = usize::from(u16_at(&eh, 56));
    if phnum > MAX_PHNUM || (phnum > 0 && phentsize < 56) {
        return Err(invalid("bad program header table"));
    }
    let table_len = (phentsize * phnum) as u64;
    if phoff.checked_add(table_len).is_none_or(|end| end > len) {
        return Err(invalid("program header table beyond the end of the file"));
    }
    let mut table = vec![0u8; phentsize * phnum];
    f.seek(SeekFrom::Start(phoff))?;
    f.read_exact(&mut table)?;

    let mut info = Info {
        machine,
        interp: None,
        pvh: false,
    };
    for ph in table.chunks_exact(phentsize) {
        let kind = u32_at(ph, 0);
        if kind != PT_INTERP && kind != PT_NOTE {
            continue;
        }
        let (off, size) = (u64_at(ph, 8), u64_at(ph, 32));
        if size > MAX_SEGMENT || off.checked_add(size).is_none_or(|end| end > len) {
            return Err(invalid("segment beyond the end of the file"));
        }
        let mut seg = vec![0u8; size as usize];
        f.seek(SeekFrom::Start(off))?;
        f.read_exact(&mut seg)?;
        if kind == PT_INTERP {
            let name = seg.split(|&c| c == 0).next().unwrap_or_default();
            info.interp = Some(String::from_utf8_lossy(name).into_owned());
        } else if has_pvh_note(&seg) {
            info.pvh = true;
        }
    }
    Ok(info)
}

/// Walks the notes of one `PT_NOTE` segment.
fn has_pvh_note(mut seg: &[u8]) -> bool {
    let align4 = |n: usize| n.next_multiple_of(4);
    while seg.len() >= 12 {
        let namesz = u32_at(seg, 0) as usize;
        let descsz = u32_at(seg, 4) as usize;
        let kind = u32_at(seg, 8);
        let Some(total) = align4(namesz).checked_add(align4(descsz)).map(|n| n + 12) else {
            return false;
        };
        if total > seg.len() {
            return false;
        }
        let name = &seg[12..12 + namesz];
        if name == b"Xen\0" && kind == XEN_ELFNOTE_PHYS32_ENTRY {
            return true;
        }
        seg = &seg[total..];
    }
    false
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF64 file with the given program headers: (type, contents).
    pub(crate) fn fake_elf(segments: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let phoff = 64usize;
        let mut data_off = phoff + 56 * segments.len();
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[16..18].copy_from_slice(&2u16.to_le_bytes());
        out[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        out[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
        out[54..56].copy_from_slice(&56u16.to_le_bytes());
        out[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        let mut bodies = Vec::new();
        for (kind, body) in segments {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&kind.to_le_bytes());
            ph[8..16].copy_from_slice(&(data_off as u64).to_le_bytes());
            ph[32..40].copy_from_slice(&(body.len() as u64).to_le_bytes());
            out.extend_from_slice(&ph);
            bodies.extend_from_slice(body);
            data_off += body.len();
        }
        out.extend_from_slice(&bodies);
        out
    }

    pub(crate) fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&(name.len() as u32).to_le_bytes());
        n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        n.extend_from_slice(&kind.to_le_bytes());
        n.extend_from_slice(name);
        n.resize(n.len().next_multiple_of(4), 0);
        n.extend_from_slice(desc);
        n.resize(n.len().next_multiple_of(4), 0);
        n
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn interpreter_and_pvh_note() {
        let d = tempfile::tempdir().unwrap();
        let dynamic = write(
            d.path(),
            "dyn",
            &fake_elf(&[(PT_INTERP, b"/lib64/ld-linux-x86-64.so.2\0".to_vec())]),
        );
        let i = inspect(&dynamic).unwrap();
        assert_eq!(i.interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        assert!(!i.pvh);
        assert_eq!(i.machine, EM_X86_64);

        let mut notes = note(b"GNU\0", 3, &[1; 20]);
        notes.extend(note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY, &[0; 4]));
        let kernel = write(d.path(), "vmlinux", &fake_elf(&[(PT_NOTE, notes)]));
        let i = inspect(&kernel).unwrap();
        assert_eq!(i.interp, None);
        assert!(i.pvh);
    }

    #[test]
    fn refuses_garbage() {
        let d = tempfile::tempdir().unwrap();
        let text = write(
            d.path(),
            "sh",
            b"#!/bin/sh\necho this is not ELF at all, no no no no no no no no no\n",
        );
        assert!(inspect(&text)
            .unwrap_err()
            .to_string()
            .contains("not an ELF"));
        let short = write(d.path(), "short", b"\x7fELF");
        assert!(inspect(&short).is_err());
        let mut bad = fake_elf(&[(PT_INTERP, b"/x\0".to_vec())]);
        bad[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        let bad = write(d.path(), "bad", &bad);
        assert!(inspect(&bad).is_err());
        let mut huge = fake_elf(&[(PT_NOTE, vec![0; 16])]);
        let len = huge.len();
        huge[64 + 32..64 + 40].copy_from_slice(&(len as u64 * 4).to_le_bytes());
        let huge = write(d.path(), "huge", &huge);
        assert!(inspect(&huge).is_err());
    }
}
