//! `isola images`.

use serde_json::json;

use crate::util::{human_size, time_ago};
use crate::Context;

/// Output format of `isola images`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// A JSON array of {Repository, Tag, Id, Digest, Created, Size}.
    Json,
}

/// Arguments of `isola images`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Show full image IDs.
    #[arg(long)]
    pub no_trunc: bool,
}

/// Lists images, one row per name (untagged images as `<none>`).
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let store = super::open_store(ctx)?;
    let images = store.list()?;
    if args.quiet {
        let mut seen = std::collections::HashSet::new();
        for i in &images {
            let id = if args.no_trunc {
                i.record.id.to_string()
            } else {
                i.record.id.short().to_owned()
            };
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for i in &images {
        let names: Vec<(String, String)> = if i.tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            i.tags
                .iter()
                .map(|t| {
                    (
                        t.familiar_repository(),
                        t.tag().unwrap_or("<none>").to_owned(),
                    )
                })
                .collect()
        };
        for (repo, tag) in names {
            rows.push((repo, tag, i));
        }
    }
    match args.format {
        Format::Json => {
            let out: Vec<_> = rows
                .iter()
                .map(|(repo, tag, i)| {
                    json!({
                        "Repository": repo,
                        "Tag": tag,
                        "Id": i.record.id.to_string(),
                        "Digest": i.record.manifest_digest.to_string(),
                        "Created": i.record.created,
                        "Size": i.record.size,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Table => {
            let table: Vec<[String; 5]> = rows
                .iter()
                .map(|(repo, tag, i)| {
                    let id = if args.no_trunc {
                        i.record.id.to_string()
                    } else {
                        i.record.id.short().to_owned()
                    };
                    [
                        repo.clone(),
                        tag.clone(),
                        id,
                        time_ago(i.record.created.as_deref()),
                        human_size(i.record.size),
                    ]
                })
                .collect();
            let header = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"].map(String::from);
            let mut widths = header.clone().map(|h| h.len());
            for r in &table {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.len());
                }
            }
            for r in std::iter::once(&header).chain(table.iter()) {
                let line: Vec<String> = r
                    .iter()
                    .zip(widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                println!("{}", line.join("   ").trim_end());
            }
        }
    }
    Ok(())
}
