//! Device access rules (`linux.resources.devices`, config-linux.md "Device allowlist"):
//! validation into one normalized form, shared by the v1 `devices.allow`/`devices.deny` writer
//! (here) and the v2 eBPF compiler (`bpf.rs`).

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::convert::device_number;
use super::error::CgroupError;

/// Access bits, numbered as the kernel's `BPF_DEVCG_ACC_*` so the BPF compiler can use them
/// directly.
pub(crate) const ACC_MKNOD: u8 = 1;
pub(crate) const ACC_READ: u8 = 2;
pub(crate) const ACC_WRITE: u8 = 4;
pub(crate) const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// The kind of device a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    All,
    Char,
    Block,
}

/// One validated rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    pub allow: bool,
    pub kind: Kind,
    /// `None` is any major.
    pub major: Option<u32>,
    /// `None` is any minor.
    pub minor: Option<u32>,
    /// `ACC_*` bits, never 0.
    pub access: u8,
}

impl Rule {
    /// A rule for every device with every access right.
    pub fn is_everything(&self) -> bool {
        self.kind == Kind::All
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ACC_ALL
    }
}

/// Validates the spec's rules, in order. A missing type is `a`, a missing access is `rwm`, type
/// `u` (unbuffered char) is a char device. Type `p` (FIFO) rules are dropped with a warning:
/// the device cgroup controls only char and block devices.
pub(crate) fn normalize(
    rules: &[LinuxDeviceCgroup],
    warnings: &mut Vec<String>,
) -> Result<Vec<Rule>, CgroupError> {
    let mut out = Vec::with_capacity(rules.len());
    for r in rules {
        let kind = match r.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => Kind::All,
            LinuxDeviceType::C | LinuxDeviceType::U => Kind::Char,
            LinuxDeviceType::B => Kind::Block,
            LinuxDeviceType::P => {
                warnings.push(
                    "devices: a rule for type p (FIFO) was ignored; cgroups control only char and block devices"
                        .into(),
                );
                continue;
            }
        };
        out.push(Rule {
            allow: r.allow(),
            kind,
            major: device_number("devices.major", r.major())?,
            minor: device_number("devices.minor", r.minor())?,
            access: parse_access(r.access().as_deref())?,
        });
    }
    Ok(out)
}

fn parse_access(access: Option<&str>) -> Result<u8, CgroupError> {
    let Some(s) = access.filter(|s| !s.is_empty()) else {
        return Ok(ACC_ALL);
    };
    let mut bits = 0;
    for c in s.chars() {
        bits |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => {
                return Err(CgroupError::InvalidValue {
                    field: "devices.access",
                    value: format!("{s:?}"),
                    reason: "access is a combination of r, w and m".into(),
                })
            }
        };
    }
    Ok(bits)
}

/// The v1 writes for a rule list: first `a` to `devices.deny` (deny everything), then each rule
/// in order to `devices.allow` or `devices.deny`. Returns `(file, line)` pairs.
///
/// In v1, `a` switches the cgroup's default behaviour and ignores numbers and access, so only a
/// rule for every device with `rwm` is written as `a`; a narrower type-`a` rule is written as
/// the equivalent pair of `c` and `b` rules.
pub(crate) fn v1_writes(rules: &[Rule]) -> Vec<(&'static str, String)> {
    let mut out = vec![("devices.deny", "a".to_string())];
    for r in rules {
        let file = if r.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        if r.is_everything() {
            out.push((file, "a".into()));
            continue;
        }
        let kinds: &[char] = match r.kind {
            Kind::All => &['c', 'b'],
            Kind::Char => &['c'],
            Kind::Block => &['b'],
        };
        for k in kinds {
            out.push((
                file,
                format!(
                    "{k} {}:{} {}",
                    num(r.major),
                    num(r.minor),
                    access_str(r.access)
                ),
            ));
        }
    }
    out
}

fn num(n: Option<u32>) -> String {
    n.map_or_else(|| "*".to_string(), |n| n.to_string())
}

fn access_str(bits: u8) -> String {
    let mut s = String::with_capacity(3);
    for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
        if bits & bit != 0 {
            s.push(c);
        }
    }
    s
}

/// The device rules every container needs for the minimal `/dev` the runtime creates
/// (config-linux.md "Default Devices": null, zero, full, random, urandom, tty, console, ptmx,
/// and the `/dev/pts` slaves), plus `mknod` of any device (creating a node grants no access to
/// it). The caller appends these, and an allow rule for each `linux.devices` entry, after the
/// spec's `linux.resources.devices` before calling [`super::Cgroup::apply`].
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let rule = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    use LinuxDeviceType::{B, C};
    vec![
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"), // /dev/null
        rule(C, Some(1), Some(5), "rwm"), // /dev/zero
        rule(C, Some(1), Some(7), "rwm"), // /dev/full
        rule(C, Some(1), Some(8), "rwm"), // /dev/random
        rule(C, Some(1), Some(9), "rwm"), // /dev/urandom
        rule(C, Some(5), Some(0), "rwm"), // /dev/tty
        rule(C, Some(5), Some(1), "rwm"), // /dev/console
        rule(C, Some(5), Some(2), "rwm"), // /dev/ptmx
        rule(C, Some(136), None, "rwm"),  // /dev/pts/*
    ]
}

#[cfg(test)]
pub(crate) fn spec_rules(json: &str) -> Vec<LinuxDeviceCgroup> {
    serde_json::from_str(json).expect("device rules JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_defaults_and_types() {
        let mut w = Vec::new();
        let rules = normalize(
            &spec_rules(
                r#"[{"allow":false},{"allow":true,"type":"u","major":1,"minor":3,"access":"rw"},
                   {"allow":true,"type":"p"},{"allow":true,"type":"b","major":-1,"minor":5,"access":"m"}]"#,
            ),
            &mut w,
        )
        .unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("type p"));
        assert_eq!(
            rules,
            [
                Rule {
                    allow: false,
                    kind: Kind::All,
                    major: None,
                    minor: None,
                    access: ACC_ALL
                },
                Rule {
                    allow: true,
                    kind: Kind::Char,
                    major: Some(1),
                    minor: Some(3),
                    access: ACC_READ | ACC_WRITE
                },
                Rule {
                    allow: true,
                    kind: Kind::Block,
                    major: None,
                    minor: Some(5),
                    access: ACC_MKNOD
                },
            ]
        );
    }

    #[test]
    fn invalid_rules() {
        let mut w = Vec::new();
        let e = normalize(&spec_rules(r#"[{"allow":true,"access":"rwx"}]"#), &mut w).unwrap_err();
        assert!(e.to_string().contains("devices.access \"rwx\""), "{e}");
        let e = normalize(&spec_rules(r#"[{"allow":true,"major":-3}]"#), &mut w).unwrap_err();
        assert!(e.to_string().contains("devices.major -3"), "{e}");
    }

    #[test]
    fn v1_lines() {
        let mut w = Vec::new();
        let rules = normalize(
            &spec_rules(
                r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
                   {"allow":true,"type":"c","major":136,"access":"wr"},{"allow":false,"type":"a","access":"w"},
                   {"allow":true,"type":"a","major":-1,"minor":-1,"access":"rwm"}]"#,
            ),
            &mut w,
        )
        .unwrap();
        let lines: Vec<String> = v1_writes(&rules)
            .into_iter()
            .map(|(f, l)| format!("{f} {l}"))
            .collect();
        assert_eq!(
            lines,
            [
                "devices.deny a",
                "devices.deny a",
                "devices.allow c 1:3 rwm",
                "devices.allow c 136:* rw",
                "devices.deny c *:* w",
                "devices.deny b *:* w",
                "devices.allow a",
            ]
        );
    }

    #[test]
    fn default_rules_validate() {
        let mut w = Vec::new();
        let rules = normalize(&default_device_rules(), &mut w).unwrap();
        assert!(w.is_empty());
        assert_eq!(rules.len(), 11);
        assert!(rules.iter().all(|r| r.allow));
        assert_eq!(rules[10].major, Some(136));
        assert_eq!(rules[10].minor, None);
    }
}
