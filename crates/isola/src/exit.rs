//! Exit statuses, as Docker's CLI uses them: the container's own status for `run`, `start -a`,
//! `attach`, `exec` and `wait`-like commands; 126/127 when the container's program cannot be
//! started; 125 when isola itself fails.

use std::fmt;

/// Exit status when isola itself fails.
pub const ISOLA_FAILED: u8 = 125;

/// A command that ends isola with a given status: the container's exit code, with an optional
/// message printed as one `Error: …` line first.
#[derive(Debug)]
pub struct Exit {
    /// The status to exit with (0–255).
    pub code: i32,
    /// What to print first, if anything.
    pub message: Option<String>,
}

impl Exit {
    /// Exit quietly with `code`.
    pub fn code(code: i32) -> anyhow::Error {
        anyhow::Error::new(Exit {
            code,
            message: None,
        })
    }

    /// Print `message`, then exit with `code`.
    pub fn with_message(code: i32, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Exit {
            code,
            message: Some(message.into()),
        })
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(m) => f.write_str(m),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

impl std::error::Error for Exit {}

/// The status isola exits with for `err`, and whether to print it as an `Error:` line.
pub fn status(err: &anyhow::Error) -> (u8, bool) {
    if let Some(exit) = err.downcast_ref::<Exit>() {
        return (clamp(exit.code), exit.message.is_some());
    }
    for cause in err.chain() {
        if let Some(isola_engine::Error::StartFailed { code, .. }) = cause.downcast_ref() {
            return (clamp(*code), true);
        }
    }
    (ISOLA_FAILED, true)
}

fn clamp(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(ISOLA_FAILED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(status(&Exit::code(3)), (3, false));
        assert_eq!(status(&Exit::with_message(137, "x")), (137, true));
        let start = isola_engine::Error::StartFailed {
            message: "not found".into(),
            code: 127,
        };
        assert_eq!(status(&anyhow::Error::new(start)), (127, true));
        let wrapped = anyhow::Error::new(isola_engine::Error::StartFailed {
            message: "denied".into(),
            code: 126,
        })
        .context("starting");
        assert_eq!(status(&wrapped), (126, true));
        assert_eq!(status(&anyhow::anyhow!("boom")), (125, true));
        assert_eq!(status(&Exit::code(300)), (125, false));
    }
}
