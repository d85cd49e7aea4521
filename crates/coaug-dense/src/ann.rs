//! Approximate search with HNSW (the `hnsw_rs` crate) over unit vectors, for corpora where
//! exact search is too slow, and recall@k against exact search to say what it costs.

use hnsw_rs::anndists::dist::distances::Distance;
use hnsw_rs::hnsw::Hnsw;
use rayon::prelude::*;

use crate::embeddings::{Embeddings, VectorRows};
use coaug_eval::Hit;

/// `1 - dot`, clamped at 0: for unit vectors the cosine distance. (hnsw_rs's own `DistDot`
/// asserts `dot <= 1`, which rounding breaks for unit vectors.)
#[derive(Debug, Clone, Copy, Default)]
pub struct InnerProductDistance;

impl Distance<f32> for InnerProductDistance {
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        let dot: f32 = va.iter().zip(vb).map(|(a, b)| a * b).sum();
        (1.0 - dot).max(0.0)
    }
}

/// Graph parameters (the usual defaults of HNSW libraries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Neighbours kept per node and layer.
    pub m: usize,
    /// Candidate list while building.
    pub ef_construction: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self { m: 16, ef_construction: 200 }
    }
}

/// An HNSW graph over a copy of the vectors. Built in parallel, so the graph (and rarely a
/// result) can differ between runs; exact search is the deterministic reference.
pub struct HnswIndex {
    graph: Hnsw<'static, f32, InnerProductDistance>,
    len: usize,
}

impl HnswIndex {
    pub fn build(docs: &dyn VectorRows, params: HnswParams) -> Self {
        let n = docs.len();
        let graph = Hnsw::new(params.m, n.max(1), 16, params.ef_construction, InnerProductDistance);
        let all = docs.rows(0, n);
        let d = docs.dim();
        let items: Vec<(&[f32], usize)> = (0..n).map(|i| (&all[i * d..(i + 1) * d], i)).collect();
        graph.parallel_insert_slice(&items);
        Self { graph, len: n }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Top `k` per query, best first; `ef` (≥ k) trades speed for recall.
    pub fn search(&self, queries: &Embeddings, k: usize, ef: usize) -> Vec<Vec<Hit>> {
        (0..queries.len())
            .into_par_iter()
            .map(|i| {
                let mut hits: Vec<Hit> = self
                    .graph
                    .search(queries.row(i), k, ef.max(k))
                    .into_iter()
                    .map(|n| Hit { doc: n.d_id as u32, score: 1.0 - n.distance })
                    .collect();
                hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc)));
                hits
            })
            .collect()
    }
}

/// Mean over queries of |approx top-k ∩ exact top-k| / |exact top-k|.
pub fn recall_at_k(exact: &[Vec<Hit>], approx: &[Vec<Hit>], k: usize) -> f64 {
    assert_eq!(exact.len(), approx.len(), "one result list per query on both sides");
    if exact.is_empty() {
        return 1.0;
    }
    let total: f64 = exact
        .iter()
        .zip(approx)
        .map(|(e, a)| {
            let truth: std::collections::HashSet<u32> = e.iter().take(k).map(|s| s.doc).collect();
            if truth.is_empty() {
                return 1.0;
            }
            a.iter().take(k).filter(|s| truth.contains(&s.doc)).count() as f64 / truth.len() as f64
        })
        .sum();
    total / exact.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exact::exact_top_k;

    fn unit_vectors(n: usize, d: usize, seed: u64) -> Embeddings {
        let mut s = seed;
        let mut data = Vec::with_capacity(n * d);
        for _ in 0..n {
            let row: Vec<f32> = (0..d)
                .map(|_| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                })
                .collect();
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            data.extend(row.iter().map(|x| x / norm));
        }
        Embeddings::new(d, data)
    }

    #[test]
    fn hnsw_recovers_most_exact_neighbours() {
        let docs = unit_vectors(2000, 16, 7);
        let queries = unit_vectors(50, 16, 8);
        let exact = exact_top_k(&queries, &docs, 10).unwrap();
        let index = HnswIndex::build(&docs, HnswParams::default());
        assert_eq!(index.len(), 2000);
        let approx = index.search(&queries, 10, 100);
        let recall = recall_at_k(&exact, &approx, 10);
        assert!(recall > 0.9, "recall@10 = {recall}");
        // Reported scores are the true inner products of the returned documents.
        let hit = approx[3][0];
        let dot: f32 = queries.row(3).iter().zip(docs.row(hit.doc as usize)).map(|(a, b)| a * b).sum();
        assert!((hit.score - dot).abs() < 1e-5);
        assert_eq!(recall_at_k(&exact, &exact, 10), 1.0);
        let shifted: Vec<Vec<Hit>> = exact.iter().map(|h| h.iter().skip(5).copied().collect()).collect();
        assert!((recall_at_k(&exact, &shifted, 10) - 0.5).abs() < 1e-9);
    }
}
