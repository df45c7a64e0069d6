//! `isola info [--format text|json]`: version, state directories, cgroups, isolation modes, the VM
//! pieces and accelerator (or what is missing and how to get it), kernel.

use serde_json::Value;

use crate::Context;

/// Output format of `isola info`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// `Key: value` lines.
    Text,
    /// One JSON object.
    Json,
}

/// Arguments of `isola info`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(short, long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Prints what isola knows about this host.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = super::open_engine(ctx)?;
    let info = engine.info(env!("CARGO_PKG_VERSION"));
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&info)?),
        Format::Text => print!("{}", text(&info, 0)),
    }
    Ok(())
}

/// `Key: value` lines; nested objects indented under their key.
fn text(v: &Value, indent: usize) -> String {
    let mut out = String::new();
    let Value::Object(map) = v else {
        return format!("{}{}\n", " ".repeat(indent), scalar(v));
    };
    for (k, v) in map {
        match v {
            Value::Object(_) => {
                out.push_str(&format!("{}{k}:\n", " ".repeat(indent)));
                out.push_str(&text(v, indent + 2));
            }
            // A list of sentences (what is missing, and how to get it): one per line.
            Value::Array(items) if !items.is_empty() => {
                out.push_str(&format!("{}{k}:\n", " ".repeat(indent)));
                for item in items {
                    out.push_str(&format!("{}- {}\n", " ".repeat(indent + 2), scalar(item)));
                }
            }
            _ => out.push_str(&format!("{}{k}: {}\n", " ".repeat(indent), scalar(v))),
        }
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(scalar).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn text_form() {
        let v = json!({"A": "x", "B": 2, "C": {"d": "e"}});
        assert_eq!(super::text(&v, 0), "A: x\nB: 2\nC:\n  d: e\n");
    }

    #[test]
    fn lists_one_item_per_line() {
        let v = json!({"VM": {"Qemu": "missing", "Missing": ["no QEMU, install it", "no kernel"]}, "E": []});
        assert_eq!(
            super::text(&v, 0),
            "E: \nVM:\n  Missing:\n    - no QEMU, install it\n    - no kernel\n  Qemu: missing\n"
        );
    }
}
