//! Docker-shaped JSON for `isola inspect CONTAINER` and `isola info`.

use serde_json::{json, Value};

use crate::db::Record;
use crate::engine::Engine;
use crate::state::Status;

impl Engine {
    /// `inspect` of a container: Id, Name, Created, Path, Args, State, Image, Config, HostConfig,
    /// Mounts, GraphDriver, as Docker shows them.
    pub fn inspect(&self, r: &Record) -> Value {
        let spec = self.bundle_spec(r).ok();
        let args: Vec<String> = spec
            .as_ref()
            .and_then(|s| s.process().as_ref().and_then(|p| p.args().clone()))
            .unwrap_or_else(|| {
                let mut a = r.config.entrypoint.clone().unwrap_or_default();
                a.extend(r.config.cmd.clone().unwrap_or_default());
                a
            });
        let (path, rest) = match args.split_first() {
            Some((p, rest)) => (p.clone(), rest.to_vec()),
            None => (String::new(), Vec::new()),
        };
        let s = &r.state;
        let running = matches!(s.status, Status::Running | Status::Paused);
        let dir = self.roots().dir(&r.id);
        let lower = isola_image::Store::open(&self.roots().root)
            .ok()
            .and_then(|st| {
                let id = isola_image::Digest::parse(&r.image_id).ok()?;
                st.inspect(&id).ok()
            })
            .and_then(|v| {
                v["GraphDriver"]["Data"]["LowerDir"]
                    .as_str()
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let h = &r.host_config;
        let binds: Vec<String> = h
            .binds
            .iter()
            .map(|b| {
                format!(
                    "{}:{}{}",
                    b.source,
                    b.destination,
                    if b.read_only { ":ro" } else { "" }
                )
            })
            .collect();
        let mounts: Vec<Value> = h
            .binds
            .iter()
            .map(|b| {
                json!({"Type": "bind", "Source": b.source, "Destination": b.destination,
                       "Mode": if b.read_only { "ro" } else { "" }, "RW": !b.read_only, "Propagation": "rprivate"})
            })
            .chain(h.tmpfs.iter().map(|t| {
                json!({"Type": "tmpfs", "Source": "", "Destination": t.destination, "Mode": t.options, "RW": true, "Propagation": ""})
            }))
            .collect();
        let process = spec.as_ref().and_then(|s| s.process().clone());
        let mut v = json!({
            "Id": r.id,
            "Created": r.created,
            "Path": path,
            "Args": rest,
            "State": {
                "Status": s.status.to_string(),
                "Running": running,
                "Paused": s.status == Status::Paused,
                "Restarting": false,
                "OOMKilled": s.oom_killed,
                "Dead": s.status == Status::Dead,
                "Pid": if running { s.pid } else { 0 },
                "ExitCode": s.exit_code,
                "Error": s.error,
                "StartedAt": s.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                "FinishedAt": s.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            },
            "Image": r.image_id,
            "Name": format!("/{}", r.name),
            "RestartCount": 0,
            "Driver": "overlay",
            "Platform": "linux",
            "LogPath": self.roots().log(&r.id),
            "HostConfig": {
                "Isolation": h.isolation.to_string(),
                "Binds": binds,
                "Tmpfs": h.tmpfs.iter().map(|t| (t.destination.clone(), t.options.clone())).collect::<std::collections::BTreeMap<_, _>>(),
                "ReadonlyRootfs": h.read_only,
                "Memory": h.memory.unwrap_or(0),
                "NanoCpus": h.nano_cpus.unwrap_or(0),
                "PidsLimit": h.pids_limit,
                "ShmSize": h.shm_size.unwrap_or(64 << 20),
                "Ulimits": h.ulimits.iter().map(|u| json!({"Name": u.name, "Soft": u.soft, "Hard": u.hard})).collect::<Vec<_>>(),
                "CapAdd": h.cap_add,
                "CapDrop": h.cap_drop,
                "Init": h.init,
                "AutoRemove": h.auto_remove,
                "NetworkMode": match h.network_mode { crate::config::NetworkMode::None => "none", crate::config::NetworkMode::Host => "host" },
            },
            "GraphDriver": {
                "Name": "overlay",
                "Data": {
                    "LowerDir": lower,
                    "UpperDir": dir.join("upper"),
                    "WorkDir": dir.join("work"),
                    "MergedDir": dir.join("rootfs"),
                },
            },
            "Mounts": mounts,
            "Config": {
                "Hostname": spec.as_ref().and_then(|s| s.hostname().clone()).unwrap_or_default(),
                "User": r.config.user.clone().unwrap_or_default(),
                "Env": process.as_ref().and_then(|p| p.env().clone()).unwrap_or_else(|| r.config.env.clone()),
                "Cmd": r.config.cmd,
                "Entrypoint": r.config.entrypoint,
                "Image": r.config.image,
                "WorkingDir": process.as_ref().map(|p| p.cwd().display().to_string()).unwrap_or_default(),
                "Tty": r.config.tty,
                "OpenStdin": r.config.open_stdin,
                "StopSignal": r.config.stop_signal,
                "StopTimeout": r.config.stop_timeout,
            },
        });
        // VM isolation: the VM's size, accelerator and boot broken down (VMM, kernel, agent,
        // container create and start), from the last start.
        if h.isolation == crate::config::Isolation::Vm {
            if let (Some(info), Some(o)) =
                (crate::vm::read_info(self.roots(), &r.id), v.as_object_mut())
            {
                o.insert("VM".into(), serde_json::to_value(info).unwrap_or_default());
            }
        }
        v
    }

    /// `isola info`: version, roots, cgroup version and driver, default isolation, the VM pieces
    /// and accelerator, kernel, counts.
    pub fn info(&self, version: &str) -> Value {
        let cgroup = isola_runtime::cgroups::detect_mode()
            .map(|m| m.to_string())
            .unwrap_or_else(|e| format!("unknown ({e})"));
        let kernel = rustix::system::uname();
        let records = self.list(true).unwrap_or_default();
        let count = |st: Status| records.iter().filter(|r| r.state.status == st).count();
        let images = isola_image::Store::open(&self.roots().root)
            .and_then(|s| s.list())
            .map(|l| l.len())
            .unwrap_or(0);
        let settings = crate::settings::Settings::load();
        let (vm_status, vm) = vm_info(
            &self.roots().root,
            settings
                .as_ref()
                .map(|s| &s.vm)
                .unwrap_or(&Default::default()),
        );
        json!({
            "ServerVersion": version,
            "Driver": "overlay",
            "RootDir": self.roots().root,
            "RunRoot": self.roots().run_root,
            "CgroupVersion": cgroup,
            "CgroupDriver": "cgroupfs",
            "DefaultIsolation": settings.as_ref().map(|s| s.engine.default_isolation.to_string()).unwrap_or_else(|e| format!("error: {e}")),
            "Isolations": {
                "process": "available",
                "vm": vm_status,
            },
            "VM": vm,
            "ConfigFile": crate::settings::path(),
            "KernelVersion": kernel.release().to_string_lossy(),
            "OperatingSystem": os_name(),
            "Architecture": std::env::consts::ARCH,
            "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "Containers": records.len(),
            "ContainersRunning": count(Status::Running),
            "ContainersPaused": count(Status::Paused),
            "ContainersStopped": records.len() - count(Status::Running) - count(Status::Paused),
            "Images": images,
        })
    }
}

/// `isola info`'s VM part: whether VM isolation can run here, and the section describing QEMU,
/// the guest kernel, the agent, the initramfs and the accelerator (with why), or what is missing
/// and how to get it. Never fails: a problem is reported in the section.
///
/// Finding the pieces assembles the initramfs under `<root>/vm` if needed, and the accelerator
/// decision may boot a test VM (at most about 5 s, once per host boot; see `isola_vm::accel`).
fn vm_info(root: &std::path::Path, settings: &isola_vm::assets::AssetSettings) -> (String, Value) {
    use isola_vm::assets;
    let state_dir = root.join("vm");
    let choice = settings.accelerator.unwrap_or_default();
    match assets::locate(settings, &state_dir) {
        Ok(a) => {
            let decision = isola_vm::accel::decide(
                choice,
                &a,
                std::path::Path::new(isola_vm::accel::HOST_STATE_DIR),
            );
            let agent = assets::find_agent(settings).map(|g| g.path).ok();
            (
                format!("available ({})", decision.accel),
                json!({
                    "Qemu": a.qemu,
                    "QemuVersion": a.qemu_version,
                    "Kernel": a.kernel,
                    "KernelVersion": a.kernel_version,
                    "Agent": agent,
                    "AgentVersion": a.agent_version,
                    "Initramfs": a.initramfs,
                    "AcceleratorSetting": choice.to_string(),
                    "Accelerator": decision.accel.to_string(),
                    "AcceleratorReason": decision.reason,
                    "Templates": settings.template.unwrap_or(true),
                }),
            )
        }
        Err(first) => {
            // Look at each piece on its own, to name everything that is missing at once.
            let qemu = assets::find_qemu(settings);
            let kernel = assets::find_kernel(settings);
            let agent = assets::find_agent(settings);
            let pieces = [
                ("QEMU", qemu.as_ref().err()),
                ("guest kernel", kernel.as_ref().err()),
                ("guest agent", agent.as_ref().err()),
            ];
            let names: Vec<&str> = pieces
                .iter()
                .filter(|(_, e)| e.is_some())
                .map(|(n, _)| *n)
                .collect();
            let mut missing: Vec<String> = pieces
                .iter()
                .filter_map(|(_, e)| e.map(ToString::to_string))
                .collect();
            let status = if names.is_empty() {
                missing.push(first.to_string());
                "not available (see VM)".to_owned()
            } else {
                format!(
                    "not available: see VM (missing or unusable: {})",
                    names.join(", ")
                )
            };
            let found =
                |p: Option<&std::path::Path>| p.map_or(Value::from("missing"), |p| json!(p));
            (
                status,
                json!({
                    "Qemu": found(qemu.as_ref().ok().map(|q| q.path.as_path())),
                    "QemuVersion": qemu.as_ref().map(|q| q.version.clone()).unwrap_or_default(),
                    "Kernel": found(kernel.as_ref().ok().map(|k| k.path.as_path())),
                    "KernelVersion": kernel.as_ref().map(|k| k.version.clone()).unwrap_or_default(),
                    "Agent": found(agent.as_ref().ok().map(|g| g.path.as_path())),
                    "AgentVersion": agent.as_ref().map(|g| g.describe()).unwrap_or_default(),
                    "AcceleratorSetting": choice.to_string(),
                    "Missing": missing,
                }),
            )
        }
    }
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_owned())
            })
        })
        .unwrap_or_else(|| "Linux".into())
}
