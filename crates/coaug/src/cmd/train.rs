//! `coaug train`: bidirectional RL of the policy LM on a dataset's train qrels, validated on a
//! held-out slice of another split (docs/method.md §3–§5).
//!
//! A run directory holds everything a run leaves: `config.toml` (the resolved config),
//! `metrics.jsonl` (one line per step), `validation.jsonl`, `checkpoints/` (trained tensors and
//! optimizer state; `latest.json` names the newest) and the BM25 validation index. A dense run
//! validates against the corpus vectors `coaug eval --retriever dense` keeps in the cache. The
//! protocol (resume, metrics lines, validation and checkpoint schedule) is `coaug_rl::run`'s,
//! shared with Python's `coaug.train`; this command adds the flags, the encoder and the output.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use coaug_augment::{PromptSet, Retriever};
use coaug_dense::StoredPrecision;
use coaug_rl::run::{self, ConfigSource, DenseSetup, RunEvent, TrainRun};
use coaug_rl::{Policy, StepMetrics, TrainConfig, ValidationKind, ValidationMetrics};
use indicatif::{ProgressBar, ProgressStyle};

use super::dense::{load_encoder, EncoderArgs};
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
    run::start_dir(&out, &config)?;

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
    let dense = encoder.map(|encoder| DenseSetup {
        vectors_dir: coaug_retrieval::DenseIndex::store_dir(&dataset.name(), &encoder, StoredPrecision::F32),
        encoder,
    });
    let mut run = TrainRun::prepare(&dataset, config, &out, args.resume, policy, prompts, dense, &device)?;
    let trainer = run.trainer();
    let stats = trainer.sampler().stats().clone();
    eprintln!(
        "{} training queries, never-positive pool {}, {} steps, {} trainable parameters",
        stats.train_queries,
        stats.never_positive_pool,
        trainer.total_steps(),
        trainer.policy().trainable.num_params()
    );
    if let Some(step) = run.resumed_at() {
        eprintln!("resuming at step {step}");
    }
    train_loop(&mut run, &out)
}

fn train_loop(run: &mut TrainRun, out: &Path) -> Result<()> {
    let bar = ProgressBar::new(run.trainer().total_steps()).with_position(run.trainer().step_index());
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] step {pos}/{len} ETA {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut on = |event: RunEvent<'_>| match event {
        RunEvent::Validating(_) => bar.set_message("validating…"),
        RunEvent::Validated(m) => say(&bar, validation_line(m)),
    };
    run.begin(&mut on)?;
    while !run.is_done() {
        let m = run.step(&mut on)?;
        say(&bar, step_line(&m));
        bar.set_message(format!("reward q {:.3}", m.reward_query));
        bar.inc(1);
    }
    run.finish(&mut on)?;
    bar.finish_with_message("done");
    eprintln!("run directory: {} (plot it with `coaug plot {}`)", out.display(), out.display());
    Ok(())
}

fn validation_line(m: &ValidationMetrics) -> String {
    let delta = m.delta_vs_start.map(|d| format!(", vs step 0: {d}")).unwrap_or_default();
    format!(
        "validation ({}) after {} steps: nDCG@10 {:.4}{delta} ({} queries, {} augmented documents, {:.0} s)",
        match m.kind {
            ValidationKind::Query => "queries",
            ValidationKind::Both => "queries + document pool",
        },
        m.step,
        m.ndcg_at_10,
        m.queries,
        m.augmented_documents,
        m.seconds
    )
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
    let mut config = run::run_config(args.config.as_deref().map(ConfigSource::File), &args.preset, out, args.resume)?;
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

/// Encoder flags on a sparse run are a likely mistake (a forgotten `--retriever dense`).
fn warn_unused_encoder_flags(args: &EncoderArgs) {
    if args.encoder.is_some() || args.query_prefix.is_some() || args.max_length.is_some() {
        eprintln!("warning: --encoder / --query-prefix / --max-length only apply with --retriever dense; this run is sparse");
    }
}

/// `--model`, else the config's model when it is a path, else the default GGUF from the cache.
pub fn model_path(flag: Option<&str>, config: &TrainConfig) -> Result<PathBuf> {
    run::model_path(flag, config)
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
