//! The flags `isola create` and `isola run` share (Docker's), and their translation into an engine
//! [`CreateRequest`]. Every flag is checked here, before anything is created, and a bad value is an
//! error naming the flag.

use std::path::{Component, Path};

use anyhow::{anyhow, bail, Context as _};
use isola_engine::config::{
    Bind, ContainerConfig, HostConfig, Isolation, NetworkMode, Tmpfs, Ulimit,
};
use isola_engine::CreateRequest;

use crate::Context;

/// `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Network {
    /// A private network namespace with only loopback.
    None,
    /// The host's network namespace.
    Host,
}

/// Flags of `isola create` and `isola run`.
#[derive(Debug, Clone, clap::Args)]
pub struct ContainerArgs {
    /// Keep stdin open (attach it in the foreground).
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Name of the container.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to pass isola's own value).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file of KEY=VALUE lines.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<String>,
    /// Working directory inside the container (absolute).
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (name or UID) and optionally group (name or GID).
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Container host name.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Replace the image's entrypoint ("" clears it).
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Bind-mount a host path.
    #[arg(short, long = "volume", value_name = "HOST:CONTAINER[:ro|:rw]")]
    pub volume: Vec<String>,
    /// Mount a tmpfs.
    #[arg(long, value_name = "CONTAINER[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Memory limit (bytes, or with a k, m or g suffix).
    #[arg(short, long, value_name = "BYTES")]
    pub memory: Option<String>,
    /// Number of CPUs (fractions allowed).
    #[arg(long, value_name = "N")]
    pub cpus: Option<String>,
    /// Limit on the number of processes (-1 or 0: unlimited).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Size of /dev/shm.
    #[arg(long, value_name = "BYTES")]
    pub shm_size: Option<String>,
    /// Resource limit, e.g. nofile=1024:2048.
    #[arg(long, value_name = "TYPE=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Add a capability.
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability.
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Run an init process as PID 1 that forwards signals and reaps zombies.
    #[arg(long)]
    pub init: bool,
    /// Signal that stops the container.
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds to wait for the stop signal to work before killing the container.
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u32>,
    /// Network: none (loopback only) or host.
    #[arg(long, value_enum, value_name = "MODE")]
    pub network: Option<Network>,
    /// Isolation: process, vm (hyperv), or default (the host's configured default).
    #[arg(long, value_name = "MODE")]
    pub isolation: Option<String>,
    /// The image.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Command and arguments (replace the image's Cmd).
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub cmd: Vec<String>,
}

impl ContainerArgs {
    /// Checks every flag and builds the engine's request. `auto_remove` is `run --rm`.
    pub fn request(&self, auto_remove: bool) -> anyhow::Result<CreateRequest> {
        let mut env = Vec::new();
        for file in &self.env_file {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("--env-file {file:?}"))?;
            env.extend(parse_env_file(&text));
        }
        env.extend(self.env.iter().filter_map(|e| resolve_env(e)));
        if let Some(w) = &self.workdir {
            if !w.starts_with('/') {
                bail!("-w {w:?}: the working directory must be an absolute path");
            }
        }
        let entrypoint = self.entrypoint.as_ref().map(|e| {
            if e.is_empty() {
                Vec::new()
            } else {
                vec![e.clone()]
            }
        });
        if let Some(s) = &self.stop_signal {
            super::kill::parse_signal(s).map_err(|e| anyhow!("--stop-signal: {e}"))?;
        }
        if let Some(h) = &self.hostname {
            check_hostname(h)?;
        }
        let config = ContainerConfig {
            image: self.image.clone(),
            cmd: (!self.cmd.is_empty()).then(|| self.cmd.clone()),
            entrypoint,
            env,
            working_dir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            tty: self.tty,
            open_stdin: self.interactive,
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
        };
        let host = HostConfig {
            isolation: parse_isolation(self.isolation.as_deref())?,
            binds: self
                .volume
                .iter()
                .map(|v| parse_bind(v))
                .collect::<Result<_, _>>()?,
            tmpfs: self
                .tmpfs
                .iter()
                .map(|t| parse_tmpfs(t))
                .collect::<Result<_, _>>()?,
            read_only: self.read_only,
            memory: self
                .memory
                .as_deref()
                .map(|m| flag_size("--memory", m).map(|v| v as i64))
                .transpose()?,
            nano_cpus: self.cpus.as_deref().map(parse_cpus).transpose()?,
            pids_limit: self.pids_limit,
            shm_size: self
                .shm_size
                .as_deref()
                .map(|s| flag_size("--shm-size", s))
                .transpose()?,
            ulimits: self
                .ulimit
                .iter()
                .map(|u| parse_ulimit(u))
                .collect::<Result<_, _>>()?,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            init: self.init,
            auto_remove,
            network_mode: match self.network {
                Some(Network::Host) => NetworkMode::Host,
                Some(Network::None) | None => NetworkMode::None,
            },
        };
        Ok(CreateRequest {
            name: self.name.clone(),
            config,
            host,
        })
    }
}

/// Creates the container `args` describes; the built-in busybox image is made on first use.
pub fn create(
    engine: &isola_engine::Engine,
    ctx: &Context,
    args: &ContainerArgs,
    auto_remove: bool,
) -> anyhow::Result<isola_engine::db::Record> {
    let req = args.request(auto_remove)?;
    if req.host.isolation == Isolation::Vm {
        // Checked before the built-in image is made, so that a refused run makes nothing.
        isola_engine::vm::check_create(engine.roots(), &req.host)?;
    }
    ensure_image(ctx, &args.image)?;
    Ok(engine.create(req)?)
}

/// Makes the built-in `busybox:latest` image when it is asked for and missing (the default image
/// needs no network); any other image must already be in the store.
pub fn ensure_image(ctx: &Context, image: &str) -> anyhow::Result<()> {
    use isola_image::builtin::{create_busybox, BUILTIN_NAME, DEFAULT_BUSYBOX};
    let store = super::open_store(ctx)?;
    match store.resolve(image) {
        Ok(_) => Ok(()),
        Err(isola_image::Error::NoSuchImage(_)) if is_builtin(image, BUILTIN_NAME) => {
            create_busybox(
                &store,
                Path::new(DEFAULT_BUSYBOX),
                &isola_image::load::NoProgress,
            )
            .context("creating the built-in busybox image")?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn is_builtin(image: &str, builtin: &str) -> bool {
    isola_image::Reference::parse(image).is_ok_and(|r| r.to_string() == builtin)
}

/// `-e KEY=VALUE`, or a bare `KEY` that takes isola's own value (dropped when unset, as Docker).
fn resolve_env(e: &str) -> Option<String> {
    if e.contains('=') {
        return Some(e.to_owned());
    }
    std::env::var(e).ok().map(|v| format!("{e}={v}"))
}

/// `--env-file` contents: KEY=VALUE lines; `#` comments and blank lines are skipped; a bare KEY
/// takes isola's own value.
pub fn parse_env_file(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            if l.contains('=') {
                Some(l.to_owned())
            } else {
                resolve_env(l.trim_end())
            }
        })
        .collect()
}

/// `--isolation`: `hyperv` means `vm`; `default` and no flag mean the host's configured default.
pub fn parse_isolation(s: Option<&str>) -> anyhow::Result<Isolation> {
    match s.map(str::to_ascii_lowercase).as_deref() {
        Some("process") => Ok(Isolation::Process),
        Some("vm" | "hyperv") => Ok(Isolation::Vm),
        Some("default" | "") | None => Ok(isola_engine::settings::Settings::load()?
            .engine
            .default_isolation),
        Some(_) => bail!(
            "--isolation {:?}: expected process, vm, hyperv or default",
            s.unwrap_or_default()
        ),
    }
}

fn flag_size(flag: &str, s: &str) -> anyhow::Result<u64> {
    crate::util::parse_size(s).map_err(|_| anyhow!("{flag} {s:?}: invalid size"))
}

/// `--cpus` as NanoCpus: positive, at most the host's CPU count.
pub fn parse_cpus(s: &str) -> anyhow::Result<i64> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| anyhow!("--cpus {s:?}: invalid number"))?;
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !n.is_finite() || n <= 0.0 {
        bail!("--cpus {s:?}: must be a positive number");
    }
    if n > ncpu as f64 {
        bail!("--cpus {s:?}: range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available");
    }
    let nano = (n * 1e9).round() as i64;
    if nano < 10_000_000 {
        bail!("--cpus {s:?}: range of CPUs is from 0.01 to {ncpu}.00");
    }
    Ok(nano)
}

fn is_clean_absolute(p: &str) -> bool {
    p.starts_with('/') && !Path::new(p).components().any(|c| c == Component::ParentDir)
}

/// `-v HOST:CONTAINER[:ro|:rw]`; both paths absolute.
pub fn parse_bind(v: &str) -> anyhow::Result<Bind> {
    let bad = || anyhow!("-v {v:?}: expected HOST:CONTAINER[:ro]");
    let parts: Vec<&str> = v.split(':').collect();
    let (source, destination, read_only) = match parts.as_slice() {
        [s, d] => (*s, *d, false),
        [s, d, "ro"] => (*s, *d, true),
        [s, d, "rw"] => (*s, *d, false),
        [_, _, o] => bail!("-v {v:?}: unknown option {o:?} (expected ro or rw)"),
        _ => return Err(bad()),
    };
    if source.is_empty() || destination.is_empty() {
        return Err(bad());
    }
    if !source.starts_with('/') {
        bail!("-v {v:?}: the host path must be absolute (named volumes are not supported)");
    }
    if !is_clean_absolute(destination) {
        bail!("-v {v:?}: the container path must be absolute, without ..");
    }
    if destination == "/" {
        bail!("-v {v:?}: cannot mount over the container's root");
    }
    Ok(Bind {
        source: source.to_owned(),
        destination: destination.to_owned(),
        read_only,
    })
}

/// `--tmpfs CONTAINER[:OPTIONS]`.
pub fn parse_tmpfs(t: &str) -> anyhow::Result<Tmpfs> {
    let (destination, options) = t.split_once(':').unwrap_or((t, ""));
    if !is_clean_absolute(destination) || destination == "/" {
        bail!("--tmpfs {t:?}: expected an absolute container path, then :OPTIONS");
    }
    Ok(Tmpfs {
        destination: destination.to_owned(),
        options: options.to_owned(),
    })
}

const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// `--ulimit TYPE=SOFT[:HARD]` (-1 = unlimited; no HARD = SOFT).
pub fn parse_ulimit(u: &str) -> anyhow::Result<Ulimit> {
    let (name, values) = u
        .split_once('=')
        .ok_or_else(|| anyhow!("--ulimit {u:?}: expected TYPE=SOFT[:HARD]"))?;
    let name = name.trim().to_ascii_lowercase();
    if !ULIMITS.contains(&name.as_str()) {
        bail!(
            "--ulimit {u:?}: unknown type {name:?} (one of {})",
            ULIMITS.join(", ")
        );
    }
    let value = |s: &str| -> anyhow::Result<u64> {
        match s.trim() {
            "-1" | "unlimited" => Ok(u64::MAX),
            v => v
                .parse()
                .map_err(|_| anyhow!("--ulimit {u:?}: invalid value {v:?}")),
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (value(s)?, value(h)?),
        None => {
            let v = value(values)?;
            (v, v)
        }
    };
    if soft > hard {
        bail!("--ulimit {u:?}: the soft limit is above the hard limit");
    }
    Ok(Ulimit { name, soft, hard })
}

fn check_hostname(h: &str) -> anyhow::Result<()> {
    let ok = !h.is_empty()
        && h.len() <= 63
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !h.starts_with('-');
    if ok {
        Ok(())
    } else {
        bail!("--hostname {h:?}: invalid host name")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds() {
        let b = parse_bind("/src:/dst:ro").unwrap();
        assert_eq!(
            (b.source.as_str(), b.destination.as_str(), b.read_only),
            ("/src", "/dst", true)
        );
        assert!(!parse_bind("/a:/b").unwrap().read_only);
        assert!(!parse_bind("/a:/b:rw").unwrap().read_only);
        for bad in [
            "x",
            "/a",
            "rel:/b",
            "/a:rel",
            "/a:/b:zz",
            "/a:/../b",
            "/a:/b:ro:x",
            ":/b",
        ] {
            assert!(parse_bind(bad).is_err(), "{bad}");
        }
        assert!(parse_bind("x")
            .unwrap_err()
            .to_string()
            .contains("expected HOST:CONTAINER[:ro]"));
    }

    #[test]
    fn tmpfs() {
        let t = parse_tmpfs("/run:size=64m,mode=1777").unwrap();
        assert_eq!(
            (t.destination.as_str(), t.options.as_str()),
            ("/run", "size=64m,mode=1777")
        );
        assert_eq!(parse_tmpfs("/tmp").unwrap().options, "");
        assert!(parse_tmpfs("tmp").is_err());
    }

    #[test]
    fn ulimits() {
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nofile", 1024, 2048));
        let u = parse_ulimit("NPROC=100").unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nproc", 100, 100));
        assert_eq!(parse_ulimit("core=-1").unwrap().hard, u64::MAX);
        for bad in ["nofile", "bogus=1", "nofile=x", "nofile=10:5"] {
            assert!(
                parse_ulimit(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("--ulimit"),
                "{bad}"
            );
        }
    }

    #[test]
    fn cpus_and_sizes() {
        assert_eq!(parse_cpus("0.5").unwrap(), 500_000_000);
        assert_eq!(parse_cpus("1").unwrap(), 1_000_000_000);
        for bad in ["0", "-1", "x", "NaN", "100000", "0.001"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
        assert_eq!(flag_size("--memory", "64m").unwrap(), 64 << 20);
        assert_eq!(
            flag_size("--memory", "12q").unwrap_err().to_string(),
            "--memory \"12q\": invalid size"
        );
    }

    #[test]
    fn env_files() {
        std::env::set_var("ISOLA_TEST_ENV_FILE_VAR", "from-cli");
        let env = parse_env_file(
            "# comment\n\nA=1\n  B=two words\nISOLA_TEST_ENV_FILE_VAR\nISOLA_TEST_UNSET_VAR_XYZ\nC=\n",
        );
        assert_eq!(
            env,
            [
                "A=1",
                "B=two words",
                "ISOLA_TEST_ENV_FILE_VAR=from-cli",
                "C="
            ]
        );
    }

    #[test]
    fn isolation() {
        assert_eq!(
            parse_isolation(Some("process")).unwrap(),
            Isolation::Process
        );
        assert_eq!(parse_isolation(Some("hyperv")).unwrap(), Isolation::Vm);
        assert_eq!(parse_isolation(Some("VM")).unwrap(), Isolation::Vm);
        assert!(parse_isolation(Some("kvm")).is_err());
    }

    #[test]
    fn builtin_names() {
        let b = isola_image::builtin::BUILTIN_NAME;
        for n in ["busybox", "busybox:latest", "docker.io/library/busybox"] {
            assert!(is_builtin(n, b), "{n}");
        }
        for n in ["busybox:1.36", "alpine", "quay.io/busybox"] {
            assert!(!is_builtin(n, b), "{n}");
        }
    }
}
