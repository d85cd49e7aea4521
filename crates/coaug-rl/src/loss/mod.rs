//! The policy loss's settings, and (in [`reference`], for tests) the loss on plain per-token
//! numbers that the tensor implementation in [`crate::update`] is checked against.
//!
//! PPO clipped surrogate as the authors' veRL fork computes it (docs/method.md §5):
//!
//! - `log_ratio = clamp(logp − logp_old, ±log_ratio_clamp)`, `ratio = exp(log_ratio)`;
//! - per token `max(−A·ratio, −A·clamp(ratio, ratio_min, ratio_max))` ("clip-higher":
//!   [0.8, 1.28]); the token is *clipped* when the second term is the larger;
//! - k3 KL to the reference: `exp(ref − logp) − (ref − logp) − 1`, clamped to ±10;
//! - `loss = token-mean(surrogate) + kl_coef · token-mean(k3) − entropy_coef · token-mean(H)`,
//!   token means over the mask of the whole mini-batch.
//!
//! The entropy H needs the full distribution, so the caller passes it in; its gradient is the
//! caller's business and not part of [`LossGradient`].

use serde::{Deserialize, Serialize};

use crate::error::{setting, Result};

/// Clipping and regulariser settings of the loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SurrogateSettings {
    /// Lower ratio bound, 1 − 0.2.
    pub ratio_min: f64,
    /// Upper ratio bound, 1 + 0.28.
    pub ratio_max: f64,
    /// |logp − logp_old| is clamped to this before exponentiating.
    pub log_ratio_clamp: f64,
    /// Weight of the k3 KL to the frozen reference; 0 skips the reference (released code).
    pub kl_coef: f64,
    /// Weight of the entropy bonus; 0 as in the released code.
    pub entropy_coef: f64,
    /// Scale each role's advantages so that query tokens and document tokens weigh the same in
    /// the token-mean loss. Document rollouts outnumber query rollouts (P + R documents per
    /// query), so without it their mostly noisy advantages dominate the gradient.
    pub role_balance: bool,
}

impl Default for SurrogateSettings {
    fn default() -> Self {
        Self { ratio_min: 0.8, ratio_max: 1.28, log_ratio_clamp: 10.0, kl_coef: 0.001, entropy_coef: 0.001, role_balance: false }
    }
}

/// The k3 estimate is clamped like veRL's `low_var_kl`.
pub(crate) const KL_CLAMP: f64 = 10.0;

impl SurrogateSettings {
    pub fn validate(&self) -> Result<()> {
        if !(self.ratio_min > 0.0 && self.ratio_min <= 1.0) {
            return Err(setting("loss.ratio_min", self.ratio_min, "must be in (0, 1]"));
        }
        if !(self.ratio_max >= 1.0 && self.ratio_max.is_finite()) {
            return Err(setting("loss.ratio_max", self.ratio_max, "must be finite and >= 1"));
        }
        if self.log_ratio_clamp.is_nan() || self.log_ratio_clamp <= 0.0 {
            return Err(setting("loss.log_ratio_clamp", self.log_ratio_clamp, "must be > 0"));
        }
        for (name, v) in [("loss.kl_coef", self.kl_coef), ("loss.entropy_coef", self.entropy_coef)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(setting(name, v, "must be finite and >= 0"));
            }
        }
        Ok(())
    }

    /// Whether the frozen reference must be run at all.
    pub fn needs_reference(&self) -> bool {
        self.kl_coef != 0.0
    }
}

#[cfg(any(test, feature = "testing"))]
pub mod reference;
#[cfg(any(test, feature = "testing"))]
pub use reference::{surrogate_loss, LossGradient, LossReport, TokenBatch};
