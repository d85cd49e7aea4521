//! Every setting of a training run, TOML-ready, with the `paper` and `cpu-small` presets.
//!
//! A config file may name a preset and override any subset of settings:
//!
//! ```toml
//! preset = "cpu-small"
//! seed = 7
//! [reward]
//! joint_samples = 256
//! ```
//!
//! Unknown keys are errors (with their line), so a typo cannot silently fall back to a default.
//! [`TrainConfig::to_toml`] writes the fully resolved config, which a run saves beside its
//! results. `TrainConfig::default()` is the `paper` preset (docs/method.md's numbers).

use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::advantage::RoleScales;
use crate::composite::CompositeConfig;
use crate::error::{setting, Result, RlError};
use crate::loss::SurrogateSettings;
use crate::reward::RewardSettings;

/// Which retriever a run trains for (TOML: `"sparse"` or `"dense"`): the augmentation crate's
/// own type, because one choice sets both the system prompts and composition of the rollouts
/// (`coaug_augment`) and the similarity of the reward ([`crate::RewardSimilarity`]).
pub use coaug_augment::Retriever;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The preset this config starts from; a file's other keys override it.
    pub preset: String,
    /// Seed of every random choice of the run (queries, documents, joint samples, sampling).
    pub seed: u64,
    /// The policy LM: a known model's name (`coaug model list`), a local GGUF file or Hugging
    /// Face folder, or a Hugging Face repository id.
    pub model: String,
    /// `sparse`: BM25 reward (k1 1.2, b 0.75, the evaluation's analyzer), keyword prompts,
    /// augmentations appended. `dense`: cosine of the sentence encoder's normalised
    /// embeddings, expansion / abstract prompts, document abstracts prepended.
    pub retriever: Retriever,
    pub schedule: Schedule,
    pub composite: CompositeConfig,
    pub rollout: RolloutConfig,
    pub reward: RewardSettings,
    /// posk / negk: the advantage scale of each role.
    pub advantage: RoleScales,
    pub loss: SurrogateSettings,
    pub optimizer: OptimizerConfig,
    pub trainable: TrainableConfig,
    pub ablation: Ablations,
    pub validation: ValidationConfig,
    /// How augmented texts are composed and analysed: the evaluation's settings, so the reward and
    /// validation measure what `coaug eval` measures.
    pub retrieval: RetrievalConfig,
}

/// The composition and analysis of `coaug eval` (`coaug_retrieval`), written as its flags are:
/// `query_weight = "share:0.6"`, `doc_field = "own:0.05"`, `stop_words = "nltk"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrievalConfig {
    pub query_weight: coaug_retrieval::QueryWeight,
    pub doc_field: coaug_retrieval::DocField,
    pub stop_words: coaug_retrieval::StopList,
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        let c = coaug_retrieval::Composition::default();
        Self { query_weight: c.query_weight, doc_field: c.doc_field, stop_words: coaug_retrieval::StopList::default() }
    }
}

impl RetrievalConfig {
    /// One expansion per query rollout, so sample fusion never applies.
    pub fn composition(&self) -> coaug_retrieval::Composition {
        coaug_retrieval::Composition { query_weight: self.query_weight, doc_field: self.doc_field, ..Default::default() }
    }
}

/// How long to train: whichever of the two limits comes first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schedule {
    /// Passes over the training queries.
    pub epochs: f64,
    /// A cap on optimizer steps (omit for none).
    pub max_steps: Option<u64>,
    /// Save a checkpoint every this many steps.
    pub checkpoint_every: u64,
    /// The first this many steps train the query role alone (documents stay original): the
    /// query side's reward is the least noisy, and document rollouts start against a policy
    /// whose queries already moved.
    pub query_only_warmup_steps: u64,
}

impl Default for Schedule {
    fn default() -> Self {
        Self { epochs: 5.0, max_steps: None, checkpoint_every: 20, query_only_warmup_steps: 0 }
    }
}

impl Schedule {
    /// Steps of the run given the number of training queries and groups per step.
    pub fn total_steps(&self, train_queries: usize, groups_per_step: usize) -> u64 {
        let by_epochs = (self.epochs * train_queries as f64 / groups_per_step.max(1) as f64).ceil() as u64;
        self.max_steps.map_or(by_epochs, |cap| cap.min(by_epochs))
    }
}

/// Sampling of the n rollouts of every prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutConfig {
    /// n, rollouts per prompt.
    pub samples_per_prompt: usize,
    /// n for query prompts when it should differ (more: the query reward is the signal the
    /// document rewards build on); omit for `samples_per_prompt`.
    pub query_samples_per_prompt: Option<usize>,
    pub temperature: f64,
    pub repetition_penalty: f64,
    pub top_p: f64,
    /// Tokens generated at most per reply (documents, and queries unless set below).
    pub max_new_tokens: usize,
    /// Tokens generated at most per query reply, when it differs (`coaug eval` writes 96-token
    /// query passages and 64-token document keyword lists by default).
    pub query_max_new_tokens: Option<usize>,
    /// Documents are truncated to this many tokens before they enter the prompt.
    pub max_document_tokens: usize,
    /// Added to the reward of a response without a well-formed answer block (<= 0).
    pub format_penalty: f64,
    /// Reading replies without a well-formed answer block: `strict` (docs/method.md: empty
    /// augmentation) or `lenient` (salvage an answer cut by the token limit).
    pub parse_policy: coaug_augment::ParsePolicy,
}

impl RolloutConfig {
    /// The token limit of a reply of `role`.
    pub fn max_new_tokens_for(&self, role: coaug_augment::Role) -> usize {
        match role {
            coaug_augment::Role::Query => self.query_max_new_tokens.unwrap_or(self.max_new_tokens),
            coaug_augment::Role::Document => self.max_new_tokens,
        }
    }

    /// n for a prompt of `role`.
    pub fn samples_for(&self, role: coaug_augment::Role) -> usize {
        match role {
            coaug_augment::Role::Query => self.query_samples_per_prompt.unwrap_or(self.samples_per_prompt),
            coaug_augment::Role::Document => self.samples_per_prompt,
        }
    }
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            samples_per_prompt: 5,
            query_samples_per_prompt: None,
            temperature: 1.2,
            repetition_penalty: 1.2,
            top_p: 1.0,
            max_new_tokens: 2048,
            query_max_new_tokens: None,
            max_document_tokens: 2048,
            format_penalty: 0.0,
            parse_policy: coaug_augment::ParsePolicy::Strict,
        }
    }
}

/// AdamW with a constant schedule, one PPO epoch split into mini-batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 disables).
    pub grad_clip_norm: f64,
    /// Optimizer updates per step (the step's rollouts split evenly).
    pub mini_batches: usize,
    /// Sequences per forward pass inside a mini-batch (gradient accumulation).
    pub micro_batch_size: usize,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self { learning_rate: 1e-6, weight_decay: 0.01, grad_clip_norm: 1.0, mini_batches: 4, micro_batch_size: 16 }
    }
}

/// Which transformer blocks train, counted from the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockSelection {
    /// Every block (TOML: `"all"`).
    #[default]
    All,
    /// Only the top k blocks (TOML: `k`); the frozen trunk's output can then be cached.
    Top(usize),
}

impl Serialize for BlockSelection {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            BlockSelection::All => serializer.serialize_str("all"),
            BlockSelection::Top(k) => serializer.serialize_u64(*k as u64),
        }
    }
}

impl<'de> Deserialize<'de> for BlockSelection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u64),
            Word(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Count(k) => Ok(BlockSelection::Top(k as usize)),
            Raw::Word(w) if w == "all" => Ok(BlockSelection::All),
            Raw::Word(w) => Err(serde::de::Error::custom(format!("expected \"all\" or a block count, got \"{w}\""))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainableConfig {
    pub blocks: BlockSelection,
    /// LoRA rank on the trainable blocks' projections; 0 trains the full weights.
    pub lora_rank: usize,
    pub lora_alpha: f64,
}

impl Default for TrainableConfig {
    fn default() -> Self {
        Self { blocks: BlockSelection::All, lora_rank: 0, lora_alpha: 16.0 }
    }
}

/// The paper's ablations. The trainer reads them through [`TrainConfig::role_scales`],
/// [`TrainConfig::reward_settings`], [`TrainConfig::augments_queries`] and
/// [`TrainConfig::augments_documents`] rather than directly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ablations {
    /// Train and augment queries only; documents stay original.
    pub query_only: bool,
    /// Train and augment documents only; queries stay original.
    pub doc_only: bool,
    /// One joint sample per step (T = 1) instead of the Monte-Carlo estimate.
    pub no_reward_sampling: bool,
    /// Every role's advantage scaled by 1.
    pub no_role_scaling: bool,
}

/// Validation on held-out queries (see `coaug_rl::validation`): the query side every few steps,
/// queries and a document pool at the start and the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationConfig {
    /// Validate the query side every this many steps (0 disables validation).
    pub every_steps: u64,
    /// The qrels split the held-out queries come from.
    pub split: String,
    /// How many judged queries of that split (a fixed, seeded choice); 0 takes them all (NFCorpus
    /// dev: 324), which a paired interval needs to see a gain of a point.
    pub queries: usize,
    /// The co-augmentation check at the start and the end augments the union of the plain BM25
    /// top-k of the validation queries (label-independent); 0 skips it.
    pub pool_per_query: usize,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self { every_steps: 10, split: "dev".into(), queries: 0, pool_per_query: 20 }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            preset: "paper".into(),
            seed: 0,
            model: "Qwen/Qwen2.5-7B-Instruct".into(),
            retriever: Retriever::Sparse,
            schedule: Schedule::default(),
            composite: CompositeConfig::default(),
            rollout: RolloutConfig::default(),
            reward: RewardSettings::default(),
            advantage: RoleScales::default(),
            loss: SurrogateSettings::default(),
            optimizer: OptimizerConfig::default(),
            trainable: TrainableConfig::default(),
            ablation: Ablations::default(),
            validation: ValidationConfig::default(),
            retrieval: RetrievalConfig::default(),
        }
    }
}

/// Names accepted by [`TrainConfig::preset`].
pub const PRESETS: [&str; 2] = ["paper", "cpu-small"];

impl TrainConfig {
    /// docs/method.md's configuration: B 32 groups of 1+5+0+10, n 5, T 512, κ 10, posk 0.2,
    /// negk 0.1, ratio [0.8, 1.28], KL and entropy 0.001, 4 mini-batches, lr 1e-6, 5 epochs.
    pub fn paper() -> Self {
        Self::default()
    }

    /// What a couple of CPU hours afford with a ~135M model, tuned for a signal the update can
    /// follow: 4 groups of 1 query + 2 positives + 4 random negatives, 8 rollouts per query and 2
    /// per document (the query reward is the clean signal; document rewards are mostly noise from
    /// the other slots' choices), coherent on-policy sampling (temperature 1, no penalty), role-
    /// balanced advantages, no entropy bonus, two optimizer updates per step, the top 4 blocks
    /// trained. Validation: every judged dev query, the query side every 20 steps.
    pub fn cpu_small() -> Self {
        let mut c = Self { preset: "cpu-small".into(), model: coaug_lm::DEFAULT_MODEL.into(), ..Self::default() };
        c.composite.groups_per_step = 4;
        c.composite.positives = 2;
        c.composite.random_negatives = 4;
        c.rollout.samples_per_prompt = 2;
        c.rollout.query_samples_per_prompt = Some(8);
        c.rollout.temperature = 1.0;
        c.rollout.repetition_penalty = 1.0;
        // The token limits of `coaug eval`'s defaults, so training writes what evaluation reads.
        c.rollout.max_new_tokens = 64;
        c.rollout.query_max_new_tokens = Some(96);
        c.rollout.max_document_tokens = 128;
        // 48 new tokens rarely let a 135M model close its answer block; strict parsing would
        // leave nearly every augmentation empty and every advantage zero.
        c.rollout.parse_policy = coaug_augment::ParsePolicy::Lenient;
        c.loss.entropy_coef = 0.0;
        c.loss.role_balance = true;
        c.trainable.blocks = BlockSelection::Top(4);
        c.optimizer.learning_rate = 1e-5;
        c.optimizer.mini_batches = 2;
        // Prompts of a role share their system turn within a micro-batch (`GroupedLayout`), so
        // fewer, larger micro-batches recompute it less (update 10.8 s at 8, 10.1 s at 28, 10.3 s
        // at 56 with 5.4 GB peak RSS, measured with 56 rollouts a step).
        c.optimizer.micro_batch_size = 28;
        c.schedule = Schedule { epochs: 1.0, max_steps: Some(120), checkpoint_every: 10, query_only_warmup_steps: 0 };
        c.validation = ValidationConfig { every_steps: 20, split: "dev".into(), queries: 0, pool_per_query: 10 };
        c
    }

    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "paper" => Ok(Self::paper()),
            "cpu-small" => Ok(Self::cpu_small()),
            other => Err(setting("preset", other, format!("unknown preset; known: {}", PRESETS.join(", ")))),
        }
    }

    /// Parses a config file's text: an optional `preset` (default `paper`) plus overrides.
    /// `source_name` (usually the path) names the file in errors.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Self> {
        let config_error = |message: String| RlError::Config { source_name: source_name.to_owned(), message };
        // Parsing the file alone (missing keys take `paper` values) reports unknown keys and
        // wrong types with their position in the file, and names the preset.
        let alone: TrainConfig = toml::from_str(text).map_err(|e| config_error(e.to_string()))?;
        let table: toml::Table = toml::from_str(text).map_err(|e| config_error(e.to_string()))?;
        let mut merged = toml::Table::try_from(Self::preset(&alone.preset)?).map_err(|e| config_error(e.to_string()))?;
        merge(&mut merged, table);
        let config: TrainConfig = toml::Value::Table(merged).try_into().map_err(|e: toml::de::Error| config_error(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// A config given as JSON (a table of tables, as from Python's `json.dumps` of a dict): the
    /// same keys, preset and checks as a TOML file. `source_name` names it in errors.
    pub fn from_json(value: serde_json::Value, source_name: &str) -> Result<Self> {
        let config_error = |message: String| RlError::Config { source_name: source_name.to_owned(), message };
        if !value.is_object() {
            return Err(config_error("expected a table of settings (a dict)".into()));
        }
        let table: toml::Table = serde_json::from_value(value).map_err(|e| config_error(e.to_string()))?;
        let text = toml::to_string(&table).map_err(|e| config_error(e.to_string()))?;
        Self::from_toml(&text, source_name)
    }

    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| RlError::Config { source_name: path.display().to_string(), message: format!("cannot read: {e}") })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The fully resolved config as TOML (what a run saves).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("every TrainConfig field has a TOML form")
    }

    pub fn validate(&self) -> Result<()> {
        self.composite.validate()?;
        self.reward.validate()?;
        self.loss.validate()?;
        let r = &self.rollout;
        if r.query_samples_per_prompt == Some(0) {
            return Err(setting("rollout.query_samples_per_prompt", 0, "every prompt needs a rollout"));
        }
        if r.samples_per_prompt == 0 {
            return Err(setting("rollout.samples_per_prompt", 0, "every prompt needs a rollout"));
        }
        if !(r.temperature >= 0.0 && r.temperature.is_finite()) {
            return Err(setting("rollout.temperature", r.temperature, "must be finite and >= 0"));
        }
        if r.repetition_penalty.is_nan() || r.repetition_penalty <= 0.0 {
            return Err(setting("rollout.repetition_penalty", r.repetition_penalty, "must be > 0"));
        }
        if !(r.top_p > 0.0 && r.top_p <= 1.0) {
            return Err(setting("rollout.top_p", r.top_p, "must be in (0, 1]"));
        }
        if r.max_new_tokens == 0 {
            return Err(setting("rollout.max_new_tokens", 0, "must be > 0"));
        }
        if r.format_penalty > 0.0 {
            return Err(setting("rollout.format_penalty", r.format_penalty, "a penalty must be <= 0"));
        }
        let o = &self.optimizer;
        if !(o.learning_rate > 0.0 && o.learning_rate.is_finite()) {
            return Err(setting("optimizer.learning_rate", o.learning_rate, "must be finite and > 0"));
        }
        if o.mini_batches == 0 || o.micro_batch_size == 0 {
            return Err(setting("optimizer.mini_batches / micro_batch_size", 0, "must be > 0"));
        }
        if !(o.weight_decay >= 0.0 && o.grad_clip_norm >= 0.0) {
            return Err(setting("optimizer.weight_decay / grad_clip_norm", "negative", "must be >= 0"));
        }
        let s = &self.advantage;
        if [s.query, s.positive_document, s.negative_document].iter().any(|c| !(c.is_finite() && *c >= 0.0)) {
            return Err(setting("advantage", format!("{s:?}"), "scales must be finite and >= 0"));
        }
        if self.ablation.query_only && self.ablation.doc_only {
            return Err(setting("ablation", "query_only and doc_only", "together nothing would train"));
        }
        if self.trainable.blocks == BlockSelection::Top(0) {
            return Err(setting("trainable.blocks", 0, "use \"all\" or a positive count"));
        }
        if self.schedule.epochs.is_nan() || self.schedule.epochs <= 0.0 {
            return Err(setting("schedule.epochs", self.schedule.epochs, "must be > 0"));
        }
        Ok(())
    }

    /// Advantage scales after the ablations: 0 for a role that does not train, 1 for every
    /// role without role scaling.
    pub fn role_scales(&self) -> RoleScales {
        let base = if self.ablation.no_role_scaling { RoleScales::unscaled() } else { self.advantage };
        RoleScales {
            query: if self.ablation.doc_only { 0.0 } else { base.query },
            positive_document: if self.ablation.query_only { 0.0 } else { base.positive_document },
            negative_document: if self.ablation.query_only { 0.0 } else { base.negative_document },
        }
    }

    /// Reward settings after the ablations (T = 1 without reward sampling).
    pub fn reward_settings(&self) -> RewardSettings {
        let mut reward = self.reward.clone();
        if self.ablation.no_reward_sampling {
            reward.joint_samples = 1;
        }
        reward
    }

    /// Whether queries are augmented by the policy (false in the document-only ablation).
    pub fn augments_queries(&self) -> bool {
        !self.ablation.doc_only
    }

    /// Whether documents are augmented by the policy (false in the query-only ablation).
    pub fn augments_documents(&self) -> bool {
        !self.ablation.query_only
    }

    /// Whether step `step` augments documents (not during the query-only warm-up).
    pub fn augments_documents_at(&self, step: u64) -> bool {
        self.augments_documents() && step >= self.schedule.query_only_warmup_steps
    }
}

/// Recursively overrides `base` with `overrides`: tables merge key by key, anything else
/// replaces.
fn merge(base: &mut toml::Table, overrides: toml::Table) {
    for (key, value) in overrides {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(over)) => merge(inner, over),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reward::Estimator;

    #[test]
    fn presets_carry_their_numbers() {
        let paper = TrainConfig::paper();
        assert_eq!(paper.composite.groups_per_step, 32);
        assert_eq!(paper.composite.documents_per_group(), 15);
        assert_eq!(paper.reward.joint_samples, 512);
        assert_eq!(paper.loss.ratio_max, 1.28);
        let small = TrainConfig::cpu_small();
        assert_eq!((small.composite.groups_per_step, small.composite.documents_per_group()), (4, 6));
        assert_eq!(small.rollout.samples_for(coaug_augment::Role::Query), 8);
        assert_eq!(small.rollout.samples_for(coaug_augment::Role::Document), 2);
        assert!(small.loss.role_balance && small.loss.entropy_coef == 0.0);
        assert_eq!(small.rollout.max_new_tokens_for(coaug_augment::Role::Query), 96);
        assert_eq!(small.rollout.max_new_tokens_for(coaug_augment::Role::Document), 64);
        assert_eq!(small.rollout.max_document_tokens, 128);
        assert_eq!(small.trainable.blocks, BlockSelection::Top(4));
        for name in PRESETS {
            TrainConfig::preset(name).unwrap().validate().unwrap();
        }
    }

    #[test]
    fn a_file_overrides_its_preset_key_by_key() {
        let text = "preset = \"cpu-small\"\nseed = 7\n[reward]\nestimator = \"sampling\"\n[trainable]\nblocks = \"all\"\n";
        let c = TrainConfig::from_toml(text, "test.toml").unwrap();
        assert_eq!(c.seed, 7);
        assert_eq!(c.reward.estimator, Estimator::Sampling);
        assert_eq!(c.reward.joint_samples, 512, "untouched keys of an overridden table keep the preset's value");
        assert_eq!(c.composite.groups_per_step, 4);
        assert_eq!(c.trainable.blocks, BlockSelection::All);
        assert_eq!(TrainConfig::from_toml("", "empty.toml").unwrap(), TrainConfig::paper());
    }

    #[test]
    fn resolved_config_round_trips() {
        for mut c in [TrainConfig::paper(), TrainConfig::cpu_small()] {
            c.ablation.no_role_scaling = true;
            assert_eq!(TrainConfig::from_toml(&c.to_toml(), "saved").unwrap(), c);
        }
    }

    #[test]
    fn the_retriever_is_a_lowercase_word() {
        let c = TrainConfig::from_toml("preset = \"cpu-small\"\nretriever = \"dense\"\n", "x").unwrap();
        assert_eq!(c.retriever, Retriever::Dense);
        assert!(c.to_toml().contains("retriever = \"dense\""), "{}", c.to_toml());
        assert_eq!(TrainConfig::cpu_small().retriever, Retriever::Sparse);
        assert!(TrainConfig::from_toml("retriever = \"splade\"\n", "x").is_err());
    }

    #[test]
    fn typos_and_bad_values_are_errors_that_say_where() {
        let err = TrainConfig::from_toml("[reward]\njoint_sample = 3\n", "run.toml").unwrap_err().to_string();
        assert!(err.contains("run.toml") && err.contains("joint_sample"), "{err}");
        assert!(TrainConfig::from_toml("preset = \"gpu-huge\"", "x").is_err());
        assert!(TrainConfig::from_toml("[loss]\nratio_min = 1.5\n", "x").is_err());
        assert!(TrainConfig::from_toml("[ablation]\nquery_only = true\ndoc_only = true\n", "x").is_err());
        assert!(TrainConfig::from_toml("[trainable]\nblocks = \"some\"\n", "x").is_err());
    }

    #[test]
    fn ablations_resolve_into_scales_and_reward_settings() {
        let mut c = TrainConfig::paper();
        assert_eq!(c.role_scales(), RoleScales { query: 1.0, positive_document: 0.2, negative_document: 0.1 });
        c.ablation.no_role_scaling = true;
        assert_eq!(c.role_scales(), RoleScales::unscaled());
        c.ablation.query_only = true;
        assert_eq!(c.role_scales().positive_document, 0.0);
        assert!(!c.augments_documents() && c.augments_queries());
        c.ablation = Ablations { doc_only: true, no_reward_sampling: true, ..Default::default() };
        assert_eq!(c.role_scales().query, 0.0);
        assert_eq!(c.reward_settings().joint_samples, 1);
    }

    #[test]
    fn schedule_takes_the_earlier_limit() {
        let s = Schedule { epochs: 5.0, max_steps: None, checkpoint_every: 1, query_only_warmup_steps: 0 };
        assert_eq!(s.total_steps(2590, 32), 405);
        assert_eq!(Schedule { max_steps: Some(100), ..s }.total_steps(2590, 32), 100);
    }
}
