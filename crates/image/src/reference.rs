//! Image references: parsing and normalization of names such as `busybox`, `quay.io/a/b:1.0` and
//! `name@sha256:…`.
//!
//! Implements the grammar of the distribution project's `reference` package, normalized the way
//! Docker's `ParseNormalizedNamed` does it (Docker Hub is the default registry, `library/` the
//! default namespace of single-component Hub names, and `latest` the default tag of a reference
//! that names neither a tag nor a digest):
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] component ( "/" component )*
//! domain     := host [ ":" port ]
//! host       := label ( "." label )* | "[" ipv6 "]"
//! label      := [a-zA-Z0-9] | [a-zA-Z0-9] [a-zA-Z0-9-]* [a-zA-Z0-9]
//! port       := [0-9]+
//! component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag        := [\w] [\w.-]{0,127}
//! digest     := "sha256:" [a-f0-9]{64}
//! ```
//!
//! References come from users and from image archives, so every part is checked here and a
//! [`Reference`] always holds a valid, fully-qualified name.

use std::fmt;
use std::str::FromStr;

/// The registry that names without a domain refer to.
const DEFAULT_DOMAIN: &str = "docker.io";
/// The historical name of the Docker Hub registry; normalized to [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The namespace of single-component Docker Hub names (`busybox` is `library/busybox`).
const OFFICIAL_NAMESPACE: &str = "library";
/// The tag given to references that name neither a tag nor a digest.
const DEFAULT_TAG: &str = "latest";
/// The longest allowed name (`domain/path`), as distribution's `NameTotalLengthMax`.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// The longest allowed tag.
const TAG_LENGTH_MAX: usize = 128;
/// The length of a hex-encoded sha256 digest.
const SHA256_HEX_LEN: usize = 64;

/// Why an image reference was rejected. Every variant carries the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The reference was the empty string.
    #[error("invalid reference \"\": repository name must have at least one component")]
    Empty,
    /// The repository path contains upper-case letters.
    #[error("invalid reference {input:?}: repository name must be lowercase")]
    Uppercase {
        /// The reference as given.
        input: String,
    },
    /// The reference is a bare 64-character hex string, which Docker reserves for image IDs.
    #[error("invalid reference {input:?}: cannot specify 64-byte hexadecimal strings")]
    HexName {
        /// The reference as given.
        input: String,
    },
    /// The reference does not follow the grammar, or breaks a caller's rule (such as "a tag
    /// target cannot contain a digest"); `reason` says which part is wrong.
    #[error("invalid reference {input:?}: {reason}")]
    Invalid {
        /// The reference as given.
        input: String,
        /// What is wrong with it, naming the offending part.
        reason: String,
    },
    /// The fully-qualified name (`domain/path`) is longer than [`NAME_TOTAL_LENGTH_MAX`].
    #[error("invalid reference {input:?}: repository name must not be more than 255 characters")]
    NameTooLong {
        /// The reference as given.
        input: String,
    },
    /// The tag is empty, too long, or contains characters outside `[A-Za-z0-9_.-]`.
    #[error("invalid reference {input:?}: invalid tag {tag:?}")]
    Tag {
        /// The reference as given.
        input: String,
        /// The offending tag.
        tag: String,
    },
    /// The digest is malformed, uses an algorithm other than sha256, or has the wrong length.
    #[error("invalid reference {input:?}: invalid digest {digest:?}: {reason}")]
    Digest {
        /// The reference as given.
        input: String,
        /// The offending digest.
        digest: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A normalized, fully-qualified image reference: domain, path, optional tag, optional digest.
///
/// Built only by [`Reference::parse`] (or [`FromStr`]) and [`Reference::with_tag`], so every
/// value is valid. A reference has a tag, a digest, or both; a parsed reference that named
/// neither gets the tag `latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses what a user typed or an archive names, normalizing it like Docker:
    /// `busybox` → `docker.io/library/busybox:latest`, `user/app` → `docker.io/user/app:latest`,
    /// `index.docker.io/x` → `docker.io/library/x:latest`; names with their own registry
    /// (`localhost/x`, `localhost:5000/x`, `registry.example.com:5000/a/b:tag`) keep it.
    ///
    /// The first component of the name is a domain if it contains `.` or `:`, is `localhost`,
    /// or contains an upper-case letter (as Docker: repository components cannot, host names
    /// can). A name with a digest (`name@sha256:…`, `name:tag@sha256:…`) keeps whatever tag
    /// it gives and gets no default tag.
    ///
    /// # Errors
    ///
    /// A [`ReferenceError`] naming `s` when it is empty, is a bare 64-hex image ID, has an
    /// upper-case repository, breaks the grammar in the module docs, has a name longer than
    /// 255 characters, a bad tag, or a digest that is not `sha256:` and 64 lowercase hex.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if s.len() == SHA256_HEX_LEN && is_lower_hex(s) {
            return Err(ReferenceError::HexName {
                input: s.to_owned(),
            });
        }
        let format = |reason: String| ReferenceError::Invalid {
            input: s.to_owned(),
            reason,
        };

        let (name_and_tag, digest) = match s.split_once('@') {
            Some((before, digest)) => (before, Some(digest)),
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to the domain's port.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].find(':') {
            Some(i) => (
                &name_and_tag[..last_slash + i],
                Some(&name_and_tag[last_slash + i + 1..]),
            ),
            None => (name_and_tag, None),
        };
        if name.is_empty() {
            return Err(format(
                "repository name must have at least one component".into(),
            ));
        }

        let (domain, path) = split_domain(name);
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                input: s.to_owned(),
            });
        }
        check_domain(domain).map_err(&format)?;
        for component in path.split('/') {
            if !is_path_component(component) {
                return Err(format(format!(
                    "invalid repository path component {component:?}"
                )));
            }
        }
        if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong {
                input: s.to_owned(),
            });
        }
        if let Some(tag) = tag {
            if !is_tag(tag) {
                return Err(ReferenceError::Tag {
                    input: s.to_owned(),
                    tag: tag.to_owned(),
                });
            }
        }
        if let Some(digest) = digest {
            check_digest(digest).map_err(|reason| ReferenceError::Digest {
                input: s.to_owned(),
                digest: digest.to_owned(),
                reason,
            })?;
        }

        let tag = match (tag, digest) {
            (None, None) => Some(DEFAULT_TAG),
            (tag, _) => tag,
        };
        Ok(Reference {
            domain: domain.to_owned(),
            path: path.into_owned(),
            tag: tag.map(str::to_owned),
            digest: digest.map(str::to_owned),
        })
    }

    /// The registry domain, with its port if any: `docker.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry: `library/busybox`, `user/app`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The fully-qualified repository without tag or digest: `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag, if any: `latest`.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any: `sha256:` followed by 64 lowercase hex digits.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The short repository name Docker shows: `busybox`, `user/app`, `localhost/x`,
    /// `quay.io/a/b`. Drops `docker.io/`, and also `library/` when nothing else follows it.
    pub fn familiar_repository(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.repository();
        }
        match self.path.strip_prefix(OFFICIAL_NAMESPACE) {
            Some(rest) if rest.starts_with('/') && !rest[1..].contains('/') => rest[1..].to_owned(),
            _ => self.path.clone(),
        }
    }

    /// A copy of this reference with `tag` as its tag and no digest.
    ///
    /// # Errors
    ///
    /// [`ReferenceError::Tag`] when `tag` is not a valid tag.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !is_tag(tag) {
            return Err(ReferenceError::Tag {
                input: format!("{}:{tag}", self.repository()),
                tag: tag.to_owned(),
            });
        }
        Ok(Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_owned()),
            digest: None,
        })
    }
}

/// The full form: `docker.io/library/busybox:latest`, `x@sha256:…`, `x:t@sha256:…`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Same as [`Reference::parse`].
impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Whether `s` could be an image ID or an ID prefix rather than a name: `sha256:<hex>` or bare
/// hex, where the hex part is 1 to 64 lowercase hex digits. Returns the hex part.
///
/// Callers try `s` as a name first and as an ID prefix only if no image has that name, as
/// Docker does: `deadbeef` is a valid repository name as well as an ID prefix.
pub fn looks_like_id(s: &str) -> Option<&str> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    (!hex.is_empty() && hex.len() <= SHA256_HEX_LEN && is_lower_hex(hex)).then_some(hex)
}

/// Splits a name into domain and path, applying Docker Hub's defaults.
fn split_domain(name: &str) -> (&str, std::borrow::Cow<'_, str>) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest)) if is_domain_like(first) => (first, rest),
        _ => (DEFAULT_DOMAIN, name),
    };
    let domain = if domain == LEGACY_DEFAULT_DOMAIN {
        DEFAULT_DOMAIN
    } else {
        domain
    };
    if domain == DEFAULT_DOMAIN && !path.contains('/') {
        (domain, format!("{OFFICIAL_NAMESPACE}/{path}").into())
    } else {
        (domain, path.into())
    }
}

/// Whether the first component of a name is a registry domain rather than part of the path.
fn is_domain_like(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

/// Checks `host[:port]`, where host is a dotted DNS name or a bracketed IPv6 address.
fn check_domain(domain: &str) -> Result<(), String> {
    let bad = || Err(format!("invalid domain {domain:?}"));
    let (host, port) = if let Some(bracketed) = domain.strip_prefix('[') {
        let Some((ipv6, after)) = bracketed.split_once(']') else {
            return bad();
        };
        if ipv6.is_empty() || !ipv6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return bad();
        }
        match after {
            "" => ("", None),
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return bad(),
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    if !domain.starts_with('[') && !host.split('.').all(is_domain_label) {
        return bad();
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return bad();
        }
    }
    Ok(())
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn is_domain_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Every run of non-alphanumeric bytes must be one allowed separator.
    bytes
        .split(|&b| alnum(b))
        .filter(|run| !run.is_empty())
        .all(|run| matches!(run, b"." | b"_" | b"__") || run.iter().all(|&b| b == b'-'))
}

/// `[\w][\w.-]{0,127}`
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    match bytes.first() {
        Some(&first) => {
            bytes.len() <= TAG_LENGTH_MAX
                && word(first)
                && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
        }
        None => false,
    }
}

/// Checks `sha256:<64 lowercase hex>`, the only digest algorithm accepted.
fn check_digest(digest: &str) -> Result<(), &'static str> {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return Err("expected algorithm:hex");
    };
    if algorithm != "sha256" {
        return Err("unsupported digest algorithm, only sha256 is accepted");
    }
    if encoded.len() != SHA256_HEX_LEN || !is_lower_hex(encoded) {
        return Err("sha256 digest must be 64 lowercase hex digits");
    }
    Ok(())
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// What a table entry expects: the normalized full form, or the error variant.
    enum Want {
        Ok(String),
        Empty,
        Uppercase,
        HexName,
        Invalid,
        TooLong,
        Tag,
        Digest,
    }

    fn ok(s: &str) -> Want {
        Want::Ok(s.to_owned())
    }

    #[test]
    fn parse_table() {
        let long_path = "a".repeat(NAME_TOTAL_LENGTH_MAX - "localhost/".len());
        let cases: Vec<(String, Want)> = vec![
            ("busybox".into(), ok("docker.io/library/busybox:latest")),
            (
                "busybox:latest".into(),
                ok("docker.io/library/busybox:latest"),
            ),
            (
                "busybox:1.36.1-glibc".into(),
                ok("docker.io/library/busybox:1.36.1-glibc"),
            ),
            (
                "docker.io/library/busybox:latest".into(),
                ok("docker.io/library/busybox:latest"),
            ),
            (
                "docker.io/busybox".into(),
                ok("docker.io/library/busybox:latest"),
            ),
            (
                "library/busybox".into(),
                ok("docker.io/library/busybox:latest"),
            ),
            (
                "index.docker.io/library/busybox".into(),
                ok("docker.io/library/busybox:latest"),
            ),
            (
                "index.docker.io/busybox".into(),
                ok("docker.io/library/busybox:latest"),
            ),
            ("user/app".into(), ok("docker.io/user/app:latest")),
            ("user/app/sub".into(), ok("docker.io/user/app/sub:latest")),
            ("localhost/x".into(), ok("localhost/x:latest")),
            ("localhost:5000/x:1".into(), ok("localhost:5000/x:1")),
            (
                "localhost:5000".into(),
                ok("docker.io/library/localhost:5000"),
            ),
            ("registry:5000/a/b".into(), ok("registry:5000/a/b:latest")),
            (
                "registry.example.com:5000/a/b:tag".into(),
                ok("registry.example.com:5000/a/b:tag"),
            ),
            ("a.b/c".into(), ok("a.b/c:latest")),
            ("quay.io/a/b".into(), ok("quay.io/a/b:latest")),
            (
                "Registry.Example.com/a".into(),
                ok("Registry.Example.com/a:latest"),
            ),
            ("MYHOST/a".into(), ok("MYHOST/a:latest")),
            ("[::1]:5000/a".into(), ok("[::1]:5000/a:latest")),
            (
                "a_b__c-d---e/f.g_h".into(),
                ok("docker.io/a_b__c-d---e/f.g_h:latest"),
            ),
            ("a_b.c/d".into(), Want::Invalid),
            ("x:T_1.a-b".into(), ok("docker.io/library/x:T_1.a-b")),
            (
                format!("busybox@sha256:{HEX}"),
                ok(&format!("docker.io/library/busybox@sha256:{HEX}")),
            ),
            (
                format!("busybox:1@sha256:{HEX}"),
                ok(&format!("docker.io/library/busybox:1@sha256:{HEX}")),
            ),
            (
                format!("localhost:5000/x@sha256:{HEX}"),
                ok(&format!("localhost:5000/x@sha256:{HEX}")),
            ),
            (
                format!("localhost/{long_path}"),
                ok(&format!("localhost/{long_path}:latest")),
            ),
            ("".into(), Want::Empty),
            (HEX.into(), Want::HexName),
            ("Foo".into(), Want::Uppercase),
            ("user/App".into(), Want::Uppercase),
            ("foo:".into(), Want::Tag),
            (":tag".into(), Want::Invalid),
            (format!("@sha256:{HEX}"), Want::Invalid),
            ("foo:-bad".into(), Want::Tag),
            (format!("foo:{}", "t".repeat(129)), Want::Tag),
            ("foo:a/b".into(), Want::Invalid),
            ("foo@sha256:short".into(), Want::Digest),
            ("foo@sha256:".into(), Want::Digest),
            (format!("foo@sha256:{}", HEX.to_uppercase()), Want::Digest),
            (format!("foo@sha512:{HEX}{HEX}"), Want::Digest),
            ("foo@latest".into(), Want::Digest),
            (format!("foo@sha256:{HEX}@sha256:{HEX}"), Want::Digest),
            ("foo/../bar".into(), Want::Invalid),
            ("foo//bar".into(), Want::Invalid),
            ("foo/".into(), Want::Invalid),
            ("-foo".into(), Want::Invalid),
            ("foo.".into(), Want::Invalid),
            ("foo...bar".into(), Want::Invalid),
            ("foo___bar".into(), Want::Invalid),
            ("foo bar".into(), Want::Invalid),
            ("fo$o".into(), Want::Invalid),
            ("-bad.com/a".into(), Want::Invalid),
            ("host:port/a".into(), Want::Invalid),
            ("[zz]/a".into(), Want::Invalid),
            ("a".repeat(256), Want::TooLong),
            (format!("localhost/{long_path}a"), Want::TooLong),
        ];
        assert!(cases.len() >= 30);
        for (input, want) in cases {
            let got = Reference::parse(&input);
            match (want, &got) {
                (Want::Ok(want), Ok(r)) => assert_eq!(r.to_string(), want, "input {input:?}"),
                (Want::Empty, Err(ReferenceError::Empty))
                | (Want::Uppercase, Err(ReferenceError::Uppercase { .. }))
                | (Want::HexName, Err(ReferenceError::HexName { .. }))
                | (Want::Invalid, Err(ReferenceError::Invalid { .. }))
                | (Want::TooLong, Err(ReferenceError::NameTooLong { .. }))
                | (Want::Tag, Err(ReferenceError::Tag { .. }))
                | (Want::Digest, Err(ReferenceError::Digest { .. })) => {}
                (_, got) => panic!("input {input:?}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn accessors() {
        let r = Reference::parse(&format!("localhost:5000/a/b:v1@sha256:{HEX}")).unwrap();
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.path(), "a/b");
        assert_eq!(r.repository(), "localhost:5000/a/b");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.digest(), Some(format!("sha256:{HEX}").as_str()));

        let r = Reference::parse(&format!("busybox@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag(), None, "no default tag next to a digest");
    }

    #[test]
    fn familiar_repository() {
        for (input, want) in [
            ("busybox", "busybox"),
            ("docker.io/library/busybox:1", "busybox"),
            ("user/app", "user/app"),
            ("library/a/b", "library/a/b"),
            ("localhost/x", "localhost/x"),
            ("quay.io/a/b", "quay.io/a/b"),
        ] {
            let r: Reference = input.parse().unwrap();
            assert_eq!(r.familiar_repository(), want, "input {input:?}");
        }
    }

    #[test]
    fn with_tag_replaces_tag_and_drops_digest() {
        let r = Reference::parse(&format!("busybox:1@sha256:{HEX}")).unwrap();
        let t = r.with_tag("2").unwrap();
        assert_eq!(t.to_string(), "docker.io/library/busybox:2");
        assert_eq!(t.digest(), None);
        let err = r.with_tag("bad tag").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid reference \"docker.io/library/busybox:bad tag\": invalid tag \"bad tag\""
        );
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "busybox",
            "localhost:5000/a/b:t",
            &format!("a.b/c:t@sha256:{HEX}"),
        ] {
            let r = Reference::parse(input).unwrap();
            assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        }
    }

    #[test]
    fn error_messages_name_the_input() {
        let msg = |s: &str| Reference::parse(s).unwrap_err().to_string();
        assert_eq!(
            msg("Foo"),
            "invalid reference \"Foo\": repository name must be lowercase"
        );
        assert_eq!(
            msg("foo/../bar"),
            "invalid reference \"foo/../bar\": invalid repository path component \"..\""
        );
        assert_eq!(
            msg("foo@md5:abcdabcdabcdabcdabcdabcdabcdabcd"),
            "invalid reference \"foo@md5:abcdabcdabcdabcdabcdabcdabcdabcd\": invalid digest \
             \"md5:abcdabcdabcdabcdabcdabcdabcdabcd\": unsupported digest algorithm, only sha256 is \
             accepted"
        );
        assert!(msg(&"a".repeat(256)).contains("more than 255 characters"));
    }

    #[test]
    fn looks_like_id_cases() {
        assert_eq!(looks_like_id("abc123"), Some("abc123"));
        assert_eq!(looks_like_id(HEX), Some(HEX));
        assert_eq!(looks_like_id(&format!("sha256:{HEX}")), Some(HEX));
        assert_eq!(looks_like_id("sha256:abc"), Some("abc"));
        assert_eq!(looks_like_id(""), None);
        assert_eq!(looks_like_id("sha256:"), None);
        assert_eq!(looks_like_id("ABC"), None);
        assert_eq!(looks_like_id("busybox"), None);
        assert_eq!(looks_like_id(&format!("{HEX}0")), None);
        assert_eq!(looks_like_id("sha512:abc"), None);
    }
}
