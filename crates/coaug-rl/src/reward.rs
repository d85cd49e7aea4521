//! Reward sampling: the Monte-Carlo estimate of every rollout's expected nDCG (docs/method.md §4).
//!
//! A query rollout's reward depends on which rollouts of the documents it is ranked against,
//! and a document rollout's on every query that ranks it. [`RewardSampler`] draws T joint
//! samples σ_t (one rollout per document slot, [`JointSamples`]), ranks the document slots for
//! every query rollout under each σ_t by the precomputed [`ScoreMatrix`], and averages:
//!
//! - query rollout `(q, i)`: `r = (1/T) Σ_t nDCG@k_t(q, i)`;
//! - document rollout `j` of slot `d`:
//!   `r = Σ_{t: σ_t(d)=j} Σ_{(q',i)} w(q',d)·nDCG_t(q',i) / Σ_{t: σ_t(d)=j} Σ_{(q',i)} w(q',d)`.
//!
//! [`Estimator::Batch`] (the paper's) ranks every query rollout against *all* document slots of
//! the step, with `w(q',d) = 1 + κ·gain(q',d)`. [`Estimator::Sampling`] (the simpler variant)
//! ranks a query rollout against its own group's slots only, with `w = 1` for the own group's
//! query and 0 otherwise. The released code draws a random query rollout per sample there; here
//! every query rollout is ranked under every σ_t restricted to its group, which has the same
//! expectation and gives each query rollout exactly T samples.
//!
//! Both are exact in expectation: given the number of samples that chose rollout `j`, those
//! samples are uniform over the other slots' choices. Passing [`JointSamples::enumerate`]
//! instead of random draws makes them return the exact expectations.
//!
//! Cost: T × (query rollouts) rankings of the candidate slots, each a single pass with a top-k
//! buffer (`crate::ranking`), parallel over query rollouts; then T × (document slots) × (query
//! slots) multiply-adds for the document rewards, parallel over document slots. Every result is
//! computed by one thread in a fixed order, so it does not depend on the thread count.

use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{setting, Result, RlError};
use crate::gains::SlotGains;
use crate::joint::JointSamples;
use crate::layout::RolloutLayout;
use crate::ranking::{ideal_dcg, ndcg, TopK};
use coaug_eval::ScoreMatrix;

/// Which reward estimator of docs/method.md §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Estimator {
    /// Rank against every document slot of the step; κ-weighted document rewards.
    #[default]
    Batch,
    /// Rank against the own group's document slots only; unweighted.
    Sampling,
}

/// Settings of the reward estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardSettings {
    pub estimator: Estimator,
    /// T, joint samples per step.
    pub joint_samples: usize,
    /// κ in `w(q', d) = 1 + κ·gain(q', d)`.
    pub kappa: f64,
    /// k of nDCG@k.
    pub ndcg_cutoff: usize,
}

impl Default for RewardSettings {
    fn default() -> Self {
        Self { estimator: Estimator::Batch, joint_samples: 512, kappa: 10.0, ndcg_cutoff: 10 }
    }
}

impl RewardSettings {
    pub fn validate(&self) -> Result<()> {
        if self.joint_samples == 0 {
            return Err(setting("reward.joint_samples", 0, "needs at least one joint sample"));
        }
        if self.ndcg_cutoff == 0 {
            return Err(setting("reward.ndcg_cutoff", 0, "nDCG@0 is undefined"));
        }
        if !(self.kappa.is_finite() && self.kappa >= 0.0) {
            return Err(setting("reward.kappa", self.kappa, "must be finite and >= 0"));
        }
        Ok(())
    }
}

/// Every rollout's estimated reward.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rewards {
    /// Per query rollout (row of the similarity matrix).
    pub query: Vec<f64>,
    /// Per document rollout (column); `None` when no joint sample chose it (possible only when
    /// T is small next to the rollouts per slot, e.g. the T = 1 ablation).
    pub document: Vec<Option<f64>>,
    /// How many joint samples chose each document rollout.
    pub document_draws: Vec<u32>,
}

impl Rewards {
    /// Mean nDCG@k of the step's query rollouts (the query reward averaged).
    pub fn mean_query_reward(&self) -> f64 {
        mean(self.query.iter().copied())
    }

    /// Mean reward of the document rollouts in `columns` that have one.
    pub fn mean_document_reward(&self, columns: impl IntoIterator<Item = usize>) -> f64 {
        mean(columns.into_iter().filter_map(|c| self.document[c]))
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// Estimates rollout rewards from a step's similarity matrix (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct RewardSampler {
    settings: RewardSettings,
}

impl RewardSampler {
    pub fn new(settings: RewardSettings) -> Result<Self> {
        settings.validate()?;
        Ok(Self { settings })
    }

    pub fn settings(&self) -> &RewardSettings {
        &self.settings
    }

    /// Draws T joint samples from `rng` and estimates every rollout's reward.
    pub fn sample(&self, similarity: &ScoreMatrix, layout: &RolloutLayout, gains: &SlotGains, rng: &mut impl Rng) -> Result<Rewards> {
        let samples = JointSamples::draw(layout, self.settings.joint_samples, rng);
        self.estimate(similarity, layout, gains, &samples)
    }

    /// Estimates every rollout's reward over the given joint samples (random draws, or
    /// [`JointSamples::enumerate`] for the exact expectation).
    pub fn estimate(&self, similarity: &ScoreMatrix, layout: &RolloutLayout, gains: &SlotGains, samples: &JointSamples) -> Result<Rewards> {
        check_shapes(similarity, layout, gains, samples)?;
        let candidates = self.candidates(layout, gains);
        self.check_every_slot_ranked(layout, gains)?;
        let ndcg_by_row = self.rank_all(similarity, layout, samples, &candidates);
        let query = ndcg_by_row.iter().map(|per_t| mean(per_t.iter().copied())).collect();
        let (document, document_draws) = self.document_rewards(layout, gains, samples, &ndcg_by_row);
        Ok(Rewards { query, document, document_draws })
    }

    /// The document slots each query slot is ranked against, with the ideal DCG over them.
    fn candidates(&self, layout: &RolloutLayout, gains: &SlotGains) -> Vec<Candidates> {
        (0..layout.num_query_slots())
            .map(|q| {
                let slots: Vec<usize> = match self.settings.estimator {
                    Estimator::Batch => (0..layout.num_doc_slots()).collect(),
                    Estimator::Sampling => (0..layout.num_doc_slots()).filter(|&d| gains.doc_group(d) == gains.query_group(q)).collect(),
                };
                let slot_gains: Vec<f32> = slots.iter().map(|&d| gains.gain(q, d)).collect();
                let ideal = ideal_dcg(&slot_gains, self.settings.ndcg_cutoff);
                let first_column = slots.iter().map(|&d| layout.doc_columns(d).start).collect();
                Candidates { slots, first_column, gains: slot_gains, ideal }
            })
            .collect()
    }

    /// nDCG@k of every query rollout under every joint sample: `[row][t]`.
    fn rank_all(
        &self,
        similarity: &ScoreMatrix,
        layout: &RolloutLayout,
        samples: &JointSamples,
        candidates: &[Candidates],
    ) -> Vec<Vec<f64>> {
        let k = self.settings.ndcg_cutoff;
        (0..layout.num_query_rollouts())
            .into_par_iter()
            .map_init(
                || TopK::new(k),
                |top, row| {
                    let scores = similarity.row(row);
                    let cand = &candidates[layout.query_slot_of_row(row)];
                    (0..samples.len())
                        .map(|t| {
                            let sigma = samples.sample(t);
                            top.clear();
                            for ((&slot, &first), &gain) in cand.slots.iter().zip(&cand.first_column).zip(&cand.gains) {
                                top.offer(scores[first + sigma[slot] as usize], gain);
                            }
                            ndcg(top, cand.ideal)
                        })
                        .collect()
                },
            )
            .collect()
    }

    /// The weighted ratio estimate of every document rollout's reward, and its draw count.
    #[allow(clippy::needless_range_loop)] // t indexes both σ_t and the per-slot sums
    fn document_rewards(
        &self,
        layout: &RolloutLayout,
        gains: &SlotGains,
        samples: &JointSamples,
        ndcg_by_row: &[Vec<f64>],
    ) -> (Vec<Option<f64>>, Vec<u32>) {
        // Σ over the rollouts of each query slot, per joint sample: the weights depend on the
        // query slot only, so the per-slot sums are all the document side needs.
        let num_t = samples.len();
        let slot_sums: Vec<Vec<f64>> = (0..layout.num_query_slots())
            .map(|q| {
                let mut sums = vec![0.0; num_t];
                for row in layout.query_rows(q) {
                    for (s, v) in sums.iter_mut().zip(&ndcg_by_row[row]) {
                        *s += v;
                    }
                }
                sums
            })
            .collect();

        let per_slot: Vec<(Vec<Option<f64>>, Vec<u32>)> = (0..layout.num_doc_slots())
            .into_par_iter()
            .map(|d| {
                let weights: Vec<(usize, f64)> =
                    (0..layout.num_query_slots()).map(|q| (q, self.weight(gains, q, d))).filter(|&(_, w)| w != 0.0).collect();
                let total_weight: f64 = weights.iter().map(|&(q, w)| w * layout.query_rows(q).len() as f64).sum();
                let rollouts = layout.doc_columns(d).len();
                let mut numerator = vec![0.0; rollouts];
                let mut draws = vec![0u32; rollouts];
                for t in 0..samples.len() {
                    let j = samples.sample(t)[d] as usize;
                    numerator[j] += weights.iter().map(|&(q, w)| w * slot_sums[q][t]).sum::<f64>();
                    draws[j] += 1;
                }
                let rewards = numerator
                    .iter()
                    .zip(&draws)
                    .map(|(&num, &n)| (n > 0 && total_weight > 0.0).then(|| num / (f64::from(n) * total_weight)))
                    .collect();
                (rewards, draws)
            })
            .collect();

        let mut rewards = Vec::with_capacity(layout.num_doc_rollouts());
        let mut draws = Vec::with_capacity(layout.num_doc_rollouts());
        for (r, n) in per_slot {
            rewards.extend(r);
            draws.extend(n);
        }
        (rewards, draws)
    }

    /// A document slot that no query ranks (possible with `Sampling` when its group has no
    /// query slot) would have no reward at all: refuse such a step.
    fn check_every_slot_ranked(&self, layout: &RolloutLayout, gains: &SlotGains) -> Result<()> {
        let unranked = (0..layout.num_doc_slots()).find(|&d| (0..layout.num_query_slots()).all(|q| self.weight(gains, q, d) == 0.0));
        match unranked {
            Some(d) => Err(RlError::Data(format!(
                "document slot {d} (group {}) is ranked by no query slot, so it cannot be rewarded",
                gains.doc_group(d)
            ))),
            None => Ok(()),
        }
    }

    /// w(q, d) of the document reward.
    fn weight(&self, gains: &SlotGains, q: usize, d: usize) -> f64 {
        match self.settings.estimator {
            Estimator::Batch => 1.0 + self.settings.kappa * f64::from(gains.gain(q, d)),
            Estimator::Sampling => f64::from(u8::from(gains.query_group(q) == gains.doc_group(d))),
        }
    }
}

/// The document slots one query slot is ranked against.
struct Candidates {
    slots: Vec<usize>,
    /// First similarity column of each candidate slot (its rollout 0).
    first_column: Vec<usize>,
    gains: Vec<f32>,
    ideal: f64,
}

fn check_shapes(similarity: &ScoreMatrix, layout: &RolloutLayout, gains: &SlotGains, samples: &JointSamples) -> Result<()> {
    let checks = [
        ("similarity rows (query rollouts of the layout)", layout.num_query_rollouts(), similarity.num_queries()),
        ("similarity columns (document rollouts of the layout)", layout.num_doc_rollouts(), similarity.num_docs()),
        ("query slots of the gains", layout.num_query_slots(), gains.num_query_slots()),
        ("document slots of the gains", layout.num_doc_slots(), gains.num_doc_slots()),
        ("document slots of the joint samples", layout.num_doc_slots(), samples.num_slots()),
    ];
    for (what, expected, got) in checks {
        if expected != got {
            return Err(RlError::Shape { what, expected, got });
        }
    }
    if samples.is_empty() {
        return Err(setting("joint samples", 0, "needs at least one joint sample"));
    }
    for d in 0..layout.num_doc_slots() {
        let n = layout.doc_columns(d).len();
        if let Some(t) = (0..samples.len()).find(|&t| samples.sample(t)[d] as usize >= n) {
            return Err(RlError::Data(format!(
                "joint sample {t} picks rollout {} of document slot {d}, which has {n}",
                samples.sample(t)[d]
            )));
        }
    }
    Ok(())
}
