//! `isola top CONTAINER [ps OPTIONS]`: the container's processes as `docker top` shows them
//! (`ps -ef` columns, PIDs as the host sees them).

use crate::Context;

/// Arguments of `isola top`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container: name, ID or ID prefix.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// `ps` options: accepted for Docker compatibility and ignored (the columns are `ps -ef`'s).
    #[arg(
        value_name = "PS_OPTIONS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub ps_options: Vec<String>,
}

/// Prints the running container's processes.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = super::open_engine(ctx)?;
    let table = engine.top(&args.container)?;
    let mut rows = vec![table.titles];
    rows.extend(table.rows);
    print!("{}", align(&rows, 20, 3));
    Ok(())
}

/// Rows as aligned columns, as Go's tabwriter lays them out for Docker: every column but the last
/// is at least `min_width` wide and `padding` wider than its longest cell.
pub fn align<R: AsRef<[String]>>(rows: &[R], min_width: usize, padding: usize) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for r in rows {
        for (i, c) in r.as_ref().iter().enumerate() {
            let w = c.chars().count();
            match widths.get_mut(i) {
                Some(x) => *x = (*x).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for r in rows {
        let cells = r.as_ref();
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            line.push_str(c);
            if i + 1 < cells.len() {
                let width = min_width.max(widths[i] + padding);
                let pad = width.saturating_sub(c.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::align;

    #[test]
    fn aligns_like_tabwriter() {
        let rows = vec![
            vec!["CONTAINER ID".to_string(), "IMAGE".into(), "NAMES".into()],
            vec![
                "0123456789ab".to_string(),
                "busybox".into(),
                "pinger".into(),
            ],
        ];
        assert_eq!(
            align(&rows, 10, 3),
            "CONTAINER ID   IMAGE     NAMES\n0123456789ab   busybox   pinger\n"
        );
        let top = vec![vec!["UID".to_string(), "PID".into(), "CMD".into()]];
        assert_eq!(
            align(&top, 20, 3),
            format!("UID{}PID{}CMD\n", " ".repeat(17), " ".repeat(17))
        );
    }
}
