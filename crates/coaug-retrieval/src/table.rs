//! The zero-shot table and the composition sweep of `coaug eval`: which augmentations each
//! column carries, where each column's BM25 index is cached, and the sweep of compositions and
//! stop lists with every cell's paired difference from plain BM25. The CLI prints and writes
//! what these return.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use coaug_data::{Document, Qrels, Query};
use coaug_eval::{evaluate, paired_bootstrap, EvalOptions, Metrics, PairedDelta, DEFAULT_RESAMPLES};
use coaug_index::AnalyzerConfig;
use serde::Serialize;

use crate::augmentations::Augmentations;
use crate::bm25::{AugmentedBm25, QueryToRank};
use crate::composition::{Composition, DocField};

/// Every cutoff BEIR reports.
pub const KS: [usize; 6] = [1, 3, 5, 10, 100, 1000];

/// A column of the table: the plain retriever, one or both sides augmented by the base model, or
/// both sides augmented by an RL-trained policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Plain,
    Query,
    Docs,
    Both,
    BothRl,
}

impl Column {
    /// The four zero-shot columns, in the table's order.
    pub const ZERO_SHOT: [Column; 4] = [Column::Plain, Column::Query, Column::Docs, Column::Both];

    /// (queries augmented, documents augmented).
    pub fn sides(self) -> (bool, bool) {
        match self {
            Column::Plain => (false, false),
            Column::Query => (true, false),
            Column::Docs => (false, true),
            Column::Both | Column::BothRl => (true, true),
        }
    }

    /// The key in `table.json` and the run files.
    pub fn key(self) -> &'static str {
        match self {
            Column::Plain => "none",
            Column::Query => "query",
            Column::Docs => "docs",
            Column::Both => "both",
            Column::BothRl => "both_rl",
        }
    }

    /// The column's label; `plain` names the retriever without augmentation ("BM25", "dense").
    pub fn label(self, plain: &'static str) -> &'static str {
        match self {
            Column::Plain => plain,
            Column::Query => "+query aug",
            Column::Docs => "+doc aug",
            Column::Both => "+both",
            Column::BothRl => "+both (RL-trained)",
        }
    }

    /// Whose augmentations the column's documents carry (part of its index's cache key).
    pub fn augmentation_tag(self) -> &'static str {
        match self {
            Column::BothRl => "rl",
            _ => "base",
        }
    }
}

/// The queries to rank, with their expansions when `augs` is given.
pub fn to_rank<'a>(queries: &'a [Query], augs: Option<&'a Augmentations>) -> Vec<QueryToRank<'a>> {
    queries.iter().map(|q| QueryToRank { id: &q.id, text: &q.text, expansions: augs.map_or(&[], |a| a.expansions(&q.id)) }).collect()
}

/// Where the BM25 indexes of a dataset's columns live: one folder per analysis, document placement
/// and augmentation set under `root`. Weights apply at search time, so they share an index; the
/// manifest inside each folder says what it was built from, so a stale one is rebuilt.
pub struct ColumnIndexes<'a> {
    pub root: PathBuf,
    pub dataset: &'a str,
    pub corpus: &'a [Document],
    /// The plain index of the default stop list, when the caller keeps it elsewhere (`--index-dir`).
    pub plain_dir: Option<&'a Path>,
}

impl ColumnIndexes<'_> {
    /// The folder of the index with `augs` (tagged `tag`) placed as `composition` says, analysed
    /// by the stop list `analyzer_name`; `None`: the plain corpus.
    pub fn dir(&self, augmented: Option<&str>, composition: &Composition, analyzer_name: &str) -> PathBuf {
        let placement = match composition.doc_field {
            DocField::Body => "body",
            DocField::Own(_) => "own",
        };
        match (augmented, composition.doc_field) {
            (Some(tag), _) => self.root.join(format!("{}-augmented-{tag}-{placement}-{analyzer_name}", self.dataset).to_lowercase()),
            // The plain corpus: the placement changes nothing without augmentations, but an
            // own-field index must have the field, so it gets its own folder.
            (None, DocField::Body) => match self.plain_dir {
                Some(dir) => dir.to_path_buf(),
                None => plain_index_dir(&self.root, self.dataset, analyzer_name),
            },
            (None, DocField::Own(_)) => self.root.join(format!("{}-own-{analyzer_name}", self.dataset)),
        }
    }

    /// Opens (or builds) the index of a column: the corpus with `augs` (tagged `tag`) when the
    /// column augments documents.
    pub fn open(
        &self,
        augs: Option<(&Augmentations, &str)>,
        composition: Composition,
        analyzer_name: &str,
        analyzer: &AnalyzerConfig,
    ) -> Result<AugmentedBm25> {
        let none = Augmentations::default();
        let dir = self.dir(augs.map(|(_, tag)| tag), &composition, analyzer_name);
        AugmentedBm25::open_or_build(&dir, self.corpus, augs.map_or(&none, |(a, _)| a), composition, analyzer)
    }
}

/// The plain index of a dataset under `root` (one folder per stop list other than Lucene's, whose
/// folder is the dataset's name, as it was before stop lists were a setting).
pub fn plain_index_dir(root: &Path, dataset: &str, stop_list: &str) -> PathBuf {
    match stop_list {
        "lucene" => root.join(dataset),
        other => root.join(format!("{dataset}-{other}")),
    }
}

/// Each column's nDCG@10 against the first (plain) one, paired over queries.
pub fn paired_vs_plain(results: &[(Column, &Metrics)]) -> Vec<(Column, PairedDelta)> {
    let Some(&(Column::Plain, base)) = results.first() else {
        return Vec::new();
    };
    results[1..].iter().map(|&(c, m)| (c, paired_bootstrap(base, m, "NDCG@10", DEFAULT_RESAMPLES, 0))).collect()
}

/// One row of a sweep: a stop list and composition (none: plain BM25), the nDCG@10 of each
/// column and its paired difference from plain BM25 with the same stop list.
#[derive(Debug, Serialize)]
pub struct SweepRow {
    pub stop_words: String,
    pub composition: Option<Composition>,
    pub columns: Vec<SweepCell>,
}

#[derive(Debug, Serialize)]
pub struct SweepCell {
    pub column: &'static str,
    pub ndcg_at_10: f64,
    pub recall_at_100: f64,
    /// Against plain BM25 with the same stop list (for the plain rows: against the first stop list).
    pub delta: PairedDelta,
}

impl SweepCell {
    fn new(column: &'static str, metrics: &Metrics, reference: &Metrics) -> Self {
        SweepCell {
            column,
            ndcg_at_10: metrics.mean.get("NDCG@10").copied().unwrap_or(0.0),
            recall_at_100: metrics.mean.get("Recall@100").copied().unwrap_or(0.0),
            delta: paired_bootstrap(reference, metrics, "NDCG@10", DEFAULT_RESAMPLES, 0),
        }
    }
}

/// What a sweep ranks and judges.
pub struct SweepInput<'a> {
    pub queries: &'a [Query],
    pub qrels: &'a Qrels,
    /// The augmented columns and their augmentations (the plain column is always measured).
    pub columns: &'a [(Column, &'a Augmentations)],
    pub compositions: &'a [Composition],
    /// (name, analysis) of each stop list; the first is the reference of the plain rows.
    pub analyzers: &'a [(String, AnalyzerConfig)],
    pub top_k: usize,
    pub options: &'a EvalOptions,
}

/// Every combination of stop list and composition on every augmented column, against plain BM25
/// with the same stop list. `progress` sees each finished row.
pub fn sweep(indexes: &ColumnIndexes<'_>, input: &SweepInput<'_>, mut progress: impl FnMut(&SweepRow)) -> Result<Vec<SweepRow>> {
    let augmented: Vec<&(Column, &Augmentations)> = input.columns.iter().filter(|(c, _)| c.sides() != (false, false)).collect();
    let evaluate_run = |run| evaluate(input.qrels, &run, &KS, input.options);
    let mut rows: Vec<SweepRow> = Vec::new();
    let mut first_plain: Option<Metrics> = None;
    for (name, analyzer) in input.analyzers {
        let plain_index = indexes.open(None, Composition::default(), name, analyzer)?;
        let plain = evaluate_run(plain_index.rank(&to_rank(input.queries, None), input.top_k));
        let reference = first_plain.get_or_insert_with(|| plain.clone());
        rows.push(SweepRow { stop_words: name.clone(), composition: None, columns: vec![SweepCell::new("BM25", &plain, reference)] });
        progress(rows.last().expect("just pushed"));
        // One index per document placement and augmentation set; weights vary at search time.
        let mut opened: HashMap<PathBuf, AugmentedBm25> = HashMap::new();
        for &composition in input.compositions {
            let mut cells = Vec::new();
            for (column, augs) in &augmented {
                let (aug_queries, aug_docs) = column.sides();
                let docs = aug_docs.then_some((*augs, column.augmentation_tag()));
                let dir = indexes.dir(docs.map(|(_, tag)| tag), &composition, name);
                if !opened.contains_key(&dir) {
                    opened.insert(dir.clone(), indexes.open(docs, composition, name, analyzer)?);
                }
                let ranked =
                    opened[&dir].with_composition(composition)?.rank(&to_rank(input.queries, aug_queries.then_some(*augs)), input.top_k);
                cells.push(SweepCell::new(column.label("BM25"), &evaluate_run(ranked), &plain));
            }
            rows.push(SweepRow { stop_words: name.clone(), composition: Some(composition), columns: cells });
            progress(rows.last().expect("just pushed"));
        }
    }
    Ok(rows)
}

/// The sweep as a markdown table, under a line naming what was measured.
pub fn sweep_markdown(title: &str, rows: &[SweepRow]) -> String {
    let mut md = format!(
        "{title}: nDCG@10, and in brackets its paired difference from plain BM25 with the same stop words (mean [95% bootstrap \
         interval])\n\n"
    );
    let columns: Vec<&str> = rows.iter().find(|r| r.composition.is_some()).map_or(vec![], |r| r.columns.iter().map(|c| c.column).collect());
    md.push_str(&format!("| stop words | query weight | doc field | samples | BM25 | {} |\n", columns.join(" | ")));
    md.push_str(&format!("|{}\n", "---|".repeat(5 + columns.len())));
    for row in rows {
        let cells: Vec<String> = row
            .columns
            .iter()
            .map(|c| format!("{:.4} ({:+.4} [{:+.4}, {:+.4}])", c.ndcg_at_10, c.delta.mean, c.delta.low, c.delta.high))
            .collect();
        match &row.composition {
            None => md.push_str(&format!("| {} | – | – | – | {} |{}\n", row.stop_words, cells[0], " |".repeat(columns.len()))),
            Some(c) => md.push_str(&format!(
                "| {} | {} | {} | {} | | {} |\n",
                row.stop_words,
                c.query_weight,
                c.doc_field,
                c.sample_fusion,
                cells.join(" | ")
            )),
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use coaug_data::Document;

    fn doc(id: &str, text: &str) -> Document {
        Document { id: id.into(), title: String::new(), text: text.into() }
    }

    #[test]
    fn columns_get_their_own_index_folders_and_plain_body_reuses_the_plain_index() {
        let corpus = [doc("a", "x")];
        let root = PathBuf::from("/cache/indexes");
        let cache = ColumnIndexes { root: root.clone(), dataset: "NF", corpus: &corpus, plain_dir: None };
        let body = Composition { doc_field: DocField::Body, ..Composition::default() };
        let own = Composition { doc_field: DocField::Own(0.05), ..Composition::default() };
        assert_eq!(cache.dir(None, &body, "nltk"), root.join("NF-nltk"));
        assert_eq!(cache.dir(None, &body, "lucene"), root.join("NF"));
        assert_eq!(cache.dir(None, &own, "nltk"), root.join("NF-own-nltk"));
        assert_eq!(cache.dir(Some("base"), &own, "nltk"), root.join("nf-augmented-base-own-nltk"));
        assert_eq!(cache.dir(Some("rl"), &own, "nltk"), root.join("nf-augmented-rl-own-nltk"));
        assert_eq!(cache.dir(Some("base"), &body, "nltk"), root.join("nf-augmented-base-body-nltk"));
        let elsewhere = ColumnIndexes { plain_dir: Some(Path::new("/x")), ..cache };
        assert_eq!(elsewhere.dir(None, &body, "nltk"), PathBuf::from("/x"));
    }

    #[test]
    fn sweep_rows_measure_every_composition_against_plain_bm25() {
        let corpus = [doc("d1", "statins lower cholesterol"), doc("d2", "breast cancer risk"), doc("d3", "vitamin d and bone health")];
        let queries = [Query { id: "q1".into(), text: "cholesterol".into() }, Query { id: "q2".into(), text: "cancer".into() }];
        let mut qrels = Qrels::new();
        qrels.insert("q1", "d1", 1);
        qrels.insert("q2", "d2", 1);
        let mut augs = Augmentations::default();
        // q2's expansion points at the wrong document: heavily weighted it ranks d3 first.
        augs.queries.insert("q2".into(), vec!["vitamin bone health vitamin bone".into()]);
        let dir = tempfile::tempdir().unwrap();
        let cache = ColumnIndexes { root: dir.path().to_path_buf(), dataset: "tiny", corpus: &corpus, plain_dir: None };
        let compositions = [
            Composition { query_weight: crate::QueryWeight::Share(0.9), ..Composition::default() },
            Composition { query_weight: crate::QueryWeight::Fixed(1.0), ..Composition::default() },
        ];
        let analyzers = [("nltk".to_string(), crate::StopList::Nltk.analyzer())];
        let input = SweepInput {
            queries: &queries,
            qrels: &qrels,
            columns: &[(Column::Query, &augs)],
            compositions: &compositions,
            analyzers: &analyzers,
            top_k: 10,
            options: &EvalOptions::default(),
        };
        let mut seen = 0;
        let rows = sweep(&cache, &input, |_| seen += 1).unwrap();
        assert_eq!((rows.len(), seen), (3, 3));
        assert!(rows[0].composition.is_none() && (rows[0].columns[0].ndcg_at_10 - 1.0).abs() < 1e-9);
        // A tenth of the weight leaves q2's document on top; the plain q + a does not.
        assert!((rows[1].columns[0].ndcg_at_10 - 1.0).abs() < 1e-9, "{rows:?}");
        assert!(rows[2].columns[0].ndcg_at_10 < 0.9 && rows[2].columns[0].delta.mean < 0.0, "{rows:?}");
        let md = sweep_markdown("tiny / test", &rows);
        assert_eq!(md.lines().filter(|l| l.starts_with("| nltk")).count(), 3, "{md}");
    }
}
