//! The policy update in candle: one PPO epoch over the step's rollouts, split into mini-batches
//! (one optimizer update each) and micro-batches (gradient accumulation).
//!
//! The loss is [`crate::loss`]'s, built as a tensor whose value *and* gradient equal the
//! reference's: the clipping decisions (log-ratio clamp, ratio bounds, which branch of the max)
//! are taken on detached values and enter as 0/1 masks, so no `max`/`clamp` tie rule of the
//! autograd engine can change the gradient.
//!
//! Cost (issue §6): the policy and the reference resume from the frozen trunk's hidden states
//! kept during generation, run each distinct prompt of a micro-batch once (its rollouts attend
//! to its keys and values), and compute logits only at completion positions. The old log-probs
//! come from the sampler, and the reference is not run at all when the KL coefficient is 0.

use anyhow::{bail, Result};
use candle_core::Tensor;
use coaug_lm::{score_grouped, AdamW, GroupedLayout, SamplingParams, TokenScores};
use serde::Serialize;

use crate::loss::{SurrogateSettings, KL_CLAMP};
use crate::policy::Policy;
use coaug_lm::Pass;

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

/// How the epoch is cut up, and how log-probs are taken.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateShape {
    pub mini_batches: usize,
    pub micro_batch_size: usize,
    /// The sampler's settings: the scorer applies the same temperature, penalty and top-k/top-p,
    /// so the importance ratios start at 1 (on-policy).
    pub processing: SamplingParams,
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
        // Rollouts of one prompt side by side, so a micro-batch runs their prompt once; similar
        // prompt lengths together, so little padding.
        batch.sort_by(|a, b| (a.prompt.len(), a.prompt).cmp(&(b.prompt.len(), b.prompt)).then(a.tokens.len().cmp(&b.tokens.len())));
        // Every token counts in the mean (as in veRL); a zero-advantage sequence adds nothing
        // else unless a regulariser looks at it, so it is not even forwarded then.
        let tokens: usize = batch.iter().map(|it| it.tokens.len()).sum();
        let regularised = settings.kl_coef != 0.0 || settings.entropy_coef != 0.0;
        batch.retain(|it| regularised || it.advantage != 0.0);
        let forwarded: usize = batch.iter().map(|it| it.tokens.len()).sum();
        let mut sums = LossSums::default();
        let mut loss_value = 0f64;
        for micro in micro_batches(&batch, shape.micro_batch_size.max(1)) {
            let (loss, s) = micro_batch_loss(policy, micro, &shape.processing, settings, tokens)?;
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

/// Cuts `batch` (rollouts of a prompt adjacent) into micro-batches of at most `size`, keeping
/// a prompt's rollouts together where they fit, since each micro-batch runs a prompt once.
fn micro_batches<'b, 'a>(batch: &'b [&'b UpdateItem<'a>], size: usize) -> Vec<&'b [&'b UpdateItem<'a>]> {
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < batch.len() {
        let mut end = i + 1;
        while end < batch.len() && batch[end].prompt == batch[i].prompt {
            end += 1;
        }
        if end - start > size && i > start {
            out.push(&batch[start..i]);
            start = i;
        }
        while end - start > size {
            out.push(&batch[start..start + size]);
            start += size;
        }
        i = end;
    }
    if start < batch.len() {
        out.push(&batch[start..]);
    }
    out
}

/// Log-probs (with a graph) of the micro-batch's completions under the policy, and under the
/// reference when there is one. Rollouts of the same prompt share one pass over it (see
/// [`GroupedLayout`]), and both models resume from the trunk kept during generation when every
/// item has one.
pub fn micro_batch_scores(
    policy: &Policy,
    micro: &[&UpdateItem<'_>],
    processing: &SamplingParams,
    with_reference: bool,
) -> Result<(TokenScores, Option<Vec<f32>>)> {
    let mut prompts: Vec<&[u32]> = Vec::new();
    let mut first_of_group: Vec<usize> = Vec::new();
    let mut group = Vec::with_capacity(micro.len());
    for (i, it) in micro.iter().enumerate() {
        let g = match prompts.iter().position(|p| *p == it.prompt) {
            Some(g) => g,
            None => {
                prompts.push(it.prompt);
                first_of_group.push(i);
                prompts.len() - 1
            }
        };
        group.push(g);
    }
    let completions: Vec<&[u32]> = micro.iter().map(|it| it.tokens).collect();
    let model = &policy.model;
    let layout = GroupedLayout::new(model, &prompts, &completions, &group, policy.tokenizer.pad_id())?;
    let first = policy.first_trainable_layer;
    let trunk = match micro.iter().map(|it| it.trunk).collect::<Option<Vec<&Tensor>>>() {
        Some(kept) if first > 0 => {
            for (it, t) in micro.iter().zip(&kept) {
                let fed = it.prompt.len() + it.tokens.len().saturating_sub(1);
                anyhow::ensure!(t.dim(0)? == fed, "kept trunk has {} positions, the rollout feeds {fed}", t.dim(0)?);
            }
            let prompt_rows =
                first_of_group.iter().map(|&i| kept[i].narrow(0, 0, micro[i].prompt.len())).collect::<candle_core::Result<Vec<_>>>()?;
            let completion_rows = micro
                .iter()
                .zip(&kept)
                .map(|(it, t)| t.narrow(0, it.prompt.len(), t.dim(0)? - it.prompt.len()))
                .collect::<candle_core::Result<Vec<_>>>()?;
            Some(layout.trunk(&prompt_rows, &completion_rows, first)?)
        }
        _ => None,
    };
    let scores = score_grouped(model, &layout, trunk.as_ref(), processing, Pass::Train)?;
    let reference = match (&policy.reference, with_reference) {
        (Some(reference), true) => {
            let r = score_grouped(reference, &layout, trunk.as_ref(), processing, Pass::Infer)?;
            Some(r.logprobs.to_vec1::<f32>()?)
        }
        _ => None,
    };
    Ok((scores, reference))
}

fn micro_batch_loss(
    policy: &Policy,
    micro: &[&UpdateItem<'_>],
    processing: &SamplingParams,
    settings: &SurrogateSettings,
    mini_batch_tokens: usize,
) -> Result<(Tensor, LossSums)> {
    let (scores, reference) = micro_batch_scores(policy, micro, processing, settings.needs_reference())?;
    let mut old = Vec::new();
    let mut advantages = Vec::new();
    for it in micro {
        old.extend_from_slice(it.old_logprobs);
        advantages.extend(std::iter::repeat_n(it.advantage, it.tokens.len()));
    }
    let entropy = if settings.entropy_coef != 0.0 { scores.entropy.clone() } else { scores.entropy.detach() };
    surrogate_tensor(&scores.logprobs, &entropy, &old, &advantages, reference.as_deref(), settings, mini_batch_tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_batches_keep_a_prompts_rollouts_together_where_they_fit() {
        let prompts: [&[u32]; 3] = [&[1], &[2, 2], &[3]];
        let item = |p: usize| UpdateItem { prompt: prompts[p], tokens: &[], old_logprobs: &[], advantage: 1.0, trunk: None };
        let items: Vec<UpdateItem> = [0, 0, 0, 1, 1, 1, 1, 1, 2, 2].iter().map(|&p| item(p)).collect();
        let batch: Vec<&UpdateItem> = items.iter().collect();
        let sizes = |size| micro_batches(&batch, size).iter().map(|m| m.len()).collect::<Vec<_>>();
        // Prompt 1's five do not fit after prompt 0's three: a new chunk, split at 4; its
        // last rollout shares a chunk with prompt 2's.
        assert_eq!(sizes(4), vec![3, 4, 3]);
        assert_eq!(sizes(8), vec![8, 2]);
        assert_eq!(sizes(100), vec![10]);
        assert_eq!(sizes(1), vec![1; 10]);
    }
}
