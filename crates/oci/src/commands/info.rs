//! spec and features.

use std::path::PathBuf;

use serde_json::json;

/// Arguments of `spec`.
#[derive(Debug, clap::Args)]
pub struct SpecArgs {
    /// Directory to write config.json into.
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
}

pub fn spec(args: SpecArgs) -> anyhow::Result<u8> {
    let path = args.bundle.join("config.json");
    if path.exists() {
        anyhow::bail!("{} already exists", path.display());
    }
    let spec = isola_runtime::spec::default_spec();
    std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
    Ok(0)
}

pub fn features() -> anyhow::Result<u8> {
    let v = json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": isola_runtime::oci::VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "mand",
            "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime",
            "nosuid", "private", "rbind", "relatime", "remount", "ro", "rprivate", "rshared",
            "rslave", "runbindable", "rw", "shared", "slave", "strictatime", "suid", "sync",
            "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": isola_runtime::process::known_capabilities(),
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false },
            "seccomp": {
                "enabled": true,
                "actions": [
                    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"
                ],
                "operators": [
                    "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
                ],
                "archs": ["SCMP_ARCH_X86_64"],
            },
            "apparmor": { "enabled": std::path::Path::new("/sys/kernel/security/apparmor").exists() },
            "selinux": { "enabled": std::path::Path::new("/sys/fs/selinux/enforce").exists() },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } },
        },
        "annotations": { "org.opencontainers.runtime-spec.features.isola": env!("CARGO_PKG_VERSION") },
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}
