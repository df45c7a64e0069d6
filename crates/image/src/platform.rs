//! Platform selection (image-spec "image-index.md", `platform` of a descriptor).

use std::fmt;

use crate::error::{Error, Result};

/// An `os/arch[/variant]` platform, with Go's GOOS/GOARCH names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture, e.g. `amd64`.
    pub arch: String,
    /// CPU variant, e.g. `v8` for arm64.
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`; errors name the string.
    pub fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Self::new(os, arch, None)),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Self::new(os, arch, Some(v))),
            _ => Err(Error::BadPlatform(s.to_owned())),
        }
    }

    fn new(os: &str, arch: &str, variant: Option<&str>) -> Self {
        Self {
            os: os.to_ascii_lowercase(),
            arch: arch.to_ascii_lowercase(),
            variant: variant.map(str::to_ascii_lowercase),
        }
    }

    /// The host's platform: `linux/amd64` on x86-64, `linux/arm64` on AArch64.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Self::new("linux", arch, None)
    }

    /// Whether an image built for `os/arch/variant` runs on this platform. A missing variant on either
    /// side matches any variant (arm64 images rarely state `v8`).
    pub fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.arch == arch
            && match (&self.variant, variant) {
                (Some(want), Some(got)) => want == got,
                _ => true,
            }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert!(p.matches("linux", "arm64", Some("v8")));
        assert!(p.matches("linux", "arm64", None));
        assert!(!p.matches("linux", "arm64", Some("v7")));
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/amd64/v2/x").is_err());
        assert!(Platform::parse("linux/../x").is_err());
        assert_eq!(Platform::host().to_string(), "linux/amd64");
    }
}
