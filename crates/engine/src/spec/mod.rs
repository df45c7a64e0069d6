//! The OCI runtime spec (`config.json`) of a container: an image config plus the user's
//! `isola run` flags, merged as Docker merges them.
//!
//! What this guards against: the image is untrusted. Its `/etc/passwd` and `/etc/group` are read
//! beneath the rootfs only (symlinks resolved as if the rootfs were `/`, regular files only, size
//! capped), and every path or value a flag or the image gives is checked before it reaches the
//! spec, with an error that names the flag and the value. The resulting spec passes
//! [`isola_runtime::spec::validate`].
//!
//! Host facts the spec depends on are probed here: the capability bounding set (`--cap-add ALL`
//! means what this host can grant), swap accounting (for the memory+swap limit) and the number of
//! CPUs (for `--cpus`).

mod args;
mod caps;
mod error;
mod etc;
mod mounts;
mod resources;
mod seccomp;
mod signal;
pub mod user;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use isola_runtime::oci::{
    LinuxBuilder, LinuxNamespace, LinuxNamespaceType, ProcessBuilder, Root, Spec, User,
};
use oci_spec::image::ImageConfiguration;

use crate::config::{ContainerConfig, HostConfig, NetworkMode};

pub use args::{DEFAULT_PATH, INIT_PATH};
pub use caps::DEFAULT_CAPS;
pub use error::SpecError;
pub use etc::{hostname, write_etc_files};
pub use seccomp::default_profile;
pub use signal::{parse_signal, stop_signal};

/// The umask of the container's process (Docker's).
pub const UMASK: u32 = 0o022;

/// Docker's masked paths: replaced by an empty file or directory in the container.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Paths on the host that the spec refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundlePaths {
    /// The mounted container root (the merged overlay).
    pub rootfs: PathBuf,
    /// The file bind-mounted at `/etc/hosts` (see [`write_etc_files`]).
    pub hosts: PathBuf,
    /// The file bind-mounted at `/etc/hostname`.
    pub hostname: PathBuf,
    /// The file bind-mounted at `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// A static init binary for `--init` (e.g. `/usr/bin/tini-static`), if this host has one.
    pub init: Option<PathBuf>,
}

/// What the spec needs to know about the host.
#[derive(Debug, Clone)]
struct HostFacts {
    /// The capability bounding set of this process: what a container can be given.
    bounding: Vec<&'static str>,
    /// Whether a memory+swap limit can be set.
    swap_accounting: bool,
    /// CPUs this process may run on.
    cpus: usize,
}

impl HostFacts {
    fn probe() -> Self {
        HostFacts {
            bounding: caps::host_bounding_set().unwrap_or_else(|| caps::KERNEL_CAPS.to_vec()),
            swap_accounting: resources::host_has_swap_accounting(),
            cpus: resources::host_cpus(),
        }
    }
}

/// Builds the runtime spec of a container. `image` is the image config, `id` the container ID
/// (64 hex digits), `paths` the host paths the spec refers to.
///
/// - process: `args` from Entrypoint/Cmd and `--entrypoint`/CMD (prefixed by the init with
///   `--init`), `env` (Docker's defaults, the image's Env, `-e`), `cwd` (`-w`, WorkingDir, `/`),
///   `user` (`-u` or the image's User, resolved in the image; umask 022), `terminal` (`-t`),
///   capabilities (Docker's defaults with `--cap-add`/`--cap-drop`), rlimits (`--ulimit`).
/// - root: `paths.rootfs`, read-only with `--read-only`; hostname ([`hostname`]).
/// - mounts: the kernel filesystems, `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`, `-v`,
///   `--tmpfs`.
/// - linux: pid, ipc, uts, mount and cgroup namespaces, and network unless `--network host`;
///   resources (`--memory`, `--cpus`, `--pids-limit`, devices denied but for the defaults the
///   runtime adds); `cgroupsPath` `/isola/<id>`; Docker's masked and read-only paths; the
///   default seccomp profile ([`default_profile`]).
///
/// Errors name the offending flag and value, e.g. `--cap-add "CAP_FOO": unknown capability`.
pub fn build(
    image: &ImageConfiguration,
    config: &ContainerConfig,
    host: &HostConfig,
    id: &str,
    paths: &BundlePaths,
) -> Result<Spec, SpecError> {
    build_with(
        image,
        config,
        host,
        id,
        paths,
        &HostFacts::probe(),
        &args::cli_env,
    )
}

/// [`build`] with the host facts and the CLI's environment given.
fn build_with(
    image: &ImageConfiguration,
    config: &ContainerConfig,
    host: &HostConfig,
    id: &str,
    paths: &BundlePaths,
    facts: &HostFacts,
    cli_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Spec, SpecError> {
    isola_runtime::spec::check_id(id)
        .map_err(|e| SpecError::invalid("container ID", id, e.to_string()))?;
    let img = image.config().as_ref();
    if config.hostname.as_deref().is_some_and(|h| !h.is_empty()) {
        etc::check_hostname(&hostname(config, id))?;
    }
    let hostname = hostname(config, id);

    let command = args::command(img, config, host.init)?;
    let (flag, user_spec) = match (
        config.user.as_deref(),
        img.and_then(|c| c.user().as_deref()),
    ) {
        (Some(u), _) if !u.is_empty() => ("-u", u),
        (_, Some(u)) if !u.is_empty() => ("image User", u),
        _ => ("-u", ""),
    };
    let user = user::resolve(&paths.rootfs, flag, user_spec)?;
    let env = args::environment(img, config, &hostname, &user.home, cli_env)?;
    let cwd = args::working_dir(img, config)?;
    let cap_set = caps::capability_set(&host.cap_add, &host.cap_drop, &facts.bounding)?;
    let capabilities = caps::linux_capabilities(&cap_set, user.uid == 0)?;
    let rlimits = resources::rlimits(&host.ulimits)?;

    let mut oci_user = User::default();
    oci_user.set_uid(user.uid);
    oci_user.set_gid(user.gid);
    oci_user.set_umask(Some(UMASK));
    oci_user.set_additional_gids(Some(user.additional_gids));
    let mut process = ProcessBuilder::default()
        .terminal(config.tty)
        .user(oci_user)
        .args(command)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .no_new_privileges(false)
        .build()?;
    process.set_rlimits((!rlimits.is_empty()).then_some(rlimits));

    let mut root = Root::default();
    root.set_path(paths.rootfs.clone());
    root.set_readonly(Some(host.read_only));

    let mut types = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
    ];
    if host.network_mode != NetworkMode::Host {
        types.push(LinuxNamespaceType::Network);
    }
    let namespaces: Vec<LinuxNamespace> = types
        .into_iter()
        .map(|t| {
            let mut ns = LinuxNamespace::default();
            ns.set_typ(t);
            ns
        })
        .collect();
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources::linux_resources(
            host,
            facts.swap_accounting,
            facts.cpus,
        )?)
        .cgroups_path(Path::new("/isola").join(id))
        .masked_paths(owned(MASKED_PATHS))
        .readonly_paths(owned(READONLY_PATHS))
        .seccomp(seccomp::default_profile(&cap_set)?)
        .build()?;

    let mut spec = isola_runtime::spec::default_spec();
    spec.set_process(Some(process));
    spec.set_root(Some(root));
    spec.set_hostname(Some(hostname));
    spec.set_mounts(Some(mounts::mounts(host, paths)?));
    spec.set_linux(Some(linux));
    spec.set_annotations(None);
    spec.set_hooks(None);
    Ok(spec)
}
