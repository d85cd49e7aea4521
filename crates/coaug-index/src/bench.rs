//! Timing helpers for `coaug bench bm25`: index build throughput and search throughput at a
//! given thread count. They measure; they assert nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::index::Bm25Index;
use crate::manifest::IndexConfig;
use crate::schema::IndexDoc;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BuildTiming {
    pub num_docs: usize,
    /// Building the tantivy index on disk (analysis, writing, merging).
    pub build: Duration,
    /// Opening it: reading ids and loading postings into memory.
    pub open: Duration,
}

impl BuildTiming {
    pub fn docs_per_sec(&self) -> f64 {
        self.num_docs as f64 / self.build.as_secs_f64()
    }
}

/// Builds (always, never reusing) an index of `docs` in `dir` and reopens it, timing both.
pub fn time_build(dir: &Path, docs: &[IndexDoc], config: &IndexConfig) -> Result<(Bm25Index, BuildTiming)> {
    let start = Instant::now();
    let built = Bm25Index::build(dir, docs, config)?;
    let build = start.elapsed();
    drop(built);
    let start = Instant::now();
    let index = Bm25Index::open(dir)?;
    let open = start.elapsed();
    Ok((index, BuildTiming { num_docs: docs.len(), build, open }))
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchTiming {
    pub threads: usize,
    pub k: usize,
    /// Queries searched in total (whole passes over the query set).
    pub queries: usize,
    pub elapsed: Duration,
}

impl SearchTiming {
    pub fn queries_per_sec(&self) -> f64 {
        self.queries as f64 / self.elapsed.as_secs_f64()
    }
}

/// Searches all `queries` for their top `k` on `threads` threads, in repeated passes until
/// `min_time` has passed (at least one pass; one untimed warm-up pass first).
pub fn time_search<Q: AsRef<str> + Sync>(
    index: &Bm25Index,
    queries: &[Q],
    k: usize,
    threads: usize,
    min_time: Duration,
) -> Result<SearchTiming> {
    index.search_batch_with_threads(queries, k, threads)?;
    let start = Instant::now();
    let mut searched = 0;
    loop {
        let hits = index.search_batch_with_threads(queries, k, threads)?;
        std::hint::black_box(hits);
        searched += queries.len();
        if start.elapsed() >= min_time {
            break;
        }
    }
    Ok(SearchTiming { threads, k, queries: searched, elapsed: start.elapsed() })
}

/// The same measurement with tantivy's own collector, one thread, for comparison.
pub fn time_tantivy_search<Q: AsRef<str>>(index: &Bm25Index, queries: &[Q], k: usize, min_time: Duration) -> Result<SearchTiming> {
    let start = Instant::now();
    let mut searched = 0;
    loop {
        for q in queries {
            std::hint::black_box(index.search_with_tantivy(q.as_ref(), k)?);
        }
        searched += queries.len();
        if start.elapsed() >= min_time {
            break;
        }
    }
    Ok(SearchTiming { threads: 1, k, queries: searched, elapsed: start.elapsed() })
}
