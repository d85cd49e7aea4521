//! BM25 over a corpus whose documents may carry augmentations, searched with composed queries.

use std::path::Path;

use anyhow::Context;
use coaug_data::Document;
use coaug_eval::{fuse_runs, Fusion, Run};
use coaug_index::{AnalyzerConfig, Bm25Index, Hit, IndexConfig, IndexDoc, WeightedQuery};

use crate::augmentations::Augmentations;
use crate::composition::Composition;

/// One query to rank: its id, its text and its expansions (none: the query alone).
#[derive(Debug, Clone, Copy)]
pub struct QueryToRank<'a> {
    pub id: &'a str,
    pub text: &'a str,
    pub expansions: &'a [String],
}

/// A BM25 index of a corpus with its document augmentations placed as the composition says, and
/// the composition that forms the queries searched in it.
pub struct AugmentedBm25 {
    index: Bm25Index,
    composition: Composition,
}

impl AugmentedBm25 {
    /// Opens the index in `dir` if it holds exactly this corpus, these augmentations and this
    /// analysis, or (re)builds it there. Only the placement of the augmentation shapes the index;
    /// its weight and the query weight apply at search time.
    pub fn open_or_build(
        dir: &Path,
        corpus: &[Document],
        augmentations: &Augmentations,
        composition: Composition,
        analyzer: &AnalyzerConfig,
    ) -> anyhow::Result<Self> {
        let docs = Self::index_docs(corpus, augmentations, &composition);
        let config = IndexConfig { analyzer: analyzer.clone(), fields: composition.field_setup() };
        let started = std::time::Instant::now();
        let index =
            Bm25Index::open_or_build(dir, &docs, &config).with_context(|| format!("building the BM25 index in {}", dir.display()))?;
        if index.was_built() {
            tracing::info!(docs = index.num_docs(), secs = started.elapsed().as_secs_f64(), dir = %dir.display(), "built BM25 index");
        }
        Ok(Self { index, composition })
    }

    /// Wraps an index already built with this composition's field setup.
    pub fn from_index(index: Bm25Index, composition: Composition) -> anyhow::Result<Self> {
        anyhow::ensure!(
            index.config().fields == composition.field_setup(),
            "the index in {} places augmentations as {:?}, the composition asks for {:?}",
            index.dir().display(),
            index.config().fields.augmentation,
            composition.doc_field.placement()
        );
        Ok(Self { index, composition })
    }

    /// The corpus as indexed: every document with its augmentation, if any.
    pub fn index_docs(corpus: &[Document], augmentations: &Augmentations, composition: &Composition) -> Vec<IndexDoc> {
        corpus.iter().map(|d| composition.index_doc(d, augmentations.document(&d.id))).collect()
    }

    pub fn index(&self) -> &Bm25Index {
        &self.index
    }

    pub fn composition(&self) -> &Composition {
        &self.composition
    }

    /// A copy searching the same index with another composition of the same field setup
    /// (query weight, augmentation field weight, sample fusion): how a sweep tries weights
    /// without rebuilding.
    pub fn with_composition(&self, composition: Composition) -> anyhow::Result<AugmentedBm25Ref<'_>> {
        anyhow::ensure!(composition.field_setup() == self.composition.field_setup(), "a different document placement needs another index");
        Ok(AugmentedBm25Ref { index: &self.index, composition })
    }

    /// The top `k` documents of every query, as a run keyed by query and document id.
    pub fn rank(&self, queries: &[QueryToRank<'_>], k: usize) -> Run {
        rank(&self.index, &self.composition, queries, k)
    }
}

/// [`AugmentedBm25`] borrowed with another composition (see [`AugmentedBm25::with_composition`]).
pub struct AugmentedBm25Ref<'a> {
    index: &'a Bm25Index,
    composition: Composition,
}

impl AugmentedBm25Ref<'_> {
    pub fn rank(&self, queries: &[QueryToRank<'_>], k: usize) -> Run {
        rank(self.index, &self.composition, queries, k)
    }
}

/// The top `k` hits of one query in `index`, composed as `composition` says: what `coaug search`
/// and `coaug serve` return, ranked as [`AugmentedBm25::rank`] ranks a batch. An index without an
/// augmentation field ignores the composition's field weight.
pub fn search_hits(index: &Bm25Index, composition: &Composition, query: &QueryToRank<'_>, k: usize) -> Vec<Hit> {
    let queries = composition.bm25_queries(index.analyzer(), query.text, query.expansions);
    match index.search_weighted(&queries, composition.field_weights(), k).as_slice() {
        [one] => one.clone(),
        lists => rrf_hits(lists, k),
    }
}

/// Reciprocal rank fusion (k = 60, as [`Fusion::RRF`]) of several hit lists, best first.
fn rrf_hits(lists: &[Vec<Hit>], k: usize) -> Vec<Hit> {
    let mut fused: std::collections::HashMap<u32, f64> = std::collections::HashMap::new();
    for list in lists {
        for (rank, hit) in list.iter().enumerate() {
            *fused.entry(hit.doc).or_default() += 1.0 / (60.0 + (rank + 1) as f64);
        }
    }
    let mut hits: Vec<Hit> = fused.into_iter().map(|(doc, score)| Hit { doc, score: score as f32 }).collect();
    hits.sort_by(coaug_index::hit_order);
    hits.truncate(k);
    hits
}

fn rank(index: &Bm25Index, composition: &Composition, queries: &[QueryToRank<'_>], k: usize) -> Run {
    let analyzer = index.analyzer();
    let per_query: Vec<Vec<WeightedQuery>> = queries.iter().map(|q| composition.bm25_queries(analyzer, q.text, q.expansions)).collect();
    let flat: Vec<WeightedQuery> = per_query.iter().flatten().cloned().collect();
    let hits = index.search_weighted(&flat, composition.field_weights(), k);
    let mut hits = hits.into_iter();
    let mut run = Run::new();
    for (query, searched) in queries.iter().zip(&per_query) {
        let lists: Vec<Vec<Hit>> = hits.by_ref().take(searched.len()).collect();
        if let [only] = lists.as_slice() {
            insert_hits(&mut run, index, query.id, only);
        } else {
            let runs: Vec<Run> = lists
                .iter()
                .map(|list| {
                    let mut r = Run::new();
                    insert_hits(&mut r, index, query.id, list);
                    r
                })
                .collect();
            let fused = fuse_runs(&runs.iter().collect::<Vec<_>>(), Fusion::RRF);
            let mut ranked = fused.ranking(query.id, coaug_eval::ScorePrecision::F64);
            ranked.truncate(k);
            run.insert_ranking(query.id.to_string(), ranked);
        }
    }
    run
}

fn insert_hits(run: &mut Run, index: &Bm25Index, query: &str, hits: &[Hit]) {
    if hits.is_empty() {
        run.insert_ranking(query.to_string(), std::iter::empty());
    }
    for hit in hits {
        run.insert(query.to_string(), index.doc_id(hit.doc).to_owned(), f64::from(hit.score));
    }
}
