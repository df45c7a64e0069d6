//! Unit tests of the seccomp compiler: the compiled BPF is run by a small interpreter of the
//! classic-BPF subset seccompiler emits, combining stacked filters as the kernel does.

use super::*;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

/// `struct seccomp_data` as little-endian bytes.
fn data(arch: u32, nr: u32, args: [u64; 6]) -> Vec<u8> {
    let mut d = Vec::with_capacity(64);
    d.extend_from_slice(&nr.to_le_bytes());
    d.extend_from_slice(&arch.to_le_bytes());
    d.extend_from_slice(&0u64.to_le_bytes());
    for a in args {
        d.extend_from_slice(&a.to_le_bytes());
    }
    d
}

fn run_one(prog: &[sock_filter], d: &[u8]) -> u32 {
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    loop {
        let ins = &prog[pc];
        let code = u32::from(ins.code);
        pc += 1;
        match code {
            c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                let k = ins.k as usize;
                acc = u32::from_le_bytes(d[k..k + 4].try_into().unwrap());
            }
            c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => acc &= ins.k,
            c if c == libc::BPF_JMP | libc::BPF_JA => pc += ins.k as usize,
            c if c & 0x07 == libc::BPF_JMP => {
                let taken = match c & 0xf0 {
                    x if x == libc::BPF_JEQ => acc == ins.k,
                    x if x == libc::BPF_JGT => acc > ins.k,
                    x if x == libc::BPF_JGE => acc >= ins.k,
                    x if x == libc::BPF_JSET => acc & ins.k != 0,
                    other => panic!("unexpected jump {other:#x}"),
                };
                pc += usize::from(if taken { ins.jt } else { ins.jf });
            }
            c if c == libc::BPF_RET | libc::BPF_K => return ins.k,
            other => panic!("unexpected instruction {other:#x}"),
        }
    }
}

/// The kernel's combination: the lowest action (as i32) wins; on a tie, the newest filter.
fn run(prog: &SeccompProgram, arch: u32, name_or_nr: &str, args: [u64; 6]) -> u32 {
    let nr = match name_or_nr.parse::<u32>() {
        Ok(nr) => nr,
        Err(_) => syscall_number(name_or_nr).unwrap() as u32,
    };
    let d = data(arch, nr, args);
    let mut best = RET_ALLOW;
    for f in prog.filters().iter().rev() {
        let r = run_one(f, &d);
        if ((r & 0xffff_0000) as i32) < ((best & 0xffff_0000) as i32) {
            best = r;
        }
    }
    best
}

fn x86(prog: &SeccompProgram, name: &str, args: [u64; 6]) -> u32 {
    run(prog, AUDIT_ARCH_X86_64, name, args)
}

fn profile(json: &str) -> LinuxSeccomp {
    serde_json::from_str(json).unwrap()
}

/// A small profile shaped like Docker's default one.
const DOCKER_LIKE: &str = r#"{
  "defaultAction": "SCMP_ACT_ERRNO",
  "defaultErrnoRet": 1,
  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  "syscalls": [
    {"names": ["read", "write", "openat", "close", "exit_group", "execve", "getpid",
               "socketcall", "arm_fadvise64_64", "mseal"], "action": "SCMP_ACT_ALLOW"},
    {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
    {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
    {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 0, "value": 4294967295, "op": "SCMP_CMP_EQ"}]},
    {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
    {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
    {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
  ]
}"#;

#[test]
fn syscall_table_lookups() {
    assert_eq!(syscall_number("read"), Some(0));
    assert_eq!(syscall_number("mkdir"), Some(83));
    assert_eq!(syscall_number("getppid"), Some(110));
    assert_eq!(syscall_number("clone3"), Some(435));
    assert_eq!(syscall_number("mseal"), Some(462));
    assert_eq!(syscall_number("socketcall"), None);
    assert!(
        SYSCALLS.windows(2).all(|w| w[0].0 < w[1].0),
        "table not sorted"
    );
}

#[test]
fn docker_like_profile() {
    let seccomp = profile(DOCKER_LIKE);
    // Names of other architectures are skipped without a warning (a debug message only).
    let warnings = validate(&seccomp).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let prog = compile_seccomp(&seccomp).unwrap();
    assert_eq!(prog.skipped_syscalls(), ["socketcall", "arm_fadvise64_64"]);
    // Base filter + ERRNO(ENOSYS); the mount rule equals the default and is left out.
    assert_eq!(prog.filters().len(), 2);

    let eperm = RET_ERRNO | 1;
    assert_eq!(x86(&prog, "read", [0; 6]), RET_ALLOW);
    assert_eq!(x86(&prog, "mseal", [0; 6]), RET_ALLOW);
    assert_eq!(x86(&prog, "mount", [0; 6]), eperm);
    assert_eq!(x86(&prog, "mkdir", [0; 6]), eperm);
    assert_eq!(x86(&prog, "clone3", [0; 6]), RET_ERRNO | 38);
    // clone: allowed unless it asks for a new namespace.
    assert_eq!(x86(&prog, "clone", [0x0011_0000, 0, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(x86(&prog, "clone", [0x1000_0000, 0, 0, 0, 0, 0]), eperm);
    assert_eq!(x86(&prog, "personality", [8, 0, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(
        x86(&prog, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
    assert_eq!(x86(&prog, "personality", [4, 0, 0, 0, 0, 0]), eperm);
    // The high half of a 64-bit argument is compared too.
    assert_eq!(
        x86(&prog, "personality", [0x1_0000_0008, 0, 0, 0, 0, 0]),
        eperm
    );
    // Other ABIs: x32 numbers and i386 calls are killed.
    assert_eq!(
        x86(&prog, &(0x4000_0000u32).to_string(), [0; 6]),
        RET_KILL_PROCESS
    );
    assert_eq!(
        run(&prog, AUDIT_ARCH_I386, "read", [0; 6]),
        RET_KILL_PROCESS
    );
}

#[test]
fn each_action() {
    let prog = compile_seccomp(&profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_KILL"},
            {"names": ["rmdir"], "action": "SCMP_ACT_KILL_THREAD"},
            {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["uname"], "action": "SCMP_ACT_TRAP"},
            {"names": ["chdir"], "action": "SCMP_ACT_LOG"},
            {"names": ["unlink"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["symlink"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5},
            {"names": ["link"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}
        ]}"#,
    ))
    .unwrap();
    assert_eq!(x86(&prog, "mkdir", [0; 6]), RET_KILL_THREAD);
    assert_eq!(x86(&prog, "rmdir", [0; 6]), RET_KILL_THREAD);
    assert_eq!(x86(&prog, "getppid", [0; 6]), RET_KILL_PROCESS);
    assert_eq!(x86(&prog, "uname", [0; 6]), RET_TRAP);
    assert_eq!(x86(&prog, "chdir", [0; 6]), RET_LOG);
    assert_eq!(x86(&prog, "unlink", [0; 6]), RET_ERRNO | libc::EPERM as u32);
    assert_eq!(x86(&prog, "symlink", [0; 6]), RET_ERRNO | 5);
    assert_eq!(x86(&prog, "link", [0; 6]), RET_TRACE | 7);
    assert_eq!(x86(&prog, "getpid", [0; 6]), RET_ALLOW);
    assert_eq!(x86(&prog, "read", [0; 6]), RET_ALLOW);
}

#[test]
fn argument_conditions() {
    let prog = compile_seccomp(&profile(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["fcntl"], "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"},
                {"index": 2, "value": 10, "op": "SCMP_CMP_GT"}]},
            {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 1, "value": 1, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 3, "op": "SCMP_CMP_EQ"}]},
            {"names": ["lseek"], "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 0, "value": 4294967296, "op": "SCMP_CMP_GE"},
                {"index": 2, "value": 2, "op": "SCMP_CMP_LT"}]},
            {"names": ["dup2"], "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 0, "value": 5, "op": "SCMP_CMP_NE"},
                {"index": 1, "value": 9, "op": "SCMP_CMP_LE"}]},
            {"names": ["kill"], "action": "SCMP_ACT_TRAP", "args": [
                {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}
        ]}"#,
    ))
    .unwrap();
    let eperm = RET_ERRNO | libc::EPERM as u32;
    // Distinct indexes: ANDed.
    assert_eq!(x86(&prog, "fcntl", [0, 2, 11, 0, 0, 0]), RET_ALLOW);
    assert_eq!(x86(&prog, "fcntl", [0, 2, 10, 0, 0, 0]), eperm);
    assert_eq!(x86(&prog, "fcntl", [0, 3, 11, 0, 0, 0]), eperm);
    // A repeated index: ORed, as runc does.
    assert_eq!(x86(&prog, "ioctl", [0, 1, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(x86(&prog, "ioctl", [0, 3, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(x86(&prog, "ioctl", [0, 2, 0, 0, 0, 0]), eperm);
    // 64-bit GE, LT.
    assert_eq!(x86(&prog, "lseek", [1 << 32, 0, 1, 0, 0, 0]), RET_ALLOW);
    assert_eq!(x86(&prog, "lseek", [(1 << 32) - 1, 0, 1, 0, 0, 0]), eperm);
    assert_eq!(x86(&prog, "lseek", [1 << 33, 0, 2, 0, 0, 0]), eperm);
    // NE, LE.
    assert_eq!(x86(&prog, "dup2", [4, 9, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(x86(&prog, "dup2", [5, 9, 0, 0, 0, 0]), eperm);
    assert_eq!(x86(&prog, "dup2", [4, 10, 0, 0, 0, 0]), eperm);
    // Two rules matching: the more restrictive action wins.
    assert_eq!(x86(&prog, "kill", [1, 9, 0, 0, 0, 0]), RET_TRAP);
    assert_eq!(x86(&prog, "kill", [1, 15, 0, 0, 0, 0]), RET_ALLOW);
    // An unconditional rule absorbs a conditional one.
    assert_eq!(x86(&prog, "read", [7, 0, 0, 0, 0, 0]), RET_ALLOW);
}

#[test]
fn refusals_name_the_field() {
    let err = |json: &str| compile_seccomp(&profile(json)).unwrap_err().to_string();
    assert_eq!(
        err(r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#),
        "linux.seccomp.defaultAction \"SCMP_ACT_NOTIFY\": seccomp user notification is not supported (no listener)"
    );
    assert_eq!(
        err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]}"#),
        "linux.seccomp.syscalls[0].action \"SCMP_ACT_ALLOW\": errnoRet is only valid with SCMP_ACT_ERRNO and SCMP_ACT_TRACE"
    );
    assert_eq!(
        err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["write"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#),
        "linux.seccomp.syscalls[1].args[0].index \"6\": syscall argument index must be 0 to 5"
    );
    assert_eq!(
        err(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}"#
        ),
        "linux.seccomp.syscalls[0].names \"[]\": names must not be empty"
    );
    assert!(
        err(r#"{"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/x.sock"}"#)
            .starts_with("linux.seccomp.listenerPath")
    );
}

#[test]
fn allow_everything_needs_no_filter_and_flags_are_mapped() {
    let prog = compile_seccomp(&profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#,
    ))
    .unwrap();
    assert!(prog.filters().is_empty());
    assert_eq!(prog.flags, libc::SECCOMP_FILTER_FLAG_LOG);
}

#[test]
fn a_profile_naming_every_syscall_fits_in_one_filter() {
    let names: Vec<&str> = SYSCALLS.iter().map(|(n, _)| *n).collect();
    let json = serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
    });
    let prog = compile_seccomp(&serde_json::from_value(json).unwrap()).unwrap();
    assert_eq!(prog.filters().len(), 1);
    assert!(
        prog.filters()[0].len() < 4096,
        "{}",
        prog.filters()[0].len()
    );
    assert_eq!(x86(&prog, "mseal", [0; 6]), RET_ALLOW);
    assert_eq!(
        x86(&prog, &500.to_string(), [0; 6]),
        RET_ERRNO | libc::EPERM as u32
    );
}
