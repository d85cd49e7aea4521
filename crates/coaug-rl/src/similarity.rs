//! The step's similarity matrix: every query rollout against every document rollout.
//!
//! Computed once per step by [`RewardSimilarity`] (BM25 over augmented texts, or dense dot
//! products); the reward estimators only index into it and never see which retriever made it.

use coaug_augment::Retriever;

use crate::bm25_reward::{Bm25Reward, Composed};
use crate::dense_reward::DenseReward;
use crate::error::{Result, RlError};
use crate::rollout::Rollout;

/// The similarity the reward ranks by, one variant per retriever (docs/method.md §4). Adding a
/// retriever means adding a variant here; the trainer only calls [`RewardSimilarity::similarity`].
pub enum RewardSimilarity {
    /// BM25 with the evaluation's analyzer, IDF from the original corpus.
    Bm25(Bm25Reward),
    /// Cosine of a sentence encoder's embeddings.
    Dense(DenseReward),
}

impl RewardSimilarity {
    /// The retriever whose prompts and composition the rollouts must use to match.
    pub fn retriever(&self) -> Retriever {
        match self {
            RewardSimilarity::Bm25(_) => Retriever::Sparse,
            RewardSimilarity::Dense(_) => Retriever::Dense,
        }
    }

    /// Every query rollout against every document rollout, composed as the evaluation composes
    /// them: rows are queries, columns documents.
    pub fn similarity(&self, queries: &[Rollout], documents: &[Rollout]) -> anyhow::Result<SimilarityMatrix> {
        fn composed(rs: &[Rollout]) -> Vec<Composed<'_>> {
            rs.iter().map(|r| Composed { original: &r.original, augmentation: &r.augmentation }).collect()
        }
        self.similarity_of(&composed(queries), &composed(documents))
    }

    /// [`Self::similarity`] of (original, augmentation) pairs.
    pub fn similarity_of(&self, queries: &[Composed<'_>], documents: &[Composed<'_>]) -> anyhow::Result<SimilarityMatrix> {
        match self {
            RewardSimilarity::Bm25(bm25) => Ok(bm25.similarity(queries, documents)?),
            RewardSimilarity::Dense(dense) => {
                // Dense composition: the expansion after the query, the abstract before the document.
                let c = coaug_retrieval::Composition::default();
                let q: Vec<String> = queries.iter().map(|x| c.query_text(x.original, &[x.augmentation])).collect();
                let d: Vec<String> = documents.iter().map(|x| c.dense_document_text(x.original, Some(x.augmentation))).collect();
                dense.similarity(&q, &d)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimilarityMatrix {
    rows: usize,
    columns: usize,
    /// Row-major: `values[row * columns + column]`.
    values: Vec<f32>,
}

impl SimilarityMatrix {
    /// Rows are query rollouts, columns document rollouts. Every value must be finite, because a
    /// NaN has no place in a ranking.
    pub fn new(rows: usize, columns: usize, values: Vec<f32>) -> Result<Self> {
        if values.len() != rows * columns {
            return Err(RlError::Shape { what: "similarity matrix (rows x columns)", expected: rows * columns, got: values.len() });
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(RlError::NotFinite {
                what: "similarity",
                location: format!("query rollout {}, document rollout {}", i / columns, i % columns),
                value: f64::from(values[i]),
            });
        }
        Ok(Self { rows, columns, values })
    }

    /// Fills the matrix with `similarity(row, column)`.
    pub fn from_fn(rows: usize, columns: usize, mut similarity: impl FnMut(usize, usize) -> f32) -> Result<Self> {
        let mut values = Vec::with_capacity(rows * columns);
        for r in 0..rows {
            values.extend((0..columns).map(|c| similarity(r, c)));
        }
        Self::new(rows, columns, values)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Similarities of one query rollout to every document rollout.
    pub fn row(&self, row: usize) -> &[f32] {
        &self.values[row * self.columns..(row + 1) * self.columns]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_query_rollouts() {
        let sim = SimilarityMatrix::from_fn(2, 3, |r, c| (r * 10 + c) as f32).unwrap();
        assert_eq!(sim.row(1), &[10.0, 11.0, 12.0]);
    }

    #[test]
    fn non_finite_values_are_rejected_with_their_position() {
        let err = SimilarityMatrix::new(2, 2, vec![0.0, 1.0, f32::NAN, 0.0]).unwrap_err();
        assert!(err.to_string().contains("query rollout 1, document rollout 0"), "{err}");
        assert!(SimilarityMatrix::new(2, 2, vec![0.0; 3]).is_err());
    }
}
