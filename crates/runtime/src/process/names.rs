//! Names in config.json checked before it is parsed into `oci-spec` types, so that an unknown
//! capability, rlimit type or seccomp keyword is reported with its JSON path rather than as a
//! bare parse error with a line and column.

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
    PosixRlimitType,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ProcessError;

/// Checks that `value` parses as `T`, the way the typed parse will.
fn known<T: DeserializeOwned>(field: &str, value: &Value, what: &str) -> Result<(), ProcessError> {
    if serde_json::from_value::<T>(value.clone()).is_ok() {
        return Ok(());
    }
    let shown = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Err(ProcessError::invalid(
        field,
        shown,
        format!("unknown {what}"),
    ))
}

/// The elements of an array field, with their JSON paths; nothing if absent or not an array.
fn items<'a>(
    value: Option<&'a Value>,
    field: &'a str,
) -> impl Iterator<Item = (String, &'a Value)> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(move |(i, v)| (format!("{field}[{i}]"), v))
}

/// Checks the keyword-valued fields of the process and seccomp parts of a raw config.json
/// (config.md "Process", config-linux.md "Seccomp"): capability names, `RLIMIT_*` types, seccomp
/// actions, architectures, operators and flags. The error names the field, e.g.
/// `process.capabilities.bounding[2] "CAP_FOO": unknown capability`. Call it before parsing
/// config.json into [`oci_spec::runtime::Spec`]; [`validate`](super::validate) checks the rest.
pub fn check_names(config: &Value) -> Result<(), ProcessError> {
    let process = config.get("process");
    let capabilities = process.and_then(|p| p.get("capabilities"));
    for set in [
        "bounding",
        "effective",
        "inheritable",
        "permitted",
        "ambient",
    ] {
        let field = format!("process.capabilities.{set}");
        for (f, v) in items(capabilities.and_then(|c| c.get(set)), &field) {
            known::<Capability>(&f, v, "capability")?;
        }
    }
    for (f, v) in items(process.and_then(|p| p.get("rlimits")), "process.rlimits") {
        if let Some(typ) = v.get("type") {
            known::<PosixRlimitType>(&format!("{f}.type"), typ, "rlimit type")?;
        }
    }

    let Some(seccomp) = config.get("linux").and_then(|l| l.get("seccomp")) else {
        return Ok(());
    };
    if let Some(action) = seccomp.get("defaultAction") {
        known::<LinuxSeccompAction>("linux.seccomp.defaultAction", action, "seccomp action")?;
    }
    for (f, v) in items(seccomp.get("architectures"), "linux.seccomp.architectures") {
        known::<Arch>(&f, v, "seccomp architecture")?;
    }
    for (f, v) in items(seccomp.get("flags"), "linux.seccomp.flags") {
        known::<LinuxSeccompFilterFlag>(&f, v, "seccomp flag")?;
    }
    for (f, sc) in items(seccomp.get("syscalls"), "linux.seccomp.syscalls") {
        if let Some(action) = sc.get("action") {
            known::<LinuxSeccompAction>(&format!("{f}.action"), action, "seccomp action")?;
        }
        for (fa, arg) in items(sc.get("args"), &format!("{f}.args")) {
            if let Some(op) = arg.get("op") {
                known::<LinuxSeccompOperator>(&format!("{fa}.op"), op, "seccomp operator")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<(), String> {
        check_names(&serde_json::from_str(json).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn unknown_names_are_reported_with_their_path() {
        assert_eq!(
            check(
                r#"{"process":{"capabilities":{"bounding":["CAP_CHOWN","CAP_KILL","CAP_FOO"]}}}"#
            ),
            Err("process.capabilities.bounding[2] \"CAP_FOO\": unknown capability".into())
        );
        assert_eq!(
            check(
                r#"{"process":{"rlimits":[{"type":"RLIMIT_NOFILE","soft":1,"hard":1},{"type":"RLIMIT_BOGUS"}]}}"#
            ),
            Err("process.rlimits[1].type \"RLIMIT_BOGUS\": unknown rlimit type".into())
        );
        assert_eq!(
            check(r#"{"linux":{"seccomp":{"defaultAction":"SCMP_ACT_MAYBE"}}}"#),
            Err("linux.seccomp.defaultAction \"SCMP_ACT_MAYBE\": unknown seccomp action".into())
        );
        assert_eq!(
            check(
                r#"{"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_PDP11"]}}}"#
            ),
            Err(
                "linux.seccomp.architectures[0] \"SCMP_ARCH_PDP11\": unknown seccomp architecture"
                    .into()
            )
        );
        assert_eq!(
            check(r#"{"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_ALMOST"}]}]}}}"#),
            Err("linux.seccomp.syscalls[0].args[0].op \"SCMP_CMP_ALMOST\": unknown seccomp operator".into())
        );
        assert_eq!(
            check(
                r#"{"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_X"]}}}"#
            ),
            Err("linux.seccomp.flags[0] \"SECCOMP_FILTER_FLAG_X\": unknown seccomp flag".into())
        );
    }

    #[test]
    fn a_valid_config_passes() {
        check(
            r#"{"process":{"capabilities":{"bounding":["CAP_CHOWN"],"ambient":[]},
                "rlimits":[{"type":"RLIMIT_NOFILE","soft":1024,"hard":1024}]},
                "linux":{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],
                "syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW",
                "args":[{"index":0,"value":1,"op":"SCMP_CMP_MASKED_EQ"}]}]}}}"#,
        )
        .unwrap();
        check("{}").unwrap();
    }
}
