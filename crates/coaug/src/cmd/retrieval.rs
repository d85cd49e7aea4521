//! What `eval`, `index`, `search` and the benchmark share: building the BM25 index of a
//! dataset and turning hits into a scored run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use coaug_data::{Dataset, Document, Query};
use coaug_eval::Run;
use coaug_index::{Bm25Index, Hit, IndexConfig, IndexDoc};

/// Every cutoff BEIR reports.
pub const KS: [usize; 6] = [1, 3, 5, 10, 100, 1000];

/// The default place of a dataset's index: under the cache, one folder per dataset. The
/// manifest inside says what it was built from, so a stale one is rebuilt, never misused.
pub fn default_index_dir(dataset: &Dataset) -> PathBuf {
    crate::paths::cache_root().join("indexes").join(dataset.name())
}

pub fn open_or_build_index(dir: &Path, corpus: &[Document], config: &IndexConfig) -> Result<Bm25Index> {
    let docs = IndexDoc::from_documents(corpus);
    let started = std::time::Instant::now();
    let index = Bm25Index::open_or_build(dir, &docs, config)
        .with_context(|| format!("building the BM25 index in {}", dir.display()))?;
    if index.was_built() {
        tracing::info!(docs = index.num_docs(), secs = started.elapsed().as_secs_f64(), dir = %dir.display(), "built BM25 index");
    } else {
        tracing::info!(dir = %dir.display(), "reusing BM25 index");
    }
    Ok(index)
}

/// Runs every query (top `k`) and collects the hits as a run keyed by query and document id.
pub fn retrieve(index: &Bm25Index, queries: &[Query], texts: &[String], k: usize) -> Run {
    let hits = index.search_batch(texts, k);
    hits_to_run(index, queries, &hits)
}

pub fn hits_to_run(index: &Bm25Index, queries: &[Query], hits: &[Vec<Hit>]) -> Run {
    let mut run = Run::new();
    for (query, hits) in queries.iter().zip(hits) {
        for hit in hits {
            run.insert(query.id.clone(), index.doc_id(hit.doc).to_owned(), f64::from(hit.score));
        }
    }
    run
}
