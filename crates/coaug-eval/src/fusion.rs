//! Fusing several runs into one: hybrid retrieval (BM25 and dense), or one query searched with
//! several texts (the original and each sampled expansion).

use std::collections::BTreeMap;

use crate::ranking::ScorePrecision;
use crate::run::Run;

/// How per-retriever rankings are combined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// Reciprocal rank fusion: Σ 1 / (k + rank), rank from 1; ignores score scales.
    Rrf { k: f64 },
    /// Min-max normalise each run's scores per query to [0, 1], then sum (a document a
    /// retriever did not return gets 0 from it).
    NormalizedSum,
}

impl Fusion {
    /// RRF with the constant of Cormack et al. (2009).
    pub const RRF: Fusion = Fusion::Rrf { k: 60.0 };
}

/// Fuses the runs query by query; the result holds every query of any input run.
pub fn fuse_runs(runs: &[&Run], fusion: Fusion) -> Run {
    let mut fused: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for run in runs {
        for (query, _) in run.iter() {
            let ranking = run.ranking(query, ScorePrecision::F64);
            let entry = fused.entry(query.clone()).or_default();
            match fusion {
                Fusion::Rrf { k } => {
                    for (rank, doc) in ranking.iter().enumerate() {
                        *entry.entry(doc.doc_id.clone()).or_default() += 1.0 / (k + (rank + 1) as f64);
                    }
                }
                Fusion::NormalizedSum => {
                    let (lo, hi) =
                        ranking.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), d| (lo.min(d.score), hi.max(d.score)));
                    let span = hi - lo;
                    for doc in &ranking {
                        // A single-score list carries no scale: every document counts fully.
                        let norm = if span > 0.0 { (doc.score - lo) / span } else { 1.0 };
                        *entry.entry(doc.doc_id.clone()).or_default() += norm;
                    }
                }
            }
        }
    }
    let mut out = Run::new();
    for (query, docs) in fused {
        if docs.is_empty() {
            out.insert_ranking(query.clone(), std::iter::empty());
        }
        for (doc, score) in docs {
            out.insert(query.clone(), doc, score);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(entries: &[(&str, &str, f64)]) -> Run {
        let mut r = Run::new();
        for (q, d, s) in entries {
            r.insert(*q, *d, *s);
        }
        r
    }

    #[test]
    fn rrf_rewards_agreement_and_ignores_scale() {
        let bm25 = run(&[("q", "a", 30.0), ("q", "b", 20.0), ("q", "c", 10.0)]);
        let dense = run(&[("q", "b", 0.9), ("q", "c", 0.8), ("q", "d", 0.1)]);
        let fused = fuse_runs(&[&bm25, &dense], Fusion::RRF);
        let s = fused.scores("q").unwrap();
        assert!((s["b"] - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-12);
        assert!((s["a"] - 1.0 / 61.0).abs() < 1e-12);
        let order: Vec<String> = fused.ranking("q", ScorePrecision::F64).into_iter().map(|d| d.doc_id).collect();
        assert_eq!(order, ["b", "c", "a", "d"]);
    }

    #[test]
    fn normalized_sum_rescales_each_run() {
        let bm25 = run(&[("q", "a", 30.0), ("q", "b", 20.0), ("q", "c", 10.0), ("p", "x", 3.0)]);
        let dense = run(&[("q", "b", 0.9), ("q", "c", 0.5), ("q", "a", 0.1)]);
        let fused = fuse_runs(&[&bm25, &dense], Fusion::NormalizedSum);
        let s = fused.scores("q").unwrap();
        assert!((s["a"] - 1.0).abs() < 1e-12);
        assert!((s["b"] - 1.5).abs() < 1e-12);
        assert!((s["c"] - 0.5).abs() < 1e-12);
        assert_eq!(fused.scores("p").unwrap()["x"], 1.0, "queries of either run are kept");
    }
}
