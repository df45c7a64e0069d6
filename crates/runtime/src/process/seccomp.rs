//! Seccomp (config-linux.md "Seccomp"), compiled to classic BPF in pure Rust with `seccompiler`.
//!
//! seccompiler builds filters with one action for matching syscalls and one for the rest, while an
//! OCI profile gives each rule its own action. A profile is therefore compiled into a stack of
//! filters, which the kernel runs together, taking the most restrictive result
//! (KILL_PROCESS > KILL_THREAD > TRAP > ERRNO > TRACE > LOG > ALLOW):
//! - a base filter, unless `defaultAction` is ALLOW: every syscall that some rule names (with the
//!   rule's argument conditions) → ALLOW, everything else → `defaultAction`;
//! - one filter per other action of the rules (ERRNO values count as different actions): its
//!   rules → that action, everything else → ALLOW.
//!
//! A syscall no rule matches gets `defaultAction` from the base filter; one that a rule matches gets
//! ALLOW from the base filter and the rule's action from that action's filter. If rules with
//! different actions match the same call, the most restrictive wins.
//!
//! Only the host architecture (x86_64) is compiled; the other `architectures` are ignored. Calls
//! through another ABI (i386 `int 0x80`, x32) kill the process: seccompiler's architecture check
//! refuses a foreign `AUDIT_ARCH`, and x32 system call numbers (bit 30 set) are refused explicitly,
//! since they would otherwise slip past a deny-list.

use std::collections::BTreeMap;

use nix::errno::Errno;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use super::error::ProcessError;

#[cfg(target_arch = "x86_64")]
use super::syscalls_x86_64::SYSCALLS;
#[cfg(target_arch = "x86_64")]
const TARGET: Option<TargetArch> = Some(TargetArch::x86_64);

#[cfg(not(target_arch = "x86_64"))]
const SYSCALLS: &[(&str, i64)] = &[];
#[cfg(not(target_arch = "x86_64"))]
const TARGET: Option<TargetArch> = None;

/// The x32 ABI marks its system call numbers with this bit.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The number of a system call on the host architecture.
pub(super) fn syscall_number(name: &str) -> Option<i64> {
    SYSCALLS
        .binary_search_by(|(n, _)| n.cmp(&name))
        .ok()
        .map(|i| SYSCALLS[i].1)
}

/// A compiled `linux.seccomp` profile: the BPF programs to install, in order, and the flags.
#[derive(Debug, Clone)]
pub struct SeccompProgram {
    filters: Vec<BpfProgram>,
    flags: libc::c_ulong,
    skipped: Vec<String>,
}

impl SeccompProgram {
    /// The BPF programs, installed in this order.
    pub fn filters(&self) -> &[BpfProgram] {
        &self.filters
    }

    /// Syscall names of the profile that the host architecture does not have (skipped).
    pub fn skipped_syscalls(&self) -> &[String] {
        &self.skipped
    }
}

/// The seccompiler action of a spec action; `errno_ret` is only accepted for ERRNO and TRACE.
fn action(
    field: &str,
    act: LinuxSeccompAction,
    errno_ret: Option<u32>,
) -> Result<SeccompAction, ProcessError> {
    let eperm = libc::EPERM as u32;
    if errno_ret.is_some()
        && !matches!(
            act,
            LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
        )
    {
        return Err(ProcessError::invalid(
            field,
            act.to_string(),
            "errnoRet is only valid with SCMP_ACT_ERRNO and SCMP_ACT_TRACE",
        ));
    }
    Ok(match act {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActErrno => SeccompAction::Errno(errno_ret.unwrap_or(eperm)),
        LinuxSeccompAction::ScmpActTrace => SeccompAction::Trace(errno_ret.unwrap_or(eperm)),
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(ProcessError::invalid(
                field,
                act.to_string(),
                "seccomp user notification is not supported (no listener)",
            ))
        }
    })
}

fn condition(field: &str, arg: &LinuxSeccompArg) -> Result<SeccompCondition, ProcessError> {
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => SeccompCmpOp::Ne,
        LinuxSeccompOperator::ScmpCmpLt => SeccompCmpOp::Lt,
        LinuxSeccompOperator::ScmpCmpLe => SeccompCmpOp::Le,
        LinuxSeccompOperator::ScmpCmpEq => SeccompCmpOp::Eq,
        LinuxSeccompOperator::ScmpCmpGe => SeccompCmpOp::Ge,
        LinuxSeccompOperator::ScmpCmpGt => SeccompCmpOp::Gt,
        // libseccomp's SCMP_CMP_MASKED_EQ: (arg & value) == valueTwo.
        LinuxSeccompOperator::ScmpCmpMaskedEq => SeccompCmpOp::MaskedEq(arg.value()),
    };
    let value = match arg.op() {
        LinuxSeccompOperator::ScmpCmpMaskedEq => arg.value_two().unwrap_or(0),
        _ => arg.value(),
    };
    let index = u8::try_from(arg.index())
        .ok()
        .filter(|i| *i <= 5)
        .ok_or_else(|| {
            ProcessError::invalid(
                format!("{field}.index"),
                arg.index().to_string(),
                "syscall argument index must be 0 to 5",
            )
        })?;
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| ProcessError::SeccompCompile(format!("{field}: {e}")))
}

/// The rules of one syscall entry: `None` matches the syscall whatever its arguments. Arguments
/// are ANDed in one rule; if an argument index repeats, each argument becomes a rule of its own
/// (ORed), which is what runc does with libseccomp.
fn rules_of(field: &str, sc: &LinuxSyscall) -> Result<Option<Vec<SeccompRule>>, ProcessError> {
    let args = sc.args().as_deref().unwrap_or_default();
    if args.is_empty() {
        return Ok(None);
    }
    let conds = args
        .iter()
        .enumerate()
        .map(|(j, a)| condition(&format!("{field}.args[{j}]"), a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut indexes: Vec<usize> = args.iter().map(|a| a.index()).collect();
    indexes.sort_unstable();
    indexes.dedup();
    let groups = if indexes.len() == args.len() {
        vec![conds]
    } else {
        conds.into_iter().map(|c| vec![c]).collect()
    };
    groups
        .into_iter()
        .map(|g| {
            SeccompRule::new(g).map_err(|e| ProcessError::SeccompCompile(format!("{field}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Rules per syscall number; `None` = unconditional, which absorbs any conditional rule.
type RuleMap = BTreeMap<i64, Option<Vec<SeccompRule>>>;

fn add(map: &mut RuleMap, nr: i64, rules: Option<Vec<SeccompRule>>) {
    match (map.get_mut(&nr), rules) {
        (None, rules) => {
            map.insert(nr, rules);
        }
        (Some(slot), None) => *slot = None,
        (Some(None), Some(_)) => {}
        (Some(Some(existing)), Some(mut more)) => existing.append(&mut more),
    }
}

fn to_filter(
    map: RuleMap,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, ProcessError> {
    let target = TARGET.ok_or_else(|| {
        ProcessError::SeccompCompile(format!(
            "no system call table for {}; only x86_64 is supported",
            std::env::consts::ARCH
        ))
    })?;
    let rules = map
        .into_iter()
        .map(|(nr, r)| (nr, r.unwrap_or_default()))
        .collect();
    let filter = SeccompFilter::new(rules, mismatch, matched, target)
        .map_err(|e| ProcessError::SeccompCompile(e.to_string()))?;
    let mut prog: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| ProcessError::SeccompCompile(e.to_string()))?;
    // After seccompiler's 3-instruction architecture check: kill x32 system calls.
    let x32_check = [
        sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_KILL_PROCESS,
        },
    ];
    prog.splice(3..3, x32_check);
    Ok(prog)
}

/// Syscall names of the profile unknown on the host architecture, in order, without repeats.
fn unknown_names(seccomp: &LinuxSeccomp) -> Vec<String> {
    let mut unknown: Vec<String> = Vec::new();
    for sc in seccomp.syscalls().iter().flatten() {
        for name in sc.names() {
            if syscall_number(name).is_none() && !unknown.contains(name) {
                unknown.push(name.clone());
            }
        }
    }
    unknown
}

/// Checks `linux.seccomp` without compiling it: actions (SCMP_ACT_NOTIFY is refused: there is no
/// listener support), `errnoRet` only with ERRNO/TRACE, argument indexes, non-empty `names`.
/// Returns warnings: syscall names the host architecture does not know (skipped, as runc does) and
/// architectures other than the host's (ignored).
pub(super) fn validate(seccomp: &LinuxSeccomp) -> Result<Vec<String>, ProcessError> {
    let warnings = Vec::new();
    if TARGET.is_none() {
        return Err(ProcessError::SeccompCompile(format!(
            "no system call table for {}; only x86_64 is supported",
            std::env::consts::ARCH
        )));
    }
    action(
        "linux.seccomp.defaultAction",
        seccomp.default_action(),
        seccomp.default_errno_ret(),
    )?;
    if let Some(path) = seccomp.listener_path() {
        return Err(ProcessError::invalid(
            "linux.seccomp.listenerPath",
            path.display().to_string(),
            "seccomp user notification is not supported",
        ));
    }
    for (i, sc) in seccomp.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        if sc.names().is_empty() {
            return Err(ProcessError::invalid(
                format!("{field}.names"),
                "[]",
                "names must not be empty",
            ));
        }
        action(&format!("{field}.action"), sc.action(), sc.errno_ret())?;
        rules_of(&field, sc)?;
    }
    let unknown = unknown_names(seccomp);
    if !unknown.is_empty() {
        // Profiles list the calls of every architecture; skipping the foreign ones is routine
        // (runc and crun do it silently), so this is a debug message, not a warning.
        tracing::debug!(
            "linux.seccomp: {} syscall name(s) unknown on {}, skipped: {}",
            unknown.len(),
            std::env::consts::ARCH,
            unknown.join(", ")
        );
    }
    let foreign: Vec<String> = seccomp
        .architectures()
        .iter()
        .flatten()
        .filter(|a| !matches!(a, Arch::ScmpArchNative | Arch::ScmpArchX86_64))
        .map(ToString::to_string)
        .collect();
    if !foreign.is_empty() {
        tracing::debug!(
            "linux.seccomp.architectures: {} ignored; only the host architecture is filtered",
            foreign.join(", ")
        );
    }
    Ok(warnings)
}

/// Compiles `linux.seccomp` (config-linux.md "Seccomp") into BPF for the host architecture, before
/// anything irreversible is done, so that errors surface early. Rules whose action equals
/// `defaultAction` are redundant and left out; syscall names the architecture does not have are
/// skipped (see [`SeccompProgram::skipped_syscalls`]).
pub fn compile_seccomp(seccomp: &LinuxSeccomp) -> Result<SeccompProgram, ProcessError> {
    validate(seccomp)?;
    let default = action(
        "linux.seccomp.defaultAction",
        seccomp.default_action(),
        seccomp.default_errno_ret(),
    )?;
    let mut flags: libc::c_ulong = 0;
    for flag in seccomp.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            // Single-threaded at install time: nothing to synchronise.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 0,
        };
    }

    // Per action (keyed by its return value, so ERRNO values differ), the rules.
    let mut by_action: BTreeMap<u32, (SeccompAction, RuleMap)> = BTreeMap::new();
    let mut all_named = RuleMap::new();
    for (i, sc) in seccomp.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let act = action(&format!("{field}.action"), sc.action(), sc.errno_ret())?;
        if act == default {
            tracing::debug!("{field}: same action as defaultAction; redundant, left out");
            continue;
        }
        let rules = rules_of(&field, sc)?;
        for name in sc.names() {
            let Some(nr) = syscall_number(name) else {
                continue;
            };
            add(&mut all_named, nr, rules.clone());
            if act != SeccompAction::Allow {
                let entry = by_action
                    .entry(u32::from(act.clone()))
                    .or_insert_with(|| (act.clone(), RuleMap::new()));
                add(&mut entry.1, nr, rules.clone());
            }
        }
    }

    let mut filters = Vec::new();
    if default != SeccompAction::Allow {
        filters.push(to_filter(all_named, default, SeccompAction::Allow)?);
    }
    for (_, (act, map)) in by_action {
        filters.push(to_filter(map, SeccompAction::Allow, act)?);
    }
    let skipped = unknown_names(seccomp);
    if !skipped.is_empty() {
        tracing::debug!(skipped = %skipped.join(","), "seccomp: unknown syscall names skipped");
    }
    Ok(SeccompProgram {
        filters,
        flags,
        skipped,
    })
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)`.
fn seccomp_set_mode_filter(prog: &[sock_filter], flags: libc::c_ulong) -> Result<(), Errno> {
    let len = u16::try_from(prog.len()).map_err(|_| Errno::E2BIG)?;
    let fprog = libc::sock_fprog {
        len,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points at `len` instructions that live for the whole call; seccompiler's
    // `sock_filter` is `repr(C)` with the same fields as the kernel's `struct sock_filter`. The
    // kernel copies the program and does not keep the pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    Errno::result(rc).map(drop)
}

/// Installs a compiled profile (config-linux.md "Seccomp"). Needs `no_new_privs`
/// ([`super::set_no_new_privs`]) or `CAP_SYS_ADMIN`; the process must be single-threaded (no
/// TSYNC). Every syscall made after this, `execve` included, is filtered.
pub fn load_seccomp(prog: &SeccompProgram) -> Result<(), ProcessError> {
    let count = prog.filters.len();
    if count == 0 {
        tracing::debug!("seccomp: the profile allows everything; no filter installed");
    }
    for (index, filter) in prog.filters.iter().enumerate() {
        seccomp_set_mode_filter(filter, prog.flags).map_err(|source| {
            ProcessError::SeccompLoad {
                index: index + 1,
                count,
                hint: if source == Errno::EACCES {
                    " (needs noNewPrivileges or CAP_SYS_ADMIN)"
                } else {
                    ""
                },
                source,
            }
        })?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
