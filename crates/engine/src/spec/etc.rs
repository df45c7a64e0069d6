//! The host-side files bind-mounted over the container's `/etc/hosts`, `/etc/hostname` and
//! `/etc/resolv.conf`, written as Docker writes them.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::error::SpecError;
use crate::config::{ContainerConfig, NetworkMode};

/// Largest host `/etc/hosts` or `/etc/resolv.conf` copied, in bytes.
const MAX_HOST_FILE: u64 = 1 << 20;

/// The longest hostname the kernel takes (`HOST_NAME_MAX`).
pub const MAX_HOSTNAME: usize = 64;

/// The hostname a container gets: `--hostname`, else the first 12 characters of the ID.
pub fn hostname(config: &ContainerConfig, id: &str) -> String {
    match config.hostname.as_deref() {
        Some(h) if !h.is_empty() => h.to_owned(),
        _ => id.chars().take(12).collect(),
    }
}

/// Checks a hostname: 1 to 64 characters, letters, digits, `-` and `.`, not starting with `-`
/// or `.` (RFC 1123 labels, as Docker requires of `--hostname`).
pub fn check_hostname(name: &str) -> Result<(), SpecError> {
    let bad = |reason: &str| SpecError::invalid("--hostname", name, reason);
    if name.is_empty() || name.len() > MAX_HOSTNAME {
        return Err(bad("must be 1 to 64 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        || name.starts_with(['-', '.'])
    {
        return Err(bad(
            "may contain only letters, digits, '-' and '.', and must start with a letter or digit",
        ));
    }
    Ok(())
}

/// `/etc/hosts` of a container with its own network namespace: Docker's standard entries, and the
/// hostname on 127.0.1.1 so that it resolves without a network.
pub fn hosts_file(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n\
         127.0.1.1\t{hostname}\n"
    )
}

/// The host's resolv.conf with loopback nameservers removed: a container in its own network
/// namespace cannot reach the host's local resolver (Docker filters them the same way).
pub fn filter_resolv_conf(host: &str) -> String {
    let mut out = String::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let addr = words.next().unwrap_or_default();
            let loopback = addr
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Reads a host file of at most [`MAX_HOST_FILE`] bytes; a missing file reads as empty.
fn read_host_file(path: &Path) -> Result<String, SpecError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(SpecError::io("open", path, e)),
    };
    let mut data = Vec::new();
    file.take(MAX_HOST_FILE)
        .read_to_end(&mut data)
        .map_err(|e| SpecError::io("read", path, e))?;
    Ok(String::from_utf8_lossy(&data).into_owned())
}

fn write(path: &Path, contents: &str) -> Result<(), SpecError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| SpecError::io("create", path, e))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| SpecError::io("write", path, e))
}

/// Writes `hosts`, `hostname` and `resolv.conf` into `dir` and returns their paths, in that
/// order (the [`super::BundlePaths`] fields).
///
/// - `--network none` (a private namespace with loopback only): Docker's standard entries plus
///   the hostname on 127.0.1.1, and the host's `/etc/resolv.conf` without loopback nameservers.
/// - `--network host`: copies of the host's `/etc/hosts` and `/etc/resolv.conf`, as Docker makes.
///
/// A missing host file gives an empty one (a valid resolv.conf: no nameserver, libc's defaults).
pub fn write_etc_files(
    dir: &Path,
    hostname: &str,
    network: NetworkMode,
) -> Result<(PathBuf, PathBuf, PathBuf), SpecError> {
    let hosts = dir.join("hosts");
    let name = dir.join("hostname");
    let resolv = dir.join("resolv.conf");
    let host_resolv = read_host_file(Path::new("/etc/resolv.conf"))?;
    let (hosts_text, resolv_text) = match network {
        NetworkMode::None => (hosts_file(hostname), filter_resolv_conf(&host_resolv)),
        NetworkMode::Host => (read_host_file(Path::new("/etc/hosts"))?, host_resolv),
    };
    write(&hosts, &hosts_text)?;
    write(&name, &format!("{hostname}\n"))?;
    write(&resolv, &resolv_text)?;
    Ok((hosts, name, resolv))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn hostname_defaults_to_the_short_id() {
        let mut c = ContainerConfig::default();
        assert_eq!(hostname(&c, ID), "0123456789ab");
        c.hostname = Some("web".into());
        assert_eq!(hostname(&c, ID), "web");
        check_hostname("web-1.example").unwrap();
        for bad in ["", "-x", "a b", "a/b", &"x".repeat(65)] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolv_conf_filter() {
        let host = "# c\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.0.0.2\nsearch lan\n";
        assert_eq!(
            filter_resolv_conf(host),
            "# c\nnameserver 10.0.0.2\nsearch lan\n"
        );
    }

    #[test]
    fn files_for_both_network_modes() {
        let d = tempfile::tempdir().unwrap();
        let (hosts, name, resolv) = write_etc_files(d.path(), "box", NetworkMode::None).unwrap();
        let hosts_text = std::fs::read_to_string(&hosts).unwrap();
        assert!(hosts_text
            .starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"));
        assert!(hosts_text.ends_with("127.0.1.1\tbox\n"));
        assert_eq!(std::fs::read_to_string(&name).unwrap(), "box\n");
        assert!(resolv.exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&hosts).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);

        let (hosts, _, resolv) = write_etc_files(d.path(), "box", NetworkMode::Host).unwrap();
        let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        assert_eq!(std::fs::read_to_string(hosts).unwrap(), host_hosts);
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        assert_eq!(std::fs::read_to_string(resolv).unwrap(), host_resolv);
    }
}
