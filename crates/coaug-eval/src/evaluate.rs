//! Mean metrics over a run, with trec_eval's semantics and BEIR's conventions.
//!
//! Per query (as trec_eval with relevance_level 1):
//! - the run's documents are ranked by score, ties by document id descending
//!   ([`ranking`](crate::ranking)); with `ignore_identical_ids` a document whose id equals the
//!   query id is dropped first (BEIR's default);
//! - a document is relevant when its grade is >= 1; nDCG uses the grade as gain ([`gain`](crate::gain));
//! - `P@k` = relevant in top k / k; `Recall@k` = relevant in top k / relevant judged;
//!   `MAP@k` = sum of precision at each relevant rank <= k / relevant judged;
//!   `MRR@k` = 1 / rank of the first relevant document within the top k (0 if none).
//!
//! Averages are over the qrels' queries that have at least one relevant document; such a query
//! that is missing from the run scores 0 everywhere, and run queries without judgements are
//! ignored. (pytrec_eval would also average in judged queries whose grades are all 0, with
//! value 0; the BEIR test sets have none.)

use std::collections::BTreeMap;

use coaug_data::Qrels;

use crate::gain::ndcg_at_k;
use crate::measure::Measure;
use crate::ranking::{trec_eval_order, ScorePrecision, ScoredDoc};
use crate::run::Run;

/// Grade at or above which a document counts as relevant (trec_eval's default relevance_level).
const RELEVANCE_LEVEL: i32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EvalOptions {
    /// Drop a retrieved document whose id equals the query id (BEIR's default: true).
    pub ignore_identical_ids: bool,
    /// Precision at which scores tie (default: f32, as pytrec_eval).
    pub score_precision: ScorePrecision,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self { ignore_identical_ids: true, score_precision: ScorePrecision::F32 }
    }
}

/// Evaluation results keyed by BEIR's names (`"NDCG@10"`, `"MAP@10"`, `"Recall@100"`, `"P@10"`,
/// `"MRR@10"`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    /// Queries averaged over (judged queries with at least one relevant document).
    pub num_queries: usize,
    /// Mean over those queries; 0.0 for every key when there are none.
    pub mean: BTreeMap<String, f64>,
    /// Query id -> key -> value.
    pub per_query: BTreeMap<String, BTreeMap<String, f64>>,
}

impl Metrics {
    /// The mean of `measure` at cutoff `k`, if it was computed.
    pub fn get(&self, measure: Measure, k: usize) -> Option<f64> {
        self.mean.get(&measure.key(k)).copied()
    }
}

/// Evaluates `run` against `qrels` at every cutoff in `ks` (positive; order and repeats do not
/// matter) for all five measures.
///
/// # Panics
/// If a cutoff is 0.
pub fn evaluate(qrels: &Qrels, run: &Run, ks: &[usize], opts: &EvalOptions) -> Metrics {
    let ks = normalised_cutoffs(ks);
    let per_query: BTreeMap<String, BTreeMap<String, f64>> = qrels
        .iter()
        .filter_map(|(query_id, judgements)| {
            let docs: Vec<ScoredDoc> =
                run.scores(query_id).into_iter().flatten().map(|(doc_id, &score)| ScoredDoc::new(doc_id.clone(), score)).collect();
            let values = evaluate_query(query_id, judgements, &docs, &ks, opts)?;
            Some((query_id.clone(), values))
        })
        .collect();
    let num_queries = per_query.len();
    let mean = metric_keys(&ks)
        .map(|key| {
            let total: f64 = per_query.values().map(|values| values[&key]).sum();
            let mean = if num_queries == 0 { 0.0 } else { total / num_queries as f64 };
            (key, mean)
        })
        .collect();
    Metrics { num_queries, mean, per_query }
}

/// All five measures at each cutoff for one query, given its retrieved documents in any order.
/// `None` when the judgements hold no relevant document (trec_eval's measures are undefined).
///
/// # Panics
/// If a cutoff is 0.
pub fn evaluate_query(
    query_id: &str,
    judgements: &BTreeMap<String, i32>,
    docs: &[ScoredDoc],
    ks: &[usize],
    opts: &EvalOptions,
) -> Option<BTreeMap<String, f64>> {
    let ks = normalised_cutoffs(ks);
    let num_relevant = judgements.values().filter(|&&grade| grade >= RELEVANCE_LEVEL).count();
    if num_relevant == 0 {
        return None;
    }
    let grades = ranked_grades(query_id, judgements, docs, ks.last().copied().unwrap_or(0), opts);
    let judged: Vec<i32> = judgements.values().copied().collect();
    let relevant_at: Vec<bool> = grades.iter().map(|&g| g >= RELEVANCE_LEVEL).collect();

    let mut values = BTreeMap::new();
    for &k in &ks {
        let top = &relevant_at[..k.min(relevant_at.len())];
        let relevant_retrieved = top.iter().filter(|&&r| r).count();
        let first_relevant = top.iter().position(|&r| r);
        values.insert(Measure::Ndcg.key(k), ndcg_at_k(&grades, &judged, k));
        values.insert(Measure::Map.key(k), average_precision(top) / num_relevant as f64);
        values.insert(Measure::Recall.key(k), relevant_retrieved as f64 / num_relevant as f64);
        values.insert(Measure::Precision.key(k), relevant_retrieved as f64 / k as f64);
        values.insert(Measure::Mrr.key(k), first_relevant.map_or(0.0, |i| 1.0 / (i + 1) as f64));
    }
    Some(values)
}

/// Grades of the best `depth` documents in trec_eval's order (0 for unjudged ones).
fn ranked_grades(query_id: &str, judgements: &BTreeMap<String, i32>, docs: &[ScoredDoc], depth: usize, opts: &EvalOptions) -> Vec<i32> {
    let mut ranked: Vec<&ScoredDoc> = docs.iter().filter(|doc| !(opts.ignore_identical_ids && doc.doc_id == query_id)).collect();
    ranked.sort_unstable_by(|a, b| trec_eval_order(a, b, opts.score_precision));
    ranked.iter().take(depth).map(|doc| judgements.get(&doc.doc_id).copied().unwrap_or(0)).collect()
}

/// Sum of precision at the rank of each relevant document (not yet divided by R).
fn average_precision(relevant_at: &[bool]) -> f64 {
    let mut found = 0usize;
    let mut sum = 0.0;
    for (i, _) in relevant_at.iter().enumerate().filter(|(_, &r)| r) {
        found += 1;
        sum += found as f64 / (i + 1) as f64;
    }
    sum
}

fn normalised_cutoffs(ks: &[usize]) -> Vec<usize> {
    assert!(ks.iter().all(|&k| k > 0), "metric cutoffs must be positive, got {ks:?}");
    let mut ks = ks.to_vec();
    ks.sort_unstable();
    ks.dedup();
    ks
}

fn metric_keys(ks: &[usize]) -> impl Iterator<Item = String> + '_ {
    Measure::ALL.into_iter().flat_map(move |m| ks.iter().map(move |&k| m.key(k)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qrels(entries: &[(&str, &str, i32)]) -> Qrels {
        let mut qrels = Qrels::new();
        for &(q, d, s) in entries {
            qrels.insert(q, d, s);
        }
        qrels
    }

    fn run(entries: &[(&str, &str, f64)]) -> Run {
        let mut run = Run::new();
        for &(q, d, s) in entries {
            run.insert(q, d, s);
        }
        run
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn trec_eval_cutoff_quirks() {
        // 3 relevant documents, one retrieved at rank 2 out of 2 retrieved.
        let q = qrels(&[("q", "r1", 1), ("q", "r2", 1), ("q", "r3", 1)]);
        let r = run(&[("q", "x", 2.0), ("q", "r1", 1.0)]);
        let m = evaluate(&q, &r, &[1, 2, 5], &EvalOptions::default());
        assert_eq!(m.get(Measure::Precision, 5), Some(1.0 / 5.0), "P divides by k");
        assert_eq!(m.get(Measure::Precision, 1), Some(0.0));
        assert_eq!(m.get(Measure::Map, 2), Some(0.5 / 3.0), "MAP divides by R, not min(k, R)");
        assert_eq!(m.get(Measure::Recall, 5), Some(1.0 / 3.0));
        assert_eq!(m.get(Measure::Mrr, 1), Some(0.0));
        assert_eq!(m.get(Measure::Mrr, 2), Some(0.5));
        let ideal = 1.0 + 1.0 / 3f64.log2();
        assert!(close(m.get(Measure::Ndcg, 2).unwrap(), (1.0 / 3f64.log2()) / ideal));
    }

    #[test]
    fn ties_are_broken_by_descending_doc_id() {
        let q = qrels(&[("q", "a", 1)]);
        let r = run(&[("q", "a", 1.0), ("q", "b", 1.0)]);
        let m = evaluate(&q, &r, &[1], &EvalOptions::default());
        assert_eq!(m.get(Measure::Precision, 1), Some(0.0), "b outranks a on the tie");
        assert_eq!(m.get(Measure::Mrr, 1), Some(0.0));
        let r = run(&[("q", "a", 1.0), ("q", "0", 1.0)]);
        let m = evaluate(&q, &r, &[1], &EvalOptions::default());
        assert_eq!(m.get(Measure::Precision, 1), Some(1.0), "a outranks 0 on the tie");
    }

    #[test]
    fn score_precision_decides_what_ties() {
        let q = qrels(&[("q", "a", 1)]);
        let r = run(&[("q", "a", 1.000_000_01), ("q", "b", 1.0)]);
        let f32_opts = EvalOptions::default();
        let f64_opts = EvalOptions { score_precision: ScorePrecision::F64, ..f32_opts };
        assert_eq!(evaluate(&q, &r, &[1], &f32_opts).get(Measure::Precision, 1), Some(0.0));
        assert_eq!(evaluate(&q, &r, &[1], &f64_opts).get(Measure::Precision, 1), Some(1.0));
    }

    #[test]
    fn identical_ids_are_dropped_only_when_asked() {
        let q = qrels(&[("q", "a", 1)]);
        let r = run(&[("q", "q", 5.0), ("q", "a", 1.0)]);
        let keep = EvalOptions { ignore_identical_ids: false, ..EvalOptions::default() };
        assert_eq!(evaluate(&q, &r, &[1], &EvalOptions::default()).get(Measure::Mrr, 1), Some(1.0));
        assert_eq!(evaluate(&q, &r, &[1], &keep).get(Measure::Mrr, 1), Some(0.0));
    }

    #[test]
    fn queries_without_relevant_documents_are_skipped() {
        let q = qrels(&[("q1", "a", 1), ("q2", "b", 0)]);
        let r = run(&[("q1", "a", 1.0), ("q2", "b", 1.0), ("q3", "c", 1.0)]);
        let m = evaluate(&q, &r, &[10], &EvalOptions::default());
        assert_eq!(m.num_queries, 1);
        assert_eq!(m.per_query.keys().collect::<Vec<_>>(), ["q1"]);
        assert_eq!(m.get(Measure::Recall, 10), Some(1.0));
    }

    #[test]
    fn judged_query_missing_from_run_scores_zero() {
        let q = qrels(&[("q1", "a", 1), ("q2", "b", 1)]);
        let r = run(&[("q1", "a", 1.0)]);
        let m = evaluate(&q, &r, &[10], &EvalOptions::default());
        assert_eq!(m.num_queries, 2);
        assert!(m.per_query["q2"].values().all(|&v| v == 0.0));
        for measure in [Measure::Ndcg, Measure::Map, Measure::Recall, Measure::Mrr] {
            assert_eq!(m.get(measure, 10), Some(0.5), "{measure}");
        }
        assert_eq!(m.get(Measure::Precision, 10), Some(0.05));
    }

    #[test]
    fn graded_gains_reward_the_higher_grade_first() {
        let q = qrels(&[("q", "a", 1), ("q", "b", 2)]);
        let best = evaluate(&q, &run(&[("q", "b", 2.0), ("q", "a", 1.0)]), &[2], &Default::default());
        let worse = evaluate(&q, &run(&[("q", "a", 2.0), ("q", "b", 1.0)]), &[2], &Default::default());
        assert_eq!(best.get(Measure::Ndcg, 2), Some(1.0));
        let expected = (1.0 + 2.0 / 3f64.log2()) / (2.0 + 1.0 / 3f64.log2());
        assert!(close(worse.get(Measure::Ndcg, 2).unwrap(), expected));
        // Binary measures do not see grades.
        assert_eq!(best.get(Measure::Map, 2), worse.get(Measure::Map, 2));
    }

    #[test]
    fn cutoffs_beyond_the_ranking_and_repeated_cutoffs() {
        let q = qrels(&[("q", "a", 1)]);
        let m = evaluate(&q, &run(&[("q", "a", 1.0)]), &[1000, 1, 1000], &Default::default());
        assert_eq!(m.mean.len(), 10);
        assert_eq!(m.get(Measure::Ndcg, 1000), Some(1.0));
        assert_eq!(m.get(Measure::Precision, 1000), Some(0.001));
    }

    #[test]
    fn no_judged_queries_gives_zero_means() {
        let m = evaluate(&Qrels::new(), &run(&[("q", "a", 1.0)]), &[10], &Default::default());
        assert_eq!(m.num_queries, 0);
        assert_eq!(m.get(Measure::Ndcg, 10), Some(0.0));
    }

    #[test]
    #[should_panic(expected = "cutoffs must be positive")]
    fn zero_cutoff_panics() {
        evaluate(&Qrels::new(), &Run::new(), &[0], &Default::default());
    }

    #[test]
    fn metrics_serialise_to_json_numbers() {
        let q = qrels(&[("q", "a", 1)]);
        let m = evaluate(&q, &run(&[("q", "a", 1.0)]), &[10], &Default::default());
        let json: serde_json::Value = serde_json::to_value(&m).unwrap();
        assert_eq!(json["mean"]["NDCG@10"], 1.0);
        assert_eq!(json["per_query"]["q"]["P@10"], 0.1);
        assert_eq!(serde_json::from_value::<Metrics>(json).unwrap(), m);
    }
}
