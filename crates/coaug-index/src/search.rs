//! Term-at-a-time top-k search over [`FieldImpacts`]: a dense score accumulator per thread,
//! partial selection for the top k.

pub use coaug_eval::{hit_order, Hit};

use crate::impacts::FieldImpacts;
use crate::query::WeightedQuery;

/// The postings lists one query reads: (field, term id, the term's weight in the query times
/// the field's weight).
pub(crate) struct QueryPlan {
    lists: Vec<(usize, u32, f32)>,
}

impl QueryPlan {
    /// `field_weights[f]` multiplies every contribution of `fields[f]`.
    pub fn new(fields: &[FieldImpacts], field_weights: &[f32], query: &WeightedQuery) -> Self {
        let mut lists = Vec::new();
        for ((f, field), &field_weight) in fields.iter().enumerate().zip(field_weights) {
            if field_weight == 0.0 {
                continue;
            }
            for (term, weight) in query.terms() {
                if let Some(id) = field.term_id(term) {
                    lists.push((f, id, weight * field_weight));
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
        Self { scores: vec![0.0; num_docs], touched: Vec::new() }
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
        // Rank by one integer key per hit: sorting plain u64s is several times faster than
        // comparing (score, doc) pairs, and at k = 1000 the sort is most of a query's cost.
        let mut keys: Vec<u64> = self.touched.drain(..).map(|doc| rank_key(std::mem::take(&mut self.scores[doc as usize]), doc)).collect();
        if k == 0 {
            return Vec::new();
        }
        if keys.len() > k {
            keys.select_nth_unstable(k - 1);
            keys.truncate(k);
        }
        keys.sort_unstable();
        keys.into_iter().map(hit_from_key).collect()
    }
}

/// A key whose ascending order is [`hit_order`]: the score mapped to an order-preserving
/// u32 and inverted (higher scores first) in the high half, the corpus position in the low.
fn rank_key(score: f32, doc: u32) -> u64 {
    let bits = score.to_bits();
    let ordered = if bits >> 31 == 1 { !bits } else { bits | 0x8000_0000 };
    (u64::from(!ordered) << 32) | u64::from(doc)
}

fn hit_from_key(key: u64) -> Hit {
    let ordered = !((key >> 32) as u32);
    let bits = if ordered >> 31 == 1 { ordered & 0x7fff_ffff } else { !ordered };
    Hit { doc: key as u32, score: f32::from_bits(bits) }
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
    fn rank_keys_order_as_hit_order_and_round_trip() {
        let hits = [hit(3, 2.0), hit(1, 2.0), hit(0, -1.5), hit(7, 0.0), hit(2, 9.25), hit(5, f32::MIN_POSITIVE)];
        let mut by_key: Vec<Hit> = hits.iter().map(|h| hit_from_key(rank_key(h.score, h.doc))).collect();
        assert_eq!(
            by_key.iter().map(|h| (h.doc, h.score.to_bits())).collect::<Vec<_>>(),
            hits.iter().map(|h| (h.doc, h.score.to_bits())).collect::<Vec<_>>()
        );
        by_key.sort_by_key(|h| rank_key(h.score, h.doc));
        let mut expected = hits.to_vec();
        expected.sort_by(hit_order);
        assert_eq!(by_key, expected);
    }

    #[test]
    fn top_k_orders_by_score_then_position() {
        let mut hits = vec![hit(4, 1.0), hit(1, 3.0), hit(3, 2.0), hit(0, 2.0), hit(2, 0.5)];
        keep_top_k(&mut hits, 3);
        assert_eq!(hits, [hit(1, 3.0), hit(0, 2.0), hit(3, 2.0)]);
        let mut few = vec![hit(2, 1.0), hit(1, 1.0)];
        keep_top_k(&mut few, 10);
        assert_eq!(few, [hit(1, 1.0), hit(2, 1.0)]);
        keep_top_k(&mut few, 0);
        assert!(few.is_empty());
    }
}
