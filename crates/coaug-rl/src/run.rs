//! A training run in its directory: the protocol `coaug train` and Python's `coaug.train` share.
//!
//! A run directory holds everything a run leaves: `config.toml` (the resolved config),
//! `metrics.jsonl` (one line per step), `validation.jsonl`, `checkpoints/` (trained tensors and
//! optimizer state; `latest.json` names the newest) and the BM25 validation index.
//!
//! [`run_config`] picks the config (a file, a preset, or the saved one when resuming),
//! [`start_dir`] writes it, [`TrainRun::prepare`] loads the data and builds the trainer and the
//! validator, [`TrainRun::open`] resumes from the latest checkpoint (dropping the metrics lines of
//! the steps it redoes) or clears a previous run's files, and [`TrainRun::begin`] /
//! [`TrainRun::step`] / [`TrainRun::finish`] run it, validating and checkpointing on schedule.
//! Callers step one at a time, so they can report progress and stop between steps.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use candle_core::Device;
use coaug_augment::{PromptSet, Retriever};
use coaug_data::Dataset;
use coaug_dense::SentenceEncoder;

use crate::bm25_reward::Bm25Reward;
use crate::config::TrainConfig;
use crate::dense_reward::DenseReward;
use crate::metrics::ValidationKind;
use crate::metrics::{append_jsonl, read_jsonl, truncate_jsonl_from_step, StepMetrics, ValidationMetrics};
use crate::policy::Policy;
use crate::similarity::RewardSimilarity;
use crate::trainer::{TrainData, Trainer, TrainerState};
use crate::validation::{ValidationGeneration, ValidationIndex, ValidationSlice, Validator};

pub const CONFIG_FILE: &str = "config.toml";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const VALIDATION_FILE: &str = "validation.jsonl";
pub const CHECKPOINTS_DIR: &str = "checkpoints";

/// Where a run's config comes from when one is given.
pub enum ConfigSource<'a> {
    /// A TOML file: an optional `preset` plus overrides.
    File(&'a Path),
    /// The same as JSON (a table of tables), named `source_name` in errors.
    Json { value: serde_json::Value, source_name: &'a str },
    /// A preset by name (`cpu-small`, `paper`).
    Preset(&'a str),
}

/// The run's config before any caller's overrides: the given source, else the saved
/// `config.toml` when resuming a run that has one, else `default_preset`.
pub fn run_config(source: Option<ConfigSource<'_>>, default_preset: &str, dir: &Path, resume: bool) -> Result<TrainConfig> {
    let saved = dir.join(CONFIG_FILE);
    Ok(match source {
        Some(ConfigSource::File(path)) => TrainConfig::from_toml_file(path)?,
        Some(ConfigSource::Json { value, source_name }) => TrainConfig::from_json(value, source_name)?,
        Some(ConfigSource::Preset(name)) => TrainConfig::preset(name)?,
        None if resume && saved.exists() => TrainConfig::from_toml_file(&saved)?,
        None => TrainConfig::preset(default_preset)?,
    })
}

/// Creates the run directory and saves the resolved config in it.
pub fn start_dir(dir: &Path, config: &TrainConfig) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(CONFIG_FILE);
    std::fs::write(&path, config.to_toml()).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The newest checkpoint of a run directory (`checkpoints/latest.json`), with the steps it
/// comes after; `None` before the first one.
pub fn latest_checkpoint(dir: &Path) -> Result<Option<(u64, PathBuf)>> {
    let checkpoints = dir.join(CHECKPOINTS_DIR);
    let latest = checkpoints.join("latest.json");
    if !latest.exists() {
        return Ok(None);
    }
    let state: TrainerState =
        serde_json::from_str(&std::fs::read_to_string(&latest)?).with_context(|| format!("reading {}", latest.display()))?;
    Ok(Some((state.step, checkpoints.join(state.checkpoint))))
}

/// The policy's weights: `flag` (a GGUF file, an HF folder, a known model's name or a Hugging Face
/// repository id), else the config's model, resolved (and fetched on first use) through coaug's
/// cache.
pub fn model_path(flag: Option<&str>, config: &TrainConfig) -> Result<PathBuf> {
    let spec = flag.unwrap_or(&config.model);
    // Configs written before models had names say "SmolLM2-135M-Instruct".
    let spec = if spec.contains("SmolLM2-135M") && !Path::new(spec).exists() { coaug_lm::DEFAULT_MODEL } else { spec };
    coaug_lm::resolve_model(spec, &coaug_data::cache_root())
}

/// Validation generates as `coaug eval` does (greedy, its repetition penalty, an 8-bit KV cache
/// on the CPU), with the run's token limits and parsing.
pub fn validation_generation(config: &TrainConfig, device: &Device) -> ValidationGeneration {
    let settings = coaug_retrieval::AugmentSettings {
        max_input_tokens: config.rollout.max_document_tokens,
        max_new_tokens: config.rollout.max_new_tokens,
        query_max_new_tokens: config.rollout.query_max_new_tokens,
        parse_policy: config.rollout.parse_policy,
        ..Default::default()
    };
    let kv_cache = if device.is_cpu() { coaug_lm::KvPrecision::Q8 } else { coaug_lm::KvPrecision::F32 };
    ValidationGeneration { settings, kv_cache }
}

/// The dense retriever of a run: its encoder and where the corpus vectors are kept (`coaug eval
/// --retriever dense`'s store, so neither command encodes the corpus twice).
pub struct DenseSetup {
    pub encoder: Arc<SentenceEncoder>,
    pub vectors_dir: PathBuf,
}

/// What happens inside a run step that a caller may want to show.
pub enum RunEvent<'a> {
    /// A validation of this kind starts.
    Validating(ValidationKind),
    /// …and finished with these metrics (already compared with step 0).
    Validated(&'a ValidationMetrics),
}

/// A run being trained in its directory.
pub struct TrainRun {
    trainer: Trainer,
    validator: Option<Validator>,
    dir: PathBuf,
    /// Step 0 of each kind, the reference of every later validation's paired delta.
    starts: Vec<ValidationMetrics>,
    validated_at: Option<u64>,
    resumed_at: Option<u64>,
}

impl TrainRun {
    /// Loads the dataset's corpus, queries and train qrels, builds the reward (BM25, or the
    /// encoder's cosine with `dense`), the validator (the config's split, when `validation.every_steps
    /// > 0`) and the trainer, then [`TrainRun::open`]s the directory.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        dataset: &Dataset,
        config: TrainConfig,
        dir: &Path,
        resume: bool,
        policy: Policy,
        prompts: PromptSet,
        dense: Option<DenseSetup>,
        device: &Device,
    ) -> Result<Self> {
        let corpus = dataset.load_corpus()?;
        let queries = dataset.queries()?;
        let train_qrels = dataset.qrels("train")?;
        if (config.retriever == Retriever::Dense) != dense.is_some() {
            anyhow::bail!("retriever = \"{}\" but {} encoder was given", config.retriever, if dense.is_some() { "an" } else { "no" });
        }
        let validator = if config.validation.every_steps > 0 {
            let qrels = dataset.qrels(&config.validation.split)?;
            let index = match &dense {
                Some(d) => ValidationIndex::Dense { encoder: d.encoder.clone(), vectors_dir: d.vectors_dir.clone() },
                None => ValidationIndex::Bm25 {
                    dir: dir.join("validation-index"),
                    composition: config.retrieval.composition(),
                    analyzer: config.retrieval.stop_words.analyzer(),
                },
            };
            Some(Validator::new(
                corpus.clone(),
                &queries,
                &qrels,
                &ValidationSlice {
                    queries: config.validation.queries,
                    pool_per_query: Some(config.validation.pool_per_query).filter(|&k| k > 0),
                    seed: config.seed,
                },
                index,
                validation_generation(&config, device),
                (config.augments_queries(), config.augments_documents()),
            )?)
        } else {
            None
        };
        let similarity = match dense {
            Some(d) => RewardSimilarity::Dense(DenseReward::new(d.encoder)),
            None => {
                RewardSimilarity::Bm25(Bm25Reward::new(&corpus, &config.retrieval.stop_words.analyzer(), config.retrieval.composition())?)
            }
        };
        let trainer = Trainer::with_similarity(config, policy, prompts, TrainData { corpus, queries, train_qrels }, similarity)?;
        Self::open(dir, trainer, validator, resume)
    }

    /// With `resume`, continues from the directory's latest checkpoint (a fresh start when there
    /// is none) and drops the metrics and validation lines of the steps it redoes; without it,
    /// removes a previous run's metrics and validation files.
    pub fn open(dir: &Path, mut trainer: Trainer, validator: Option<Validator>, resume: bool) -> Result<Self> {
        let metrics_path = dir.join(METRICS_FILE);
        let validation_path = dir.join(VALIDATION_FILE);
        let resumed_at = if resume {
            let step = trainer.resume(dir)?;
            truncate_jsonl_from_step(&metrics_path, step)?;
            truncate_jsonl_from_step(&validation_path, step)?;
            Some(step)
        } else {
            for stale in [&metrics_path, &validation_path] {
                if stale.exists() {
                    std::fs::remove_file(stale).with_context(|| format!("removing {}", stale.display()))?;
                }
            }
            None
        };
        let starts = read_jsonl::<ValidationMetrics>(&validation_path).unwrap_or_default().into_iter().filter(|m| m.step == 0).collect();
        Ok(Self { trainer, validator, dir: dir.to_path_buf(), starts, validated_at: None, resumed_at })
    }

    /// The step a resumed run continues at (`None` for a fresh run).
    pub fn resumed_at(&self) -> Option<u64> {
        self.resumed_at
    }

    pub fn trainer(&self) -> &Trainer {
        &self.trainer
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn is_done(&self) -> bool {
        self.trainer.is_done()
    }

    fn co_augmentation(&self) -> bool {
        let config = self.trainer.config();
        config.validation.pool_per_query > 0 && config.augments_documents()
    }

    fn validate(&mut self, kind: ValidationKind, on: &mut dyn FnMut(RunEvent<'_>)) -> Result<()> {
        let Some(v) = &self.validator else { return Ok(()) };
        on(RunEvent::Validating(kind));
        let trainer = &self.trainer;
        let mut m: ValidationMetrics = v.run(trainer.policy(), trainer.prompts(), trainer.step_index(), kind)?;
        match self.starts.iter().find(|s| s.kind == kind) {
            Some(start) if m.step > 0 => m.compare_with(start),
            Some(_) => {}
            None => self.starts.push(m.clone()),
        }
        on(RunEvent::Validated(&m));
        append_jsonl(&self.dir.join(VALIDATION_FILE), &m)
    }

    /// Before the first step of a run that starts at step 0: the co-augmentation validation
    /// (queries and the document pool), when the config asks for one.
    pub fn begin(&mut self, on: &mut dyn FnMut(RunEvent<'_>)) -> Result<()> {
        let every = self.trainer.config().validation.every_steps;
        if every > 0 && self.co_augmentation() && self.trainer.step_index() == 0 {
            self.validate(ValidationKind::Both, on)?;
        }
        Ok(())
    }

    /// One step: the query validation when due, the step, its line in `metrics.jsonl`, and a
    /// checkpoint every `schedule.checkpoint_every` steps and after the last.
    pub fn step(&mut self, on: &mut dyn FnMut(RunEvent<'_>)) -> Result<StepMetrics> {
        let every = self.trainer.config().validation.every_steps;
        if every > 0 && self.trainer.step_index().is_multiple_of(every) {
            self.validate(ValidationKind::Query, on)?;
            self.validated_at = Some(self.trainer.step_index());
        }
        let m = self.trainer.train_step()?;
        append_jsonl(&self.dir.join(METRICS_FILE), &m)?;
        let step = self.trainer.step_index();
        if step.is_multiple_of(self.trainer.config().schedule.checkpoint_every.max(1)) || self.trainer.is_done() {
            self.trainer.save_checkpoint(&self.dir)?;
        }
        Ok(m)
    }

    /// After the last step: the query validation unless the last step had one, and the
    /// co-augmentation validation.
    pub fn finish(&mut self, on: &mut dyn FnMut(RunEvent<'_>)) -> Result<()> {
        let every = self.trainer.config().validation.every_steps;
        if every > 0 && self.validated_at != Some(self.trainer.step_index()) {
            self.validate(ValidationKind::Query, on)?;
        }
        if every > 0 && self.co_augmentation() {
            self.validate(ValidationKind::Both, on)?;
        }
        Ok(())
    }

    /// A checkpoint at the current step unless the latest one is already there (a run stopped
    /// between steps resumes from here); its path, or `None` before the first step.
    pub fn checkpoint_now(&mut self) -> Result<Option<PathBuf>> {
        let step = self.trainer.step_index();
        match latest_checkpoint(&self.dir)? {
            Some((saved, path)) if saved == step => Ok(Some(path)),
            _ if step == 0 => Ok(None),
            _ => Ok(Some(self.trainer.save_checkpoint(&self.dir)?)),
        }
    }
}
