//! The process user (config.md "User"), its umask, and `noNewPrivileges`.

use std::fs;

use nix::errno::Errno;
use nix::sys::stat::Mode;
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::User;

use super::error::ProcessError;

/// The umask used when `process.user.umask` is absent.
pub const DEFAULT_UMASK: u32 = 0o022;

/// Checks `process.user.umask` fits a mode.
pub(super) fn validate(user: &User) -> Result<(), ProcessError> {
    if let Some(umask) = user.umask() {
        if umask > 0o777 {
            return Err(ProcessError::invalid(
                "process.user.umask",
                format!("{umask:#o}"),
                "not a file mode mask (above 0777)",
            ));
        }
    }
    Ok(())
}

/// Sets the umask from `process.user.umask` (config.md "User"), [`DEFAULT_UMASK`] when absent.
/// Bits above `0o777` are ignored (refused by [`super::validate`]).
pub fn set_umask(umask: Option<u32>) {
    let bits = umask.unwrap_or(DEFAULT_UMASK) & 0o777;
    nix::sys::stat::umask(Mode::from_bits_truncate(bits as libc::mode_t));
}

/// Sets `no_new_privs` (config.md "Linux process" → `noNewPrivileges`): from here on, `execve`
/// cannot grant privileges (setuid bits, file capabilities), and a seccomp filter can be loaded
/// without `CAP_SYS_ADMIN`.
pub fn set_no_new_privs() -> Result<(), ProcessError> {
    nix::sys::prctl::set_no_new_privs()
        .map_err(|e| ProcessError::syscall("prctl(PR_SET_NO_NEW_PRIVS, 1)", e))
}

/// Whether `setgroups(2)` is switched off in this user namespace (`/proc/self/setgroups` is `deny`,
/// as it must be for an unprivileged writer of the gid map).
fn setgroups_denied() -> bool {
    fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() == "deny")
        .unwrap_or(false)
}

/// Switches to the process user (config.md "User"): `setgroups(additionalGids)` (an empty list
/// clears the groups inherited from the runtime), `setresgid(gid)`, then `setresuid(uid)` with
/// `PR_SET_KEEPCAPS` set so that the permitted capabilities survive for
/// [`super::apply_capabilities`]; `PR_SET_KEEPCAPS` is cleared again afterwards.
///
/// In a user namespace where `setgroups` is denied (no gid mapping written by a privileged
/// process), an empty `additionalGids` is skipped with a warning; a non-empty one is an error,
/// since dropping groups the bundle asked for would be silent.
pub fn switch_user(user: &User) -> Result<(), ProcessError> {
    let gids: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .copied()
        .map(Gid::from_raw)
        .collect();
    match setgroups(&gids) {
        Ok(()) => {}
        Err(Errno::EPERM) if setgroups_denied() => {
            if !gids.is_empty() {
                return Err(ProcessError::invalid(
                    "process.user.additionalGids",
                    format!(
                        "{:?}",
                        user.additional_gids().as_deref().unwrap_or_default()
                    ),
                    "setgroups is denied in this user namespace (/proc/self/setgroups is \"deny\")",
                ));
            }
            tracing::warn!(
                "setgroups is denied in this user namespace; supplementary groups left as they are"
            );
        }
        Err(e) => {
            return Err(ProcessError::syscall(
                format!(
                    "setgroups({:?})",
                    user.additional_gids().as_deref().unwrap_or_default()
                ),
                e,
            ))
        }
    }

    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid)
        .map_err(|e| ProcessError::syscall(format!("setresgid({})", user.gid()), e))?;

    nix::sys::prctl::set_keepcaps(true)
        .map_err(|e| ProcessError::syscall("prctl(PR_SET_KEEPCAPS, 1)", e))?;
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid)
        .map_err(|e| ProcessError::syscall(format!("setresuid({})", user.uid()), e))?;
    nix::sys::prctl::set_keepcaps(false)
        .map_err(|e| ProcessError::syscall("prctl(PR_SET_KEEPCAPS, 0)", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn umask_above_0777_is_refused() {
        let user: User = serde_json::from_str(r#"{"uid":0,"gid":0,"umask":4095}"#).unwrap();
        assert_eq!(
            validate(&user).unwrap_err().to_string(),
            "process.user.umask \"0o7777\": not a file mode mask (above 0777)"
        );
        let user: User = serde_json::from_str(r#"{"uid":0,"gid":0,"umask":18}"#).unwrap();
        validate(&user).unwrap();
    }
}
