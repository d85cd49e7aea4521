//! The clipped surrogate on plain per-token numbers (f64, no autograd): the reference the tensor
//! loss of [`crate::update`] is tested against, token by token and in its gradient.

use serde::Serialize;

use super::{SurrogateSettings, KL_CLAMP};
use crate::error::{setting, Result, RlError};

/// Per-token inputs of one mini-batch, flattened in the same order.
#[derive(Debug, Clone, Copy)]
pub struct TokenBatch<'a> {
    /// log π(token) under the policy being trained.
    pub logp: &'a [f32],
    /// log π_old(token) from the sampler.
    pub old_logp: &'a [f32],
    /// log π_ref(token); needed when `kl_coef` > 0.
    pub ref_logp: Option<&'a [f32]>,
    /// Entropy of the policy at the token; needed when `entropy_coef` > 0.
    pub entropy: Option<&'a [f32]>,
    /// The rollout's advantage, repeated on each of its tokens.
    pub advantages: &'a [f32],
    /// 1 for response tokens that count, 0 for padding and prompt.
    pub mask: &'a [f32],
}

/// The loss and what the trainer logs about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LossReport {
    pub loss: f64,
    pub policy_loss: f64,
    /// Fraction of counted tokens whose surrogate was clipped.
    pub clip_fraction: f64,
    /// Token-mean k3 KL to the reference (0 without a reference).
    pub kl: f64,
    /// Token-mean entropy (0 when not given).
    pub entropy: f64,
    /// Token-mean of `logp_old − logp` (veRL's `ppo_kl`).
    pub approx_kl_to_old: f64,
    pub tokens: f64,
}

/// `d loss / d logp` per token (the entropy bonus excluded).
pub type LossGradient = Vec<f64>;

/// The loss of a mini-batch and its gradient with respect to each token's `logp`.
pub fn surrogate_loss(batch: &TokenBatch<'_>, settings: &SurrogateSettings) -> Result<(LossReport, LossGradient)> {
    check(batch, settings)?;
    let tokens: f64 = batch.mask.iter().map(|&m| f64::from(m)).sum();
    let norm = if tokens > 0.0 { 1.0 / tokens } else { 0.0 };
    let mut report = LossReport { loss: 0.0, policy_loss: 0.0, clip_fraction: 0.0, kl: 0.0, entropy: 0.0, approx_kl_to_old: 0.0, tokens };
    let mut gradient = vec![0.0; batch.logp.len()];
    for (i, grad) in gradient.iter_mut().enumerate() {
        let m = f64::from(batch.mask[i]) * norm;
        if m == 0.0 {
            continue;
        }
        let logp = f64::from(batch.logp[i]);
        let token = policy_token(logp, f64::from(batch.old_logp[i]), f64::from(batch.advantages[i]), settings);
        report.policy_loss += m * token.loss;
        report.clip_fraction += m * f64::from(u8::from(token.clipped));
        report.approx_kl_to_old += m * (f64::from(batch.old_logp[i]) - logp);
        *grad += m * token.dloss;
        if let (Some(reference), true) = (batch.ref_logp, settings.kl_coef != 0.0) {
            let (kl, dkl) = k3(logp, f64::from(reference[i]));
            report.kl += m * kl;
            *grad += m * settings.kl_coef * dkl;
        }
        if let Some(entropy) = batch.entropy {
            report.entropy += m * f64::from(entropy[i]);
        }
    }
    report.loss = report.policy_loss + settings.kl_coef * report.kl - settings.entropy_coef * report.entropy;
    Ok((report, gradient))
}

struct PolicyToken {
    loss: f64,
    dloss: f64,
    clipped: bool,
}

fn policy_token(logp: f64, old_logp: f64, advantage: f64, s: &SurrogateSettings) -> PolicyToken {
    let raw = logp - old_logp;
    let log_ratio = raw.clamp(-s.log_ratio_clamp, s.log_ratio_clamp);
    let ratio = log_ratio.exp();
    // d ratio / d logp, zero where the log-ratio clamp is active.
    let dratio = if raw == log_ratio { ratio } else { 0.0 };
    let unclipped = -advantage * ratio;
    let bounded = ratio.clamp(s.ratio_min, s.ratio_max);
    let clipped = -advantage * bounded;
    if clipped > unclipped {
        let dbounded = if bounded == ratio { dratio } else { 0.0 };
        PolicyToken { loss: clipped, dloss: -advantage * dbounded, clipped: true }
    } else {
        PolicyToken { loss: unclipped, dloss: -advantage * dratio, clipped: false }
    }
}

/// k3 estimate of KL(π ‖ π_ref) at one token and its derivative in `logp`.
fn k3(logp: f64, ref_logp: f64) -> (f64, f64) {
    let d = ref_logp - logp;
    let kl = d.exp() - d - 1.0;
    if kl.abs() > KL_CLAMP {
        (kl.clamp(-KL_CLAMP, KL_CLAMP), 0.0)
    } else {
        (kl, 1.0 - d.exp())
    }
}

fn check(batch: &TokenBatch<'_>, settings: &SurrogateSettings) -> Result<()> {
    settings.validate()?;
    let n = batch.logp.len();
    let mut lengths = vec![("old_logp", batch.old_logp.len()), ("advantages", batch.advantages.len()), ("mask", batch.mask.len())];
    lengths.extend(batch.ref_logp.map(|r| ("ref_logp", r.len())));
    lengths.extend(batch.entropy.map(|e| ("entropy", e.len())));
    if let Some(&(what, got)) = lengths.iter().find(|&&(_, len)| len != n) {
        return Err(RlError::Shape { what, expected: n, got });
    }
    if settings.kl_coef != 0.0 && batch.ref_logp.is_none() {
        return Err(setting("loss.kl_coef", settings.kl_coef, "is > 0 but no reference log-probs were given"));
    }
    if settings.entropy_coef != 0.0 && batch.entropy.is_none() {
        return Err(setting("loss.entropy_coef", settings.entropy_coef, "is > 0 but no entropies were given"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> SurrogateSettings {
        SurrogateSettings { kl_coef: 0.0, entropy_coef: 0.0, ..Default::default() }
    }

    fn batch<'a>(logp: &'a [f32], old: &'a [f32], adv: &'a [f32], mask: &'a [f32]) -> TokenBatch<'a> {
        TokenBatch { logp, old_logp: old, ref_logp: None, entropy: None, advantages: adv, mask }
    }

    #[test]
    fn on_policy_loss_is_minus_the_mean_advantage_over_counted_tokens() {
        let lp = [-1.0, -2.0, -0.5, -3.0];
        let (r, g) = surrogate_loss(&batch(&lp, &lp, &[1.0, -0.5, 2.0, 9.0], &[1.0, 1.0, 1.0, 0.0]), &plain()).unwrap();
        assert!((r.loss - (-(1.0 - 0.5 + 2.0) / 3.0)).abs() < 1e-9, "{r:?}");
        assert_eq!(r.clip_fraction, 0.0);
        assert_eq!(r.tokens, 3.0);
        assert_eq!(g[3], 0.0, "masked tokens have no gradient");
        // A positive advantage pushes logp up under gradient descent, a negative one down.
        assert!(g[0] < 0.0 && g[2] < 0.0 && g[1] > 0.0);
    }

    #[test]
    fn ratio_is_clipped_asymmetrically() {
        let ln2 = 2f32.ln();
        // A > 0, ratio 2: surrogate capped at 1.28, no gradient.
        let (r, g) = surrogate_loss(&batch(&[ln2], &[0.0], &[1.0], &[1.0]), &plain()).unwrap();
        assert!((r.loss + 1.28).abs() < 1e-6 && r.clip_fraction == 1.0 && g[0] == 0.0, "{r:?}");
        // A < 0, ratio 0.5: floored at 0.8, no gradient.
        let (r, g) = surrogate_loss(&batch(&[-ln2], &[0.0], &[-1.0], &[1.0]), &plain()).unwrap();
        assert!((r.loss - 0.8).abs() < 1e-6 && r.clip_fraction == 1.0 && g[0] == 0.0);
        // A < 0, ratio 2: the pessimistic unclipped term wins and keeps its gradient.
        let (r, g) = surrogate_loss(&batch(&[ln2], &[0.0], &[-1.0], &[1.0]), &plain()).unwrap();
        assert!((r.loss - 2.0).abs() < 1e-6 && r.clip_fraction == 0.0 && g[0] > 0.0);
        // Ratio 1.2 is inside [0.8, 1.28] on the high side, which symmetric 0.2 clipping would cut.
        let (r, _) = surrogate_loss(&batch(&[1.2f32.ln()], &[0.0], &[1.0], &[1.0]), &plain()).unwrap();
        assert_eq!(r.clip_fraction, 0.0);
    }

    #[test]
    fn log_ratio_is_clamped() {
        let (r, g) = surrogate_loss(&batch(&[50.0], &[0.0], &[-1.0], &[1.0]), &plain()).unwrap();
        assert!((r.loss - 10f64.exp()).abs() < 1e-3, "{r:?}");
        assert_eq!(g[0], 0.0);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let settings = SurrogateSettings { entropy_coef: 0.0, kl_coef: 0.05, ..Default::default() };
        let logp = [-1.0f32, -0.7, -2.0, -0.1];
        let old = [-1.1f32, -0.5, -2.0, -0.3];
        let reference = [-0.9f32, -0.9, -1.5, -0.2];
        let adv = [0.5f32, -0.3, 1.0, -1.0];
        let mask = [1.0f32, 1.0, 1.0, 1.0];
        let loss_at = |lp: &[f32]| {
            let b = TokenBatch { logp: lp, old_logp: &old, ref_logp: Some(&reference), entropy: None, advantages: &adv, mask: &mask };
            surrogate_loss(&b, &settings).unwrap()
        };
        let (_, grad) = loss_at(&logp);
        for i in 0..logp.len() {
            let h = 1e-3f32;
            let (mut up, mut down) = (logp, logp);
            up[i] += h;
            down[i] -= h;
            let numeric = (loss_at(&up).0.loss - loss_at(&down).0.loss) / f64::from(2.0 * h);
            assert!((numeric - grad[i]).abs() < 1e-3, "token {i}: numeric {numeric}, analytic {}", grad[i]);
        }
    }

    #[test]
    fn k3_kl_is_zero_at_the_reference_and_positive_away_from_it() {
        let settings = SurrogateSettings { entropy_coef: 0.0, kl_coef: 1.0, ..Default::default() };
        let lp = [-1.0f32, -1.0];
        let same = TokenBatch { logp: &lp, old_logp: &lp, ref_logp: Some(&lp), entropy: None, advantages: &[0.0, 0.0], mask: &[1.0, 1.0] };
        assert_eq!(surrogate_loss(&same, &settings).unwrap().0.kl, 0.0);
        let away = [-2.0f32, -0.5];
        let apart = TokenBatch { ref_logp: Some(&away), ..same };
        let kl = surrogate_loss(&apart, &settings).unwrap().0.kl;
        let expected = ((-1f64).exp() + 1.0 - 1.0 + (0.5f64).exp() - 0.5 - 1.0) / 2.0;
        assert!((kl - expected).abs() < 1e-6, "{kl} vs {expected}");
    }

    #[test]
    fn regulariser_inputs_are_required_only_when_weighted() {
        let lp = [-1.0f32];
        assert!(surrogate_loss(&batch(&lp, &lp, &[1.0], &[1.0]), &SurrogateSettings::default()).is_err());
        assert!(surrogate_loss(&batch(&lp, &lp, &[1.0], &[1.0, 1.0]), &plain()).is_err());
        let ent = [2.0f32];
        let b = TokenBatch { ref_logp: Some(&lp), entropy: Some(&ent), ..batch(&lp, &lp, &[0.0], &[1.0]) };
        let (r, _) = surrogate_loss(&b, &SurrogateSettings::default()).unwrap();
        assert!((r.loss + 0.001 * 2.0).abs() < 1e-9, "{r:?}");
    }
}
