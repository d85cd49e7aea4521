//! Paired comparisons of two systems over the same queries, with a bootstrap interval: on 40 or
//! 300 queries a single mean difference says little without its noise.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::evaluate::Metrics;

/// The mean per-query difference `b − a` of one measure, with a percentile bootstrap interval
/// over queries (resampled with replacement, paired: both systems keep the same queries).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedDelta {
    pub mean: f64,
    /// 2.5th and 97.5th percentiles of the resampled means.
    pub low: f64,
    pub high: f64,
    pub queries: usize,
    /// Queries where `b` scores higher / lower than `a`.
    pub wins: usize,
    pub losses: usize,
}

impl PairedDelta {
    /// Whether the interval excludes 0 (a difference beyond the noise, in either direction).
    pub fn is_significant(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

impl std::fmt::Display for PairedDelta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:+.4} [{:+.4}, {:+.4}] ({}+/{}−)", self.mean, self.low, self.high, self.wins, self.losses)
    }
}

/// Resamples used by [`paired_bootstrap`] unless told otherwise.
pub const DEFAULT_RESAMPLES: usize = 2000;

/// Compares `b` with `a` on `key` (e.g. `"NDCG@10"`) over the queries both evaluated. A query
/// missing from one side is left out (both sides of [`crate::evaluate`] on the same qrels hold
/// the same queries). Deterministic for a given seed.
pub fn paired_bootstrap(a: &Metrics, b: &Metrics, key: &str, resamples: usize, seed: u64) -> PairedDelta {
    let deltas: Vec<f64> = a
        .per_query
        .iter()
        .filter_map(|(q, ma)| {
            let va = ma.get(key)?;
            let vb = b.per_query.get(q)?.get(key)?;
            Some(vb - va)
        })
        .collect();
    bootstrap_deltas(&deltas, resamples, seed)
}

/// The bootstrap of a list of paired differences.
pub fn bootstrap_deltas(deltas: &[f64], resamples: usize, seed: u64) -> PairedDelta {
    let n = deltas.len();
    let wins = deltas.iter().filter(|&&d| d > 0.0).count();
    let losses = deltas.iter().filter(|&&d| d < 0.0).count();
    if n == 0 {
        return PairedDelta { mean: 0.0, low: 0.0, high: 0.0, queries: 0, wins, losses };
    }
    let mean = deltas.iter().sum::<f64>() / n as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> =
        (0..resamples.max(1)).map(|_| (0..n).map(|_| deltas[rng.random_range(0..n)]).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    let at = |p: f64| means[((p * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
    PairedDelta { mean, low: at(0.025), high: at(0.975), queries: n, wins, losses }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_difference_has_a_point_interval() {
        let d = bootstrap_deltas(&[0.1; 30], 500, 1);
        assert!((d.mean - 0.1).abs() < 1e-12 && (d.low - 0.1).abs() < 1e-12 && (d.high - 0.1).abs() < 1e-12);
        assert_eq!((d.wins, d.losses, d.queries), (30, 0, 30));
        assert!(d.is_significant());
    }

    #[test]
    fn interval_matches_the_normal_approximation_of_the_mean() {
        // Deltas ±1 in equal numbers: mean 0, standard error 1/sqrt(n); the 95% interval of the
        // mean is about ±1.96/sqrt(n).
        let n = 400;
        let deltas: Vec<f64> = (0..n).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let d = bootstrap_deltas(&deltas, 4000, 7);
        let half = 1.96 / (n as f64).sqrt();
        assert!((d.high - half).abs() < 0.02 && (d.low + half).abs() < 0.02, "{d}");
        assert!(!d.is_significant());
        assert_eq!(d, bootstrap_deltas(&deltas, 4000, 7), "same seed, same interval");
    }

    #[test]
    fn pairs_by_query_and_skips_queries_one_side_lacks() {
        let metrics = |pairs: &[(&str, f64)]| Metrics {
            num_queries: pairs.len(),
            mean: Default::default(),
            per_query: pairs.iter().map(|(q, v)| (q.to_string(), [("NDCG@10".to_string(), *v)].into_iter().collect())).collect(),
        };
        let a = metrics(&[("q1", 0.5), ("q2", 0.2), ("q3", 0.9)]);
        let b = metrics(&[("q1", 0.7), ("q2", 0.1)]);
        let d = paired_bootstrap(&a, &b, "NDCG@10", 100, 0);
        assert_eq!((d.queries, d.wins, d.losses), (2, 1, 1));
        assert!((d.mean - 0.05).abs() < 1e-12);
    }
}
