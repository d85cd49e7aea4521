//! The seam between a first-stage retriever and everything that ranks with one (`coaug eval`,
//! `coaug search`, RL validation): rank a set of queries, each with its expansions, into a run.
//! BM25 ([`AugmentedBm25`]), dense ([`DenseRetriever`]) and their fusion ([`Hybrid`]) implement it,
//! so callers hold a `&dyn Retrieve` instead of matching on which retriever they were given.

use anyhow::Result;
use coaug_eval::{fuse_runs, Fusion, Run, ScorePrecision};

use crate::bm25::{AugmentedBm25, QueryToRank};
use crate::dense::DenseRetriever;

pub trait Retrieve {
    /// The top `k` documents of every query, as a run keyed by query and document id. A query
    /// is searched with its expansions as the retriever's composition says.
    fn rank(&self, queries: &[QueryToRank<'_>], k: usize) -> Result<Run>;

    /// The TREC run tag (`run.trec`'s last column).
    fn run_tag(&self) -> &'static str;
}

impl Retrieve for AugmentedBm25 {
    fn rank(&self, queries: &[QueryToRank<'_>], k: usize) -> Result<Run> {
        Ok(AugmentedBm25::rank(self, queries, k))
    }

    fn run_tag(&self) -> &'static str {
        "coaug-bm25"
    }
}

impl Retrieve for DenseRetriever<'_> {
    fn rank(&self, queries: &[QueryToRank<'_>], k: usize) -> Result<Run> {
        DenseRetriever::rank(self, queries, k)
    }

    fn run_tag(&self) -> &'static str {
        "coaug-dense"
    }
}

/// Two retrievers' runs fused (reciprocal ranks or normalised scores) and cut to `k`.
pub struct Hybrid<'a> {
    pub sparse: &'a dyn Retrieve,
    pub dense: &'a dyn Retrieve,
    pub fusion: Fusion,
}

impl Retrieve for Hybrid<'_> {
    fn rank(&self, queries: &[QueryToRank<'_>], k: usize) -> Result<Run> {
        let sparse = self.sparse.rank(queries, k)?;
        let dense = self.dense.rank(queries, k)?;
        let mut fused = fuse_runs(&[&sparse, &dense], self.fusion);
        fused.truncate(k, ScorePrecision::F32);
        Ok(fused)
    }

    fn run_tag(&self) -> &'static str {
        "coaug-hybrid"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A retriever that returns a fixed ranking for every query.
    struct Fixed(&'static [(&'static str, f64)]);

    impl Retrieve for Fixed {
        fn rank(&self, queries: &[QueryToRank<'_>], _k: usize) -> Result<Run> {
            let mut run = Run::new();
            for q in queries {
                for (doc, score) in self.0 {
                    run.insert(q.id.to_string(), doc.to_string(), *score);
                }
            }
            Ok(run)
        }

        fn run_tag(&self) -> &'static str {
            "fixed"
        }
    }

    #[test]
    fn hybrid_fuses_by_reciprocal_rank_and_cuts_to_k() {
        let a = Fixed(&[("x", 3.0), ("y", 2.0), ("z", 1.0)]);
        let b = Fixed(&[("z", 0.9), ("y", 0.8), ("w", 0.1)]);
        let hybrid = Hybrid { sparse: &a, dense: &b, fusion: Fusion::RRF };
        let q = [QueryToRank { id: "q", text: "t", expansions: &[] }];
        let run = hybrid.rank(&q, 2).unwrap();
        let ranking = run.ranking("q", ScorePrecision::F64);
        let ranked: Vec<&str> = ranking.iter().map(|d| d.doc_id.as_str()).collect();
        // y is 2nd in both (2/62), z 3rd and 1st (1/63 + 1/61), x 1st in one only (1/61).
        assert_eq!(ranked, ["z", "y"]);
        assert_eq!(hybrid.run_tag(), "coaug-hybrid");
    }
}
