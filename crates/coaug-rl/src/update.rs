//! The policy update in candle: one PPO epoch over the step's rollouts, split into mini-batches
//! (one optimizer update each) and micro-batches (gradient accumulation).
//!
//! The loss is [`crate::loss`]'s, built as a tensor whose value *and* gradient equal the
//! reference's: the clipping decisions (log-ratio clamp, ratio bounds, which branch of the max)
//! are taken on detached values and enter as 0/1 masks, so no `max`/`clamp` tie rule of the
//! autograd engine can change the gradient.
//!
//! Cost (issue §6): the frozen trunk (blocks below the first trainable one) runs once per
//! micro-batch without a graph; the policy and the reference resume from its output, and logits
//! are computed only at completion positions. The old log-probs come from the sampler, and the
//! reference is not run at all when the KL coefficient is 0.

use anyhow::{bail, Result};
use candle_core::Tensor;
use coaug_lm::{score_layout, AdamW, ScoreLayout, TokenScores};
use serde::Serialize;

use crate::loss::SurrogateSettings;
use crate::policy::Policy;

/// The k3 estimate is clamped like veRL's `low_var_kl` (as in [`crate::loss`]).
const KL_CLAMP: f64 = 10.0;

/// One sequence to learn from.
#[derive(Debug, Clone, Copy)]
pub struct UpdateItem<'a> {
    pub prompt: &'a [u32],
    pub tokens: &'a [u32],
    pub old_logprobs: &'a [f32],
    pub advantage: f32,
    /// Hidden states entering the policy's first trainable block, kept from generation
    /// (`(prompt + tokens - 1, hidden)`); without them the update recomputes the frozen trunk.
    pub trunk: Option<&'a Tensor>,
}

/// How the epoch is cut up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpdateShape {
    pub mini_batches: usize,
    pub micro_batch_size: usize,
    /// Temperature the log-probs are taken at (the sampling temperature, as the sampler's).
    pub temperature: f32,
}

/// Token-weighted means over the epoch, and what the optimizer saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UpdateReport {
    pub loss: f64,
    pub policy_loss: f64,
    pub clip_fraction: f64,
    pub kl: f64,
    pub entropy: f64,
    /// Token mean of `logp_old − logp`: ≈ 0 when the update recomputes the sampler's policy.
    pub approx_kl_to_old: f64,
    pub tokens: usize,
    pub sequences: usize,
    pub optimizer_steps: usize,
    /// Mean global gradient norm (before clipping) over the optimizer steps.
    pub grad_norm: f64,
}

/// Sums over tokens, divided by the mini-batch's token count when reported.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossSums {
    pub policy: f64,
    pub clipped: f64,
    pub kl: f64,
    pub entropy: f64,
    pub approx_kl_to_old: f64,
}

/// The loss tensor of some tokens of a mini-batch, already divided by the mini-batch's token
/// count `mini_batch_tokens`, so micro-batch losses add up to the token mean.
///
/// `logp` and `entropy` carry the graph; `old`, `advantages` and `ref_logp` are plain numbers.
pub fn surrogate_tensor(
    logp: &Tensor,
    entropy: &Tensor,
    old: &[f32],
    advantages: &[f32],
    ref_logp: Option<&[f32]>,
    settings: &SurrogateSettings,
    mini_batch_tokens: usize,
) -> Result<(Tensor, LossSums)> {
    let device = logp.device();
    let values = logp.detach().to_vec1::<f32>()?;
    let n = values.len();
    if old.len() != n || advantages.len() != n || ref_logp.is_some_and(|r| r.len() != n) {
        bail!("surrogate inputs disagree in length ({n} log-probs)");
    }
    let norm = 1.0 / mini_batch_tokens.max(1) as f64;
    let mut sums = LossSums::default();

    // Policy term: where the gradient flows (log-ratio not clamped, unclipped branch chosen)
    // the token's loss is −A·exp(logp − old) on the graph; elsewhere it is a constant.
    let mut flows = vec![0f32; n];
    let mut coef = vec![0f32; n];
    let mut constant = 0f64;
    for i in 0..n {
        let (lp, lo, a) = (f64::from(values[i]), f64::from(old[i]), f64::from(advantages[i]));
        let raw = lp - lo;
        let log_ratio = raw.clamp(-settings.log_ratio_clamp, settings.log_ratio_clamp);
        let ratio = log_ratio.exp();
        let bounded = ratio.clamp(settings.ratio_min, settings.ratio_max);
        let clipped = -a * bounded > -a * ratio;
        let token = if clipped { -a * bounded } else { -a * ratio };
        sums.policy += token;
        sums.clipped += f64::from(u8::from(clipped));
        sums.approx_kl_to_old += lo - lp;
        if raw == log_ratio && !clipped {
            flows[i] = 1.0;
            coef[i] = -advantages[i];
        } else {
            constant += token;
        }
    }
    let old_t = Tensor::from_slice(old, n, device)?;
    let flows_t = Tensor::from_vec(flows, n, device)?;
    let coef_t = Tensor::from_vec(coef, n, device)?;
    // Masking the exponent keeps exp finite where the gradient does not flow.
    let exponent = ((logp - &old_t)? * &flows_t)?;
    let mut loss = ((coef_t * exponent.exp()?)?.sum_all()? + constant)?;

    if let (Some(reference), true) = (ref_logp, settings.kl_coef != 0.0) {
        let mut live = vec![0f32; n];
        let mut kl_constant = 0f64;
        for i in 0..n {
            let d = f64::from(reference[i]) - f64::from(values[i]);
            let kl = d.exp() - d - 1.0;
            if kl.abs() > KL_CLAMP {
                kl_constant += kl.clamp(-KL_CLAMP, KL_CLAMP);
                sums.kl += kl.clamp(-KL_CLAMP, KL_CLAMP);
            } else {
                live[i] = 1.0;
                sums.kl += kl;
            }
        }
        let live_t = Tensor::from_vec(live, n, device)?;
        let d = ((Tensor::from_slice(reference, n, device)? - logp)? * &live_t)?;
        let k3 = ((d.exp()? - &d)? - 1.0)?;
        let kl_t = ((k3 * live_t)?.sum_all()? + kl_constant)?;
        loss = (loss + (kl_t * settings.kl_coef)?)?;
    }
    sums.entropy = f64::from(entropy.detach().sum_all()?.to_scalar::<f32>()?);
    if settings.entropy_coef != 0.0 {
        loss = (loss - (entropy.sum_all()? * settings.entropy_coef)?)?;
    }
    Ok(((loss * norm)?, sums))
}

/// Runs one PPO epoch over `items` and steps the optimizer once per mini-batch. Items with a
/// zero advantage still count in the token mean (as in veRL) but are skipped when every item
/// of a mini-batch has one.
pub fn policy_update(
    policy: &Policy,
    optimizer: &mut AdamW,
    items: &[UpdateItem<'_>],
    shape: &UpdateShape,
    settings: &SurrogateSettings,
) -> Result<UpdateReport> {
    let mut report = UpdateReport::default();
    let mut grad_norms = Vec::new();
    let mini_batches = shape.mini_batches.max(1).min(items.len().max(1));
    for m in 0..mini_batches {
        // Interleaved assignment keeps every role in every mini-batch.
        let mut batch: Vec<&UpdateItem> = items.iter().skip(m).step_by(mini_batches).collect();
        if batch.iter().all(|it| it.advantage == 0.0) {
            continue;
        }
        // Similar lengths together: less padding in each micro-batch.
        batch.sort_by_key(|it| (it.prompt.len() + it.tokens.len(), it.prompt.len()));
        // Every token counts in the mean (as in veRL); a zero-advantage sequence adds nothing
        // else unless a regulariser looks at it, so it is not even forwarded then.
        let tokens: usize = batch.iter().map(|it| it.tokens.len()).sum();
        let regularised = settings.kl_coef != 0.0 || settings.entropy_coef != 0.0;
        batch.retain(|it| regularised || it.advantage != 0.0);
        let forwarded: usize = batch.iter().map(|it| it.tokens.len()).sum();
        let mut sums = LossSums::default();
        let mut loss_value = 0f64;
        for micro in batch.chunks(shape.micro_batch_size.max(1)) {
            let (loss, s) = micro_batch_loss(policy, micro, shape.temperature, settings, tokens)?;
            loss_value += f64::from(loss.to_scalar::<f32>()?);
            optimizer.accumulate(&loss)?;
            sums.policy += s.policy;
            sums.clipped += s.clipped;
            sums.kl += s.kl;
            sums.entropy += s.entropy;
            sums.approx_kl_to_old += s.approx_kl_to_old;
        }
        let stats = optimizer.step()?;
        grad_norms.push(stats.grad_norm);
        report.loss += loss_value * forwarded as f64;
        report.policy_loss += sums.policy;
        report.clip_fraction += sums.clipped;
        report.kl += sums.kl;
        report.entropy += sums.entropy;
        report.approx_kl_to_old += sums.approx_kl_to_old;
        report.tokens += forwarded;
        report.sequences += batch.len();
        report.optimizer_steps += 1;
    }
    if report.tokens > 0 {
        let t = report.tokens as f64;
        report.loss /= t;
        report.policy_loss /= t;
        report.clip_fraction /= t;
        report.kl /= t;
        report.entropy /= t;
        report.approx_kl_to_old /= t;
    }
    if !grad_norms.is_empty() {
        report.grad_norm = grad_norms.iter().sum::<f64>() / grad_norms.len() as f64;
    }
    Ok(report)
}

/// Log-probs (with a graph) of the micro-batch's completions under the policy, and under the
/// reference when there is one — both resumed from one graph-free pass of the frozen trunk.
pub fn micro_batch_scores(
    policy: &Policy,
    micro: &[&UpdateItem<'_>],
    temperature: f32,
    with_reference: bool,
) -> Result<(TokenScores, Option<Vec<f32>>)> {
    let prompts: Vec<&[u32]> = micro.iter().map(|it| it.prompt).collect();
    let completions: Vec<&[u32]> = micro.iter().map(|it| it.tokens).collect();
    let model = &policy.model;
    let layout = ScoreLayout::new(model, &prompts, &completions, policy.tokenizer.pad_id())?;
    let first = policy.first_trainable_layer;
    let trunk = if first == 0 {
        None
    } else if let Some(kept) = kept_trunk(micro, &layout)? {
        Some(kept)
    } else {
        Some(model.hidden_at_layer(&layout.ids, &layout.attn, first)?)
    };
    let trunk_ref = trunk.as_ref().map(|h| (h, first));
    let scores = score_layout(model, &layout, trunk_ref, temperature, true)?;
    let reference = match (&policy.reference, with_reference) {
        (Some(reference), true) => {
            let r = score_layout(reference, &layout, trunk_ref, temperature, false)?;
            Some(r.logprobs.to_vec1::<f32>()?)
        }
        _ => None,
    };
    Ok((scores, reference))
}

/// The kept generation-time trunks laid out like `layout` (prompts left-padded, completions
/// right-padded), or `None` when an item has none. Padding rows are zero: masked as keys, and
/// no scored position reads them. The last completion token feeds no scored position, so its
/// row (never computed during generation) is zero as well.
fn kept_trunk(micro: &[&UpdateItem<'_>], layout: &ScoreLayout) -> Result<Option<Tensor>> {
    let Some(trunks) = micro.iter().map(|it| it.trunk).collect::<Option<Vec<&Tensor>>>() else {
        return Ok(None);
    };
    let s = micro.iter().map(|it| it.prompt.len()).max().unwrap_or(0);
    let mut rows = Vec::with_capacity(micro.len());
    for (it, trunk) in micro.iter().zip(trunks) {
        let (len, hidden) = trunk.dims2()?;
        let fed = it.prompt.len() + it.tokens.len().saturating_sub(1);
        anyhow::ensure!(len == fed, "kept trunk has {len} positions, the rollout feeds {fed}");
        let lpad = s - it.prompt.len();
        let rpad = layout.width - lpad - len;
        let mut parts = Vec::with_capacity(3);
        if lpad > 0 {
            parts.push(Tensor::zeros((lpad, hidden), trunk.dtype(), trunk.device())?);
        }
        parts.push(trunk.clone());
        if rpad > 0 {
            parts.push(Tensor::zeros((rpad, hidden), trunk.dtype(), trunk.device())?);
        }
        rows.push(Tensor::cat(&parts, 0)?);
    }
    Ok(Some(Tensor::stack(&rows, 0)?))
}

fn micro_batch_loss(
    policy: &Policy,
    micro: &[&UpdateItem<'_>],
    temperature: f32,
    settings: &SurrogateSettings,
    mini_batch_tokens: usize,
) -> Result<(Tensor, LossSums)> {
    let (scores, reference) = micro_batch_scores(policy, micro, temperature, settings.needs_reference())?;
    let mut old = Vec::new();
    let mut advantages = Vec::new();
    for it in micro {
        old.extend_from_slice(it.old_logprobs);
        advantages.extend(std::iter::repeat_n(it.advantage, it.tokens.len()));
    }
    let entropy = if settings.entropy_coef != 0.0 {
        scores.entropy.clone()
    } else {
        scores.entropy.detach()
    };
    surrogate_tensor(
        &scores.logprobs,
        &entropy,
        &old,
        &advantages,
        reference.as_deref(),
        settings,
        mini_batch_tokens,
    )
}
