//! The cgroup v2 device filter: the device rules compiled into a `BPF_PROG_TYPE_CGROUP_DEVICE`
//! eBPF program (kernel Documentation/admin-guide/cgroup-v2.rst, "Device controller"; the context
//! is `struct bpf_cgroup_dev_ctx` of include/uapi/linux/bpf.h), loaded and attached with bpf(2).
//!
//! Semantics: the last rule matching a request decides; no match denies. An allow rule matches
//! when it grants every requested access bit; a deny rule matches when it denies any of them.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::devices::{Kind, Rule, ACC_ALL};
use super::error::CgroupError;
use super::fs::Dir;

// bpf(2) commands, program and attach types, flags (include/uapi/linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;
// `bpf_cgroup_dev_ctx.access_type` low half: device type.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

// Instruction encoding: class | size/op | mode/source.
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const MOV64_REG: u8 = 0xbf; // dst = src
const MOV64_IMM: u8 = 0xb7; // dst = imm
const AND64_IMM: u8 = 0x57; // dst &= imm
const RSH64_IMM: u8 = 0x77; // dst >>= imm
const JNE_IMM: u8 = 0x55; // if dst != imm goto pc + off
const JEQ_IMM: u8 = 0x15; // if dst == imm goto pc + off
const EXIT: u8 = 0x95;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    /// `dst_reg:4, src_reg:4` bit fields, in the target's bit-field order.
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    #[cfg(target_endian = "little")]
    let regs = (src << 4) | dst;
    #[cfg(target_endian = "big")]
    let regs = (dst << 4) | src;
    Insn {
        code,
        regs,
        off,
        imm,
    }
}

// Registers: r1 = ctx, r2 = access_type, r3 = device type, r4 = access bits, r5 = major,
// r6 = minor, r7 = scratch, r0 = result.
/// Compiles validated rules into a program: evaluate the rules from last to first and return at
/// the first match, else return 0 (deny).
pub(crate) fn compile(rules: &[Rule]) -> Vec<Insn> {
    let mut prog = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(MOV64_REG, 3, 2, 0, 0),
        insn(AND64_IMM, 3, 0, 0, 0xffff),
        insn(MOV64_REG, 4, 2, 0, 0),
        insn(RSH64_IMM, 4, 0, 0, 16),
        insn(LDX_MEM_W, 5, 1, 4, 0),
        insn(LDX_MEM_W, 6, 1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        let Some(block) = rule_block(rule) else {
            // Numbers beyond i32 name no real device (majors are 12 bits, minors 20).
            continue;
        };
        let unconditional = block.len() == 2;
        prog.extend(block);
        if unconditional {
            // Earlier rules can never be reached, and the verifier refuses unreachable code.
            return prog;
        }
    }
    prog.push(insn(MOV64_IMM, 0, 0, 0, 0));
    prog.push(insn(EXIT, 0, 0, 0, 0));
    prog
}

/// The instructions of one rule: conditional jumps to the next rule, then `r0 = allow; exit`.
fn rule_block(rule: &Rule) -> Option<Vec<Insn>> {
    // Jumps are built with offset 0 and patched once the block's length is known.
    let mut block = Vec::new();
    match rule.kind {
        Kind::All => {}
        Kind::Char => block.push(insn(JNE_IMM, 3, 0, 0, DEV_CHAR)),
        Kind::Block => block.push(insn(JNE_IMM, 3, 0, 0, DEV_BLOCK)),
    }
    if rule.access != ACC_ALL {
        block.push(insn(MOV64_REG, 7, 4, 0, 0));
        if rule.allow {
            // Skip unless every requested bit is granted: (req & !granted) == 0.
            block.push(insn(AND64_IMM, 7, 0, 0, i32::from(!rule.access & ACC_ALL)));
            block.push(insn(JNE_IMM, 7, 0, 0, 0));
        } else {
            // Skip unless some requested bit is denied: (req & denied) != 0.
            block.push(insn(AND64_IMM, 7, 0, 0, i32::from(rule.access)));
            block.push(insn(JEQ_IMM, 7, 0, 0, 0));
        }
    }
    for (reg, number) in [(5, rule.major), (6, rule.minor)] {
        if let Some(n) = number {
            block.push(insn(JNE_IMM, reg, 0, 0, i32::try_from(n).ok()?));
        }
    }
    block.push(insn(MOV64_IMM, 0, 0, 0, i32::from(rule.allow)));
    block.push(insn(EXIT, 0, 0, 0, 0));
    let len = block.len();
    for (i, ins) in block.iter_mut().enumerate() {
        if ins.code == JNE_IMM || ins.code == JEQ_IMM {
            // Jump past the rest of the block: to the first instruction of the next rule.
            ins.off = i16::try_from(len - i - 1).unwrap_or(i16::MAX);
        }
    }
    Some(block)
}

/// Loads the program for `rules` and attaches it to the cgroup directory `dir` with
/// `BPF_F_ALLOW_MULTI`, then detaches the programs that were attached there before (a resource
/// update replaces the filter; during the switch both apply, which is the stricter of the two).
pub(crate) fn install(dir: &Dir, rules: &[Rule]) -> Result<(), CgroupError> {
    let prog = compile(rules);
    let prog_fd = load(dir, &prog)?;
    let cgroup_fd = rustix::fs::open(
        &dir.path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| dir.io_error_at("open", dir.path.clone(), e.into()))?;
    let old = query(dir, &cgroup_fd)?;
    let mut attach = AttachAttr {
        target_fd: fd_u32(&cgroup_fd),
        attach_bpf_fd: fd_u32(&prog_fd),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &mut attach).map_err(|err| bpf_error(dir, "BPF_PROG_ATTACH", err))?;
    for id in old {
        let mut by_id = GetFdByIdAttr {
            prog_id: id,
            next_id: 0,
            open_flags: 0,
        };
        let fd = match bpf(BPF_PROG_GET_FD_BY_ID, &mut by_id) {
            // SAFETY: BPF_PROG_GET_FD_BY_ID returned a new file descriptor that nothing else owns.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
            // Detached by someone else meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(err) => return Err(bpf_error(dir, "BPF_PROG_GET_FD_BY_ID", err)),
        };
        let mut detach = AttachAttr {
            target_fd: fd_u32(&cgroup_fd),
            attach_bpf_fd: fd_u32(&fd),
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: 0,
            replace_bpf_fd: 0,
        };
        match bpf(BPF_PROG_DETACH, &mut detach) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(err) => return Err(bpf_error(dir, "BPF_PROG_DETACH", err)),
        }
    }
    Ok(())
}

fn load(dir: &Dir, prog: &[Insn]) -> Result<OwnedFd, CgroupError> {
    const LICENSE: &[u8] = b"Apache\0";
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"isola_dev");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(prog.len()).unwrap_or(u32::MAX),
        insns: prog.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        prog_name: name,
        ..ProgLoadAttr::default()
    };
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: BPF_PROG_LOAD returned a new file descriptor that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(err) => {
            // Load again with the verifier log on, to say why.
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = u32::try_from(log.len()).unwrap_or(u32::MAX);
            attr.log_buf = log.as_mut_ptr() as u64;
            if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr) {
                // SAFETY: as above, a new descriptor owned by nobody else.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            Err(CgroupError::Bpf {
                cgroup: dir.cgroup.clone(),
                op: "BPF_PROG_LOAD",
                err,
                log: String::from_utf8_lossy(&log[..end]).into_owned(),
            })
        }
    }
}

/// The IDs of the device programs attached directly to the cgroup (not inherited ones).
fn query(dir: &Dir, cgroup_fd: &OwnedFd) -> Result<Vec<u32>, CgroupError> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: fd_u32(cgroup_fd),
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: u32::try_from(ids.len()).unwrap_or(0),
        ..QueryAttr::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr).map_err(|err| bpf_error(dir, "BPF_PROG_QUERY", err))?;
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

fn bpf_error(dir: &Dir, op: &'static str, err: io::Error) -> CgroupError {
    CgroupError::Bpf {
        cgroup: dir.cgroup.clone(),
        op,
        err,
        log: String::new(),
    }
}

fn fd_u32(fd: &OwnedFd) -> u32 {
    // Descriptors are never negative.
    fd.as_raw_fd().unsigned_abs()
}

/// Issues one bpf(2) command with `attr` (a `#[repr(C)]` prefix of `union bpf_attr`).
fn bpf<T: BpfAttr>(cmd: libc::c_long, attr: &mut T) -> io::Result<i32> {
    let size = std::mem::size_of::<T>() as libc::c_ulong;
    // SAFETY: `attr` is a live, exclusively borrowed `#[repr(C)]` struct laid out as the prefix of
    // `union bpf_attr` that `cmd` reads (and, for BPF_PROG_QUERY, writes back), and `size` is its
    // exact size; every pointer stored in it (instructions, license, log, ID buffers) points to
    // memory that outlives this call and is large enough for the length given next to it.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(i32::try_from(ret).unwrap_or(i32::MAX))
    }
}

/// Marker for the attribute structs below (each a prefix of `union bpf_attr`).
trait BpfAttr {}

#[repr(C)]
#[derive(Debug, Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}
impl BpfAttr for ProgLoadAttr {}

#[repr(C)]
#[derive(Debug, Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}
impl BpfAttr for AttachAttr {}

#[repr(C)]
#[derive(Debug, Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}
impl BpfAttr for QueryAttr {}

#[repr(C)]
#[derive(Debug, Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}
impl BpfAttr for GetFdByIdAttr {}

#[cfg(test)]
mod tests {
    use super::super::devices::{normalize, spec_rules, ACC_MKNOD, ACC_READ, ACC_WRITE};
    use super::*;

    /// Runs a compiled program on a request, implementing exactly the instructions `compile`
    /// emits, so the rule semantics are checked without the kernel.
    fn run(prog: &[Insn], dev_type: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | dev_type, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 10_000, "runaway program");
            let i = prog[pc];
            let (dst, src) = (usize::from(i.regs & 0xf), usize::from(i.regs >> 4));
            let imm = i64::from(i.imm) as u64;
            let mut next = pc + 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(src, 1);
                    r[dst] = u64::from(ctx[usize::try_from(i.off).unwrap() / 4]);
                }
                MOV64_REG => r[dst] = r[src],
                MOV64_IMM => r[dst] = imm,
                AND64_IMM => r[dst] &= imm,
                RSH64_IMM => r[dst] >>= imm,
                JNE_IMM | JEQ_IMM => {
                    if (r[dst] != imm) == (i.code == JNE_IMM) {
                        next = pc + 1 + usize::try_from(i.off).unwrap();
                    }
                }
                EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
            pc = next;
        }
    }

    fn program(json: &str) -> Vec<Insn> {
        let mut w = Vec::new();
        compile(&normalize(&spec_rules(json), &mut w).unwrap())
    }

    const C: u32 = DEV_CHAR as u32;
    const B: u32 = DEV_BLOCK as u32;
    const R: u32 = ACC_READ as u32;
    const W: u32 = ACC_WRITE as u32;
    const M: u32 = ACC_MKNOD as u32;

    #[test]
    fn empty_list_denies_everything() {
        let p = program("[]");
        assert_eq!(run(&p, C, R, 1, 3), 0);
        assert_eq!(run(&p, B, W, 8, 0), 0);
    }

    #[test]
    fn last_match_wins() {
        let p = program(
            r#"[{"allow":false},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
                {"allow":true,"type":"c","major":136,"access":"rw"},
                {"allow":false,"type":"c","major":136,"minor":7,"access":"w"}]"#,
        );
        assert_eq!(run(&p, C, R | W, 1, 3), 1);
        assert_eq!(run(&p, C, M, 1, 3), 1);
        assert_eq!(run(&p, B, R, 1, 3), 0, "block 1:3 is not char 1:3");
        assert_eq!(run(&p, C, R, 1, 7), 0);
        assert_eq!(run(&p, C, R | W, 136, 2), 1);
        assert_eq!(run(&p, C, M, 136, 2), 0, "mknod not granted for pts");
        assert_eq!(run(&p, C, R, 136, 7), 1);
        assert_eq!(run(&p, C, R | W, 136, 7), 0, "deny w matches a rw request");
    }

    #[test]
    fn allow_all_then_deny() {
        let p = program(
            r#"[{"allow":true,"type":"a"},{"allow":false,"type":"b","major":8,"access":"rwm"}]"#,
        );
        assert_eq!(run(&p, C, R | W | M, 4, 1), 1);
        assert_eq!(run(&p, B, R, 8, 1), 0);
        assert_eq!(run(&p, B, R, 9, 1), 1);
    }

    #[test]
    fn unconditional_rule_cuts_unreachable_code() {
        let p = program(r#"[{"allow":true,"type":"c","major":1,"minor":3},{"allow":false}]"#);
        // Prologue (7) + one unconditional block (2): nothing after it.
        assert_eq!(p.len(), 9);
        assert_eq!(run(&p, C, R, 1, 3), 0);
        assert_eq!(p.last().unwrap().code, EXIT);
    }

    #[test]
    fn jumps_stay_inside_the_program() {
        let p = program(
            r#"[{"allow":true,"type":"c","major":1,"minor":3,"access":"r"},
                {"allow":false,"type":"b","minor":2,"access":"m"}]"#,
        );
        for (pc, i) in p.iter().enumerate() {
            if i.code == JNE_IMM || i.code == JEQ_IMM {
                let target = pc + 1 + usize::try_from(i.off).unwrap();
                assert!(target < p.len());
            }
        }
        assert_eq!(run(&p, C, R, 1, 3), 1);
        assert_eq!(run(&p, C, W, 1, 3), 0);
        assert_eq!(run(&p, B, M, 7, 2), 0);
    }

    #[test]
    fn out_of_range_numbers_never_match() {
        let p = program(r#"[{"allow":true,"type":"c","major":4294967295,"minor":1}]"#);
        assert_eq!(run(&p, C, R, 1, 1), 0);
    }

    #[test]
    fn instruction_layout() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::size_of::<QueryAttr>(), 32);
        let i = insn(LDX_MEM_W, 5, 1, 4, 0);
        assert_eq!((i.regs & 0xf, i.regs >> 4), (5, 1));
    }
}
