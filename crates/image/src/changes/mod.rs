//! `--change` instructions of `import` and `commit`: Dockerfile-style lines applied to an image
//! config (the `config` object of the image-spec's `config.md`).
//!
//! Follows what Docker does for `docker commit --change` / `docker import --change`, which runs
//! each line through the Dockerfile parser and then through the builder's dispatch step:
//! - arguments of ENV and LABEL are split into `name=value` words on unquoted whitespace;
//! - the arguments of ENV, LABEL, WORKDIR, USER, EXPOSE, STOPSIGNAL and VOLUME then go through
//!   the Dockerfile shell-word rules: single quotes are literal, double quotes allow `\"`, `\\`
//!   and `\$` escapes, a backslash outside quotes escapes any character, and `$NAME`, `${NAME}`,
//!   `${NAME:-word}`, `${NAME-word}`, `${NAME:+word}`, `${NAME+word}` substitute variables from
//!   the config's `Env` as it was before the instruction;
//! - CMD, ENTRYPOINT and VOLUME take a JSON array of strings when their argument is one, and
//!   otherwise CMD and ENTRYPOINT run their argument under `/bin/sh -c`;
//! - ENTRYPOINT clears `Cmd` unless an earlier change in the same list set CMD.
//!
//! The instructions come from the user, but a change list can only edit fields the user could
//! set anyway; what is checked here is that every value is well-formed.

use std::collections::HashSet;

use oci_spec::image::Config;

/// The instructions [`apply_changes`] accepts, as listed in [`ChangeError::Unsupported`].
const SUPPORTED: &str = "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR";

/// The shell that runs the shell form of CMD and ENTRYPOINT.
const SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Why a `--change` instruction was rejected. Every variant carries the whole instruction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// The instruction is empty or all whitespace.
    #[error("invalid --change {change:?}: empty instruction")]
    Empty {
        /// The instruction as given.
        change: String,
    },
    /// The instruction contains a line break; each `--change` is one line.
    #[error("invalid --change {change:?}: instruction spans several lines")]
    Multiline {
        /// The instruction as given.
        change: String,
    },
    /// The instruction is not one that edits the image config (RUN, FROM, ADD, …).
    #[error(
        "invalid --change {change:?}: instruction {instruction} is not supported ({SUPPORTED})"
    )]
    Unsupported {
        /// The instruction as given.
        change: String,
        /// Its keyword, upper-cased.
        instruction: String,
    },
    /// The instruction has no arguments.
    #[error("invalid --change {change:?}: {instruction} requires at least one argument")]
    MissingArgument {
        /// The instruction as given.
        change: String,
        /// Its keyword, upper-cased.
        instruction: &'static str,
    },
    /// The legacy form `ENV NAME value` / `LABEL NAME value` has a name but no value.
    #[error("invalid --change {change:?}: {instruction} {name} has no value")]
    MissingValue {
        /// The instruction as given.
        change: String,
        /// Its keyword, upper-cased.
        instruction: &'static str,
        /// The name without a value.
        name: String,
    },
    /// A word of a multi-variable ENV or LABEL is not `name=value`.
    #[error("invalid --change {change:?}: {word:?} is not of the form name=value")]
    MissingEquals {
        /// The instruction as given.
        change: String,
        /// The offending word.
        word: String,
    },
    /// An ENV or LABEL name is empty.
    #[error("invalid --change {change:?}: {instruction} names can not be blank")]
    EmptyName {
        /// The instruction as given.
        change: String,
        /// Its keyword, upper-cased.
        instruction: &'static str,
    },
    /// A quoted string is not closed.
    #[error("invalid --change {change:?}: missing closing {quote} quote")]
    UnterminatedQuote {
        /// The instruction as given.
        change: String,
        /// The quote character, `'` or `"`.
        quote: char,
    },
    /// A `${…}` substitution is malformed.
    #[error("invalid --change {change:?}: bad substitution: {reason}")]
    Substitution {
        /// The instruction as given.
        change: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The WORKDIR is not an absolute path.
    #[error("invalid --change {change:?}: WORKDIR {path:?} is not an absolute path")]
    RelativeWorkdir {
        /// The instruction as given.
        change: String,
        /// The offending path.
        path: String,
    },
    /// An EXPOSE port is not `port`, `port/proto` or `start-end[/proto]` with a port in
    /// 1..=65535 and a protocol of tcp, udp or sctp.
    #[error("invalid --change {change:?}: invalid port {port:?}")]
    Port {
        /// The instruction as given.
        change: String,
        /// The offending port specification.
        port: String,
    },
    /// The STOPSIGNAL is not a Linux signal name or number.
    #[error("invalid --change {change:?}: invalid stop signal {signal:?}")]
    Signal {
        /// The instruction as given.
        change: String,
        /// The offending signal.
        signal: String,
    },
    /// A VOLUME path is empty.
    #[error("invalid --change {change:?}: VOLUME paths can not be empty")]
    EmptyVolume {
        /// The instruction as given.
        change: String,
    },
}

/// Applies Dockerfile-style change instructions, in order, to an image config.
///
/// Supported: CMD and ENTRYPOINT (JSON-array exec form, or shell form run as
/// `["/bin/sh", "-c", "…"]`), ENV (`ENV K=V K2="v 2"` and the legacy `ENV K V`), WORKDIR (an
/// absolute path, cleaned), USER, EXPOSE (`80`, `80/tcp`, `53/udp`, `8000-8002` → ExposedPorts),
/// LABEL (`k=v …`), STOPSIGNAL (a signal name such as `SIGTERM`/`TERM`/`RTMIN+3` or a number
/// 1..=64, stored as written), VOLUME (JSON array or words). Keywords are case-insensitive. ENV
/// replaces a variable of the same name in place and appends new ones; see the module docs for
/// quoting and variable substitution.
///
/// # Errors
///
/// A [`ChangeError`] naming the first instruction that is unsupported or malformed. `config` is
/// then left with the changes before that instruction applied; apply to a copy to get
/// all-or-nothing behavior.
pub fn apply_changes(config: &mut Config, changes: &[String]) -> Result<(), ChangeError> {
    let mut cmd_set = false;
    for change in changes {
        apply_one(config, change, &mut cmd_set)?;
    }
    Ok(())
}

fn apply_one(config: &mut Config, change: &str, cmd_set: &mut bool) -> Result<(), ChangeError> {
    let line = change.trim();
    if line.is_empty() {
        return Err(ChangeError::Empty {
            change: change.to_owned(),
        });
    }
    if line.contains(['\n', '\r']) {
        return Err(ChangeError::Multiline {
            change: change.to_owned(),
        });
    }
    let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim_start();
    let cx = Context {
        change,
        env: config.env().clone().unwrap_or_default(),
    };
    match keyword.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.set_cmd(Some(cx.command("CMD", rest)?));
            *cmd_set = true;
        }
        "ENTRYPOINT" => {
            config.set_entrypoint(Some(cx.command("ENTRYPOINT", rest)?));
            if !*cmd_set {
                config.set_cmd(None);
            }
        }
        "ENV" => {
            let mut env = cx.env.clone();
            for (name, value) in cx.name_values("ENV", rest)? {
                let entry = format!("{name}={value}");
                match env.iter().position(|e| env_name(e) == name) {
                    Some(i) => env[i] = entry,
                    None => env.push(entry),
                }
            }
            config.set_env(Some(env));
        }
        "LABEL" => {
            let mut labels = config.labels().clone().unwrap_or_default();
            labels.extend(cx.name_values("LABEL", rest)?);
            config.set_labels(Some(labels));
        }
        "WORKDIR" => {
            let path = cx.expand(cx.required("WORKDIR", rest)?)?;
            if !path.starts_with('/') {
                return Err(ChangeError::RelativeWorkdir {
                    change: change.to_owned(),
                    path,
                });
            }
            config.set_working_dir(Some(clean_absolute(&path)));
        }
        "USER" => {
            let user = cx.expand(cx.required("USER", rest)?)?;
            config.set_user(Some(user));
        }
        "STOPSIGNAL" => {
            let signal = cx.expand(cx.required("STOPSIGNAL", rest)?)?;
            if !is_signal(&signal) {
                return Err(ChangeError::Signal {
                    change: change.to_owned(),
                    signal,
                });
            }
            config.set_stop_signal(Some(signal));
        }
        "EXPOSE" => {
            let mut ports = config.exposed_ports().clone().unwrap_or_default();
            // A range may name thousands of ports; keep de-duplication linear.
            let mut seen: HashSet<String> = ports.iter().cloned().collect();
            for word in cx.required("EXPOSE", rest)?.split_whitespace() {
                let spec = cx.expand(word)?;
                let Some((start, end, proto)) = parse_port_spec(&spec) else {
                    return Err(ChangeError::Port {
                        change: change.to_owned(),
                        port: spec,
                    });
                };
                for port in start..=end {
                    let key = format!("{port}/{proto}");
                    if seen.insert(key.clone()) {
                        ports.push(key);
                    }
                }
            }
            config.set_exposed_ports(Some(ports));
        }
        "VOLUME" => {
            let rest = cx.required("VOLUME", rest)?;
            let words = match json_array(rest) {
                Some(words) => words,
                None => rest.split_whitespace().map(str::to_owned).collect(),
            };
            if words.is_empty() {
                return Err(cx.missing_argument("VOLUME"));
            }
            let mut volumes = config.volumes().clone().unwrap_or_default();
            for word in words {
                let path = cx.expand(&word)?.trim().to_owned();
                if path.is_empty() {
                    return Err(ChangeError::EmptyVolume {
                        change: change.to_owned(),
                    });
                }
                if !volumes.contains(&path) {
                    volumes.push(path);
                }
            }
            config.set_volumes(Some(volumes));
        }
        _ => {
            return Err(ChangeError::Unsupported {
                change: change.to_owned(),
                instruction: keyword.to_ascii_uppercase(),
            })
        }
    }
    Ok(())
}

/// One instruction being applied: the instruction for errors, the environment for substitution.
struct Context<'a> {
    change: &'a str,
    env: Vec<String>,
}

impl Context<'_> {
    fn missing_argument(&self, instruction: &'static str) -> ChangeError {
        ChangeError::MissingArgument {
            change: self.change.to_owned(),
            instruction,
        }
    }

    fn required<'r>(
        &self,
        instruction: &'static str,
        rest: &'r str,
    ) -> Result<&'r str, ChangeError> {
        if rest.is_empty() {
            Err(self.missing_argument(instruction))
        } else {
            Ok(rest)
        }
    }

    /// The argument of CMD or ENTRYPOINT: a JSON array of strings, or a shell command.
    fn command(&self, instruction: &'static str, rest: &str) -> Result<Vec<String>, ChangeError> {
        let rest = self.required(instruction, rest)?;
        Ok(json_array(rest).unwrap_or_else(|| {
            let mut argv: Vec<String> = SHELL.iter().map(|s| (*s).to_owned()).collect();
            argv.push(rest.to_owned());
            argv
        }))
    }

    /// The `name=value …` (or legacy `name value`) arguments of ENV and LABEL, expanded.
    fn name_values(
        &self,
        instruction: &'static str,
        rest: &str,
    ) -> Result<Vec<(String, String)>, ChangeError> {
        let words = split_words(rest);
        let Some(first) = words.first() else {
            return Err(self.missing_argument(instruction));
        };
        let raw: Vec<(String, String)> = if first.contains('=') {
            let mut pairs = Vec::with_capacity(words.len());
            for word in &words {
                let Some((name, value)) = word.split_once('=') else {
                    return Err(ChangeError::MissingEquals {
                        change: self.change.to_owned(),
                        word: word.clone(),
                    });
                };
                pairs.push((name.to_owned(), value.to_owned()));
            }
            pairs
        } else {
            // Legacy form: the first word is the name, everything after it the value.
            match rest.split_once(char::is_whitespace) {
                Some((name, value)) if !value.trim().is_empty() => {
                    vec![(name.to_owned(), value.trim_start().to_owned())]
                }
                _ => {
                    return Err(ChangeError::MissingValue {
                        change: self.change.to_owned(),
                        instruction,
                        name: first.clone(),
                    })
                }
            }
        };
        let mut pairs = Vec::with_capacity(raw.len());
        for (name, value) in raw {
            let name = self.expand(&name)?;
            if name.is_empty() {
                return Err(ChangeError::EmptyName {
                    change: self.change.to_owned(),
                    instruction,
                });
            }
            pairs.push((name, self.expand(&value)?));
        }
        Ok(pairs)
    }

    /// Removes quotes and escapes from one word and substitutes variables.
    fn expand(&self, word: &str) -> Result<String, ChangeError> {
        let mut expander = Expander {
            chars: word.chars().collect(),
            pos: 0,
            env: &self.env,
        };
        expander.until(None).map_err(|e| match e {
            WordError::Quote(quote) => ChangeError::UnterminatedQuote {
                change: self.change.to_owned(),
                quote,
            },
            WordError::Substitution(reason) => ChangeError::Substitution {
                change: self.change.to_owned(),
                reason,
            },
        })
    }
}

/// The name part of an `Env` entry.
fn env_name(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(name, _)| name)
}

/// `s` as a JSON array of strings, if it is one.
fn json_array(s: &str) -> Option<Vec<String>> {
    if s.starts_with('[') {
        serde_json::from_str(s).ok()
    } else {
        None
    }
}

/// Splits on unquoted whitespace as the Dockerfile parser does for ENV and LABEL: quotes and
/// backslash escapes stay in the words, for [`Context::expand`] to resolve.
fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                continue;
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                }
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
        }
        in_word = true;
        word.push(c);
        // A backslash keeps the next character in the word, except inside single quotes.
        if c == '\\' && quote != Some('\'') {
            if let Some(next) = chars.next() {
                word.push(next);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Why [`Expander`] failed.
enum WordError {
    Quote(char),
    Substitution(&'static str),
}

/// The Dockerfile shell-word rules for a single word; see the module docs.
struct Expander<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a [String],
}

impl Expander<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += usize::from(c.is_some());
        c
    }

    /// Reads up to `stop` (consumed), or to the end when `stop` is `None`.
    fn until(&mut self, stop: Option<char>) -> Result<String, WordError> {
        let mut out = String::new();
        loop {
            let Some(c) = self.next() else {
                return match stop {
                    Some(_) => Err(WordError::Substitution("missing '}'")),
                    None => Ok(out),
                };
            };
            match c {
                _ if Some(c) == stop => return Ok(out),
                '\'' => out.push_str(&self.single_quoted()?),
                '"' => out.push_str(&self.double_quoted()?),
                '$' => out.push_str(&self.dollar()?),
                '\\' => out.extend(self.next()),
                c => out.push(c),
            }
        }
    }

    fn single_quoted(&mut self) -> Result<String, WordError> {
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(WordError::Quote('\'')),
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, WordError> {
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(WordError::Quote('"')),
                Some('"') => return Ok(out),
                Some('$') => out.push_str(&self.dollar()?),
                Some('\\') => match self.peek() {
                    Some(c @ ('"' | '$' | '\\')) => {
                        self.pos += 1;
                        out.push(c);
                    }
                    _ => out.push('\\'),
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// A substitution, after its `$`.
    fn dollar(&mut self) -> Result<String, WordError> {
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(self.lookup(&name).unwrap_or_default().to_owned());
        }
        self.pos += 1;
        let name = self.name();
        if name.is_empty() {
            return Err(WordError::Substitution("missing variable name"));
        }
        let value = self.lookup(&name).map(str::to_owned);
        let colon = self.peek() == Some(':');
        if colon {
            self.pos += 1;
        }
        let modifier = self.next();
        if modifier == Some('}') && !colon {
            return Ok(value.unwrap_or_default());
        }
        // With a colon, an empty variable counts as unset.
        let set = value.as_ref().is_some_and(|v| !colon || !v.is_empty());
        match modifier {
            Some('-') => {
                let word = self.until(Some('}'))?;
                Ok(if set { value.unwrap_or_default() } else { word })
            }
            Some('+') => {
                let word = self.until(Some('}'))?;
                Ok(if set { word } else { String::new() })
            }
            None => Err(WordError::Substitution("missing '}'")),
            Some(_) => Err(WordError::Substitution("unsupported modifier")),
        }
    }

    /// A variable name: a run of digits, or of ASCII letters, digits and underscores.
    fn name(&mut self) -> String {
        let start = self.pos;
        let digits_only = self.peek().is_some_and(|c| c.is_ascii_digit());
        while let Some(c) = self.peek() {
            let ok = c.is_ascii_digit() || (!digits_only && (c.is_ascii_alphabetic() || c == '_'));
            if !ok {
                break;
            }
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn lookup(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find_map(|entry| match entry.split_once('=') {
                Some((n, value)) if n == name => Some(value),
                None if entry == name => Some(""),
                _ => None,
            })
    }
}

/// Cleans an absolute path lexically: no empty or `.` components, `..` resolved, no trailing
/// slash.
fn clean_absolute(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Parses `port`, `port/proto`, `start-end` or `start-end/proto` into (start, end, protocol).
fn parse_port_spec(spec: &str) -> Option<(u16, u16, String)> {
    let (ports, proto) = match spec.split_once('/') {
        Some((ports, "")) => (ports, "tcp".to_owned()),
        Some((ports, proto)) => (ports, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_owned()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return None;
    }
    let port = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u16>().ok())
            .flatten()
            .filter(|&p| p != 0)
    };
    let (start, end) = match ports.split_once('-') {
        Some((start, end)) => (port(start)?, port(end)?),
        None => (port(ports)?, port(ports)?),
    };
    (start <= end).then_some((start, end, proto))
}

/// Linux signal names, without the `SIG` prefix, that STOPSIGNAL accepts besides the
/// `RTMIN+n` / `RTMAX-n` forms.
const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
];

/// The number of real-time signals between SIGRTMIN (34) and SIGRTMAX (64) on Linux.
const RT_SIGNAL_SPAN: u8 = 30;

/// Whether `s` is a Linux signal: a number 1..=64, or a name with or without `SIG`, in any case.
fn is_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u8>() {
        return (1..=64).contains(&n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let offset_ok = |n: &str| n.parse::<u8>().is_ok_and(|n| n <= RT_SIGNAL_SPAN);
    if let Some(n) = name.strip_prefix("RTMIN+") {
        return offset_ok(n);
    }
    if let Some(n) = name.strip_prefix("RTMAX-") {
        return offset_ok(n);
    }
    matches!(name, "RTMIN" | "RTMAX") || SIGNALS.contains(&name)
}

#[cfg(test)]
mod tests;
