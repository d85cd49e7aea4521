//! Shared helpers for the integration tests: the shared BEIR copies and nDCG@10.

#![allow(dead_code)]

use coaug_data::{Dataset, LoadedSplit};
use coaug_eval::{evaluate, EvalOptions, Measure, Run};
use coaug_index::{Bm25Index, Hit};

/// The test split of a shared BEIR dataset (`../shared/data/beir`, or `$COAUG_DATA`).
pub fn test_split(name: &str) -> LoadedSplit {
    let dir = coaug_data::shared_beir_dir().join(name);
    Dataset::open(&dir).and_then(|d| d.load_split("test")).unwrap_or_else(|e| panic!("cannot load {}: {e}", dir.display()))
}

/// Mean nDCG@10 (trec_eval semantics) of `hits[i]` as the ranking for `split.queries[i]`.
pub fn ndcg_at_10(index: &Bm25Index, split: &LoadedSplit, hits: &[Vec<Hit>]) -> f64 {
    let mut run = Run::new();
    for (query, hits) in split.queries.iter().zip(hits) {
        for hit in hits {
            run.insert(&query.id, index.doc_id(hit.doc), f64::from(hit.score));
        }
    }
    let metrics = evaluate(&split.qrels, &run, &[10], &EvalOptions::default());
    metrics.get(Measure::Ndcg, 10).expect("nDCG@10 was computed")
}
