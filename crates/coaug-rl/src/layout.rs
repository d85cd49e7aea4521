//! Where each slot's rollouts sit in the similarity matrix.
//!
//! A *slot* is one prompt of the step (a query or a document of a group); each slot is sampled
//! several times, and each sample is a *rollout*. Rows of the similarity matrix are query
//! rollouts, columns are document rollouts, and the rollouts of one slot are contiguous, in slot
//! order. Slots may have different rollout counts (a caller may drop a failed generation).

use std::ops::Range;

use crate::error::{setting, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutLayout {
    query_rows: Vec<Range<usize>>,
    doc_columns: Vec<Range<usize>>,
    row_slot: Vec<usize>,
    column_slot: Vec<usize>,
}

impl RolloutLayout {
    /// `query_rollouts[q]` rollouts for query slot `q`, `doc_rollouts[d]` for document slot `d`.
    /// Every slot needs at least one rollout: a slot without any cannot be ranked.
    pub fn new(query_rollouts: &[usize], doc_rollouts: &[usize]) -> Result<Self> {
        if let Some(q) = query_rollouts.iter().position(|&n| n == 0) {
            return Err(setting("query_rollouts", format!("slot {q}"), "every query slot needs a rollout"));
        }
        if let Some(d) = doc_rollouts.iter().position(|&n| n == 0) {
            return Err(setting("doc_rollouts", format!("slot {d}"), "every document slot needs a rollout"));
        }
        let (query_rows, row_slot) = contiguous(query_rollouts);
        let (doc_columns, column_slot) = contiguous(doc_rollouts);
        Ok(Self { query_rows, doc_columns, row_slot, column_slot })
    }

    /// `n` rollouts for every slot, as a training step samples them.
    pub fn uniform(query_slots: usize, doc_slots: usize, n: usize) -> Result<Self> {
        Self::new(&vec![n; query_slots], &vec![n; doc_slots])
    }

    pub fn num_query_slots(&self) -> usize {
        self.query_rows.len()
    }

    pub fn num_doc_slots(&self) -> usize {
        self.doc_columns.len()
    }

    /// Rows of the similarity matrix, i.e. all query rollouts of the step.
    pub fn num_query_rollouts(&self) -> usize {
        self.row_slot.len()
    }

    /// Columns of the similarity matrix, i.e. all document rollouts of the step.
    pub fn num_doc_rollouts(&self) -> usize {
        self.column_slot.len()
    }

    pub fn query_rows(&self, query_slot: usize) -> Range<usize> {
        self.query_rows[query_slot].clone()
    }

    pub fn doc_columns(&self, doc_slot: usize) -> Range<usize> {
        self.doc_columns[doc_slot].clone()
    }

    pub fn query_slot_of_row(&self, row: usize) -> usize {
        self.row_slot[row]
    }

    pub fn doc_slot_of_column(&self, column: usize) -> usize {
        self.column_slot[column]
    }
}

fn contiguous(counts: &[usize]) -> (Vec<Range<usize>>, Vec<usize>) {
    let mut ranges = Vec::with_capacity(counts.len());
    let mut owner = Vec::with_capacity(counts.iter().sum());
    for (slot, &n) in counts.iter().enumerate() {
        ranges.push(owner.len()..owner.len() + n);
        owner.extend(std::iter::repeat_n(slot, n));
    }
    (ranges, owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollouts_of_a_slot_are_contiguous_in_slot_order() {
        let layout = RolloutLayout::new(&[2, 1], &[1, 3, 2]).unwrap();
        assert_eq!(layout.num_query_rollouts(), 3);
        assert_eq!(layout.num_doc_rollouts(), 6);
        assert_eq!(layout.query_rows(1), 2..3);
        assert_eq!(layout.doc_columns(1), 1..4);
        assert_eq!(layout.doc_columns(2), 4..6);
        assert_eq!(layout.query_slot_of_row(1), 0);
        assert_eq!(layout.doc_slot_of_column(3), 1);
        assert_eq!(layout.doc_slot_of_column(5), 2);
    }

    #[test]
    fn a_slot_without_rollouts_is_rejected() {
        assert!(RolloutLayout::new(&[1], &[2, 0]).is_err());
        assert!(RolloutLayout::new(&[0], &[2]).is_err());
    }
}
