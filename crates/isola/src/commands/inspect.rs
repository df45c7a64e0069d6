//! `isola inspect [--type container|image] [-f TEMPLATE] NAME...`: Docker-shaped JSON of containers
//! and images. A name is tried as a container first, then as an image, as Docker does.

use anyhow::anyhow;
use serde_json::Value;

use crate::Context;

/// What `--type` restricts the lookup to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Containers only.
    Container,
    /// Images only.
    Image,
}

/// Arguments of `isola inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only look for objects of this type.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub kind: Option<Kind>,
    /// Print each object through a template of `{{.Field.Sub}}` and `{{json .Field}}` references.
    #[arg(short, long, value_name = "TEMPLATE")]
    pub format: Option<String>,
    /// Containers or images: names, IDs or ID prefixes.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
}

/// Prints the objects found as a JSON array (or one templated line each); fails naming the ones
/// not found.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = match args.kind {
        Some(Kind::Image) => None,
        _ => Some(super::open_engine(ctx)?),
    };
    let store = match args.kind {
        Some(Kind::Container) => None,
        _ => Some(super::open_store(ctx)?),
    };
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in &args.names {
        let container = engine.as_ref().and_then(|e| match e.get(name) {
            Ok(r) => Some(Ok(e.inspect(&r))),
            Err(isola_engine::Error::NoSuchContainer(_)) => None,
            Err(err) => Some(Err(anyhow::Error::from(err))),
        });
        let object = container.or_else(|| {
            let s = store.as_ref()?;
            match s.resolve(name) {
                Ok(id) => Some(s.inspect(&id).map_err(anyhow::Error::from)),
                Err(isola_image::Error::NoSuchImage(_)) => None,
                Err(e) => Some(Err(e.into())),
            }
        });
        match object {
            Some(Ok(v)) => found.push(v),
            Some(Err(e)) => missing.push(crate::util::error_chain(&e)),
            None => missing.push(match args.kind {
                Some(Kind::Container) => format!("no such container: {name}"),
                Some(Kind::Image) => format!("no such image: {name}"),
                None => format!("no such object: {name}"),
            }),
        }
    }
    match &args.format {
        Some(t) => {
            for v in &found {
                println!("{}", render(t, v)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&found)?),
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(missing.join("; ")))
    }
}

/// Fills a template's `{{.A.B}}` (the value at that path; strings bare, others as JSON) and
/// `{{json .A.B}}` (as JSON) references from `v`; `{{.}}` or `{{json .}}` is the whole object.
pub fn render(template: &str, v: &Value) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| anyhow!("--format {template:?}: unclosed {{{{"))?;
        let expr = rest[start + 2..start + end].trim();
        let (as_json, path) = match expr.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, expr),
        };
        let path = path
            .strip_prefix('.')
            .ok_or_else(|| anyhow!("--format {template:?}: expected .Field in {{{{{expr}}}}}"))?;
        let mut cur = v;
        for key in path.split('.').filter(|k| !k.is_empty()) {
            cur = cur
                .get(key)
                .ok_or_else(|| anyhow!("--format {template:?}: no field {key:?}"))?;
        }
        match cur {
            Value::String(s) if !as_json => out.push_str(s),
            Value::Null if !as_json => out.push_str("<no value>"),
            other => out.push_str(&other.to_string()),
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::render;
    use serde_json::json;

    #[test]
    fn templates() {
        let v = json!({"State": {"Pid": 42, "Status": "running"}, "Name": "/x", "Env": ["A=1"]});
        assert_eq!(render("{{.State.Pid}}", &v).unwrap(), "42");
        assert_eq!(
            render("{{ .Name }} {{.State.Status}}", &v).unwrap(),
            "/x running"
        );
        assert_eq!(render("{{json .Env}}", &v).unwrap(), "[\"A=1\"]");
        assert_eq!(render("pid={{.State.Pid}};", &v).unwrap(), "pid=42;");
        assert!(render("{{.Nope}}", &v).is_err());
        assert!(render("{{.State", &v).is_err());
    }
}
