//! Timing of the reward estimate on a synthetic step, for `coaug bench`.
//!
//! The similarity values are random (many exact zeros, like BM25 between short texts), so the
//! timing covers ties and the top-k buffer's insertions realistically; the numbers returned are
//! only timings, not rewards worth reading.

use std::time::Instant;

use rand::Rng;
use serde::Serialize;

use crate::error::Result;
use crate::gains::SlotGains;
use crate::layout::RolloutLayout;
use crate::reward::{RewardSampler, RewardSettings};
use crate::seed::{stream, Purpose};
use coaug_eval::ScoreMatrix;

/// The shape of the synthetic step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RewardBenchShape {
    pub groups: usize,
    pub documents_per_group: usize,
    pub positives_per_group: usize,
    pub samples_per_prompt: usize,
    pub settings: RewardSettings,
}

impl RewardBenchShape {
    /// The paper's step: 32 groups of 1 + 5 + 10, n = 5, T = 512.
    pub fn paper() -> Self {
        Self { groups: 32, documents_per_group: 15, positives_per_group: 5, samples_per_prompt: 5, settings: RewardSettings::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RewardBenchReport {
    pub shape: RewardBenchShape,
    pub query_rollouts: usize,
    pub document_rollouts: usize,
    /// Rankings computed (T × query rollouts).
    pub rankings: usize,
    pub seconds: f64,
    pub rankings_per_second: f64,
    pub threads: usize,
}

/// Times one reward estimate of a synthetic step of the given shape.
pub fn reward_benchmark(shape: &RewardBenchShape) -> Result<RewardBenchReport> {
    let docs = shape.groups * shape.documents_per_group;
    let n = shape.samples_per_prompt;
    let layout = RolloutLayout::uniform(shape.groups, docs, n)?;
    let mut rng = stream(0, Purpose::JointSamples, u64::MAX);
    let similarity = ScoreMatrix::from_fn(layout.num_query_rollouts(), layout.num_doc_rollouts(), |_, _| {
        if rng.random_bool(0.5) {
            0.0
        } else {
            rng.random_range(0.0..20.0f32)
        }
    })?;
    let gains: Vec<f32> = (0..shape.groups)
        .flat_map(|q| {
            (0..docs).map(move |d| {
                let own = d / shape.documents_per_group == q;
                f32::from(u8::from(own && d % shape.documents_per_group < shape.positives_per_group))
            })
        })
        .collect();
    let gains = SlotGains::new((0..shape.groups).collect(), (0..docs).map(|d| d / shape.documents_per_group).collect(), gains)?;
    let sampler = RewardSampler::new(shape.settings.clone())?;

    let start = Instant::now();
    let rewards = sampler.sample(&similarity, &layout, &gains, &mut rng)?;
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(rewards);

    let rankings = shape.settings.joint_samples * layout.num_query_rollouts();
    Ok(RewardBenchReport {
        shape: shape.clone(),
        query_rollouts: layout.num_query_rollouts(),
        document_rollouts: layout.num_doc_rollouts(),
        rankings,
        seconds,
        rankings_per_second: rankings as f64 / seconds.max(1e-12),
        threads: rayon::current_num_threads(),
    })
}
