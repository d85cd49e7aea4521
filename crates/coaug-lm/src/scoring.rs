//! Teacher-forced per-token log-probs and entropies of completions, optionally with an
//! autograd graph back to the trainable weights.

use std::ops::Range;

use anyhow::{bail, Result};
use candle_core::{DType, Tensor, D};
use candle_nn::ops;

use crate::model::{AttentionInput, CausalLm};

/// Token layout of a scoring batch: prompts left-padded to a common end, completions
/// right-padded after it, so row `r`'s completion token `j` sits at column `S + j`.
pub struct ScoreLayout {
    pub ids: Tensor,
    pub attn: AttentionInput,
    /// Flat hidden-state rows (`r * width + col`) that predict each completion token.
    predictor_rows: Tensor,
    targets: Tensor,
    /// Range of each sequence's tokens in the flat outputs.
    pub spans: Vec<Range<usize>>,
    pub width: usize,
}

impl ScoreLayout {
    pub fn new(model: &CausalLm, prompts: &[&[u32]], completions: &[&[u32]], pad_id: u32) -> Result<Self> {
        if prompts.len() != completions.len() {
            bail!("{} prompts but {} completions", prompts.len(), completions.len());
        }
        if prompts.iter().any(|p| p.is_empty()) {
            bail!("every prompt needs at least one token to predict the completion from");
        }
        let device = model.device();
        let s = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
        let c = completions.iter().map(|p| p.len()).max().unwrap_or(0);
        let width = s + c;
        let rows = prompts.len();
        let mut ids = Vec::with_capacity(rows * width);
        let mut valid = Vec::with_capacity(rows);
        let mut pred = Vec::new();
        let mut targets = Vec::new();
        let mut spans = Vec::with_capacity(rows);
        for (r, (p, comp)) in prompts.iter().zip(completions).enumerate() {
            let lpad = s - p.len();
            let rpad = c - comp.len();
            ids.extend(std::iter::repeat_n(pad_id, lpad).chain(p.iter().copied()).chain(comp.iter().copied()));
            ids.extend(std::iter::repeat_n(pad_id, rpad));
            let mut v = vec![false; lpad];
            v.extend(std::iter::repeat_n(true, p.len() + comp.len()));
            v.extend(std::iter::repeat_n(false, rpad));
            valid.push(v);
            let start = targets.len();
            for (j, &t) in comp.iter().enumerate() {
                pred.push((r * width + s - 1 + j) as u32);
                targets.push(t);
            }
            spans.push(start..targets.len());
        }
        let n = targets.len();
        Ok(ScoreLayout {
            ids: Tensor::from_vec(ids, (rows, width), device)?,
            attn: AttentionInput::from_valid(&valid, width, device)?,
            predictor_rows: Tensor::from_vec(pred, n, device)?,
            targets: Tensor::from_vec(targets, (n, 1), device)?,
            spans,
            width,
        })
    }

    /// Number of scored tokens.
    pub fn len(&self) -> usize {
        self.spans.last().map(|s| s.end).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Flat per-token results; `spans[r]` selects sequence `r`'s tokens.
pub struct TokenScores {
    /// `log_softmax(logits / T)` of each completion token, shape `(n,)`.
    pub logprobs: Tensor,
    /// Entropy of `softmax(logits / T)` at each completion position, shape `(n,)`.
    pub entropy: Tensor,
    pub spans: Vec<Range<usize>>,
}

impl TokenScores {
    /// Log-probs grouped per sequence (detached copies).
    pub fn logprobs_per_sequence(&self) -> Result<Vec<Vec<f32>>> {
        let flat = self.logprobs.to_vec1::<f32>()?;
        Ok(self.spans.iter().map(|s| flat[s.clone()].to_vec()).collect())
    }
}

/// Scores completions given prompts. With `grad`, the result backpropagates to the
/// model's trainable weights; without it no graph is kept (reference model, old policy).
pub fn score(
    model: &CausalLm,
    prompts: &[&[u32]],
    completions: &[&[u32]],
    pad_id: u32,
    temperature: f32,
    grad: bool,
) -> Result<TokenScores> {
    let layout = ScoreLayout::new(model, prompts, completions, pad_id)?;
    score_layout(model, &layout, None, temperature, grad)
}

/// Scores a prepared layout. `trunk = Some((hidden, layer))` resumes from cached
/// hidden states entering `layer` (from `CausalLm::hidden_at_layer` on `layout.ids`),
/// so only the top blocks run.
pub fn score_layout(
    model: &CausalLm,
    layout: &ScoreLayout,
    trunk: Option<(&Tensor, usize)>,
    temperature: f32,
    grad: bool,
) -> Result<TokenScores> {
    let normed = match trunk {
        Some((h, layer)) => model.forward_from_layer(h, layer, &layout.attn, None, grad)?,
        None => model.forward_hidden(&layout.ids, &layout.attn, None, grad)?,
    };
    let (rows, width, d) = normed.dims3()?;
    let picked = normed.reshape((rows * width, d))?.index_select(&layout.predictor_rows, 0)?;
    let logits = model.logits(&picked, grad)?;
    let logits = if temperature != 1.0 { (logits / temperature as f64)? } else { logits };
    let logp = ops::log_softmax(&logits, D::Minus1)?;
    let logprobs = logp.gather(&layout.targets, 1)?.squeeze(1)?;
    let entropy = (logp.exp()? * &logp)?.sum(D::Minus1)?.neg()?;
    Ok(TokenScores { logprobs: logprobs.to_dtype(DType::F32)?, entropy, spans: layout.spans.clone() })
}
