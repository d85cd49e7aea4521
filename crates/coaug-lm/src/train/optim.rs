//! AdamW with decoupled weight decay, global gradient-norm clipping and gradient
//! accumulation over micro-batches. Its state is plain tensors so checkpoints can hold it.

use anyhow::{bail, Result};
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::train::trainable::Trainable;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled decay, applied to matrices only (not norms, biases).
    pub weight_decay: f64,
    /// Clip the global gradient L2 norm to this value (`None`: no clipping).
    pub max_grad_norm: Option<f64>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { lr: 1e-5, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, max_grad_norm: Some(1.0) }
    }
}

/// Result of one optimizer step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    pub step: u64,
}

pub struct AdamW {
    pub config: AdamWConfig,
    pub(crate) vars: Vec<(String, Var)>,
    pub(crate) m: Vec<Tensor>,
    pub(crate) v: Vec<Tensor>,
    pub(crate) step: u64,
    /// Summed gradients of the micro-batches since the last step.
    accum: Vec<Option<Tensor>>,
    micro_batches: usize,
}

impl AdamW {
    pub fn new(trainable: &Trainable, config: AdamWConfig) -> Result<Self> {
        let vars = trainable.vars.clone();
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        let m = vars.iter().map(|(_, v)| zeros(v)).collect::<candle_core::Result<Vec<_>>>()?;
        let v = vars.iter().map(|(_, v)| zeros(v)).collect::<candle_core::Result<Vec<_>>>()?;
        let n = vars.len();
        Ok(AdamW { config, vars, m, v, step: 0, accum: vec![None; n], micro_batches: 0 })
    }

    pub fn step_count(&self) -> u64 {
        self.step
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// Backpropagates one micro-batch loss and adds its gradients to the accumulator.
    /// Gradients are summed: scale each micro-batch loss (e.g. by 1/micro-batches) as
    /// the objective requires.
    pub fn accumulate(&mut self, loss: &Tensor) -> Result<()> {
        let grads = loss.backward()?;
        for (i, (_, var)) in self.vars.iter().enumerate() {
            if let Some(g) = grads.get(var.as_tensor()) {
                let g = g.detach();
                self.accum[i] = Some(match self.accum[i].take() {
                    Some(acc) => (acc + g)?,
                    None => g,
                });
            }
        }
        self.micro_batches += 1;
        Ok(())
    }

    /// Applies the accumulated gradients (clipped) and clears them.
    pub fn step(&mut self) -> Result<StepStats> {
        if self.micro_batches == 0 {
            bail!("optimizer step without any accumulated micro-batch");
        }
        let mut sq = 0f64;
        for g in self.accum.iter().flatten() {
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
        let grad_norm = sq.sqrt();
        let clip = match self.config.max_grad_norm {
            Some(max) if grad_norm > max => max / (grad_norm + 1e-6),
            _ => 1.0,
        };
        self.step += 1;
        let c = &self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = self.accum[i].take() else { continue };
            let g = if clip != 1.0 { (g * clip)? } else { g };
            let m = ((&self.m[i] * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            let v = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let update = ((&m / bc1)? / ((&v / bc2)?.sqrt()? + c.eps)?)?;
            let w = var.as_tensor().detach();
            let decayed = if c.weight_decay > 0.0 && w.rank() >= 2 { (&w * (1.0 - c.lr * c.weight_decay))? } else { w };
            var.set(&(decayed - (update * c.lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        self.micro_batches = 0;
        Ok(StepStats { grad_norm, step: self.step })
    }
}
