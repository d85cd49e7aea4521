//! The step's similarity matrix: every query rollout against every document rollout.
//!
//! Computed once per step by [`RewardSimilarity`] (BM25 over augmented texts, or dense dot
//! products); the reward estimators only index into it and never see which retriever made it.

use coaug_augment::Retriever;

use crate::bm25_reward::{Bm25Reward, Composed};
use crate::dense_reward::DenseReward;
use crate::rollout::Rollout;
use coaug_eval::ScoreMatrix;

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
    pub fn similarity(&self, queries: &[Rollout], documents: &[Rollout]) -> anyhow::Result<ScoreMatrix> {
        fn composed(rs: &[Rollout]) -> Vec<Composed<'_>> {
            rs.iter().map(|r| Composed { original: &r.original, augmentation: &r.augmentation }).collect()
        }
        self.similarity_of(&composed(queries), &composed(documents))
    }

    /// [`Self::similarity`] of (original, augmentation) pairs.
    pub fn similarity_of(&self, queries: &[Composed<'_>], documents: &[Composed<'_>]) -> anyhow::Result<ScoreMatrix> {
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
