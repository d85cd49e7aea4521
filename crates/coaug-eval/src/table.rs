//! Result tables for the command line (plain text) and for reports (Markdown).

use crate::evaluate::Metrics;
use crate::measure::Measure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TableStyle {
    /// Columns padded and separated by ` | `, a dashed rule under the header.
    #[default]
    Plain,
    /// A GitHub-flavoured Markdown table, numbers right-aligned.
    Markdown,
}

/// Decimal places shown for metric values (BEIR reports 5, papers usually 3-4).
const DECIMALS: usize = 4;

/// One system's metrics: rows are `measures`, columns are the cutoffs `ks`.
///
/// ```text
///        | @1     | @10    | @100
/// -------+--------+--------+-------
/// NDCG   | 0.4133 | 0.3146 | 0.2715
/// ```
pub fn metrics_grid(metrics: &Metrics, measures: &[Measure], ks: &[usize], style: TableStyle) -> String {
    let header = std::iter::once(String::new()).chain(ks.iter().map(|k| format!("@{k}"))).collect();
    let rows = measures
        .iter()
        .map(|&m| std::iter::once(m.name().to_string()).chain(ks.iter().map(|&k| format_value(metrics.get(m, k)))).collect())
        .collect();
    Table { header, rows }.render(style)
}

/// Several systems side by side: rows are metric keys (e.g. `"NDCG@10"`), one column per system.
///
/// ```text
/// metric  | BM25   | +query aug
/// --------+--------+-----------
/// NDCG@10 | 0.3146 |     0.3301
/// ```
pub fn comparison_table(systems: &[(&str, &Metrics)], keys: &[&str], style: TableStyle) -> String {
    let header = std::iter::once("metric".to_string()).chain(systems.iter().map(|(name, _)| name.to_string())).collect();
    let rows = keys
        .iter()
        .map(|&key| std::iter::once(key.to_string()).chain(systems.iter().map(|(_, m)| format_value(m.mean.get(key).copied()))).collect())
        .collect();
    Table { header, rows }.render(style)
}

fn format_value(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.DECIMALS$}"))
}

/// A grid of cells whose first column holds labels and the others values.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn render(&self, style: TableStyle) -> String {
        let widths = self.column_widths();
        let mut lines = vec![self.render_row(&self.header, &widths, style)];
        lines.push(match style {
            TableStyle::Plain => widths.iter().map(|&w| "-".repeat(w)).collect::<Vec<_>>().join("-+-"),
            TableStyle::Markdown => {
                let cells = widths.iter().enumerate().map(|(i, &w)| if i == 0 { format!("{:-<w$}", ":") } else { format!("{:->w$}", ":") });
                format!("| {} |", cells.collect::<Vec<_>>().join(" | "))
            }
        });
        lines.extend(self.rows.iter().map(|row| self.render_row(row, &widths, style)));
        let mut text = lines.iter().map(|l| l.trim_end()).collect::<Vec<_>>().join("\n");
        text.push('\n');
        text
    }

    fn render_row(&self, cells: &[String], widths: &[usize], style: TableStyle) -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, &w))| if i == 0 { format!("{cell:<w$}") } else { format!("{cell:>w$}") })
            .collect();
        match style {
            TableStyle::Plain => padded.join(" | "),
            TableStyle::Markdown => format!("| {} |", padded.join(" | ")),
        }
    }

    /// Widest cell per column; Markdown's `:--`/`--:` rule needs at least 3.
    fn column_widths(&self) -> Vec<usize> {
        (0..self.header.len())
            .map(|col| std::iter::once(&self.header).chain(&self.rows).map(|row| row[col].chars().count()).max().unwrap_or(0).max(3))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn metrics(values: &[(&str, f64)]) -> Metrics {
        let mean: BTreeMap<String, f64> = values.iter().map(|&(k, v)| (k.to_string(), v)).collect();
        Metrics { num_queries: 1, mean, per_query: BTreeMap::new() }
    }

    #[test]
    fn plain_grid_has_measures_by_cutoffs() {
        let m = metrics(&[("NDCG@1", 0.5), ("NDCG@10", 0.25), ("P@1", 1.0)]);
        let table = metrics_grid(&m, &[Measure::Ndcg, Measure::Precision], &[1, 10], TableStyle::Plain);
        let expected =
            concat!("     |     @1 |    @10\n", "-----+--------+-------\n", "NDCG | 0.5000 | 0.2500\n", "P    | 1.0000 |      -\n",);
        assert_eq!(table, expected);
    }

    #[test]
    fn markdown_comparison_has_systems_as_columns() {
        let bm25 = metrics(&[("NDCG@10", 0.31464), ("Recall@100", 0.2466)]);
        let aug = metrics(&[("NDCG@10", 0.33)]);
        let table = comparison_table(&[("BM25", &bm25), ("+query aug", &aug)], &["NDCG@10", "Recall@100"], TableStyle::Markdown);
        let expected = "\
| metric     |   BM25 | +query aug |
| :--------- | -----: | ---------: |
| NDCG@10    | 0.3146 |     0.3300 |
| Recall@100 | 0.2466 |          - |
";
        assert_eq!(table, expected);
    }

    #[test]
    fn plain_comparison_aligns_columns() {
        let a = metrics(&[("MRR@10", 0.5)]);
        let table = comparison_table(&[("a-long-system-name", &a)], &["MRR@10"], TableStyle::Plain);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "metric | a-long-system-name");
        assert_eq!(lines[2], "MRR@10 |             0.5000");
        assert_eq!(lines[1].len(), lines[0].len());
    }
}
