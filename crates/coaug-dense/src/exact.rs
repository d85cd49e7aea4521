//! Exact top-k by inner product: query blocks × document blocks as matrix products
//! (candle's gemm), each block's scores folded into per-query bounded heaps.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use rayon::prelude::*;

use coaug_eval::{hit_order, Hit};

use crate::embeddings::{Embeddings, VectorRows};

/// Heap order: the *worst* hit on top (lowest score; on ties the higher doc index), so
/// results are deterministic whatever the block order.
#[derive(PartialEq)]
struct Worst(Hit);
impl Eq for Worst {}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.score.total_cmp(&self.0.score).then(self.0.doc.cmp(&other.0.doc))
    }
}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps the best `k` of a stream of hits.
struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    fn push(&mut self, hit: Hit) {
        if self.heap.len() < self.k {
            self.heap.push(Worst(hit));
        } else if let Some(worst) = self.heap.peek() {
            if Worst(hit) < *worst {
                self.heap.pop();
                self.heap.push(Worst(hit));
            }
        }
    }

    /// Best first.
    fn into_sorted(self) -> Vec<Hit> {
        let mut v: Vec<Hit> = self.heap.into_iter().map(|w| w.0).collect();
        v.sort_by(hit_order);
        v
    }
}

/// Documents per block: 4096 × 384 f32 = 6 MiB, a block of scores per query stays small.
pub const DOC_BLOCK: usize = 4096;
/// Queries per block.
pub const QUERY_BLOCK: usize = 1024;

/// The `k` documents with the largest inner product for every query, best first.
pub fn exact_top_k(queries: &Embeddings, docs: &dyn VectorRows, k: usize) -> Result<Vec<Vec<Hit>>> {
    if queries.dim() != docs.dim() {
        bail!("query dim {} != document dim {}", queries.dim(), docs.dim());
    }
    let d = docs.dim();
    let mut out = Vec::with_capacity(queries.len());
    for q_start in (0..queries.len()).step_by(QUERY_BLOCK) {
        let q_end = (q_start + QUERY_BLOCK).min(queries.len());
        let nq = q_end - q_start;
        let q = Tensor::from_slice(&queries.as_slice()[q_start * d..q_end * d], (nq, d), &Device::Cpu)?;
        let mut heaps: Vec<TopK> = (0..nq).map(|_| TopK::new(k)).collect();
        for d_start in (0..docs.len()).step_by(DOC_BLOCK) {
            let d_end = (d_start + DOC_BLOCK).min(docs.len());
            let nd = d_end - d_start;
            let block = docs.rows(d_start, d_end);
            let dt = Tensor::from_slice(&block[..], (nd, d), &Device::Cpu)?;
            let scores = q.matmul(&dt.t()?)?.flatten_all()?.to_vec1::<f32>()?;
            heaps.par_iter_mut().zip(scores.par_chunks(nd)).for_each(|(heap, row)| {
                for (j, &s) in row.iter().enumerate() {
                    heap.push(Hit { doc: (d_start + j) as u32, score: s });
                }
            });
        }
        out.extend(heaps.into_iter().map(TopK::into_sorted));
    }
    Ok(out)
}

/// Full query × document inner products, row-major (for small sets: rewards, tests).
pub fn dot_products(queries: &Embeddings, docs: &Embeddings) -> Result<Vec<f32>> {
    if queries.dim() != docs.dim() {
        bail!("query dim {} != document dim {}", queries.dim(), docs.dim());
    }
    if queries.is_empty() || docs.is_empty() {
        return Ok(vec![0.0; queries.len() * docs.len()]);
    }
    let q = Tensor::from_slice(queries.as_slice(), (queries.len(), queries.dim()), &Device::Cpu)?;
    let dm = Tensor::from_slice(docs.as_slice(), (docs.len(), docs.dim()), &Device::Cpu)?;
    Ok(q.matmul(&dm.t()?)?.flatten_all()?.to_vec1::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, d: usize, seed: u64) -> Embeddings {
        let mut s = seed;
        let data = (0..n * d)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        Embeddings::new(d, data)
    }

    #[test]
    fn matches_brute_force_across_block_boundaries() {
        let (q, docs) = (random(7, 16, 1), random(DOC_BLOCK + 300, 16, 2));
        let got = exact_top_k(&q, &docs, 10).unwrap();
        for (qi, hits) in got.iter().enumerate() {
            let mut all: Vec<Hit> = (0..docs.len())
                .map(|j| Hit { doc: j as u32, score: q.row(qi).iter().zip(docs.row(j)).map(|(a, b)| a * b).sum() })
                .collect();
            all.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc)));
            let want: Vec<u32> = all[..10].iter().map(|s| s.doc).collect();
            assert_eq!(hits.iter().map(|s| s.doc).collect::<Vec<_>>(), want, "query {qi}");
            assert!((hits[0].score - all[0].score).abs() < 1e-4);
        }
        // k larger than the corpus returns everything, best first.
        let small = random(5, 16, 3);
        let all = exact_top_k(&q, &small, 100).unwrap();
        assert!(all.iter().all(|h| h.len() == 5 && h.windows(2).all(|w| w[0].score >= w[1].score)));
    }

    #[test]
    fn ties_break_by_document_index() {
        let q = Embeddings::new(2, vec![1.0, 0.0]);
        let docs = Embeddings::new(2, vec![0.5, 1.0, 0.9, 0.0, 0.5, -1.0, 0.5, 0.0]);
        let hits = exact_top_k(&q, &docs, 3).unwrap();
        assert_eq!(hits[0].iter().map(|s| s.doc).collect::<Vec<_>>(), vec![1, 0, 2]);
    }
}
