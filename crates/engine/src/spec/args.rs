//! The process's command line, environment and working directory, merged from the image config
//! and the `isola run` flags the way Docker merges them.

use std::path::{Component, Path, PathBuf};

use oci_spec::image::Config as ImageConfig;

use super::error::SpecError;
use crate::config::ContainerConfig;

/// `PATH` for images that do not set one (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where `--init` mounts the init binary inside the container.
pub const INIT_PATH: &str = "/sbin/isola-init";

/// The command line: entrypoint followed by command, as Docker merges them (Docker's run reference,
/// "ENTRYPOINT (default command to execute at runtime)"):
///
/// - `--entrypoint E` replaces the image's Entrypoint and clears the image's Cmd: the command is
///   only what was given after the image name. `--entrypoint ""` (`Some(vec![])`) clears the
///   Entrypoint, so the given command runs alone.
/// - Otherwise the image's Entrypoint, followed by the given command or else the image's Cmd (an
///   empty given command counts as none).
///
/// With `init`, the result is prefixed with [`INIT_PATH`] and `--` (tini's usage, as Docker runs
/// `docker-init -- CMD`).
pub fn command(
    image: Option<&ImageConfig>,
    config: &ContainerConfig,
    init: bool,
) -> Result<Vec<String>, SpecError> {
    let given_cmd = config.cmd.clone().unwrap_or_default();
    let (entrypoint, cmd) = match &config.entrypoint {
        Some(ep) => (ep.clone(), given_cmd),
        None => {
            let ep = image
                .and_then(|c| c.entrypoint().clone())
                .unwrap_or_default();
            let cmd = if given_cmd.is_empty() {
                image.and_then(|c| c.cmd().clone()).unwrap_or_default()
            } else {
                given_cmd
            };
            (ep, cmd)
        }
    };
    let mut args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.first().is_none_or(|a| a.is_empty()) {
        return Err(SpecError::NoCommand);
    }
    if init {
        args.splice(0..0, [INIT_PATH.to_owned(), "--".to_owned()]);
    }
    Ok(args)
}

/// The variable name of a `KEY=VALUE` (or bare `KEY`) entry.
fn key_of(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// An environment list in which setting a variable replaces an earlier value in place.
#[derive(Debug, Default)]
struct Env(Vec<String>);

impl Env {
    fn position(&self, key: &str) -> Option<usize> {
        self.0.iter().position(|e| key_of(e) == key)
    }

    fn has(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    fn set(&mut self, entry: String) {
        match self.position(key_of(&entry)) {
            Some(i) => self.0[i] = entry,
            None => self.0.push(entry),
        }
    }

    fn remove(&mut self, key: &str) {
        self.0.retain(|e| key_of(e) != key);
    }
}

/// The process environment, built as Docker builds it: the defaults `PATH`, `HOSTNAME` and (with
/// `-t`) `TERM=xterm`, then the image's Env, then each `-e`/`--env-file` entry; a later setting
/// replaces an earlier one in place. A bare `-e KEY` takes `KEY`'s value from `lookup` (the CLI's
/// environment); when that has no value, `KEY` is removed, as Docker does. Last, `HOME` is set
/// to `home` unless something above set it (what runc does from the image's `/etc/passwd`).
pub fn environment(
    image: Option<&ImageConfig>,
    config: &ContainerConfig,
    hostname: &str,
    home: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, SpecError> {
    let mut env = Env::default();
    env.set(format!("PATH={DEFAULT_PATH}"));
    env.set(format!("HOSTNAME={hostname}"));
    if config.tty {
        env.set("TERM=xterm".to_owned());
    }
    for entry in image.and_then(|c| c.env().as_deref()).unwrap_or_default() {
        if let Some((key, _)) = entry.split_once('=') {
            if !key.is_empty() {
                env.set(entry.clone());
            }
        }
    }
    for entry in &config.env {
        let key = key_of(entry);
        if key.is_empty() || key.contains('\0') || entry.contains('\0') {
            return Err(SpecError::invalid(
                "-e",
                entry,
                "not a KEY=VALUE environment variable",
            ));
        }
        if entry.contains('=') {
            env.set(entry.clone());
        } else {
            match lookup(key) {
                Some(value) => env.set(format!("{key}={value}")),
                None => env.remove(key),
            }
        }
    }
    if !env.has("HOME") {
        env.set(format!("HOME={home}"));
    }
    Ok(env.0)
}

/// The value of `-e KEY` taken from this process's environment (non-UTF-8 bytes replaced).
pub fn cli_env(key: &str) -> Option<String> {
    std::env::var_os(key).map(|v| v.to_string_lossy().into_owned())
}

/// The working directory: `-w`, else the image's WorkingDir, else `/`. It must be absolute; it
/// is cleaned lexically (`.` and repeated `/` removed, `..` taken against the path before it, and
/// never above `/`), as Docker cleans it.
pub fn working_dir(
    image: Option<&ImageConfig>,
    config: &ContainerConfig,
) -> Result<PathBuf, SpecError> {
    let (flag, dir) = match (
        &config.working_dir,
        image.and_then(|c| c.working_dir().as_deref()),
    ) {
        (Some(w), _) if !w.is_empty() => ("-w", w.as_str()),
        (_, Some(w)) if !w.is_empty() => ("image WorkingDir", w),
        _ => return Ok(PathBuf::from("/")),
    };
    if dir.contains('\0') {
        return Err(SpecError::invalid(flag, dir, "contains a NUL byte"));
    }
    if !dir.starts_with('/') {
        return Err(SpecError::invalid(
            flag,
            dir,
            "the working directory must be an absolute path",
        ));
    }
    Ok(clean(Path::new(dir)))
}

/// Lexically cleans an absolute path: `.` and empty components dropped, `..` removes the
/// component before it (at `/` it stays at `/`).
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(json: &str) -> ImageConfig {
        serde_json::from_str(json).unwrap()
    }

    fn cfg(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ContainerConfig {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        ContainerConfig {
            entrypoint: entrypoint.map(v),
            cmd: cmd.map(v),
            ..Default::default()
        }
    }

    #[test]
    fn entrypoint_and_cmd_combinations() {
        let img = image(r#"{"Entrypoint":["/ep","-x"],"Cmd":["run"]}"#);
        let img = Some(&img);
        let run = |e, c| command(img, &cfg(e, c), false).unwrap();
        assert_eq!(run(None, None), ["/ep", "-x", "run"]);
        assert_eq!(run(None, Some(&["other"])), ["/ep", "-x", "other"]);
        // A given entrypoint drops the image's Cmd.
        assert_eq!(run(Some(&["sh"]), None), ["sh"]);
        assert_eq!(run(Some(&["sh"]), Some(&["-c", "id"])), ["sh", "-c", "id"]);
        // `--entrypoint ""` clears the entrypoint and the image's Cmd.
        assert_eq!(run(Some(&[]), Some(&["ls", "/"])), ["ls", "/"]);
        assert!(matches!(
            command(img, &cfg(Some(&[]), None), false),
            Err(SpecError::NoCommand)
        ));
        // An empty CMD list counts as none given.
        assert_eq!(run(None, Some(&[])), ["/ep", "-x", "run"]);
    }

    #[test]
    fn cmd_only_images_and_no_command() {
        let img = image(r#"{"Cmd":["sh"]}"#);
        assert_eq!(
            command(Some(&img), &cfg(None, None), false).unwrap(),
            ["sh"]
        );
        let empty = image("{}");
        let err = command(Some(&empty), &cfg(None, None), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no command: the image has no Cmd or Entrypoint and none was given"
        );
        assert!(matches!(
            command(None, &cfg(Some(&[]), None), false),
            Err(SpecError::NoCommand)
        ));
        assert!(matches!(
            command(None, &cfg(None, Some(&[""])), false),
            Err(SpecError::NoCommand)
        ));
    }

    #[test]
    fn init_prefixes_the_command() {
        let img = image(r#"{"Cmd":["sleep","1"]}"#);
        assert_eq!(
            command(Some(&img), &cfg(None, None), true).unwrap(),
            [INIT_PATH, "--", "sleep", "1"]
        );
    }

    #[test]
    fn environment_merges_like_docker() {
        let img = image(r#"{"Env":["PATH=/opt/bin:/bin","LANG=C.UTF-8","A=image"]}"#);
        let mut c = cfg(None, None);
        c.env = vec![
            "A=user".into(),
            "B=1".into(),
            "FROM_CLI".into(),
            "UNSET_HERE".into(),
            "LANG".into(),
        ];
        c.tty = true;
        let lookup = |k: &str| (k == "FROM_CLI").then(|| "cli value".to_owned());
        let env = environment(Some(&img), &c, "abc", "/root", lookup).unwrap();
        assert_eq!(
            env,
            [
                "PATH=/opt/bin:/bin",
                "HOSTNAME=abc",
                "TERM=xterm",
                "A=user",
                "B=1",
                "FROM_CLI=cli value",
                "HOME=/root",
            ]
        );
    }

    #[test]
    fn environment_defaults() {
        let env = environment(None, &cfg(None, None), "h", "/", |_| None).unwrap();
        assert_eq!(
            env,
            [
                format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=h".into(),
                "HOME=/".into()
            ]
        );
        let mut c = cfg(None, None);
        c.env = vec!["HOME=/x".into(), "TERM=dumb".into()];
        c.tty = true;
        let env = environment(None, &c, "h", "/root", |_| None).unwrap();
        assert!(env.contains(&"HOME=/x".to_owned()));
        assert!(env.contains(&"TERM=dumb".to_owned()));
        assert!(!env.contains(&"HOME=/root".to_owned()));
        c.env = vec!["=x".into()];
        let err = environment(None, &c, "h", "/", |_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"-e "=x": not a KEY=VALUE environment variable"#
        );
    }

    #[test]
    fn working_dir_rules() {
        let img = image(r#"{"WorkingDir":"/srv/app"}"#);
        let mut c = cfg(None, None);
        assert_eq!(working_dir(None, &c).unwrap(), Path::new("/"));
        assert_eq!(working_dir(Some(&img), &c).unwrap(), Path::new("/srv/app"));
        c.working_dir = Some("/tmp/./x/../y//".into());
        assert_eq!(working_dir(Some(&img), &c).unwrap(), Path::new("/tmp/y"));
        c.working_dir = Some("/../..".into());
        assert_eq!(working_dir(None, &c).unwrap(), Path::new("/"));
        c.working_dir = Some("rel".into());
        assert_eq!(
            working_dir(None, &c).unwrap_err().to_string(),
            r#"-w "rel": the working directory must be an absolute path"#
        );
        let bad = image(r#"{"WorkingDir":"app"}"#);
        let err = working_dir(Some(&bad), &cfg(None, None)).unwrap_err();
        assert!(err.to_string().starts_with("image WorkingDir \"app\""));
    }
}
