//! The nDCG formula of trec_eval's `ndcg_cut`, on plain lists of gains.
//!
//! [`evaluate`](crate::evaluate()) uses these functions, so a training reward that calls them
//! optimises exactly the number that is reported. The formula:
//!
//! - gain of a document = its qrels grade (BEIR's graded relevance: NFCorpus 1 or 2);
//!   unjudged documents and grades <= 0 add nothing;
//! - `DCG@k = sum over ranks i = 0..k-1 (0-based) of gain_i / log2(i + 2)`;
//! - the ideal DCG@k uses every judged document of the query, best grade first;
//! - `nDCG@k = DCG@k / IDCG@k`, and 0 when the query has no positive grade.

use std::collections::BTreeMap;

/// DCG of the first `k` entries of `ranked_gains` (rank order, best first).
pub fn dcg_at_k<G: Copy + Into<f64>>(ranked_gains: &[G], k: usize) -> f64 {
    ranked_gains
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, &gain)| (i, gain.into()))
        .filter(|&(_, gain)| gain > 0.0)
        .map(|(i, gain)| gain / ((i + 2) as f64).log2())
        .sum()
}

/// DCG@k of the best possible ranking of `judged_gains` (any order; every judged document).
pub fn ideal_dcg_at_k<G: Copy + Into<f64>>(judged_gains: &[G], k: usize) -> f64 {
    let mut gains: Vec<f64> = judged_gains.iter().map(|&g| g.into()).filter(|&g| g > 0.0).collect();
    gains.sort_unstable_by(|a, b| b.total_cmp(a));
    dcg_at_k(&gains, k)
}

/// nDCG@k of a ranking given its gains in rank order and the gains of all judged documents.
pub fn ndcg_at_k<G: Copy + Into<f64>>(ranked_gains: &[G], judged_gains: &[G], k: usize) -> f64 {
    let ideal = ideal_dcg_at_k(judged_gains, k);
    if ideal > 0.0 {
        dcg_at_k(ranked_gains, k) / ideal
    } else {
        0.0
    }
}

/// nDCG@k of ranked document ids against one query's judgements (document id -> grade).
/// The ids must already be in final rank order with no duplicates.
pub fn query_ndcg_at_k<'a>(judgements: &BTreeMap<String, i32>, ranked_doc_ids: impl IntoIterator<Item = &'a str>, k: usize) -> f64 {
    let ranked: Vec<i32> = ranked_doc_ids.into_iter().take(k).map(|id| judgements.get(id).copied().unwrap_or(0)).collect();
    let judged: Vec<i32> = judgements.values().copied().collect();
    ndcg_at_k(&ranked, &judged, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn dcg_discounts_by_log2_of_rank_plus_one() {
        // 1-based ranks 1, 2, 3 -> discounts log2(2), log2(3), log2(4).
        let dcg = dcg_at_k(&[2, 0, 1], 3);
        assert!(close(dcg, 2.0 + 1.0 / 2.0));
        assert!(close(dcg_at_k(&[0, 1], 2), 1.0 / 3f64.log2()));
        assert!(close(dcg_at_k(&[2, 0, 1], 1), 2.0));
    }

    #[test]
    fn graded_gains_ideal_puts_best_grades_first() {
        // Matches pytrec_eval: qrels {a: 1, b: 2, c: 0}, run [n1, a, n2] -> ndcg_cut_3 = 0.2398...
        let ndcg = ndcg_at_k(&[0, 1, 0], &[1, 2, 0], 3);
        assert!(close(ndcg, 0.239_812_466_568_131_46), "{ndcg}");
        assert!(close(ndcg_at_k(&[2, 1], &[1, 2, 0], 2), 1.0));
        assert!(ndcg_at_k(&[1, 2], &[1, 2, 0], 2) < 1.0);
    }

    #[test]
    fn ideal_uses_all_judged_documents_not_only_retrieved_ones() {
        // One of two relevant documents retrieved at rank 1: nDCG@2 = 1 / (1 + 1/log2(3)).
        let expected = 1.0 / (1.0 + 1.0 / 3f64.log2());
        assert!(close(ndcg_at_k(&[1], &[1, 1], 2), expected));
    }

    #[test]
    fn non_positive_gains_add_nothing() {
        assert_eq!(dcg_at_k(&[-1.0, 0.0], 2), 0.0);
        assert_eq!(ndcg_at_k(&[1, 1], &[0, -1], 2), 0.0);
    }

    #[test]
    fn query_helper_looks_up_grades() {
        let judgements: BTreeMap<String, i32> = [("a".to_string(), 1), ("b".to_string(), 2), ("c".to_string(), 0)].into();
        let ndcg = query_ndcg_at_k(&judgements, ["n1", "a", "n2"], 3);
        assert!(close(ndcg, 0.239_812_466_568_131_46));
        assert!(close(query_ndcg_at_k(&judgements, ["b", "a"], 10), 1.0));
    }
}
