//! `coaug bench train`: seconds per phase of an RL step (generation, reward, update) for a
//! fixed configuration — the `cpu-small` preset, or `--config FILE`, on the dataset's train qrels — with the
//! default policy LM.

use std::path::PathBuf;

use anyhow::Result;
use coaug_augment::{PromptSet, Role};
use coaug_rl::{Policy, TrainConfig, TrainData, Trainer};
use serde::Serialize;

use super::median;
use crate::cmd::{DatasetArgs, DeviceArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub dataset: DatasetArgs,

    /// Steps measured (each a different batch of the same seeded run); figures are medians.
    #[arg(long, default_value_t = 3)]
    pub steps: usize,

    /// Policy weights: a path, a known model's name or a Hugging Face id (default: the
    /// config's model, smollm2-135m).
    #[arg(long, value_name = "PATH|NAME|ORG/NAME")]
    pub model: Option<String>,

    /// TOML config (as for `coaug train`) replacing the `cpu-small` preset, e.g. a larger
    /// configuration for a GPU. Validation is always off here.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub device: DeviceArgs,

    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    config: String,
    device: String,
    steps: usize,
    prompts_per_step: usize,
    rollouts_per_step: usize,
    max_new_tokens: usize,
    trainable_blocks: String,
    step_s: f64,
    generation_s: f64,
    reward_s: f64,
    update_s: f64,
    /// update / generation: the goal is a step ≤ 1.5× its generation.
    update_over_generation: f64,
    step_over_generation: f64,
    threads: usize,
}

pub fn run(args: Args) -> Result<()> {
    let dataset = args.dataset.resolve()?;
    let mut config = match &args.config {
        Some(path) => TrainConfig::from_toml_file(path)?,
        None => TrainConfig::cpu_small(),
    };
    config.validation.every_steps = 0;
    let model = super::super::train::model_path(args.model.as_deref(), &config)?;
    let device = args.device.resolve()?;
    let policy = Policy::load(&model, &config, &device)?;
    let data = TrainData { corpus: dataset.load_corpus()?, queries: dataset.queries()?, train_qrels: dataset.qrels("train")? };
    let mut trainer = Trainer::new(config.clone(), policy, PromptSet::default(), data)?;
    let mut phases = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.steps.max(1) {
        let m = trainer.train_step()?;
        eprintln!(
            "step {}: {:.1}s (generation {:.1}s, reward {:.3}s, update {:.1}s{})",
            m.step,
            m.step_s,
            m.generation_s,
            m.reward_s,
            m.update_s,
            if m.skipped { ", skipped" } else { "" }
        );
        phases.0.push(m.step_s);
        phases.1.push(m.generation_s);
        phases.2.push(m.reward_s);
        phases.3.push(m.update_s);
    }
    // What the measured steps (the first ones of the run) generate: every group's query with its
    // rollout count, and its documents unless the run is still in its query-only warm-up.
    let c = &config.composite;
    let documents = if config.augments_documents_at(0) { c.groups_per_step * c.documents_per_group() } else { 0 };
    let prompts = c.groups_per_step * usize::from(config.augments_queries()) + documents;
    let rollouts = c.groups_per_step * usize::from(config.augments_queries()) * config.rollout.samples_for(Role::Query)
        + documents * config.rollout.samples_for(Role::Document);
    let (step_s, generation_s, reward_s, update_s) = (median(phases.0), median(phases.1), median(phases.2), median(phases.3));
    let report = Report {
        config: config.preset.clone(),
        device: device_name(&device),
        steps: args.steps.max(1),
        prompts_per_step: prompts,
        rollouts_per_step: rollouts,
        max_new_tokens: config.rollout.max_new_tokens_for(Role::Query).max(config.rollout.max_new_tokens),
        trainable_blocks: format!("{:?}", config.trainable.blocks),
        step_s,
        generation_s,
        reward_s,
        update_s,
        update_over_generation: update_s / generation_s.max(1e-9),
        step_over_generation: step_s / generation_s.max(1e-9),
        threads: rayon::current_num_threads(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "RL step ({}, {}, {} rollouts of ≤{} tokens, {} threads): step {:.1}s = generation {:.1}s + reward {:.3}s + update {:.1}s; step/generation {:.2}×",
            report.config,
            report.device,
            report.rollouts_per_step,
            report.max_new_tokens,
            report.threads,
            step_s,
            generation_s,
            reward_s,
            update_s,
            report.step_over_generation
        );
    }
    Ok(())
}

fn device_name(device: &candle_core::Device) -> String {
    match device {
        candle_core::Device::Cpu => "cpu".into(),
        candle_core::Device::Cuda(_) => "cuda".into(),
        candle_core::Device::Metal(_) => "metal".into(),
    }
}
