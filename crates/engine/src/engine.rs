//! The engine's operations on containers, as the CLI calls them. Every call opens the database,
//! looks the container up (full ID, name or unique prefix) and first reconciles its recorded state
//! with reality (a monitor that died leaves the container exited with an error).

use std::io::Read as _;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::{ContainerConfig, HostConfig, Isolation};
use crate::db::{Db, Record};
use crate::error::{Error, Result};
use crate::isolation::{self, IsolationMode, Table};
use crate::monitor::Ready;
use crate::paths::Roots;
use crate::state::{now, State, Status};

/// What `isola create` / `run` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// `--name`; a random `adjective_name` when absent.
    pub name: Option<String>,
    /// Process and identity settings.
    pub config: ContainerConfig,
    /// Resources, mounts, isolation.
    pub host: HostConfig,
}

/// The engine over one pair of roots.
#[derive(Debug)]
pub struct Engine {
    roots: Roots,
    db: Db,
}

impl Engine {
    /// Opens the engine state under the two roots.
    pub fn open(roots: Roots) -> Result<Self> {
        for d in [
            roots.root.join("containers"),
            roots.run_root.join("containers"),
        ] {
            std::fs::create_dir_all(&d).map_err(|e| Error::io("create directory", &d, e))?;
            // Only root may look inside: a container's writable layer and volumes may hold
            // set-user-ID files or device nodes its processes (or its guest) made.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io("set the mode of", &d, e))?;
        }
        let db = Db::open(&roots.root)?;
        Ok(Self { roots, db })
    }

    /// The roots.
    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    /// The isolation mode of a container.
    pub fn mode(&self, r: &Record) -> Box<dyn IsolationMode> {
        isolation::mode(r.host_config.isolation, &self.roots)
    }

    /// Creates a container record and its directory (`isola create`); nothing runs yet. The image must
    /// exist; the isolation mode must be available.
    pub fn create(&self, req: CreateRequest) -> Result<Record> {
        if req.host.isolation == Isolation::Vm {
            // Checked here so that nothing is created for a mode that cannot run.
            crate::vm::check_create(&self.roots, &req.host)?;
        }
        let store = isola_image::Store::open(&self.roots.root)?;
        let image_id = store.resolve(&req.config.image)?;
        drop(store);
        let name = match req.name {
            Some(n) => {
                let n = n.strip_prefix('/').unwrap_or(&n).to_owned();
                check_name(&n)?;
                n
            }
            None => self.random_name()?,
        };
        let id = random_id()?;
        let dir = self.roots.dir(&id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        let record = Record {
            id: id.clone(),
            name,
            created: now(),
            image_id: image_id.to_string(),
            config: req.config,
            host_config: req.host,
            state: State::default(),
        };
        if let Err(e) = self.db.insert(&record) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(record)
    }

    fn random_name(&self) -> Result<String> {
        for _ in 0..100 {
            let n = crate::names::random()?;
            if self.db.find(&n).is_err() {
                return Ok(n);
            }
        }
        Err(Error::NameInUse("(random)".into()))
    }

    /// Finds a container and reconciles its state.
    pub fn get(&self, key: &str) -> Result<Record> {
        let r = self.db.find(key)?;
        self.reconcile(r)
    }

    /// Every container (only running ones unless `all`), newest first.
    pub fn list(&self, all: bool) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        for r in self.db.all()? {
            let r = self.reconcile(r)?;
            if all || matches!(r.state.status, Status::Running | Status::Paused) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// A container recorded as running whose monitor is gone (killed, or the host rebooted) is
    /// exited with an error; whatever is left of it is stopped and cleaned up.
    fn reconcile(&self, mut r: Record) -> Result<Record> {
        if !matches!(r.state.status, Status::Running | Status::Paused) || monitor_alive(&r.state) {
            return Ok(r);
        }
        let mode = self.mode(&r);
        let _ = mode.signal(&r.id, libc::SIGKILL, true);
        let _ = mode.delete(&r.id);
        let _ = crate::rootfs::unmount_rootfs(&self.roots, &r.id);
        r.state = self.db.update_state(&r.id, |s| {
            s.status = Status::Exited;
            s.pid = 0;
            s.exit_code = 128 + libc::SIGKILL;
            s.error =
                "the container's monitor process is gone (killed, or the host restarted)".into();
            s.finished_at = Some(now());
            s.monitor_pid = 0;
        })?;
        Ok(r)
    }

    /// Starts a created or exited container by spawning its monitor. With `wait_attach`, the monitor
    /// creates the container and waits for a client on its socket before starting the program;
    /// otherwise this returns once the program runs. Errors carry Docker's exit status.
    pub fn start(&self, key: &str, wait_attach: bool) -> Result<Record> {
        let r = self.get(key)?;
        match r.state.status {
            Status::Running | Status::Paused => return Ok(r),
            Status::Removing => {
                return Err(Error::BadStatus {
                    name: r.name.clone(),
                    status: r.state.status.to_string(),
                    hint: "it is being removed".into(),
                })
            }
            _ => {}
        }
        let ready = self.spawn_monitor(&r.id, wait_attach)?;
        if !ready.ok {
            return Err(Error::StartFailed {
                message: ready.error,
                code: ready.code,
            });
        }
        self.get(&r.id)
    }

    fn spawn_monitor(&self, id: &str, wait_attach: bool) -> Result<Ready> {
        let exe = std::env::current_exe().map_err(|e| Error::io("find", "the isola binary", e))?;
        let (mut read_end, write_end) =
            std::io::pipe().map_err(|e| Error::io("create pipe", "", e))?;
        let write_fd = write_end.as_raw_fd();
        let mut cmd = Command::new(exe);
        cmd.arg("--root")
            .arg(&self.roots.root)
            .arg("--run-root")
            .arg(&self.roots.run_root)
            .arg("__monitor")
            .arg(id)
            .arg("--ready-fd")
            .arg("3")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if wait_attach {
            cmd.arg("--wait-attach");
        }
        // SAFETY: only async-signal-safe calls (setsid, dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 || libc::dup2(write_fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io("start the monitor of", id, e))?;
        drop(write_end);
        // One line: the write end also lives on in the container's setup processes until they exec,
        // so end-of-file cannot be waited for.
        let mut out = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut read_end), &mut out);
        // The monitor goes on alone; reap it when it ends (it is ours only until it daemonizes).
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        let line = out.lines().next().unwrap_or_default();
        serde_json::from_str(line).map_err(|_| Error::Monitor {
            id: id.to_owned(),
            reason: format!(
                "it exited without reporting (see {})",
                self.roots.run_dir(id).join("monitor.log").display()
            ),
        })
    }

    /// Stops a running container: its stop signal, then SIGKILL after `timeout` seconds. A container
    /// that is not running is left as it is.
    pub fn stop(&self, key: &str, timeout: Option<u32>) -> Result<Record> {
        let r = self.get(key)?;
        if !matches!(r.state.status, Status::Running | Status::Paused) {
            return Ok(r);
        }
        let mode = self.mode(&r);
        if r.state.status == Status::Paused {
            mode.resume(&r.id)?;
        }
        let signal = self.stop_signal(&r)?;
        let timeout =
            Duration::from_secs(u64::from(timeout.or(r.config.stop_timeout).unwrap_or(10)));
        if mode.signal(&r.id, signal, false).is_ok() && self.wait_stopped(&r.id, timeout)? {
            return self.get(&r.id);
        }
        let _ = mode.signal(&r.id, libc::SIGKILL, true);
        self.wait_stopped(&r.id, Duration::from_secs(30))?;
        self.get(&r.id)
    }

    fn stop_signal(&self, r: &Record) -> Result<i32> {
        let store = isola_image::Store::open(&self.roots.root)?;
        let id = isola_image::Digest::parse(&r.image_id).map_err(isola_image::Error::from)?;
        let image: oci_spec::image::ImageConfiguration = match store.config_json(&id) {
            Ok(v) => serde_json::from_value(v).unwrap_or_default(),
            Err(_) => Default::default(),
        };
        Ok(crate::spec::stop_signal(&image, &r.config)?)
    }

    /// Waits until the container is no longer running (its monitor recorded the exit).
    fn wait_stopped(&self, id: &str, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.get(id)?;
            if !matches!(r.state.status, Status::Running | Status::Paused) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal to the container's main process.
    pub fn kill(&self, key: &str, signal: i32) -> Result<()> {
        let r = self.get(key)?;
        if !matches!(r.state.status, Status::Running | Status::Paused) {
            return Err(Error::BadStatus {
                name: r.name,
                status: r.state.status.to_string(),
                hint: "it is not running".into(),
            });
        }
        self.mode(&r).signal(&r.id, signal, false)
    }

    /// Removes a container; a running one only with `force` (it is killed first).
    pub fn remove(&self, key: &str, force: bool) -> Result<Record> {
        let r = self.get(key)?;
        if matches!(r.state.status, Status::Running | Status::Paused) {
            if !force {
                return Err(Error::BadStatus {
                    name: r.name,
                    status: r.state.status.to_string(),
                    hint: "stop it before removing it, or use rm -f".into(),
                });
            }
            let mode = self.mode(&r);
            if r.state.status == Status::Paused {
                let _ = mode.resume(&r.id);
            }
            let _ = mode.signal(&r.id, libc::SIGKILL, true);
            self.wait_stopped(&r.id, Duration::from_secs(30))?;
        }
        let r = self.get(&r.id)?;
        let _ = self.mode(&r).delete(&r.id);
        crate::rootfs::remove_files(&self.roots, &r.id)?;
        self.db.delete(&r.id)?;
        Ok(r)
    }

    /// Waits for the container to stop; returns its exit code.
    pub fn wait(&self, key: &str) -> Result<i32> {
        let r = self.get(key)?;
        loop {
            let r = match self.get(&r.id) {
                Ok(r) => r,
                // Removed meanwhile (--rm): its exit was recorded by then, but is gone.
                Err(Error::NoSuchContainer(_)) => return Ok(0),
                Err(e) => return Err(e),
            };
            if !matches!(r.state.status, Status::Running | Status::Paused) && !self.is_starting(&r)
            {
                return Ok(r.state.exit_code);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_starting(&self, r: &Record) -> bool {
        r.state.status == Status::Created && self.roots.socket(&r.id).exists()
    }

    /// The container's processes as `ps -ef` shows them (host PIDs in process isolation).
    pub fn top(&self, key: &str) -> Result<Table> {
        let r = self.running(key)?;
        self.mode(&r).top(&r.id)
    }

    /// Freezes a running container.
    pub fn pause(&self, key: &str) -> Result<()> {
        let r = self.running(key)?;
        self.mode(&r).pause(&r.id)?;
        self.db.update_state(&r.id, |s| s.status = Status::Paused)?;
        Ok(())
    }

    /// Thaws a paused container.
    pub fn unpause(&self, key: &str) -> Result<()> {
        let r = self.get(key)?;
        if r.state.status != Status::Paused {
            return Err(Error::BadStatus {
                name: r.name,
                status: r.state.status.to_string(),
                hint: "it is not paused".into(),
            });
        }
        self.mode(&r).resume(&r.id)?;
        self.db
            .update_state(&r.id, |s| s.status = Status::Running)?;
        Ok(())
    }

    /// The container, which must be running.
    pub fn running(&self, key: &str) -> Result<Record> {
        let r = self.get(key)?;
        if matches!(r.state.status, Status::Running | Status::Paused) {
            Ok(r)
        } else {
            Err(Error::BadStatus {
                name: r.name,
                status: r.state.status.to_string(),
                hint: "it is not running".into(),
            })
        }
    }

    /// The path of the container's log file.
    pub fn log_path(&self, r: &Record) -> std::path::PathBuf {
        self.roots.log(&r.id)
    }

    /// Whether the container is running (for `logs -f`).
    pub fn is_running(&self, id: &str) -> bool {
        self.get(id).is_ok_and(|r| {
            matches!(r.state.status, Status::Running | Status::Paused) || self.is_starting(&r)
        })
    }

    /// Names of containers using image `image_id` (for `rmi`).
    pub fn image_users(&self, image_id: &str) -> Result<Vec<String>> {
        self.db.users_of_image(image_id)
    }

    /// The bundle's runtime spec as written at the last start (for `exec` and `inspect`).
    pub fn bundle_spec(&self, r: &Record) -> Result<isola_runtime::oci::Spec> {
        let path = self.roots.dir(&r.id).join("config.json");
        let data = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        serde_json::from_slice(&data).map_err(|e| Error::Corrupt {
            id: r.id.clone(),
            reason: e.to_string(),
        })
    }

    /// The container's root filesystem mount point.
    pub fn rootfs(&self, r: &Record) -> std::path::PathBuf {
        self.roots.rootfs(&r.id)
    }
}

fn monitor_alive(s: &State) -> bool {
    // A zombie (killed, not yet reaped) is as dead as a process that is gone.
    let zombie = std::fs::read_to_string(format!("/proc/{}/stat", s.monitor_pid))
        .ok()
        .and_then(|st| {
            st.rfind(')')
                .map(|i| st[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(true);
    s.monitor_pid > 0
        && !zombie
        && isola_runtime::state::pid_start_time(s.monitor_pid).is_some_and(|t| t == s.monitor_start)
}

fn check_name(n: &str) -> Result<()> {
    let mut chars = n.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok
        && rest_ok
        && n.len() <= 128
        && !(n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Ok(())
    } else {
        Err(Error::BadName(n.to_owned()))
    }
}

fn random_id() -> Result<String> {
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| Error::io("read", "/dev/urandom", e))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether a path is absolute and normal (no `..`), for flags that take container paths.
pub fn is_clean_absolute(p: &Path) -> bool {
    p.is_absolute()
        && !p
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
}
