//! The policy LM as the trainer holds it: the model with its trainable subset, the tokenizer,
//! the frozen reference (only when the KL term needs one) and where the frozen trunk ends.
//!
//! The trunk boundary is what makes an update cheap (issue §6): when only the top K blocks
//! train, blocks `0..first_trainable_layer` are frozen, so their output is computed once without
//! a graph and shared by the policy and the reference; only the top K blocks and the head run
//! with gradients.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Device;
use coaug_lm::{
    load_checkpoint, load_model, save_checkpoint, AdamW, AdamWConfig, CausalLm, LmTokenizer, LoraConfig, Precision, Trainable, TrainableSet,
};

use crate::config::{BlockSelection, TrainConfig, TrainableConfig};

pub struct Policy {
    pub model: CausalLm,
    pub tokenizer: LmTokenizer,
    pub trainable: Trainable,
    /// The initial policy, frozen; `None` when `loss.kl_coef` is 0 (the released code).
    pub reference: Option<CausalLm>,
    /// Blocks below this hold no trainable weight (0 when the embeddings train).
    pub first_trainable_layer: usize,
}

/// The `coaug-lm` trainable set a config asks for.
pub fn trainable_set(config: &TrainableConfig, seed: u64) -> TrainableSet {
    let last_blocks = match config.blocks {
        BlockSelection::All => None,
        BlockSelection::Top(k) => Some(k),
    };
    if config.lora_rank > 0 {
        TrainableSet::Lora(LoraConfig { rank: config.lora_rank, alpha: config.lora_alpha, last_blocks, seed })
    } else {
        match last_blocks {
            None => TrainableSet::All,
            Some(k) => TrainableSet::LastBlocks(k),
        }
    }
}

impl Policy {
    /// Wraps a full-precision model: keeps a frozen copy as the reference when the KL term is
    /// on, then makes the configured subset trainable.
    pub fn new(mut model: CausalLm, tokenizer: LmTokenizer, config: &TrainConfig) -> Result<Self> {
        // A clone taken before `set_trainable` keeps the initial weights: trainable tensors
        // become fresh `Var` copies, frozen ones stay shared (no extra memory for the trunk).
        let reference = config.loss.needs_reference().then(|| model.clone());
        let set = trainable_set(&config.trainable, config.seed);
        let trainable = model.set_trainable(&set)?;
        let first_trainable_layer = first_layer(&set, model.num_layers());
        Ok(Self { model, tokenizer, trainable, reference, first_trainable_layer })
    }

    /// Loads a GGUF file or HF directory in f32 (training needs dense weights).
    pub fn load(path: &Path, config: &TrainConfig, device: &Device) -> Result<Self> {
        let (model, tokenizer) =
            load_model(path, Precision::F32, device).with_context(|| format!("loading the policy from {}", path.display()))?;
        Self::new(model, tokenizer, config)
    }

    /// Restores trained weights (and, when given, the optimizer) from a checkpoint written by
    /// [`Policy::save`]. The policy must have been built from the same base model.
    pub fn restore(&mut self, path: &Path, optimizer: AdamWConfig) -> Result<AdamW> {
        let loaded = load_checkpoint(&mut self.model, path).with_context(|| format!("loading checkpoint {}", path.display()))?;
        self.first_trainable_layer = first_layer(&loaded.trainable.set, self.model.num_layers());
        let adam = AdamW::resume(&loaded, optimizer)?;
        self.trainable = loaded.trainable;
        Ok(adam)
    }

    pub fn save(&self, path: &Path, optimizer: &AdamW) -> Result<()> {
        save_checkpoint(path, &self.trainable, Some(optimizer))
    }
}

fn first_layer(set: &TrainableSet, layers: usize) -> usize {
    match set {
        TrainableSet::All => 0,
        TrainableSet::LastBlocks(k) => layers.saturating_sub(*k),
        TrainableSet::Lora(c) => layers.saturating_sub(c.last_blocks.unwrap_or(layers).min(layers)),
    }
}

/// AdamW settings of a run.
pub fn adamw_config(config: &TrainConfig) -> AdamWConfig {
    let o = &config.optimizer;
    AdamWConfig {
        lr: o.learning_rate,
        weight_decay: o.weight_decay,
        max_grad_norm: (o.grad_clip_norm > 0.0).then_some(o.grad_clip_norm),
        ..AdamWConfig::default()
    }
}
