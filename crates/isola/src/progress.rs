//! Progress reporting: a bar per layer on a terminal (indicatif), one plain line per layer otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use isola_image::load::Progress;

/// Progress on standard error.
#[derive(Debug)]
pub struct Reporter {
    bar: Option<ProgressBar>,
    verb: &'static str,
}

impl Reporter {
    /// A bar when standard error is a terminal and `quiet` is off; otherwise nothing, and the command
    /// prints only its result. `verb` ends each layer's line ("Loaded", "Saved").
    pub fn new(quiet: bool, verb: &'static str) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:20} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("valid template"),
            );
            bar
        });
        Self { bar, verb }
    }
}

fn short(name: &str) -> &str {
    let name = name.strip_prefix("sha256:").unwrap_or(name);
    name.get(..12).unwrap_or(name)
}

impl Progress for Reporter {
    fn start(&self, name: &str, total: Option<u64>) {
        if let Some(bar) = &self.bar {
            bar.reset();
            bar.set_length(total.unwrap_or(0));
            bar.set_message(short(name).to_owned());
        }
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = &self.bar {
            if bar.length() == Some(0) || bar.position() + n > bar.length().unwrap_or(0) {
                bar.set_length(bar.position() + n);
            }
            bar.inc(n);
        }
    }

    fn finish(&self, name: &str, reused: bool) {
        let what = if reused { "Already exists" } else { self.verb };
        if let Some(bar) = &self.bar {
            bar.println(format!("{}: {what}", short(name)));
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
