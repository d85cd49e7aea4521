//! The training loop's step (docs/method.md §3–§5): composite batch → rollouts → similarity (BM25
//! or dense, [`RewardSimilarity`]) → reward sampling → role-scaled advantages → one PPO epoch.
//!
//! Every random choice of step `s` is a function of the run seed and `s` (batch, sampling seeds,
//! joint samples), so a run resumed from the checkpoint written after step `s` continues on
//! exactly the trajectory it would have taken without the interruption.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use coaug_augment::{PromptSet, Retriever, Role};
use coaug_data::{Document, Qrels, Query};
use coaug_lm::{AdamW, SamplingParams};
use coaug_retrieval::{Augmentations, AugmentedBm25, Composition};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::advantage::{PromptRole, StepAdvantages};
use crate::bm25_reward::{Bm25Reward, Composed};
use crate::composite::{CompositeBatch, CompositeSampler};
use crate::config::TrainConfig;
use crate::layout::RolloutLayout;
use crate::metrics::StepMetrics;
use crate::policy::{adamw_config, Policy};
use crate::reward::{RewardSampler, RewardSettings, Rewards};
use crate::rollout::{sample_role, RoleSampling, Rollout, StepRollouts};
use crate::seed::{stream, Purpose};
use crate::similarity::RewardSimilarity;
use crate::update::{policy_update, UpdateItem, UpdateReport, UpdateShape};

/// What the trainer learns from.
pub struct TrainData {
    pub corpus: Vec<Document>,
    pub queries: Vec<Query>,
    pub train_qrels: Qrels,
}

/// The checkpoint's companion: which step the saved weights come after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Steps completed (the next step to run).
    pub step: u64,
    pub checkpoint: PathBuf,
}

pub struct Trainer {
    config: TrainConfig,
    policy: Policy,
    optimizer: AdamW,
    prompts: PromptSet,
    sampler: CompositeSampler,
    reward: RewardSampler,
    similarity: RewardSimilarity,
    corpus: Vec<Document>,
    doc_position: HashMap<String, usize>,
    query_text: HashMap<String, String>,
    step: u64,
    total_steps: u64,
    /// Stop tokens and the answer tags' tokens: never penalized.
    unpenalized: Vec<u32>,
}

impl Trainer {
    /// A trainer for `retriever = "sparse"` (BM25 reward with the corpus's statistics). A dense
    /// run needs its encoder: build it with [`Trainer::with_similarity`].
    pub fn new(config: TrainConfig, policy: Policy, prompts: PromptSet, data: TrainData) -> Result<Self> {
        if config.retriever == Retriever::Dense {
            bail!("retriever = \"dense\" needs a sentence encoder: use Trainer::with_similarity(…, RewardSimilarity::Dense(…))");
        }
        let r = &config.retrieval;
        let similarity = RewardSimilarity::Bm25(Bm25Reward::new(&data.corpus, &r.stop_words.analyzer(), r.composition())?);
        Self::with_similarity(config, policy, prompts, data, similarity)
    }

    /// A trainer whose reward ranks by `similarity`, which must be the config's retriever (the
    /// rollouts are prompted and composed for that retriever).
    pub fn with_similarity(
        config: TrainConfig,
        policy: Policy,
        prompts: PromptSet,
        data: TrainData,
        similarity: RewardSimilarity,
    ) -> Result<Self> {
        config.validate()?;
        if similarity.retriever() != config.retriever {
            bail!("the config trains for retriever = \"{}\" but the reward similarity is {}", config.retriever, similarity.retriever());
        }
        let mut sampler =
            CompositeSampler::new(config.composite.clone(), &data.train_qrels, data.corpus.iter().map(|d| d.id.as_str()), config.seed)?;
        let query_text: HashMap<String, String> = data.queries.into_iter().map(|q| (q.id, q.text)).collect();
        if let Some(missing) = data.train_qrels.query_ids().find(|id| !query_text.contains_key(id.as_str())) {
            bail!("training query {missing} has judgements but no text");
        }
        if config.composite.mined_negatives > 0 {
            let ranked = plain_bm25_rankings(&data.corpus, &sampler, &query_text, &config)?;
            sampler = sampler.with_mined_negatives(&ranked);
        }
        let total_steps = config.schedule.total_steps(sampler.stats().train_queries, config.composite.groups_per_step);
        let optimizer = AdamW::new(&policy.trainable, adamw_config(&config))?;
        let mut unpenalized: Vec<u32> = policy.tokenizer.stop_ids().to_vec();
        for tag in ["<answer>", "</answer>", "<think>", "</think>"] {
            unpenalized.extend(policy.tokenizer.encode(tag)?);
        }
        unpenalized.sort_unstable();
        unpenalized.dedup();
        Ok(Self {
            unpenalized,
            reward: RewardSampler::new(config.reward_settings())?,
            similarity,
            doc_position: data.corpus.iter().enumerate().map(|(i, d)| (d.id.clone(), i)).collect(),
            corpus: data.corpus,
            query_text,
            sampler,
            optimizer,
            policy,
            prompts,
            config,
            step: 0,
            total_steps,
        })
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn prompts(&self) -> &PromptSet {
        &self.prompts
    }

    pub fn similarity(&self) -> &RewardSimilarity {
        &self.similarity
    }

    pub fn sampler(&self) -> &CompositeSampler {
        &self.sampler
    }

    /// Steps completed so far (the index of the next step).
    pub fn step_index(&self) -> u64 {
        self.step
    }

    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    pub fn is_done(&self) -> bool {
        self.step >= self.total_steps
    }

    /// Runs the next step and returns its metrics.
    pub fn train_step(&mut self) -> Result<StepMetrics> {
        let started = Instant::now();
        let step = self.step;
        let batch = self.sampler.batch(step);

        let t = Instant::now();
        let rollouts = self.rollouts(&batch)?;
        let generation_s = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let mut rewards = self.rewards(&batch, &rollouts)?;
        self.apply_format_penalty(&mut rewards, &rollouts);
        let ndcg_query_rollouts = self.query_ndcg_against_originals(&batch, &rollouts)?;
        let advantages = StepAdvantages::compute(&rewards, &rollouts.layout, &batch.document_roles(), &self.config.role_scales())?;
        let reward_s = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let skipped = advantages.all_zero();
        let update = if skipped { UpdateReport::default() } else { self.update(&rollouts, &advantages)? };
        let update_s = t.elapsed().as_secs_f64();
        self.step += 1;

        let roles = batch.document_roles();
        let columns_of = |wanted: PromptRole| -> Vec<usize> {
            (0..rollouts.layout.num_doc_slots()).filter(|&d| roles[d] == wanted).flat_map(|d| rollouts.layout.doc_columns(d)).collect()
        };
        let spread = prompt_spread(&rewards, &advantages, &rollouts.layout);
        Ok(StepMetrics {
            step,
            reward_spread_query: spread.query,
            reward_spread_document: spread.document,
            zero_advantage_prompts: spread.zero_advantage_prompts,
            reward_query: rewards.mean_query_reward(),
            reward_positive_document: rewards.mean_document_reward(columns_of(PromptRole::PositiveDocument)),
            reward_negative_document: rewards.mean_document_reward(columns_of(PromptRole::NegativeDocument)),
            ndcg_query_rollouts,
            format_valid_query: format_valid_rate(&rollouts.queries),
            format_valid_document: format_valid_rate(&rollouts.documents),
            response_tokens_query: mean_tokens(&rollouts.queries),
            response_tokens_document: mean_tokens(&rollouts.documents),
            nonzero_advantages: advantages.num_nonzero(),
            skipped,
            loss: update.loss,
            clip_fraction: update.clip_fraction,
            kl: update.kl,
            entropy: update.entropy,
            approx_kl_to_old: update.approx_kl_to_old,
            grad_norm: update.grad_norm,
            generation_s,
            reward_s,
            update_s,
            step_s: started.elapsed().as_secs_f64(),
        })
    }

    /// How rollouts of `role` are sampled; the update scores with the same processing
    /// (on-policy; the count `n` aside, the two roles process logits alike).
    pub fn sampling_params(&self, seed: u64, role: Role) -> SamplingParams {
        let r = &self.config.rollout;
        SamplingParams {
            temperature: r.temperature as f32,
            top_p: r.top_p as f32,
            top_k: 0,
            repetition_penalty: r.repetition_penalty as f32,
            // Over the reply only, never on stop or tag tokens: the prompt's words stay available
            // and a reply stays free to close its answer and end.
            penalty_scope: coaug_lm::PenaltyScope::Generated,
            unpenalized: self.unpenalized.clone(),
            max_new_tokens: r.max_new_tokens_for(role),
            n: r.samples_for(role),
            seed,
            prompt_seeds: Vec::new(),
            // The update's importance ratios start from exactly 1 only if the sampler's
            // log-probs equal the scorer's: an f32 cache.
            kv_cache: coaug_lm::KvPrecision::F32,
        }
    }

    /// Samples every slot of the batch (n replies each; one original text per slot of a role
    /// the ablation does not augment).
    pub fn rollouts(&self, batch: &CompositeBatch) -> Result<StepRollouts> {
        let r = &self.config.rollout;
        let mut seeds = stream(self.config.seed, Purpose::Rollouts, batch.step);
        // Only blocks from the first trainable one run again in the update.
        let keep_trunk_at = Some(self.policy.first_trainable_layer).filter(|&l| l > 0);
        let query_sampling = RoleSampling {
            retriever: self.config.retriever,
            params: self.sampling_params(seeds.random(), Role::Query),
            parse_policy: r.parse_policy,
            max_input_tokens: None,
            keep_trunk_at,
        };
        let doc_sampling = RoleSampling {
            retriever: self.config.retriever,
            params: self.sampling_params(seeds.random(), Role::Document),
            parse_policy: r.parse_policy,
            max_input_tokens: Some(r.max_document_tokens),
            keep_trunk_at,
        };
        let query_texts: Vec<String> = batch.queries.iter().map(|q| self.query_text[&q.query_id].clone()).collect();
        let doc_texts: Vec<String> = batch.documents.iter().map(|d| self.corpus[self.doc_position[&d.doc_id]].full_text()).collect();
        let augments_documents = self.config.augments_documents_at(batch.step);
        let queries =
            sample_role(&self.policy, &self.prompts, Role::Query, &query_texts, self.config.augments_queries().then_some(&query_sampling))?;
        let documents = sample_role(&self.policy, &self.prompts, Role::Document, &doc_texts, augments_documents.then_some(&doc_sampling))?;
        let per_slot = |augmented: bool, role: Role| if augmented { r.samples_for(role) } else { 1 };
        let layout = RolloutLayout::new(
            &vec![per_slot(self.config.augments_queries(), Role::Query); batch.queries.len()],
            &vec![per_slot(augments_documents, Role::Document); batch.documents.len()],
        )?;
        Ok(StepRollouts { layout, queries, documents })
    }

    /// Every rollout's reward estimate: the step's similarity matrix, then the joint samples of
    /// step `batch.step` (the same ones `train_step` draws).
    pub fn rewards(&self, batch: &CompositeBatch, rollouts: &StepRollouts) -> Result<Rewards> {
        let similarity = self.similarity.similarity(&rollouts.queries, &rollouts.documents)?;
        let mut rng = stream(self.config.seed, Purpose::JointSamples, batch.step);
        Ok(self.reward.sample(&similarity, &rollouts.layout, batch.gains(), &mut rng)?)
    }

    /// nDCG@k of each query rollout against the original documents (one joint choice).
    fn query_ndcg_against_originals(&self, batch: &CompositeBatch, rollouts: &StepRollouts) -> Result<f64> {
        let doc_texts: Vec<String> = batch.documents.iter().map(|d| self.corpus[self.doc_position[&d.doc_id]].full_text()).collect();
        let queries: Vec<Composed<'_>> =
            rollouts.queries.iter().map(|r| Composed { original: &r.original, augmentation: &r.augmentation }).collect();
        let docs: Vec<Composed<'_>> = doc_texts.iter().map(|t| Composed { original: t, augmentation: "" }).collect();
        let similarity = self.similarity.similarity_of(&queries, &docs)?;
        let counts: Vec<usize> = (0..rollouts.layout.num_query_slots()).map(|q| rollouts.layout.query_rows(q).len()).collect();
        let layout = RolloutLayout::new(&counts, &vec![1; doc_texts.len()])?;
        let single = RewardSampler::new(RewardSettings { joint_samples: 1, ..self.config.reward.clone() })?;
        let mut rng = stream(self.config.seed, Purpose::JointSamples, batch.step);
        Ok(single.sample(&similarity, &layout, batch.gains(), &mut rng)?.mean_query_reward())
    }

    fn apply_format_penalty(&self, rewards: &mut Rewards, rollouts: &StepRollouts) {
        let penalty = self.config.rollout.format_penalty;
        if penalty == 0.0 {
            return;
        }
        for (r, rollout) in rewards.query.iter_mut().zip(&rollouts.queries) {
            if rollout.is_generated() && !rollout.format_valid {
                *r += penalty;
            }
        }
        for (r, rollout) in rewards.document.iter_mut().zip(&rollouts.documents) {
            if let (Some(r), true) = (r.as_mut(), rollout.is_generated() && !rollout.format_valid) {
                *r += penalty;
            }
        }
    }

    fn update(&mut self, rollouts: &StepRollouts, advantages: &StepAdvantages) -> Result<UpdateReport> {
        let (query_weight, document_weight) =
            if self.config.loss.role_balance { role_balance(&rollouts.queries, &rollouts.documents) } else { (1.0, 1.0) };
        let pairs: Vec<(&Rollout, f64)> = (rollouts.queries.iter().zip(advantages.query.iter().map(|a| a * query_weight)))
            .chain(rollouts.documents.iter().zip(advantages.document.iter().map(|a| a * document_weight)))
            .collect();
        let items: Vec<UpdateItem> = pairs
            .into_iter()
            .filter(|(r, _)| r.is_generated())
            .map(|(r, a)| UpdateItem {
                prompt: &r.prompt,
                tokens: &r.tokens,
                old_logprobs: &r.old_logprobs,
                advantage: a as f32,
                trunk: r.trunk.as_ref(),
            })
            .collect();
        let o = &self.config.optimizer;
        let shape = UpdateShape {
            mini_batches: o.mini_batches,
            micro_batch_size: o.micro_batch_size,
            processing: self.sampling_params(0, Role::Query),
        };
        let (policy, optimizer, loss) = (&self.policy, &mut self.optimizer, &self.config.loss);
        // On a rayon worker, as generation runs (see `coaug_lm::generate`): the many small
        // parallel ops of a forward and backward pass then skip the hand-off to the pool.
        rayon::scope(|_| policy_update(policy, optimizer, &items, &shape, loss))
    }

    /// Writes `checkpoints/step-NNNNNN.safetensors` (trained tensors and optimizer state) and
    /// points `checkpoints/latest.json` at it.
    pub fn save_checkpoint(&self, run_dir: &Path) -> Result<PathBuf> {
        let dir = run_dir.join("checkpoints");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let name = format!("step-{:06}.safetensors", self.step);
        self.policy.save(&dir.join(&name), &self.optimizer)?;
        let state = TrainerState { step: self.step, checkpoint: PathBuf::from(&name) };
        let tmp = dir.join(".latest.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&state)?)?;
        std::fs::rename(&tmp, dir.join("latest.json"))?;
        Ok(dir.join(name))
    }

    /// Continues from the run directory's latest checkpoint; returns the step it resumes at
    /// (0 when there is none).
    pub fn resume(&mut self, run_dir: &Path) -> Result<u64> {
        let dir = run_dir.join("checkpoints");
        let latest = dir.join("latest.json");
        if !latest.exists() {
            return Ok(0);
        }
        let state: TrainerState =
            serde_json::from_str(&std::fs::read_to_string(&latest)?).with_context(|| format!("reading {}", latest.display()))?;
        self.optimizer = self.policy.restore(&dir.join(&state.checkpoint), adamw_config(&self.config))?;
        self.step = state.step;
        Ok(state.step)
    }
}

/// How much the rollouts of one prompt differ, by role, and how many prompts teach nothing.
struct PromptSpread {
    query: f64,
    document: f64,
    zero_advantage_prompts: f64,
}

fn prompt_spread(rewards: &Rewards, advantages: &StepAdvantages, layout: &RolloutLayout) -> PromptSpread {
    fn std(values: &[f64]) -> f64 {
        if values.len() < 2 {
            return 0.0;
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt()
    }
    let mean = |xs: &[f64]| if xs.is_empty() { 0.0 } else { xs.iter().sum::<f64>() / xs.len() as f64 };
    let mut zero = 0usize;
    let mut prompts = 0usize;
    let mut query_spread = Vec::new();
    for q in 0..layout.num_query_slots() {
        let rows = layout.query_rows(q);
        if rows.len() > 1 {
            query_spread.push(std(&rewards.query[rows.clone()]));
            prompts += 1;
            zero += usize::from(advantages.query[rows].iter().all(|&a| a == 0.0));
        }
    }
    let mut document_spread = Vec::new();
    for d in 0..layout.num_doc_slots() {
        let columns = layout.doc_columns(d);
        if columns.len() > 1 {
            let chosen: Vec<f64> = rewards.document[columns.clone()].iter().flatten().copied().collect();
            document_spread.push(std(&chosen));
            prompts += 1;
            zero += usize::from(advantages.document[columns].iter().all(|&a| a == 0.0));
        }
    }
    PromptSpread {
        query: mean(&query_spread),
        document: mean(&document_spread),
        zero_advantage_prompts: if prompts == 0 { 0.0 } else { zero as f64 / prompts as f64 },
    }
}

/// Advantage weights that give each role's generated tokens the same total weight in the
/// token-mean loss (1 for a role that generated nothing, or when only one role did).
fn role_balance(queries: &[Rollout], documents: &[Rollout]) -> (f64, f64) {
    let tokens = |rs: &[Rollout]| rs.iter().map(|r| r.tokens.len()).sum::<usize>() as f64;
    let (q, d) = (tokens(queries), tokens(documents));
    if q == 0.0 || d == 0.0 {
        return (1.0, 1.0);
    }
    let half = (q + d) / 2.0;
    (half / q, half / d)
}

fn format_valid_rate(rollouts: &[Rollout]) -> f64 {
    let generated: Vec<&Rollout> = rollouts.iter().filter(|r| r.is_generated()).collect();
    if generated.is_empty() {
        return 0.0;
    }
    generated.iter().filter(|r| r.format_valid).count() as f64 / generated.len() as f64
}

fn mean_tokens(rollouts: &[Rollout]) -> f64 {
    let generated: Vec<&Rollout> = rollouts.iter().filter(|r| r.is_generated()).collect();
    if generated.is_empty() {
        return 0.0;
    }
    generated.iter().map(|r| r.tokens.len()).sum::<usize>() as f64 / generated.len() as f64
}

/// Every training query's plain BM25 ranking (original texts, the run's analyzer) down to
/// `composite.mine_depth`, from which the sampler takes mined negatives.
/// The index lives in a temporary folder for the few seconds this takes.
fn plain_bm25_rankings(
    corpus: &[Document],
    sampler: &CompositeSampler,
    query_text: &HashMap<String, String>,
    config: &TrainConfig,
) -> Result<BTreeMap<String, Vec<String>>> {
    let dir = std::env::temp_dir().join(format!("coaug-mine-{}-{}", std::process::id(), config.seed));
    let analyzer = config.retrieval.stop_words.analyzer();
    let ranked = (|| {
        let plain = AugmentedBm25::open_or_build(&dir, corpus, &Augmentations::default(), Composition::plain_append(), &analyzer)?;
        let ids: Vec<&str> = sampler.query_ids().collect();
        let texts: Vec<&str> = ids.iter().map(|id| query_text[*id].as_str()).collect();
        let index = plain.index();
        let hits = index.search_batch(&texts, config.composite.mine_depth);
        anyhow::Ok(
            ids.iter()
                .zip(hits)
                .map(|(id, hits)| (id.to_string(), hits.iter().map(|h| index.doc_id(h.doc).to_owned()).collect()))
                .collect(),
        )
    })();
    let _ = std::fs::remove_dir_all(&dir);
    ranked
}
