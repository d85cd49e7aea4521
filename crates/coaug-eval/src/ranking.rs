//! The order in which trec_eval reads a ranking.
//!
//! trec_eval ignores the rank column of a run: it sorts each query's documents by score
//! descending and breaks ties by document id *descending* (`comp_sim_docno` in
//! `form_res_rels.c`: `strcmp(p2->docno, p1->docno)`, a byte-wise comparison). Which scores
//! count as tied depends on the precision they are stored in, see [`ScorePrecision`].

use std::cmp::Ordering;

/// One retrieved document with its retrieval score.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoredDoc {
    pub doc_id: String,
    pub score: f64,
}

impl ScoredDoc {
    pub fn new(doc_id: impl Into<String>, score: f64) -> Self {
        Self { doc_id: doc_id.into(), score }
    }
}

/// The precision at which scores are compared when ranking.
///
/// pytrec_eval (pytrec-eval-terrier 0.5.x, which BEIR uses) hands scores to a trec_eval whose
/// `TEXT_RESULTS.sim` is a C `float`, so scores that are equal after rounding to `f32` tie and
/// fall back to the document id (e.g. 1.00000005 and 1.0 tie, 1.00000007 and 1.0 do not).
/// The current trec_eval command line stores `double`s instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum ScorePrecision {
    /// As pytrec_eval / BEIR: scores rounded to `f32` before comparison.
    #[default]
    F32,
    /// As the trec_eval 9.0.8+ command line: scores compared as `f64`.
    F64,
}

impl ScorePrecision {
    /// The value trec_eval compares; -0.0 becomes 0.0 because C's `<`/`>` treat them as equal.
    fn comparable(self, score: f64) -> f64 {
        let value = match self {
            ScorePrecision::F32 => score as f32 as f64,
            ScorePrecision::F64 => score,
        };
        if value == 0.0 {
            0.0
        } else {
            value
        }
    }
}

/// trec_eval's ranking order: score descending, then document id descending (byte-wise).
/// `total_cmp` keeps the order total even for NaN, which Rust's sort requires.
pub fn trec_eval_order(a: &ScoredDoc, b: &ScoredDoc, precision: ScorePrecision) -> Ordering {
    let (sa, sb) = (precision.comparable(a.score), precision.comparable(b.score));
    sb.total_cmp(&sa).then_with(|| b.doc_id.as_bytes().cmp(a.doc_id.as_bytes()))
}

/// Sorts `docs` into the order trec_eval evaluates them in.
pub fn sort_trec_eval(docs: &mut [ScoredDoc], precision: ScorePrecision) {
    docs.sort_unstable_by(|a, b| trec_eval_order(a, b, precision));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(docs: &[ScoredDoc]) -> Vec<&str> {
        docs.iter().map(|d| d.doc_id.as_str()).collect()
    }

    #[test]
    fn higher_score_first_then_larger_doc_id() {
        let mut docs = vec![ScoredDoc::new("d1", 1.0), ScoredDoc::new("d3", 1.0), ScoredDoc::new("d0", 2.0), ScoredDoc::new("d2", 1.0)];
        sort_trec_eval(&mut docs, ScorePrecision::F64);
        assert_eq!(ids(&docs), ["d0", "d3", "d2", "d1"]);
    }

    #[test]
    fn ties_compare_doc_ids_bytewise_like_strcmp() {
        // strcmp puts a prefix before its extensions; descending order reverses that.
        let mut docs = vec![ScoredDoc::new("MED-1", 0.5), ScoredDoc::new("MED-10", 0.5), ScoredDoc::new("MED-9", 0.5)];
        sort_trec_eval(&mut docs, ScorePrecision::F64);
        assert_eq!(ids(&docs), ["MED-9", "MED-10", "MED-1"]);
    }

    #[test]
    fn f32_precision_ties_scores_that_differ_below_float_resolution() {
        // Values checked against pytrec_eval 0.5.11: 1.00000005 ties with 1.0, 1.00000007 does not.
        let tied = [ScoredDoc::new("a", 1.000_000_05), ScoredDoc::new("b", 1.0)];
        let apart = [ScoredDoc::new("a", 1.000_000_07), ScoredDoc::new("b", 1.0)];
        let order = |d: &[ScoredDoc], p| trec_eval_order(&d[0], &d[1], p);
        assert_eq!(order(&tied, ScorePrecision::F32), Ordering::Greater, "b wins the tie on id");
        assert_eq!(order(&tied, ScorePrecision::F64), Ordering::Less, "a scores higher");
        assert_eq!(order(&apart, ScorePrecision::F32), Ordering::Less);
    }

    #[test]
    fn negative_zero_ties_with_zero() {
        let a = ScoredDoc::new("a", -0.0);
        let b = ScoredDoc::new("b", 0.0);
        assert_eq!(trec_eval_order(&a, &b, ScorePrecision::F64), Ordering::Greater);
        assert_eq!(trec_eval_order(&b, &a, ScorePrecision::F64), Ordering::Less);
    }
}
