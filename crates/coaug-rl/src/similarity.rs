//! The step's similarity matrix: every query rollout against every document rollout.
//!
//! Computed once per step by the caller (BM25 over augmented texts, or dense dot products);
//! the reward estimators only index into it.

use crate::error::{Result, RlError};

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
            return Err(RlError::Shape {
                what: "similarity matrix (rows x columns)",
                expected: rows * columns,
                got: values.len(),
            });
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(RlError::NotFinite {
                what: "similarity",
                location: format!(
                    "query rollout {}, document rollout {}",
                    i / columns,
                    i % columns
                ),
                value: f64::from(values[i]),
            });
        }
        Ok(Self {
            rows,
            columns,
            values,
        })
    }

    /// Fills the matrix with `similarity(row, column)`.
    pub fn from_fn(
        rows: usize,
        columns: usize,
        mut similarity: impl FnMut(usize, usize) -> f32,
    ) -> Result<Self> {
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
        assert!(
            err.to_string()
                .contains("query rollout 1, document rollout 0"),
            "{err}"
        );
        assert!(SimilarityMatrix::new(2, 2, vec![0.0; 3]).is_err());
    }
}
