//! Group-centred, role-scaled advantages (docs/method.md §5).
//!
//! `A = c · (r − mean of r over the rollouts of the same prompt)`, with no division by the
//! group's standard deviation, and `A = 0` where `|r − mean| < 1e-6` (so a prompt whose
//! rollouts all scored alike teaches nothing, exactly, despite rounding). `c` depends on the
//! prompt's role: 1 for queries, posk = 0.2 for positive documents, negk = 0.1 for negative
//! documents — a document's reward is mostly other queries' nDCG, a weaker and noisier signal.

use serde::{Deserialize, Serialize};

use crate::error::{Result, RlError};
use crate::layout::RolloutLayout;
use crate::reward::Rewards;

/// Deviations from the prompt mean below this are treated as no deviation at all.
pub const ZERO_ADVANTAGE_BELOW: f64 = 1e-6;

/// The role of a prompt, which selects its advantage scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromptRole {
    Query,
    PositiveDocument,
    NegativeDocument,
}

/// The scale `c` of each role. A scale of 0 switches a role's learning off (the query-only and
/// document-only ablations).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleScales {
    pub query: f64,
    /// posk.
    pub positive_document: f64,
    /// negk.
    pub negative_document: f64,
}

impl Default for RoleScales {
    fn default() -> Self {
        Self { query: 1.0, positive_document: 0.2, negative_document: 0.1 }
    }
}

impl RoleScales {
    /// Every role scaled by 1 (the "no role scaling" ablation).
    pub fn unscaled() -> Self {
        Self { query: 1.0, positive_document: 1.0, negative_document: 1.0 }
    }

    pub fn scale(&self, role: PromptRole) -> f64 {
        match role {
            PromptRole::Query => self.query,
            PromptRole::PositiveDocument => self.positive_document,
            PromptRole::NegativeDocument => self.negative_document,
        }
    }
}

/// Advantages of the rollouts of one prompt. Rollouts without a reward (a document rollout no
/// joint sample chose) get 0 and do not enter the mean.
pub fn prompt_advantages(rewards: &[Option<f64>], scale: f64) -> Vec<f64> {
    let (sum, n) = rewards.iter().flatten().fold((0.0, 0usize), |(s, n), r| (s + r, n + 1));
    let mean = if n == 0 { 0.0 } else { sum / n as f64 };
    rewards
        .iter()
        .map(|r| match r {
            Some(r) if (r - mean).abs() >= ZERO_ADVANTAGE_BELOW => scale * (r - mean),
            _ => 0.0,
        })
        .collect()
}

/// The advantage of every rollout of a step, in the layout's row and column order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepAdvantages {
    pub query: Vec<f64>,
    pub document: Vec<f64>,
}

impl StepAdvantages {
    /// `document_roles[d]` is the role of document slot `d`.
    pub fn compute(rewards: &Rewards, layout: &RolloutLayout, document_roles: &[PromptRole], scales: &RoleScales) -> Result<Self> {
        let shapes = [
            ("query rewards (query rollouts)", layout.num_query_rollouts(), rewards.query.len()),
            ("document rewards (document rollouts)", layout.num_doc_rollouts(), rewards.document.len()),
            ("document roles (document slots)", layout.num_doc_slots(), document_roles.len()),
        ];
        for (what, expected, got) in shapes {
            if expected != got {
                return Err(RlError::Shape { what, expected, got });
            }
        }
        let mut query = Vec::with_capacity(layout.num_query_rollouts());
        for q in 0..layout.num_query_slots() {
            let slot: Vec<Option<f64>> = rewards.query[layout.query_rows(q)].iter().copied().map(Some).collect();
            query.extend(prompt_advantages(&slot, scales.query));
        }
        let mut document = Vec::with_capacity(layout.num_doc_rollouts());
        for (d, &role) in document_roles.iter().enumerate() {
            document.extend(prompt_advantages(&rewards.document[layout.doc_columns(d)], scales.scale(role)));
        }
        Ok(Self { query, document })
    }

    /// A step whose advantages are all 0 has a zero policy gradient: skip its update.
    pub fn all_zero(&self) -> bool {
        self.query.iter().chain(&self.document).all(|&a| a == 0.0)
    }

    /// Rollouts with a non-zero advantage (those the update learns from).
    pub fn num_nonzero(&self) -> usize {
        self.query.iter().chain(&self.document).filter(|&&a| a != 0.0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
    }

    #[test]
    fn centred_on_the_prompt_mean_without_std_normalisation() {
        let a = prompt_advantages(&[Some(0.2), Some(0.4), Some(0.9)], 1.0);
        assert!(close(&a, &[-0.3, -0.1, 0.4]), "{a:?}");
        // Std normalisation would make these equal to the above; they must scale with the spread.
        let b = prompt_advantages(&[Some(0.4), Some(0.8), Some(1.8)], 1.0);
        assert!(close(&b, &[-0.6, -0.2, 0.8]), "{b:?}");
    }

    #[test]
    fn scale_multiplies_and_tiny_deviations_are_zero() {
        let a = prompt_advantages(&[Some(0.0), Some(1.0)], 0.2);
        assert!(close(&a, &[-0.1, 0.1]));
        let tiny = prompt_advantages(&[Some(0.5), Some(0.5 + 1e-7), Some(0.5 - 1e-7)], 1.0);
        assert_eq!(tiny, vec![0.0; 3]);
        // The threshold applies before scaling: a real deviation times a small c survives.
        let small_c = prompt_advantages(&[Some(0.0), Some(1e-5)], 0.1);
        assert!(small_c.iter().all(|&x| x != 0.0));
    }

    #[test]
    fn rollouts_without_reward_get_zero_and_stay_out_of_the_mean() {
        let a = prompt_advantages(&[Some(1.0), None, Some(0.0)], 1.0);
        assert!(close(&a, &[0.5, 0.0, -0.5]));
        assert_eq!(prompt_advantages(&[None, None], 1.0), vec![0.0, 0.0]);
    }

    #[test]
    fn step_advantages_scale_by_role() {
        let layout = RolloutLayout::uniform(1, 2, 2).unwrap();
        let rewards =
            Rewards { query: vec![0.0, 1.0], document: vec![Some(0.0), Some(1.0), Some(0.0), Some(1.0)], document_draws: vec![1; 4] };
        let roles = [PromptRole::PositiveDocument, PromptRole::NegativeDocument];
        let adv = StepAdvantages::compute(&rewards, &layout, &roles, &RoleScales::default()).unwrap();
        assert!(close(&adv.query, &[-0.5, 0.5]));
        assert!(close(&adv.document, &[-0.1, 0.1, -0.05, 0.05]));
        let flat = StepAdvantages::compute(&rewards, &layout, &roles, &RoleScales::unscaled()).unwrap();
        assert!(close(&flat.document, &[-0.5, 0.5, -0.5, 0.5]));
        assert!(!adv.all_zero());
        assert_eq!(adv.num_nonzero(), 6);
    }

    #[test]
    fn a_step_where_every_prompt_agreed_is_skipped() {
        let layout = RolloutLayout::uniform(1, 1, 3).unwrap();
        let rewards = Rewards { query: vec![0.3; 3], document: vec![Some(0.7); 3], document_draws: vec![5; 3] };
        let adv = StepAdvantages::compute(&rewards, &layout, &[PromptRole::NegativeDocument], &RoleScales::default()).unwrap();
        assert!(adv.all_zero());
        // A zero scale (query-only / document-only ablation) also silences a role.
        let rewards = Rewards { query: vec![0.0, 1.0, 0.5], ..rewards };
        let off = RoleScales { query: 0.0, ..RoleScales::default() };
        let adv = StepAdvantages::compute(&rewards, &layout, &[PromptRole::NegativeDocument], &off).unwrap();
        assert!(adv.all_zero());
    }
}
