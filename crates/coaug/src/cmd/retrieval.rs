//! What `eval`, `index`, `search` and the benchmark share: building the BM25 index of a
//! dataset and turning hits into a scored run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use coaug_data::{Dataset, Document, Query};
use coaug_eval::Run;
use coaug_index::{AnalyzerConfig, Bm25Index, Hit, IndexConfig, IndexDoc};
use coaug_retrieval::StopList;

/// How BM25 analyses text (shared by `index`, `eval` and `search`).
#[derive(clap::Args, Debug, Clone)]
pub struct Bm25Args {
    /// Stop words dropped before stemming (k1 = 1.2, b = 0.75, Porter2 stemming either way):
    /// `nltk` (179 words), `lucene` (Lucene's 33) or `none`. `eval` takes several,
    /// comma-separated, to compare them (docs/results/sweep.md).
    #[arg(long, value_delimiter = ',', default_value = "nltk", value_name = "nltk|lucene|none")]
    pub stop_words: Vec<StopList>,
}

impl Bm25Args {
    /// (name, analysis) of every stop list asked for, the first being the main one.
    pub fn analyzers(&self) -> Vec<(String, AnalyzerConfig)> {
        self.stop_words.iter().map(|s| (s.name().to_string(), s.analyzer())).collect()
    }

    /// The one analysis of commands that take a single stop list.
    pub fn analyzer(&self) -> Result<(String, AnalyzerConfig)> {
        match self.analyzers().as_slice() {
            [one] => Ok(one.clone()),
            _ => anyhow::bail!("--stop-words takes one list here"),
        }
    }
}

/// The default place of a dataset's index: under the cache, one folder per dataset (and per stop
/// list other than Lucene's). The manifest inside says what it was built from, so a stale one is
/// rebuilt, never misused.
pub fn default_index_dir(dataset: &Dataset, stop_list: &str) -> PathBuf {
    coaug_retrieval::table::plain_index_dir(&coaug_data::cache_root().join("indexes"), &dataset.name(), stop_list)
}

pub fn open_or_build_index(dir: &Path, corpus: &[Document], analyzer: &AnalyzerConfig) -> Result<Bm25Index> {
    let docs = IndexDoc::from_documents(corpus);
    let started = std::time::Instant::now();
    let index = Bm25Index::open_or_build(dir, &docs, &plain_config(analyzer))
        .with_context(|| format!("building the BM25 index in {}", dir.display()))?;
    log_opened(&index, started);
    Ok(index)
}

/// The plain index's settings: this analysis, no augmentation field.
fn plain_config(analyzer: &AnalyzerConfig) -> IndexConfig {
    IndexConfig { analyzer: analyzer.clone(), ..IndexConfig::default() }
}

/// Says whether `index` was built (how fast) or reused.
fn log_opened(index: &Bm25Index, started: std::time::Instant) {
    let dir = index.dir().display();
    if index.was_built() {
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(docs = index.num_docs(), secs, docs_per_s = index.num_docs() as f64 / secs, %dir, "built BM25 index");
    } else {
        tracing::info!(%dir, "reusing BM25 index");
    }
}

/// [`open_or_build_index`] reading the corpus file as it indexes, one document at a time: the
/// memory of `coaug index` does not grow with the corpus's text (a million documents).
pub fn open_or_build_index_streaming(dir: &Path, dataset: &Dataset, analyzer: &AnalyzerConfig) -> Result<Bm25Index> {
    let docs = || -> Box<dyn Iterator<Item = coaug_index::Result<IndexDoc>>> {
        match dataset.corpus() {
            Ok(reader) => Box::new(reader.map(|doc| {
                doc.map(|d| IndexDoc { id: d.id, title: d.title, text: d.text, augmentation: None })
                    .map_err(|e| coaug_index::IndexError::Corpus(format!("{e:#}")))
            })),
            Err(e) => Box::new(std::iter::once(Err(coaug_index::IndexError::Corpus(format!("{e:#}"))))),
        }
    };
    let started = std::time::Instant::now();
    let index = Bm25Index::open_or_build_streaming(dir, docs, &plain_config(analyzer))
        .with_context(|| format!("building the BM25 index in {}", dir.display()))?;
    log_opened(&index, started);
    Ok(index)
}

/// The hits of every query as a run keyed by query and document id.
pub fn hits_to_run(index: &Bm25Index, queries: &[Query], hits: &[Vec<Hit>]) -> Run {
    let mut run = Run::new();
    for (query, hits) in queries.iter().zip(hits) {
        for hit in hits {
            run.insert(query.id.clone(), index.doc_id(hit.doc).to_owned(), f64::from(hit.score));
        }
    }
    run
}
