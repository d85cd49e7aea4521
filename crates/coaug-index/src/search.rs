//! Term-at-a-time top-k search over [`FieldImpacts`]: a dense score accumulator per thread,
//! partial selection for the top k.

use std::cmp::Ordering;

use crate::impacts::FieldImpacts;

/// A search result: the document's position in the corpus the index was built from, and its
/// BM25 score.
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

/// The postings lists one query reads: (field, term id, occurrences in the query).
pub(crate) struct QueryPlan {
    lists: Vec<(usize, u32, f32)>,
}

impl QueryPlan {
    pub fn new(fields: &[FieldImpacts], terms: &[(String, u32)]) -> Self {
        let mut lists = Vec::new();
        for (f, field) in fields.iter().enumerate() {
            for (term, count) in terms {
                if let Some(id) = field.term_id(term) {
                    lists.push((f, id, *count as f32));
                }
            }
        }
        Self { lists }
    }
}

/// Per-thread working memory, reused across queries.
pub(crate) struct Scratch {
    scores: Vec<f32>,
    touched: Vec<u32>,
}

impl Scratch {
    pub fn new(num_docs: usize) -> Self {
        Self {
            scores: vec![0.0; num_docs],
            touched: Vec::new(),
        }
    }

    pub fn search(&mut self, fields: &[FieldImpacts], plan: &QueryPlan, k: usize) -> Vec<Hit> {
        for &(f, term_id, count) in &plan.lists {
            let (docs, impacts) = fields[f].postings(term_id);
            for (&doc, &impact) in docs.iter().zip(impacts) {
                let score = &mut self.scores[doc as usize];
                if *score == 0.0 {
                    self.touched.push(doc);
                }
                *score += count * impact;
            }
        }
        let mut hits: Vec<Hit> = self
            .touched
            .drain(..)
            .map(|doc| Hit {
                doc,
                score: std::mem::take(&mut self.scores[doc as usize]),
            })
            .collect();
        keep_top_k(&mut hits, k);
        hits
    }
}

/// Truncates `hits` to the best `k`, sorted by [`hit_order`].
pub(crate) fn keep_top_k(hits: &mut Vec<Hit>, k: usize) {
    if k == 0 {
        hits.clear();
        return;
    }
    if hits.len() > k {
        hits.select_nth_unstable_by(k - 1, hit_order);
        hits.truncate(k);
    }
    hits.sort_unstable_by(hit_order);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(doc: u32, score: f32) -> Hit {
        Hit { doc, score }
    }

    #[test]
    fn top_k_orders_by_score_then_position() {
        let mut hits = vec![
            hit(4, 1.0),
            hit(1, 3.0),
            hit(3, 2.0),
            hit(0, 2.0),
            hit(2, 0.5),
        ];
        keep_top_k(&mut hits, 3);
        assert_eq!(hits, [hit(1, 3.0), hit(0, 2.0), hit(3, 2.0)]);
        let mut few = vec![hit(2, 1.0), hit(1, 1.0)];
        keep_top_k(&mut few, 10);
        assert_eq!(few, [hit(1, 1.0), hit(2, 1.0)]);
        keep_top_k(&mut few, 0);
        assert!(few.is_empty());
    }
}
