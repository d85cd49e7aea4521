//! Teacher-forced per-token log-probs and entropies of completions, optionally with an
//! autograd graph back to the trainable weights.

use std::ops::Range;

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};

use crate::infer::sampler::{PenaltyScope, SamplingParams};
use crate::model::Pass;
use crate::model::{AttentionInput, CausalLm, Keys};
use crate::train::token_stats;

/// Which tokens precede each scored token: what a repetition penalty needs to be applied by the
/// scorer exactly as the sampler applied it.
#[derive(Debug, Clone, Default)]
struct TokenHistory {
    prompts: Vec<Vec<u32>>,
    completions: Vec<Vec<u32>>,
    prompt_of: Vec<usize>,
}

impl TokenHistory {
    fn new(prompts: &[&[u32]], completions: &[&[u32]], prompt_of: Vec<usize>) -> Self {
        Self {
            prompts: prompts.iter().map(|p| p.to_vec()).collect(),
            completions: completions.iter().map(|c| c.to_vec()).collect(),
            prompt_of,
        }
    }

    /// For every scored token in span order, the distinct ids seen before it under `scope`.
    fn seen(&self, scope: PenaltyScope) -> Vec<Vec<u32>> {
        let mut out = Vec::new();
        for (r, comp) in self.completions.iter().enumerate() {
            let mut seen: Vec<u32> = Vec::new();
            let mut marked = std::collections::HashSet::new();
            if scope == PenaltyScope::Context {
                for &t in &self.prompts[self.prompt_of[r]] {
                    if marked.insert(t) {
                        seen.push(t);
                    }
                }
            }
            for &t in comp {
                out.push(seen.clone());
                if marked.insert(t) {
                    seen.push(t);
                }
            }
        }
        out
    }
}

/// Token layout of a scoring batch: prompts left-padded to a common end, completions
/// right-padded after it, so row `r`'s completion token `j` sits at column `S + j`.
struct ScoreLayout {
    ids: Tensor,
    attn: AttentionInput,
    /// Flat hidden-state rows (`r * width + col`) that predict each completion token.
    predictor_rows: Tensor,
    targets: Vec<u32>,
    /// Range of each sequence's tokens in the flat outputs.
    spans: Vec<Range<usize>>,
    history: TokenHistory,
}

impl ScoreLayout {
    fn new(model: &CausalLm, prompts: &[&[u32]], completions: &[&[u32]], pad_id: u32) -> Result<Self> {
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
            targets,
            spans,
            history: TokenHistory::new(prompts, completions, (0..prompts.len()).collect()),
        })
    }
}

/// Flat per-token results; `spans[r]` selects sequence `r`'s tokens.
pub struct TokenScores {
    /// The log-prob of each completion token under the sampler's processing (penalty,
    /// temperature, top-k/top-p renormalised), shape `(n,)`.
    pub logprobs: Tensor,
    /// Entropy of that processed distribution at each completion position, shape `(n,)`.
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
    processing: &SamplingParams,
    pass: Pass,
) -> Result<TokenScores> {
    let layout = ScoreLayout::new(model, prompts, completions, pad_id)?;
    let normed = model.forward_hidden(&layout.ids, &layout.attn, None, pass)?;
    let (rows, width, d) = normed.dims3()?;
    let picked = normed.reshape((rows * width, d))?.index_select(&layout.predictor_rows, 0)?;
    head_scores(model, &picked, &layout.targets, layout.spans.clone(), &layout.history, processing, pass)
}

/// Completions that share prompts (the n rollouts of one prompt), laid out so each distinct
/// prompt runs once: prompts `(groups, S)` left-padded to a common end, and every completion's
/// fed tokens (all but its last) `(rows, C)` right-padded, attending to its prompt's keys and
/// values from the prompt pass. Scores equal [`ScoreLayout`]'s; the prompt positions, most of
/// a rollout's length, are just no longer computed once per rollout.
pub struct GroupedLayout {
    /// The tokens every prompt starts with (the role's system turn), run once, when there
    /// are several prompts: `(1, P)`.
    prefix: Option<(Tensor, AttentionInput)>,
    prefix_len: usize,
    /// What follows the prefix in each prompt, left-padded: `(groups, S)`.
    prompt_ids: Tensor,
    prompt_attn: AttentionInput,
    /// `None` when no completion has more than one token (nothing to feed).
    completion_ids: Option<Tensor>,
    completion_attn: Option<AttentionInput>,
    /// Completion row → its prompt row, `(rows,)`.
    group_of: Tensor,
    /// Rows of `[prompt outputs (groups, last position only); completion outputs (rows·C)]`
    /// predicting each token.
    predictor_rows: Tensor,
    targets: Vec<u32>,
    pub spans: Vec<Range<usize>>,
    prompt_lens: Vec<usize>,
    fed_lens: Vec<usize>,
    prompt_width: usize,
    completion_width: usize,
    history: TokenHistory,
}

/// Hidden states entering `layer`, laid out like a [`GroupedLayout`]: the shared prefix
/// `(1, P, hidden)`, the prompts after it `(groups, S, hidden)` and fed completion tokens
/// `(rows, C, hidden)` (`None` when `C = 0`).
pub struct GroupedTrunk {
    pub prefix: Option<Tensor>,
    pub prompts: Tensor,
    pub completions: Option<Tensor>,
    pub layer: usize,
}

impl GroupedLayout {
    /// `group[r]` is the index in `prompts` of completion `r`'s prompt.
    pub fn new(model: &CausalLm, prompts: &[&[u32]], completions: &[&[u32]], group: &[usize], pad_id: u32) -> Result<Self> {
        if group.len() != completions.len() {
            bail!("{} group indices for {} completions", group.len(), completions.len());
        }
        if let Some(&g) = group.iter().find(|&&g| g >= prompts.len()) {
            bail!("group index {g} out of range for {} prompts", prompts.len());
        }
        if prompts.iter().any(|p| p.is_empty()) {
            bail!("every prompt needs at least one token to predict the completion from");
        }
        let device = model.device();
        let groups = prompts.len();
        // Each prompt keeps at least its last token: its output predicts the completion.
        let shortest = prompts.iter().map(|p| p.len()).min().unwrap_or(0);
        let mut plen = 0;
        while groups > 1 && plen + 1 < shortest && prompts.iter().all(|p| p[plen] == prompts[0][plen]) {
            plen += 1;
        }
        let prefix = if plen > 0 {
            let ids = Tensor::from_slice(&prompts[0][..plen], (1, plen), device)?;
            Some((ids, AttentionInput::causal(1, plen, device)?))
        } else {
            None
        };
        let s = prompts.iter().map(|p| p.len() - plen).max().unwrap_or(0);
        let fed_lens: Vec<usize> = completions.iter().map(|c| c.len().saturating_sub(1)).collect();
        let c = fed_lens.iter().copied().max().unwrap_or(0);

        let mut prompt_ids = Vec::with_capacity(groups * s);
        let mut prompt_valid = Vec::with_capacity(groups);
        for p in prompts {
            let rest = &p[plen..];
            let lpad = s - rest.len();
            prompt_ids.extend(std::iter::repeat_n(pad_id, lpad).chain(rest.iter().copied()));
            let mut v = vec![true; plen];
            v.extend(std::iter::repeat_n(false, lpad));
            v.extend(std::iter::repeat_n(true, rest.len()));
            prompt_valid.push(v);
        }

        let mut completion_ids = Vec::with_capacity(completions.len() * c);
        let mut completion_valid = Vec::with_capacity(completions.len());
        let mut pred = Vec::new();
        let mut targets = Vec::new();
        let mut spans = Vec::with_capacity(completions.len());
        for (r, (comp, &g)) in completions.iter().zip(group).enumerate() {
            let fed = fed_lens[r];
            completion_ids.extend(comp[..fed].iter().copied().chain(std::iter::repeat_n(pad_id, c - fed)));
            let mut v = prompt_valid[g].clone();
            v.extend(std::iter::repeat_n(true, fed));
            v.extend(std::iter::repeat_n(false, c - fed));
            completion_valid.push(v);
            let start = targets.len();
            for (j, &t) in comp.iter().enumerate() {
                let row = if j == 0 { g } else { groups + r * c + j - 1 };
                pred.push(row as u32);
                targets.push(t);
            }
            spans.push(start..targets.len());
        }
        let n = targets.len();
        let rows = completions.len();
        let (completion_ids, completion_attn) = if c > 0 {
            (Some(Tensor::from_vec(completion_ids, (rows, c), device)?), Some(AttentionInput::from_valid(&completion_valid, c, device)?))
        } else {
            (None, None)
        };
        Ok(GroupedLayout {
            prefix,
            prefix_len: plen,
            prompt_ids: Tensor::from_vec(prompt_ids, (groups, s), device)?,
            prompt_attn: AttentionInput::from_valid(&prompt_valid, s, device)?,
            completion_ids,
            completion_attn,
            group_of: Tensor::from_vec(group.iter().map(|&g| g as u32).collect::<Vec<_>>(), rows, device)?,
            predictor_rows: Tensor::from_vec(pred, n, device)?,
            targets,
            spans,
            prompt_lens: prompts.iter().map(|p| p.len()).collect(),
            fed_lens,
            prompt_width: s,
            completion_width: c,
            history: TokenHistory::new(prompts, completions, group.to_vec()),
        })
    }

    /// Number of scored tokens.
    pub fn len(&self) -> usize {
        self.spans.last().map(|s| s.end).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lays out kept hidden states: `prompts[g]` is `(prompt_len, hidden)` for prompt `g`,
    /// `completions[r]` at least `(fed_len, hidden)` for completion `r` (extra rows are
    /// ignored). Padding rows are zero: masked as keys, and never scored.
    pub fn trunk(&self, prompts: &[Tensor], completions: &[Tensor], layer: usize) -> Result<GroupedTrunk> {
        if prompts.len() != self.prompt_lens.len() || completions.len() != self.fed_lens.len() {
            bail!(
                "trunk has {} prompts and {} completions, the layout {} and {}",
                prompts.len(),
                completions.len(),
                self.prompt_lens.len(),
                self.fed_lens.len()
            );
        }
        let pad = |t: &Tensor, before: usize, len: usize, after: usize| -> Result<Tensor> {
            let d = t.dim(1)?;
            let mut parts = Vec::with_capacity(3);
            if before > 0 {
                parts.push(Tensor::zeros((before, d), t.dtype(), t.device())?);
            }
            parts.push(t.narrow(0, 0, len)?);
            if after > 0 {
                parts.push(Tensor::zeros((after, d), t.dtype(), t.device())?);
            }
            Ok(Tensor::cat(&parts, 0)?)
        };
        let (s, plen) = (self.prompt_width, self.prefix_len);
        let p = prompts
            .iter()
            .zip(&self.prompt_lens)
            .map(|(t, &len)| {
                if t.dim(0)? != len {
                    bail!("kept prompt trunk has {} positions, the prompt {len}", t.dim(0)?);
                }
                pad(&t.narrow(0, plen, len - plen)?, s - (len - plen), len - plen, 0)
            })
            .collect::<Result<Vec<_>>>()?;
        let prefix = match self.prefix {
            Some(_) => Some(prompts[0].narrow(0, 0, plen)?.unsqueeze(0)?),
            None => None,
        };
        let c = self.completion_width;
        let completions = if c > 0 {
            let rows = completions
                .iter()
                .zip(&self.fed_lens)
                .map(|(t, &fed)| {
                    if t.dim(0)? < fed {
                        bail!("kept completion trunk has {} positions, the completion feeds {fed}", t.dim(0)?);
                    }
                    pad(t, 0, fed, c - fed)
                })
                .collect::<Result<Vec<_>>>()?;
            Some(Tensor::stack(&rows, 0)?)
        } else {
            None
        };
        Ok(GroupedTrunk { prefix, prompts: Tensor::stack(&p, 0)?, completions, layer })
    }
}

/// Scores a [`GroupedLayout`]: each prompt runs once through the blocks, recording its keys
/// and values (its outputs are needed at its last position only), and the completions run
/// after them. With `trunk`, only blocks from `trunk.layer` up run. Gradients reach the prompt
/// pass through the completions' attention.
pub fn score_grouped(
    model: &CausalLm,
    layout: &GroupedLayout,
    trunk: Option<&GroupedTrunk>,
    processing: &SamplingParams,
    pass: Pass,
) -> Result<TokenScores> {
    let (prefix, prompts, completions, start) = match trunk {
        Some(t) => (t.prefix.clone(), t.prompts.clone(), t.completions.clone(), t.layer),
        None => (
            layout.prefix.as_ref().map(|(ids, _)| model.embed(ids, pass)).transpose()?,
            model.embed(&layout.prompt_ids, pass)?,
            layout.completion_ids.as_ref().map(|ids| model.embed(ids, pass)).transpose()?,
            0,
        ),
    };
    let layers = start..model.num_layers();
    let device = model.device();
    // Keys and values of `kv` repeated for the rows `index` names.
    let fan = |kv: &[(Tensor, Tensor)], index: &Tensor| -> Result<Vec<(Tensor, Tensor)>> {
        kv.iter().map(|(k, v)| Ok((k.index_select(index, 0)?, v.index_select(index, 0)?))).collect()
    };
    let after_prefix = match (&prefix, &layout.prefix) {
        (Some(h), Some((_, attn))) => {
            let mut kv = Vec::with_capacity(layers.len());
            let keys = Keys::Batch { after: None, record: Some(&mut kv) };
            model.forward_prompt_last(h, layers.clone(), attn, keys, pass)?;
            let groups = layout.prompt_lens.len();
            Some(fan(&kv, &Tensor::zeros(groups, DType::U32, device)?)?)
        }
        _ => None,
    };
    // Each prompt's keys and values, the shared prefix's included.
    let mut kv = Vec::with_capacity(layers.len());
    let keys = Keys::Batch { after: after_prefix.as_deref(), record: Some(&mut kv) };
    let p = model.forward_prompt_last(&prompts, layers.clone(), &layout.prompt_attn, keys, pass)?;
    let p = model.final_norm(&p, pass)?;
    let d = p.dim(2)?;
    let mut flat = vec![p.reshape(((), d))?];
    if let (Some(h), Some(attn)) = (&completions, &layout.completion_attn) {
        let fanned = fan(&kv, &layout.group_of)?;
        let keys = Keys::Batch { after: Some(&fanned), record: None };
        let c = model.forward_layers_keyed(h, layers, attn, keys, pass)?;
        flat.push(model.final_norm(&c, pass)?.reshape(((), d))?);
    }
    let all = if flat.len() == 1 { flat.pop().expect("one part") } else { Tensor::cat(&flat, 0)? };
    let picked = all.index_select(&layout.predictor_rows, 0)?;
    head_scores(model, &picked, &layout.targets, layout.spans.clone(), &layout.history, processing, pass)
}

/// Log-probs and entropies of the targets from their predicting hidden rows. Temperature alone
/// takes the fused path (`token_stats`); a penalty or a top-k/top-p cut is applied with candle's
/// ops on the full logits, exactly as the sampler applies them.
fn head_scores(
    model: &CausalLm,
    picked: &Tensor,
    targets: &[u32],
    spans: Vec<Range<usize>>,
    history: &TokenHistory,
    p: &SamplingParams,
    pass: Pass,
) -> Result<TokenScores> {
    let temperature = p.logprob_temperature();
    let vocab = model.config().vocab_size;
    let truncates = (p.top_k > 0 && p.top_k < vocab) || p.top_p < 1.0;
    let seen = if p.repetition_penalty != 1.0 { Some(history.seen(p.penalty_scope)) } else { None };
    let penalizes = seen.as_ref().is_some_and(|s| s.iter().any(|ids| ids.iter().any(|id| !p.unpenalized.contains(id))));
    let (logprobs, entropy) = if p.temperature > 0.0 && (truncates || penalizes) {
        processed_scores(&model.logits(picked, pass)?, targets, seen.as_deref(), p)?
    } else {
        match model.frozen_head_weight(pass) {
            Some(w) => token_stats::projected_logprob_and_entropy(picked, &w, targets, temperature, pass)?,
            None => token_stats::logprob_and_entropy(&model.logits(picked, pass)?, targets, temperature)?,
        }
    };
    Ok(TokenScores { logprobs: logprobs.to_dtype(DType::F32)?, entropy, spans })
}

/// A logit that top-k/top-p dropped: far below anything real, but finite, so a dropped token's
/// probability is exactly 0 and its share of the entropy `0 · log 0` is 0 rather than NaN.
const DROPPED: f64 = -1e30;

/// The processed distribution's log-prob of each target and entropy, differentiable: the penalty
/// scales the logits of seen tokens (a sparse adjustment, so the gradient flows through the
/// scaling), temperature divides, and top-k/top-p drop what the sampler dropped.
fn processed_scores(logits: &Tensor, targets: &[u32], seen: Option<&[Vec<u32>]>, p: &SamplingParams) -> Result<(Tensor, Tensor)> {
    let (n, vocab) = logits.dims2()?;
    let device = logits.device();
    let mut rows = logits.detach().to_vec2::<f32>()?;
    let mut logits = logits.clone();
    if let Some(seen) = seen {
        let mut index = Vec::new();
        let mut factor = Vec::new();
        for (r, ids) in seen.iter().enumerate() {
            for &id in ids.iter().filter(|id| !p.unpenalized.contains(id) && (**id as usize) < vocab) {
                let x = rows[r][id as usize];
                index.push((r * vocab + id as usize) as u32);
                // x·penalty for a negative logit, x / penalty otherwise: x + x·(factor).
                factor.push(if x < 0.0 { p.repetition_penalty - 1.0 } else { 1.0 / p.repetition_penalty - 1.0 });
            }
            crate::infer::sampler::apply_penalty(&mut rows[r], ids.iter().copied(), p.repetition_penalty, &p.unpenalized);
        }
        if !index.is_empty() {
            let m = index.len();
            let index = Tensor::from_vec(index, m, device)?;
            let flat = logits.flatten_all()?;
            let delta = (flat.index_select(&index, 0)? * Tensor::from_vec(factor, m, device)?)?;
            logits = flat.index_add(&index, &delta, 0)?.reshape((n, vocab))?;
        }
    }
    let t = p.logprob_temperature();
    let mut z = (logits / f64::from(t))?;
    let kept: Vec<Option<Vec<u32>>> = rows.iter().map(|row| crate::infer::sampler::kept_tokens(row, t, p.top_k, p.top_p)).collect();
    if kept.iter().any(Option::is_some) {
        let mut mask = vec![DROPPED as f32; n * vocab];
        for (r, k) in kept.iter().enumerate() {
            match k {
                Some(ids) => ids.iter().for_each(|&id| mask[r * vocab + id as usize] = 0.0),
                None => mask[r * vocab..(r + 1) * vocab].iter_mut().for_each(|m| *m = 0.0),
            }
        }
        z = (z + Tensor::from_vec(mask, (n, vocab), device)?)?;
    }
    let logp = candle_nn::ops::log_softmax(&z, candle_core::D::Minus1)?;
    let idx = Tensor::from_slice(targets, (n, 1), device)?;
    let picked = logp.gather(&idx, 1)?.squeeze(1)?;
    let entropy = (logp.exp()? * &logp)?.sum(candle_core::D::Minus1)?.neg()?;
    Ok((picked, entropy))
}
