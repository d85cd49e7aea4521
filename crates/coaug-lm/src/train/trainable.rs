//! Choosing which weights train: all, the last K blocks, or LoRA adapters.

use anyhow::{bail, Result};
use candle_core::{Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::model::linear::{Lora, Weight};
use crate::model::CausalLm;

/// LoRA adapters on every attention and MLP projection of the selected blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    /// Only the last K blocks get adapters (`None`: every block).
    pub last_blocks: Option<usize>,
    /// Seed of the `A` initialisation (`B` starts at zero, so the model is unchanged).
    pub seed: u64,
}

/// Which weights receive gradients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TrainableSet {
    /// Every weight, embeddings included.
    All,
    /// The last K blocks and the final norm (embeddings and LM head stay frozen).
    LastBlocks(usize),
    Lora(LoraConfig),
}

/// The trainable variables, by HF name (adapters as `<proj>.lora_a` / `.lora_b`).
#[derive(Clone)]
pub struct Trainable {
    pub set: TrainableSet,
    pub vars: Vec<(String, Var)>,
}

impl Trainable {
    pub fn num_params(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.elem_count()).sum()
    }
}

impl CausalLm {
    /// Freezes everything, then makes `set` trainable (adding LoRA adapters if asked).
    /// The model must hold full-precision weights (load with `Precision::F32`).
    /// Existing adapters are kept (merged values stay as they are) only for a LoRA set.
    pub fn set_trainable(&mut self, set: &TrainableSet) -> Result<Trainable> {
        if self.is_quantized() {
            bail!("quantized weights cannot be trained; load the model with Precision::F32");
        }
        let n = self.num_layers();
        let first = match set {
            TrainableSet::All => 0,
            TrainableSet::LastBlocks(k) => n.saturating_sub(*k),
            TrainableSet::Lora(c) => n.saturating_sub(c.last_blocks.unwrap_or(n).min(n)),
        };
        if let TrainableSet::Lora(c) = set {
            if c.rank == 0 {
                bail!("LoRA rank must be positive");
            }
            let mut rng = StdRng::seed_from_u64(c.seed);
            for (_, layer, lin) in self.projections_mut() {
                if layer < first || lin.lora.is_some() {
                    continue;
                }
                let (out, inp) = lin.out_in()?;
                let bound = 1.0 / (inp as f32).sqrt();
                let a: Vec<f32> = (0..c.rank * inp).map(|_| rng.random_range(-bound..bound)).collect();
                let device = match &lin.weight {
                    Weight::Dense(w) => w.device().clone(),
                    Weight::Quantized(_) => unreachable!("checked above"),
                };
                lin.lora = Some(Lora {
                    a: Tensor::from_vec(a, (c.rank, inp), &device)?,
                    b: Tensor::zeros((out, c.rank), candle_core::DType::F32, &device)?,
                    scale: c.alpha / c.rank as f64,
                });
            }
        }
        let mut vars = Vec::new();
        for slot in self.slots() {
            let is_lora = slot.name.ends_with(".lora_a") || slot.name.ends_with(".lora_b");
            let train = match set {
                TrainableSet::All => true,
                TrainableSet::LastBlocks(_) => slot.layer.is_some_and(|l| l >= first) || slot.name == "model.norm.weight",
                TrainableSet::Lora(_) => is_lora && slot.layer.is_some_and(|l| l >= first),
            };
            if train {
                let var = Var::from_tensor(slot.tensor)?;
                *slot.tensor = var.as_tensor().clone();
                vars.push((slot.name, var));
            } else {
                *slot.tensor = slot.tensor.detach();
            }
        }
        self.first_grad_layer = first;
        self.embed_trainable = matches!(set, TrainableSet::All);
        Ok(Trainable { set: set.clone(), vars })
    }
}
