//! The step's similarity matrix with a sentence encoder (docs/method.md §4, dense): the dot product
//! of normalised embeddings, i.e. their cosine. Queries go through the encoder's query path
//! (its instruction prefix, e.g. bge's, when it has one), documents are embedded as passages —
//! the same two paths as `coaug eval --retriever dense`, so the reward ranks as the evaluation
//! will. Each step's texts are embedded in length-bucketed batches, identical texts (common
//! among sampled rollouts) once.

use std::sync::Arc;

use coaug_dense::{similarity_matrix, SentenceEncoder};

use coaug_eval::ScoreMatrix;

pub struct DenseReward {
    /// Shared with validation, which ranks the corpus with the same encoder.
    encoder: Arc<SentenceEncoder>,
}

impl DenseReward {
    pub fn new(encoder: Arc<SentenceEncoder>) -> Self {
        Self { encoder }
    }

    pub fn encoder(&self) -> &Arc<SentenceEncoder> {
        &self.encoder
    }

    /// Cosine of every query text with every document text, computed once.
    pub fn similarity<Q: AsRef<str>, D: AsRef<str>>(&self, queries: &[Q], documents: &[D]) -> anyhow::Result<ScoreMatrix> {
        let queries: Vec<&str> = queries.iter().map(AsRef::as_ref).collect();
        let documents: Vec<&str> = documents.iter().map(AsRef::as_ref).collect();
        similarity_matrix(&self.encoder, &queries, &documents)
    }
}
