//! The gain of every document slot for every query slot of a step, and the group of each slot.
//!
//! The gain is the relevance the reward's nDCG credits when a query rollout ranks the slot
//! (how it is derived from the qrels is the composite sampler's business, see
//! [`GainScope`](crate::GainScope)). Groups matter to the `sampling` estimator, which ranks a
//! query only against the documents of its own group.

use crate::error::{Result, RlError};

#[derive(Debug, Clone, PartialEq)]
pub struct SlotGains {
    num_docs: usize,
    /// Row-major: `gains[q * num_docs + d]`.
    gains: Vec<f32>,
    query_group: Vec<usize>,
    doc_group: Vec<usize>,
}

impl SlotGains {
    /// `gains` is row-major over (query slot, document slot); gains must be finite and >= 0
    /// (nDCG is not defined for negative gains).
    pub fn new(query_group: Vec<usize>, doc_group: Vec<usize>, gains: Vec<f32>) -> Result<Self> {
        let num_docs = doc_group.len();
        let expected = query_group.len() * num_docs;
        if gains.len() != expected {
            return Err(RlError::Shape { what: "slot gains (query slots x document slots)", expected, got: gains.len() });
        }
        if let Some(i) = gains.iter().position(|g| !g.is_finite() || *g < 0.0) {
            let (q, d) = (i / num_docs.max(1), i % num_docs.max(1));
            return Err(RlError::NotFinite {
                what: "slot gain (must be finite and >= 0)",
                location: format!("query slot {q}, document slot {d}"),
                value: f64::from(gains[i]),
            });
        }
        Ok(Self { num_docs, gains, query_group, doc_group })
    }

    pub fn num_query_slots(&self) -> usize {
        self.query_group.len()
    }

    pub fn num_doc_slots(&self) -> usize {
        self.num_docs
    }

    pub fn gain(&self, query_slot: usize, doc_slot: usize) -> f32 {
        self.gains[query_slot * self.num_docs + doc_slot]
    }

    /// Gains of every document slot for one query slot.
    pub fn row(&self, query_slot: usize) -> &[f32] {
        &self.gains[query_slot * self.num_docs..(query_slot + 1) * self.num_docs]
    }

    pub fn query_group(&self, query_slot: usize) -> usize {
        self.query_group[query_slot]
    }

    pub fn doc_group(&self, doc_slot: usize) -> usize {
        self.doc_group[doc_slot]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_query_slots() {
        let gains = SlotGains::new(vec![0, 1], vec![0, 0, 1], vec![2.0, 0.0, 0.0, 0.0, 0.0, 1.0]).unwrap();
        assert_eq!(gains.row(1), &[0.0, 0.0, 1.0]);
        assert_eq!(gains.gain(0, 0), 2.0);
        assert_eq!(gains.doc_group(2), 1);
    }

    #[test]
    fn wrong_shape_and_negative_gains_are_rejected() {
        assert!(SlotGains::new(vec![0], vec![0, 0], vec![1.0]).is_err());
        assert!(SlotGains::new(vec![0], vec![0], vec![-1.0]).is_err());
        assert!(SlotGains::new(vec![0], vec![0], vec![f32::NAN]).is_err());
    }
}
