//! A BEIR dataset directory: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::corpus::CorpusReader;
use crate::error::{DataError, Result};
use crate::qrels_tsv::{read_qrels, read_qrels_with_stats};
use crate::queries::read_queries;
use crate::types::{Document, Qrels, Query};
use crate::validate::{cross_check, ValidationReport};

const CORPUS_FILE: &str = "corpus.jsonl";
const QUERIES_FILE: &str = "queries.jsonl";
const QRELS_DIR: &str = "qrels";

/// A directory known to have the BEIR layout. Opening checks the layout only; the files are
/// read (and validated) by the methods that need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    root: PathBuf,
    splits: Vec<String>,
}

/// One split ready for retrieval and evaluation: judgements for unknown queries are already
/// dropped, and `queries` holds only the judged ones, in `queries.jsonl` order.
#[derive(Debug, Clone)]
pub struct LoadedSplit {
    pub corpus: Vec<Document>,
    pub queries: Vec<Query>,
    pub qrels: Qrels,
    pub report: ValidationReport,
}

impl LoadedSplit {
    /// Keeps the first `n` judged queries (in the queries file's order) and only their
    /// judgements: a smaller, fixed tuning set.
    pub fn keep_first_queries(&mut self, n: usize) {
        self.queries.truncate(n);
        let kept: std::collections::HashSet<String> = self.queries.iter().map(|q| q.id.clone()).collect();
        self.qrels.retain_queries(|id| kept.contains(id));
    }
}

impl Dataset {
    /// Fails with a list of what is missing when `dir` is not a dataset.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let root = dir.as_ref().to_path_buf();
        if !root.is_dir() {
            return Err(DataError::NoSuchDirectory { path: root });
        }
        let splits = list_splits(&root.join(QRELS_DIR))?;
        let mut missing = Vec::new();
        for file in [CORPUS_FILE, QUERIES_FILE] {
            if !root.join(file).is_file() {
                missing.push(file.to_owned());
            }
        }
        if splits.is_empty() {
            missing.push(format!("{QRELS_DIR}/<split>.tsv"));
        }
        if !missing.is_empty() {
            let nested = nested_datasets(&root);
            return Err(DataError::NotADataset { dir: root, missing, nested });
        }
        Ok(Self { root, splits })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory's name, which BEIR uses as the dataset's name.
    pub fn name(&self) -> String {
        self.root.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }

    /// Names of the `qrels/*.tsv` files, sorted.
    pub fn splits(&self) -> Vec<String> {
        self.splits.clone()
    }

    pub fn corpus_path(&self) -> PathBuf {
        self.root.join(CORPUS_FILE)
    }

    pub fn queries_path(&self) -> PathBuf {
        self.root.join(QUERIES_FILE)
    }

    pub fn qrels_path(&self, split: &str) -> Result<PathBuf> {
        if self.splits.iter().any(|s| s == split) {
            Ok(self.root.join(QRELS_DIR).join(format!("{split}.tsv")))
        } else {
            Err(DataError::UnknownSplit { dir: self.root.clone(), split: split.to_owned(), available: self.splits.clone() })
        }
    }

    /// Streams the corpus.
    pub fn corpus(&self) -> Result<CorpusReader> {
        CorpusReader::open(self.corpus_path())
    }

    pub fn load_corpus(&self) -> Result<Vec<Document>> {
        self.corpus()?.collect()
    }

    pub fn queries(&self) -> Result<Vec<Query>> {
        read_queries(self.queries_path())
    }

    pub fn qrels(&self, split: &str) -> Result<Qrels> {
        read_qrels(self.qrels_path(split)?)
    }

    /// Loads everything a split needs and cross-checks the qrels against corpus and queries.
    /// Dangling references are warned about (`tracing`) and counted in the report, not fatal.
    pub fn load_split(&self, split: &str) -> Result<LoadedSplit> {
        let qrels_path = self.qrels_path(split)?;
        let (mut qrels, stats) = read_qrels_with_stats(&qrels_path)?;
        let mut queries = self.queries()?;
        let corpus = self.load_corpus()?;
        let report = cross_check(&qrels_path, &corpus, &queries, &mut qrels, stats, split);
        queries.retain(|q| qrels.get(&q.id).is_some());
        Ok(LoadedSplit { corpus, queries, qrels, report })
    }
}

fn list_splits(qrels_dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(qrels_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(Vec::new()),
        Err(e) => return Err(DataError::io(qrels_dir, e)),
    };
    let mut splits = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| DataError::io(qrels_dir, e))?.path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == "tsv") {
            if let Some(stem) = path.file_stem() {
                splits.push(stem.to_string_lossy().into_owned());
            }
        }
    }
    splits.sort();
    Ok(splits)
}

/// Sub-directories that are datasets: pointing at the data directory instead of one dataset in
/// it is the likeliest mistake, and the error can say so.
fn nested_datasets(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(CORPUS_FILE).is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
