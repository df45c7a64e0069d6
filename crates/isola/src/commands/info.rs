//! `isola info [--format text|json]`: version, state directories, cgroups, isolation modes, kernel.

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
}
