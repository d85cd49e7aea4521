//! `coaug train`: bidirectional RL of the policy LM on a dataset's train qrels, validated on a
//! held-out slice of another split (docs/method.md §3–§5).
//!
//! A run directory holds everything a run leaves: `config.toml` (the resolved config),
//! `metrics.jsonl` (one line per step), `validation.jsonl`, `checkpoints/` (trained tensors and
//! optimizer state; `latest.json` names the newest) and the BM25 validation index. A dense run
//! validates against the corpus vectors `coaug eval --retriever dense` keeps in the cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use coaug_augment::{PromptSet, Retriever};
use coaug_data::Dataset;
use coaug_dense::{SentenceEncoder, StoredPrecision};
use coaug_rl::metrics::{append_jsonl, read_jsonl, truncate_jsonl_from_step};
use coaug_rl::{
    Bm25Reward, DenseReward, Policy, RewardSimilarity, StepMetrics, TrainConfig, TrainData, Trainer, ValidationGeneration, ValidationIndex,
    ValidationKind, ValidationMetrics, ValidationSlice, Validator,
};
use indicatif::{ProgressBar, ProgressStyle};

use super::dense::{load_encoder, store_dir, EncoderArgs};
use super::{DatasetArgs, DeviceArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub dataset: DatasetArgs,

    /// TOML config: an optional `preset` plus any settings to override (see coaug-rl's
    /// `TrainConfig`). Without it, the `--preset` values are used.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Preset when no config file is given: `cpu-small` (a couple of CPU hours with a ~135M
    /// model) or `paper` (docs/method.md's numbers, for GPUs).
    #[arg(long, default_value = "cpu-small", value_parser = ["cpu-small", "paper"])]
    pub preset: String,

    /// Run directory (config, metrics, checkpoints). Default: runs/train-<dataset>.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Continue the run in `--out` from its latest checkpoint, with its saved config.
    #[arg(long)]
    pub resume: bool,

    /// Policy weights: a GGUF file or HF folder, a known model's name (`coaug model list`,
    /// fetched on first use) or a Hugging Face repository id. Default: the config's model.
    #[arg(long, value_name = "PATH|NAME|ORG/NAME")]
    pub model: Option<String>,

    /// System prompts to use instead of the built-in ones (TOML, see `coaug augment`).
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,

    /// Retriever to train for (overrides the config's `retriever`). `sparse`: BM25 reward and
    /// validation, keyword prompts, augmentations appended. `dense`: the reward is the cosine of
    /// the sentence encoder's embeddings (--encoder; pass the same one when resuming), validation
    /// ranks the corpus by exact cosine search, the prompts ask for a query expansion (appended)
    /// and a document abstract (prepended).
    #[arg(long, value_name = "sparse|dense")]
    pub retriever: Option<Retriever>,

    /// Override the config's seed.
    #[arg(long)]
    pub seed: Option<u64>,

    /// Override the config's cap on optimizer steps.
    #[arg(long)]
    pub max_steps: Option<u64>,

    /// Ablation: train and augment queries only.
    #[arg(long)]
    pub query_only: bool,

    /// Ablation: train and augment documents only.
    #[arg(long, conflicts_with = "query_only")]
    pub doc_only: bool,

    /// Ablation: one joint sample per step instead of the Monte-Carlo reward estimate.
    #[arg(long)]
    pub no_reward_sampling: bool,

    /// Ablation: every role's advantage scaled by 1 (no posk / negk).
    #[arg(long)]
    pub no_role_scaling: bool,

    #[command(flatten)]
    pub device: DeviceArgs,

    // Last: the heading applies to every option after it. Loaded only for a dense run.
    #[command(flatten, next_help_heading = "Dense retriever (only with --retriever dense)")]
    pub encoder: EncoderArgs,
}

pub fn run(args: Args) -> Result<()> {
    let dataset = args.dataset.resolve()?;
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("runs/train-{}", dataset.name())));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let config = resolve_config(&args, &out)?;
    std::fs::write(out.join("config.toml"), config.to_toml())?;

    let corpus = dataset.load_corpus()?;
    let queries = dataset.queries()?;
    let train_qrels = dataset.qrels("train")?;
    let model_path = model_path(args.model.as_deref(), &config)?;
    eprintln!("loading the policy from {}", model_path.display());
    let device = args.device.resolve()?;
    let policy = Policy::load(&model_path, &config, &device)?;
    let prompts = match &args.prompts {
        Some(path) => PromptSet::load(path)?,
        None => PromptSet::default(),
    };
    let encoder = match config.retriever {
        Retriever::Dense => Some(Arc::new(load_encoder(&args.encoder)?)),
        Retriever::Sparse => {
            warn_unused_encoder_flags(&args.encoder);
            None
        }
    };
    match &encoder {
        Some(e) => eprintln!("retriever: dense, encoder {} ({} dimensions)", e.name(), e.dim()),
        None => eprintln!("retriever: sparse (BM25)"),
    }
    let validator = if config.validation.every_steps > 0 {
        let qrels = dataset.qrels(&config.validation.split)?;
        Some(Validator::new(
            corpus.clone(),
            &queries,
            &qrels,
            &ValidationSlice {
                queries: config.validation.queries,
                pool_per_query: Some(config.validation.pool_per_query).filter(|&k| k > 0),
                seed: config.seed,
            },
            validation_index(encoder.as_ref(), &dataset, &out, &config),
            validation_generation(&config, &device),
            (config.augments_queries(), config.augments_documents()),
        )?)
    } else {
        None
    };
    let similarity = match encoder {
        Some(encoder) => RewardSimilarity::Dense(DenseReward::new(encoder)),
        None => RewardSimilarity::Bm25(Bm25Reward::new(&corpus, &config.retrieval.stop_words.analyzer(), config.retrieval.composition())?),
    };
    let mut trainer = Trainer::with_similarity(config.clone(), policy, prompts, TrainData { corpus, queries, train_qrels }, similarity)?;
    let stats = trainer.sampler().stats().clone();
    eprintln!(
        "{} training queries, never-positive pool {}, {} steps, {} trainable parameters",
        stats.train_queries,
        stats.never_positive_pool,
        trainer.total_steps(),
        trainer.policy().trainable.num_params()
    );
    let metrics_path = out.join("metrics.jsonl");
    let validation_path = out.join("validation.jsonl");
    if args.resume {
        let step = trainer.resume(&out)?;
        eprintln!("resuming at step {step}");
        truncate_jsonl_from_step(&metrics_path, step)?;
        truncate_jsonl_from_step(&validation_path, step)?;
    } else {
        for stale in [&metrics_path, &validation_path] {
            if stale.exists() {
                std::fs::remove_file(stale)?;
            }
        }
    }
    train_loop(&mut trainer, validator.as_ref(), &out)
}

fn train_loop(trainer: &mut Trainer, validator: Option<&Validator>, out: &Path) -> Result<()> {
    let config = trainer.config().clone();
    let bar = ProgressBar::new(trainer.total_steps()).with_position(trainer.step_index());
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] step {pos}/{len} ETA {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    // Step 0 of each kind, the reference of every later validation's paired delta (read back
    // from the run's file when resuming).
    let mut starts: Vec<ValidationMetrics> =
        read_jsonl::<ValidationMetrics>(&out.join("validation.jsonl")).unwrap_or_default().into_iter().filter(|m| m.step == 0).collect();
    let co_augmentation = config.validation.pool_per_query > 0 && config.augments_documents();
    let mut validate = |trainer: &Trainer, bar: &ProgressBar, kind: ValidationKind| -> Result<()> {
        let Some(v) = validator else { return Ok(()) };
        bar.set_message("validating…");
        let mut m: ValidationMetrics = v.run(trainer.policy(), trainer.prompts(), trainer.step_index(), kind)?;
        match starts.iter().find(|s| s.kind == kind) {
            Some(start) if m.step > 0 => m.compare_with(start),
            Some(_) => {}
            None => starts.push(m.clone()),
        }
        let delta = m.delta_vs_start.map(|d| format!(", vs step 0: {d}")).unwrap_or_default();
        say(
            bar,
            format!(
                "validation ({}) after {} steps: nDCG@10 {:.4}{delta} ({} queries, {} augmented documents, {:.0} s)",
                match kind {
                    ValidationKind::Query => "queries",
                    ValidationKind::Both => "queries + document pool",
                },
                m.step,
                m.ndcg_at_10,
                m.queries,
                m.augmented_documents,
                m.seconds
            ),
        );
        append_jsonl(&out.join("validation.jsonl"), &m)
    };
    let every = config.validation.every_steps;
    let mut validated_at = None;
    if every > 0 && co_augmentation && trainer.step_index() == 0 {
        validate(trainer, &bar, ValidationKind::Both)?;
    }
    while !trainer.is_done() {
        if every > 0 && trainer.step_index().is_multiple_of(every) {
            validate(trainer, &bar, ValidationKind::Query)?;
            validated_at = Some(trainer.step_index());
        }
        let m = trainer.train_step()?;
        append_jsonl(&out.join("metrics.jsonl"), &m)?;
        say(&bar, step_line(&m));
        bar.set_message(format!("reward q {:.3}", m.reward_query));
        bar.inc(1);
        let step = trainer.step_index();
        if step.is_multiple_of(config.schedule.checkpoint_every.max(1)) || trainer.is_done() {
            trainer.save_checkpoint(out)?;
        }
    }
    if every > 0 && validated_at != Some(trainer.step_index()) {
        validate(trainer, &bar, ValidationKind::Query)?;
    }
    if every > 0 && co_augmentation {
        validate(trainer, &bar, ValidationKind::Both)?;
    }
    bar.finish_with_message("done");
    eprintln!("run directory: {} (plot it with `coaug plot {}`)", out.display(), out.display());
    Ok(())
}

/// A line above the progress bar, or a plain line on stderr when it is not a terminal (the bar
/// is hidden there, and a log file should still get every step).
fn say(bar: &ProgressBar, line: String) {
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.println(line);
    } else {
        eprintln!("{line}");
    }
}

fn step_line(m: &StepMetrics) -> String {
    format!(
        "step {:>4}: reward q {:.3} d+ {:.3} d- {:.3} (spread q {:.3} d {:.3}, {:.0}% prompts flat) | nDCG q-vs-orig {:.3} | valid q {:.2} d {:.2} | len q {:.0} d {:.0} | clip {:.3} kl {:.4} H {:.2}{} | gen {:.1}s reward {:.2}s update {:.1}s",
        m.step,
        m.reward_query,
        m.reward_positive_document,
        m.reward_negative_document,
        m.reward_spread_query,
        m.reward_spread_document,
        100.0 * m.zero_advantage_prompts,
        m.ndcg_query_rollouts,
        m.format_valid_query,
        m.format_valid_document,
        m.response_tokens_query,
        m.response_tokens_document,
        m.clip_fraction,
        m.kl,
        m.entropy,
        if m.skipped { " (skipped: all advantages 0)" } else { "" },
        m.generation_s,
        m.reward_s,
        m.update_s,
    )
}

/// Preset or file, then the command line's overrides; a resumed run keeps its saved config.
fn resolve_config(args: &Args, out: &Path) -> Result<TrainConfig> {
    let saved = out.join("config.toml");
    let mut config = match (&args.config, args.resume && saved.exists()) {
        (Some(path), _) => TrainConfig::from_toml_file(path)?,
        (None, true) => TrainConfig::from_toml_file(&saved)?,
        (None, false) => TrainConfig::preset(&args.preset)?,
    };
    if let Some(retriever) = args.retriever {
        config.retriever = retriever;
    }
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(cap) = args.max_steps {
        config.schedule.max_steps = Some(cap);
    }
    config.ablation.query_only |= args.query_only;
    config.ablation.doc_only |= args.doc_only;
    config.ablation.no_reward_sampling |= args.no_reward_sampling;
    config.ablation.no_role_scaling |= args.no_role_scaling;
    config.validate()?;
    Ok(config)
}

/// BM25: a tantivy index rebuilt in the run directory. Dense: the cached corpus vectors of
/// `coaug eval --retriever dense` (f32), so neither command encodes the corpus twice.
fn validation_index(encoder: Option<&Arc<SentenceEncoder>>, dataset: &Dataset, out: &Path, config: &TrainConfig) -> ValidationIndex {
    match encoder {
        Some(encoder) => {
            ValidationIndex::Dense { encoder: encoder.clone(), vectors_dir: store_dir(dataset, encoder, StoredPrecision::F32) }
        }
        None => ValidationIndex::Bm25 {
            dir: out.join("validation-index"),
            composition: config.retrieval.composition(),
            analyzer: config.retrieval.stop_words.analyzer(),
        },
    }
}

/// Validation generates as `coaug eval` does (greedy, its repetition penalty, an 8-bit KV cache
/// on the CPU), with the run's token limits and parsing.
fn validation_generation(config: &TrainConfig, device: &candle_core::Device) -> ValidationGeneration {
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

/// Encoder flags on a sparse run are a likely mistake (a forgotten `--retriever dense`).
fn warn_unused_encoder_flags(args: &EncoderArgs) {
    if args.encoder.is_some() || args.query_prefix.is_some() || args.max_length.is_some() {
        eprintln!("warning: --encoder / --query-prefix / --max-length only apply with --retriever dense; this run is sparse");
    }
}

/// `--model`, else the config's model when it is a path, else the default GGUF from the cache.
pub fn model_path(flag: Option<&str>, config: &TrainConfig) -> Result<PathBuf> {
    let spec = flag.unwrap_or(&config.model);
    // Configs written before models had names say "SmolLM2-135M-Instruct".
    let spec = if spec.contains("SmolLM2-135M") && !Path::new(spec).exists() { coaug_lm::DEFAULT_MODEL } else { spec };
    coaug_lm::resolve_model(spec, &coaug_data::cache_root())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(flags: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("train").chain(flags.iter().copied())).unwrap().args
    }

    #[test]
    fn the_retriever_flag_overrides_preset_and_config_file() {
        let out = tempfile::tempdir().unwrap();
        let resolve = |flags: &[&str]| resolve_config(&parse(flags), out.path()).unwrap().retriever;
        assert_eq!(resolve(&[]), Retriever::Sparse);
        assert_eq!(resolve(&["--retriever", "dense"]), Retriever::Dense);
        let file = out.path().join("dense.toml");
        std::fs::write(&file, "preset = \"cpu-small\"\nretriever = \"dense\"\n").unwrap();
        let file = file.to_str().unwrap();
        assert_eq!(resolve(&["--config", file]), Retriever::Dense);
        assert_eq!(resolve(&["--config", file, "--retriever", "sparse"]), Retriever::Sparse);
        assert!(Cli::try_parse_from(["train", "--retriever", "splade"]).is_err());
        let encoder = parse(&["--retriever", "dense", "--encoder", "/models/bge"]).encoder.encoder;
        assert_eq!(encoder, Some(PathBuf::from("/models/bge")));
    }
}
