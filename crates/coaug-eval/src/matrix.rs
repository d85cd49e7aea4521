//! Scores by corpus position, before document ids are attached: [`ScoreMatrix`], every query
//! against every document, as BM25 (`coaug_index::Bm25Scorer`), the dense encoder
//! (`coaug_dense::similarity_matrix`) and the RL reward (one row per query rollout, one column per
//! document rollout) compute it; and [`Hit`], one result of a top-k search (BM25 or dense).

use std::cmp::Ordering;

/// A search result: the document's position in the corpus the index or matrix was built from,
/// and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub doc: u32,
    pub score: f32,
}

/// Result order: higher score first; equal scores by corpus position, so results are
/// deterministic.
pub fn hit_order(a: &Hit, b: &Hit) -> Ordering {
    b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc))
}

/// Scores of many queries against many documents, row-major (one row per query). Every score is
/// finite: a NaN has no place in a ranking, so construction rejects one with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreMatrix {
    num_queries: usize,
    num_docs: usize,
    scores: Vec<f32>,
}

/// Why scores do not form a [`ScoreMatrix`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum MatrixError {
    #[error("score matrix: expected {num_queries} × {num_docs} = {} scores, got {got}", num_queries * num_docs)]
    Shape { num_queries: usize, num_docs: usize, got: usize },
    #[error("score matrix: query {query}, document {doc} scores {value}, not a finite number")]
    NotFinite { query: usize, doc: usize, value: f32 },
}

impl ScoreMatrix {
    /// Row-major scores: `scores[query * num_docs + doc]`.
    pub fn new(num_queries: usize, num_docs: usize, scores: Vec<f32>) -> Result<Self, MatrixError> {
        if scores.len() != num_queries * num_docs {
            return Err(MatrixError::Shape { num_queries, num_docs, got: scores.len() });
        }
        if let Some(i) = scores.iter().position(|v| !v.is_finite()) {
            return Err(MatrixError::NotFinite { query: i / num_docs, doc: i % num_docs, value: scores[i] });
        }
        Ok(Self { num_queries, num_docs, scores })
    }

    /// Fills the matrix with `score(query, doc)`.
    pub fn from_fn(num_queries: usize, num_docs: usize, mut score: impl FnMut(usize, usize) -> f32) -> Result<Self, MatrixError> {
        let mut scores = Vec::with_capacity(num_queries * num_docs);
        for q in 0..num_queries {
            scores.extend((0..num_docs).map(|d| score(q, d)));
        }
        Self::new(num_queries, num_docs, scores)
    }

    pub fn num_queries(&self) -> usize {
        self.num_queries
    }

    pub fn num_docs(&self) -> usize {
        self.num_docs
    }

    pub fn get(&self, query: usize, doc: usize) -> f32 {
        assert!(doc < self.num_docs, "doc {doc} out of {}", self.num_docs);
        self.scores[query * self.num_docs + doc]
    }

    /// The scores of one query against every document.
    pub fn row(&self, query: usize) -> &[f32] {
        &self.scores[query * self.num_docs..(query + 1) * self.num_docs]
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.scores
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_sort_best_first_then_by_position() {
        let mut hits = [Hit { doc: 3, score: 1.0 }, Hit { doc: 1, score: 2.0 }, Hit { doc: 0, score: 1.0 }];
        hits.sort_by(hit_order);
        assert_eq!(hits.iter().map(|h| h.doc).collect::<Vec<_>>(), vec![1, 0, 3]);
    }

    #[test]
    fn rows_are_queries() {
        let m = ScoreMatrix::from_fn(2, 3, |q, d| (q * 10 + d) as f32).unwrap();
        assert_eq!(m.row(1), &[10.0, 11.0, 12.0]);
        assert_eq!(m.get(0, 2), 2.0);
        assert_eq!((m.num_queries(), m.num_docs()), (2, 3));
    }

    #[test]
    fn wrong_shapes_and_non_finite_scores_are_rejected_with_their_position() {
        let err = ScoreMatrix::new(2, 2, vec![0.0, 1.0, f32::NAN, 0.0]).unwrap_err();
        assert!(matches!(err, MatrixError::NotFinite { query: 1, doc: 0, value } if value.is_nan()), "{err:?}");
        assert!(err.to_string().contains("query 1, document 0"), "{err}");
        assert!(matches!(ScoreMatrix::new(2, 2, vec![0.0; 3]), Err(MatrixError::Shape { got: 3, .. })));
    }
}
