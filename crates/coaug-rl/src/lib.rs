//! coaug's bidirectional RL trainer (docs/method.md §3–§5).
//!
//! One training step, and where each part lives:
//!
//! 1. [`composite`]: [`CompositeSampler`] draws the step's B groups (1 query + P positives +
//!    H hard negatives + R random negatives) into a [`CompositeBatch`] of query and document
//!    slots, with the [`SlotGains`] the reward credits.
//! 2. The caller samples n rollouts per slot ([`RolloutLayout`] says where they sit) and
//!    fills the [`coaug_eval::ScoreMatrix`] of every query rollout against every document rollout.
//! 3. [`reward`]: [`RewardSampler`] estimates every rollout's expected nDCG@10 over T
//!    [`JointSamples`] — the *reward computation*.
//! 4. [`advantage`]: [`StepAdvantages`] centres rewards per prompt and scales them by role.
//! 5. [`loss`]: the clipped-surrogate loss, k3 KL and its gradient on plain numbers, a
//!    reference for the tensor implementation.
//!
//! 6. The LM side: [`policy`] holds the model, [`rollout`] samples the replies,
//!    [`RewardSimilarity`] fills the similarity matrix with the run's retriever
//!    ([`bm25_reward`]: the evaluation's BM25; [`dense_reward`]: a sentence encoder's cosine),
//!    [`update`] runs the candle loss and the PPO epoch, [`trainer`] ties one step together,
//!    [`validation`] measures nDCG@10 on held-out queries and [`metrics`] records both.
//!
//! [`TrainConfig`] holds every setting (TOML, presets `paper` and `cpu-small`); [`seed`]
//! derives the reproducible random streams; [`bench`] times the reward estimate; [`run`] is a
//! run directory's protocol (config, metrics, validation, checkpoints, resume) for the command
//! line and Python alike.

pub mod advantage;
pub mod bench;
pub mod bm25_reward;
pub mod composite;
pub mod config;
pub mod dense_reward;
pub mod error;
pub mod gains;
pub mod joint;
pub mod layout;
pub mod loss;
pub mod metrics;
pub mod policy;
mod ranking;
pub mod reward;
pub mod rollout;
pub mod run;
pub mod seed;
pub mod similarity;
pub mod trainer;
pub mod update;
pub mod validation;

pub use advantage::{prompt_advantages, PromptRole, RoleScales, StepAdvantages, ZERO_ADVANTAGE_BELOW};
pub use bench::{reward_benchmark, RewardBenchReport, RewardBenchShape};
pub use bm25_reward::Bm25Reward;
pub use composite::{
    CompositeBatch, CompositeConfig, CompositeSampler, DocRole, DocumentSlot, GainScope, PositiveShortfall, QuerySlot, SamplerStats,
};
pub use config::{
    Ablations, BlockSelection, OptimizerConfig, Retriever, RolloutConfig, Schedule, TrainConfig, TrainableConfig, ValidationConfig, PRESETS,
};
pub use dense_reward::DenseReward;
pub use error::{Result, RlError};
pub use gains::SlotGains;
pub use joint::JointSamples;
pub use layout::RolloutLayout;
pub use loss::SurrogateSettings;
#[cfg(any(test, feature = "testing"))]
pub use loss::{surrogate_loss, LossGradient, LossReport, TokenBatch};
pub use metrics::{StepMetrics, ValidationKind, ValidationMetrics};
pub use policy::Policy;
pub use reward::{Estimator, RewardSampler, RewardSettings, Rewards};
pub use rollout::{Rollout, StepRollouts};
pub use run::{ConfigSource, DenseSetup, RunEvent, TrainRun};
pub use similarity::RewardSimilarity;
pub use trainer::{TrainData, Trainer, TrainerState};
pub use update::{policy_update, surrogate_tensor, UpdateItem, UpdateReport, UpdateShape};
pub use validation::{ValidationGeneration, ValidationIndex, ValidationSlice, Validator};
