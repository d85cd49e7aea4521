//! nDCG@k of one ranking of document slots, found by partial selection.
//!
//! Only the top k of a ranking can earn gain, so instead of sorting every slot the ranking keeps
//! a small sorted buffer of the k best candidates seen so far: one comparison per candidate
//! against the current k-th best, and an insertion for the few that beat it.
//!
//! Order (deterministic, and never in the query's favour): higher similarity first; among equal
//! similarities the lower gain first, then the earlier slot. Breaking ties against relevance
//! means a rollout never earns reward from a tie, e.g. a query augmentation that matches nothing
//! (every similarity 0) scores nDCG 0-ish instead of whatever the slot order would give.
//!
//! The DCG formula itself is `coaug_eval`'s, so the reward optimises the number evaluation
//! reports.

/// The best `k` (similarity, gain) pairs offered so far, best first.
#[derive(Debug, Clone)]
pub(crate) struct TopK {
    k: usize,
    scores: Vec<f32>,
    gains: Vec<f32>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        Self { k, scores: Vec::with_capacity(k + 1), gains: Vec::with_capacity(k + 1) }
    }

    pub(crate) fn clear(&mut self) {
        self.scores.clear();
        self.gains.clear();
    }

    /// Offers the next candidate; candidates must come in slot order, so that among equal
    /// (similarity, gain) the earlier slot stays ahead.
    #[inline]
    pub(crate) fn offer(&mut self, score: f32, gain: f32) {
        let full = self.scores.len() == self.k;
        if full && !ranks_before(score, gain, self.scores[self.k - 1], self.gains[self.k - 1]) {
            return;
        }
        let at = (0..self.scores.len()).find(|&i| ranks_before(score, gain, self.scores[i], self.gains[i])).unwrap_or(self.scores.len());
        self.scores.insert(at, score);
        self.gains.insert(at, gain);
        if self.scores.len() > self.k {
            self.scores.pop();
            self.gains.pop();
        }
    }

    /// Gains of the kept candidates in rank order.
    pub(crate) fn ranked_gains(&self) -> &[f32] {
        &self.gains
    }
}

/// Whether a later candidate ranks before an earlier one.
#[inline]
fn ranks_before(score: f32, gain: f32, earlier_score: f32, earlier_gain: f32) -> bool {
    score > earlier_score || (score == earlier_score && gain < earlier_gain)
}

/// nDCG@k of a query given the ranking's top-k gains and the ideal DCG of its candidates.
#[inline]
pub(crate) fn ndcg(top: &TopK, ideal_dcg: f64) -> f64 {
    if ideal_dcg > 0.0 {
        coaug_eval::dcg_at_k(top.ranked_gains(), top.k) / ideal_dcg
    } else {
        0.0
    }
}

/// Ideal DCG@k over the gains of every candidate slot.
pub(crate) fn ideal_dcg(candidate_gains: &[f32], k: usize) -> f64 {
    coaug_eval::ideal_dcg_at_k(candidate_gains, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: the full ranking by a stable sort with the documented order.
    fn full_sort_gains(pairs: &[(f32, f32)], k: usize) -> Vec<f32> {
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        order.sort_by(|&a, &b| pairs[b].0.total_cmp(&pairs[a].0).then(pairs[a].1.total_cmp(&pairs[b].1)).then(a.cmp(&b)));
        order.into_iter().take(k).map(|i| pairs[i].1).collect()
    }

    #[test]
    fn partial_selection_matches_a_full_sort() {
        let mut rng = crate::seed::stream(3, crate::seed::Purpose::JointSamples, 0);
        use rand::Rng;
        for case in 0..200 {
            let n = 1 + case % 40;
            // Few distinct scores so that ties are common.
            let pairs: Vec<(f32, f32)> = (0..n).map(|_| (rng.random_range(0..5) as f32, rng.random_range(0..3) as f32)).collect();
            for k in [1, 3, 10] {
                let mut top = TopK::new(k);
                for &(s, g) in &pairs {
                    top.offer(s, g);
                }
                assert_eq!(top.ranked_gains(), full_sort_gains(&pairs, k).as_slice(), "{pairs:?} k={k}");
            }
        }
    }

    #[test]
    fn ties_rank_the_lower_gain_first() {
        let mut top = TopK::new(10);
        for (s, g) in [(0.0, 1.0), (0.0, 0.0), (0.0, 2.0)] {
            top.offer(s, g);
        }
        assert_eq!(top.ranked_gains(), &[0.0, 1.0, 2.0]);
        // One relevant slot behind one irrelevant tie: 1/log2(3).
        let mut top = TopK::new(10);
        top.offer(0.0, 1.0);
        top.offer(0.0, 0.0);
        let expected = 1.0 / 3f64.log2();
        assert!((ndcg(&top, ideal_dcg(&[1.0, 0.0], 10)) - expected).abs() < 1e-12);
    }

    #[test]
    fn no_relevant_candidate_gives_zero() {
        let mut top = TopK::new(10);
        top.offer(1.0, 0.0);
        assert_eq!(ndcg(&top, ideal_dcg(&[0.0], 10)), 0.0);
    }
}
