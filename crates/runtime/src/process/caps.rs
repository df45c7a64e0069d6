//! Capabilities (config.md "Linux process" → `capabilities`).

use std::str::FromStr;

use caps::{CapSet, Capability as Cap, CapsHashSet};
use oci_spec::runtime::{Capabilities, Capability as OciCap, LinuxCapabilities};

use super::error::ProcessError;

/// Whether this thread has `cap` in its effective set.
pub(super) fn has_effective(cap: Cap) -> bool {
    caps::has_cap(None, CapSet::Effective, cap).unwrap_or(false)
}

/// The `CAP_*` name config.json uses for `cap`.
fn spec_name(cap: &OciCap) -> String {
    match serde_json::to_value(cap) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("CAP_{cap}"),
    }
}

/// The `caps` crate's value for a spec capability.
fn to_caps(cap: &OciCap) -> Result<Cap, String> {
    let name = spec_name(cap);
    Cap::from_str(&name).map_err(|_| name)
}

/// The five sets asked for, as `(field name, set)`, bounding first.
fn sets(spec: &LinuxCapabilities) -> [(&'static str, Option<&Capabilities>); 5] {
    [
        ("bounding", spec.bounding().as_ref()),
        ("effective", spec.effective().as_ref()),
        ("inheritable", spec.inheritable().as_ref()),
        ("permitted", spec.permitted().as_ref()),
        ("ambient", spec.ambient().as_ref()),
    ]
}

/// The capability names this runtime knows, in kernel order (`CAP_CHOWN` first): the
/// `linux.capabilities` list of the runtime's features document (features.md).
pub fn known_capabilities() -> Vec<String> {
    let mut all: Vec<Cap> = caps::all().into_iter().collect();
    all.sort_by_key(|c| c.index());
    all.iter().map(ToString::to_string).collect()
}

/// Sorted names, for stable messages.
fn names(set: &CapsHashSet) -> String {
    let mut v: Vec<String> = set.iter().map(ToString::to_string).collect();
    v.sort();
    v.join(", ")
}

/// Checks `process.capabilities` without side effects. Errors: a capability this build cannot
/// represent, an effective capability missing from the permitted set (the kernel refuses that).
/// Warnings: capabilities the running kernel does not know (skipped, as runc does), ambient
/// capabilities not in both permitted and inheritable (the kernel refuses to raise them).
pub(super) fn validate(spec: &LinuxCapabilities) -> Result<Vec<String>, ProcessError> {
    let mut warnings = Vec::new();
    let supported = caps::runtime::thread_all_supported();
    for (field, set) in sets(spec) {
        let mut unsupported = CapsHashSet::new();
        for cap in set.into_iter().flatten() {
            let cap = to_caps(cap).map_err(|name| {
                ProcessError::invalid(
                    format!("process.capabilities.{field}"),
                    name,
                    "unknown capability",
                )
            })?;
            if !supported.is_empty() && !supported.contains(&cap) {
                unsupported.insert(cap);
            }
        }
        if !unsupported.is_empty() {
            warnings.push(format!(
                "process.capabilities.{field}: {} not known to the running kernel; skipped",
                names(&unsupported)
            ));
        }
    }
    let wanted = Wanted::from_spec(Some(spec), &CapsHashSet::new());
    let missing: CapsHashSet = wanted
        .effective
        .difference(&wanted.permitted)
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(ProcessError::invalid(
            "process.capabilities.effective",
            names(&missing),
            "not in process.capabilities.permitted; the kernel refuses an effective capability that is not permitted",
        ));
    }
    let allowed: CapsHashSet = wanted
        .permitted
        .intersection(&wanted.inheritable)
        .copied()
        .collect();
    let skipped: CapsHashSet = wanted.ambient.difference(&allowed).copied().collect();
    if !skipped.is_empty() {
        warnings.push(format!(
            "process.capabilities.ambient: {} not in both permitted and inheritable; not raised",
            names(&skipped)
        ));
    }
    Ok(warnings)
}

/// The sets to apply, as `caps` values, without the capabilities the kernel does not know.
#[derive(Debug, Default)]
struct Wanted {
    bounding: CapsHashSet,
    effective: CapsHashSet,
    inheritable: CapsHashSet,
    permitted: CapsHashSet,
    ambient: CapsHashSet,
}

impl Wanted {
    /// `supported` empty means "do not filter".
    fn from_spec(spec: Option<&LinuxCapabilities>, supported: &CapsHashSet) -> Self {
        let convert = |set: Option<&Capabilities>| -> CapsHashSet {
            set.into_iter()
                .flatten()
                .filter_map(|c| to_caps(c).ok())
                .filter(|c| supported.is_empty() || supported.contains(c))
                .collect()
        };
        match spec {
            None => Self::default(),
            Some(spec) => Self {
                bounding: convert(spec.bounding().as_ref()),
                effective: convert(spec.effective().as_ref()),
                inheritable: convert(spec.inheritable().as_ref()),
                permitted: convert(spec.permitted().as_ref()),
                ambient: convert(spec.ambient().as_ref()),
            },
        }
    }
}

fn caps_err(what: impl Into<String>) -> impl FnOnce(caps::errors::CapsError) -> ProcessError {
    let what = what.into();
    move |source| ProcessError::Capabilities { what, source }
}

/// Sets the process's capabilities from `process.capabilities` (config.md "Linux process"):
/// drops from the bounding set every capability not listed in `bounding` (`PR_CAPBSET_DROP`), sets
/// the inheritable, effective and permitted sets, then raises the ambient ones
/// (`PR_CAP_AMBIENT_RAISE`) that are both permitted and inheritable. `None` drops everything.
///
/// Called after [`super::switch_user`]: the effective set a `setresuid` to non-root cleared is first
/// restored from the permitted set (kept by `PR_SET_KEEPCAPS`), so that `CAP_SETPCAP` is there to
/// shrink the bounding set. Capabilities the running kernel does not know are skipped (see
/// [`super::validate`]); a capability this process does not have (for example `CAP_SYS_RESOURCE`
/// on a host that lacks it in every bounding set) is an error naming it, not a bare EPERM.
pub fn apply_capabilities(spec: Option<&LinuxCapabilities>) -> Result<(), ProcessError> {
    let supported = caps::runtime::thread_all_supported();
    let wanted = Wanted::from_spec(spec, &supported);

    let permitted_now =
        caps::read(None, CapSet::Permitted).map_err(caps_err("reading the permitted set"))?;
    caps::set(None, CapSet::Effective, &permitted_now)
        .map_err(caps_err("raising the effective set to the permitted set"))?;

    for (field, set) in [
        ("effective", &wanted.effective),
        ("permitted", &wanted.permitted),
        ("ambient", &wanted.ambient),
    ] {
        let missing: CapsHashSet = set.difference(&permitted_now).copied().collect();
        if !missing.is_empty() {
            return Err(ProcessError::invalid(
                format!("process.capabilities.{field}"),
                names(&missing),
                "this process does not have it (the host's bounding set lacks it?), so the container cannot get it",
            ));
        }
    }

    for cap in &supported {
        if wanted.bounding.contains(cap) {
            continue;
        }
        if caps::has_cap(None, CapSet::Bounding, *cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, *cap)
                .map_err(caps_err(format!("dropping {cap} from the bounding set")))?;
        }
    }
    let not_bounded: CapsHashSet = wanted
        .bounding
        .iter()
        .filter(|c| !caps::has_cap(None, CapSet::Bounding, **c).unwrap_or(false))
        .copied()
        .collect();
    if !not_bounded.is_empty() {
        tracing::warn!(
            "process.capabilities.bounding: {} not in this process's bounding set; cannot be added",
            names(&not_bounded)
        );
    }

    caps::set(None, CapSet::Inheritable, &wanted.inheritable)
        .map_err(caps_err("setting the inheritable set"))?;
    caps::set(None, CapSet::Effective, &wanted.effective)
        .map_err(caps_err("setting the effective set"))?;
    caps::set(None, CapSet::Permitted, &wanted.permitted)
        .map_err(caps_err("setting the permitted set"))?;

    if caps::runtime::ambient_set_supported().is_err() {
        if !wanted.ambient.is_empty() {
            tracing::warn!(
                "process.capabilities.ambient: the kernel has no ambient set; not applied"
            );
        }
        return Ok(());
    }
    caps::clear(None, CapSet::Ambient).map_err(caps_err("clearing the ambient set"))?;
    for cap in &wanted.ambient {
        if wanted.permitted.contains(cap) && wanted.inheritable.contains(cap) {
            caps::raise(None, CapSet::Ambient, *cap)
                .map_err(caps_err(format!("raising {cap} in the ambient set")))?;
        } else {
            tracing::warn!(
                "process.capabilities.ambient: {cap} is not both permitted and inheritable; not raised"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_caps_capability_round_trips_through_the_spec_name() {
        for cap in caps::all() {
            let oci: OciCap = serde_json::from_value(serde_json::Value::String(cap.to_string()))
                .unwrap_or_else(|e| panic!("{cap}: {e}"));
            assert_eq!(to_caps(&oci).unwrap(), cap);
        }
    }

    #[test]
    fn known_capabilities_are_in_kernel_order() {
        let known = known_capabilities();
        assert_eq!(known[0], "CAP_CHOWN");
        assert_eq!(known[21], "CAP_SYS_ADMIN");
        assert!(known.contains(&"CAP_CHECKPOINT_RESTORE".to_owned()));
    }

    #[test]
    fn effective_must_be_permitted() {
        let spec: LinuxCapabilities = serde_json::from_str(
            r#"{"effective":["CAP_CHOWN","CAP_KILL"],"permitted":["CAP_CHOWN"]}"#,
        )
        .unwrap();
        let err = validate(&spec).unwrap_err().to_string();
        assert!(
            err.starts_with("process.capabilities.effective \"CAP_KILL\": not in process.capabilities.permitted"),
            "{err}"
        );
    }

    #[test]
    fn ambient_outside_inheritable_is_a_warning() {
        let spec: LinuxCapabilities = serde_json::from_str(
            r#"{"effective":["CAP_CHOWN"],"permitted":["CAP_CHOWN"],"ambient":["CAP_CHOWN"]}"#,
        )
        .unwrap();
        let warnings = validate(&spec).unwrap();
        assert_eq!(
            warnings,
            ["process.capabilities.ambient: CAP_CHOWN not in both permitted and inheritable; not raised"]
        );
    }
}
