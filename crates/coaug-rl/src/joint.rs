//! Joint samples σ_t: one rollout chosen for every document slot of the step.
//!
//! The reward of a query rollout depends on which rollouts of the documents it is ranked
//! against; σ_t fixes one such choice. Drawn uniformly and independently (the paper's
//! Monte-Carlo estimate), or enumerated exhaustively on tiny steps, where the estimators then
//! return exact expectations.

use rand::Rng;

use crate::error::{Result, RlError};
use crate::layout::RolloutLayout;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JointSamples {
    num_slots: usize,
    /// Row-major `[t][doc slot]`: the chosen rollout's index within its slot.
    choices: Vec<u32>,
}

impl JointSamples {
    /// `count` independent joint samples, every slot's rollout uniform over that slot's rollouts.
    pub fn draw(layout: &RolloutLayout, count: usize, rng: &mut impl Rng) -> Self {
        let num_slots = layout.num_doc_slots();
        let sizes: Vec<u32> = (0..num_slots).map(|d| layout.doc_columns(d).len() as u32).collect();
        let mut choices = Vec::with_capacity(count * num_slots);
        for _ in 0..count {
            choices.extend(sizes.iter().map(|&n| rng.random_range(0..n)));
        }
        Self { num_slots, choices }
    }

    /// Every joint choice exactly once (the product of the slots' rollout counts), so that an
    /// estimator's average over them is the exact expectation. Refuses more than `limit`.
    pub fn enumerate(layout: &RolloutLayout, limit: usize) -> Result<Self> {
        let num_slots = layout.num_doc_slots();
        let sizes: Vec<u32> = (0..num_slots).map(|d| layout.doc_columns(d).len() as u32).collect();
        let needed = sizes.iter().try_fold(1u128, |acc, &n| acc.checked_mul(u128::from(n))).unwrap_or(u128::MAX);
        if needed > limit as u128 {
            return Err(RlError::TooManyJointChoices { needed, limit });
        }
        let mut choices = Vec::with_capacity(needed as usize * num_slots);
        let mut current = vec![0u32; num_slots];
        for _ in 0..needed {
            choices.extend_from_slice(&current);
            // Mixed-radix increment, slot 0 fastest.
            for (digit, &size) in current.iter_mut().zip(&sizes) {
                *digit += 1;
                if *digit < size {
                    break;
                }
                *digit = 0;
            }
        }
        Ok(Self { num_slots, choices })
    }

    /// T, the number of joint samples.
    pub fn len(&self) -> usize {
        self.choices.len().checked_div(self.num_slots).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.choices.is_empty()
    }

    pub fn num_slots(&self) -> usize {
        self.num_slots
    }

    /// σ_t: the chosen rollout (index within its slot) of every document slot.
    pub fn sample(&self, t: usize) -> &[u32] {
        &self.choices[t * self.num_slots..(t + 1) * self.num_slots]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn enumeration_lists_every_joint_choice_once() {
        let layout = RolloutLayout::new(&[1], &[2, 3, 1]).unwrap();
        let samples = JointSamples::enumerate(&layout, 100).unwrap();
        assert_eq!(samples.len(), 6);
        let distinct: BTreeSet<Vec<u32>> = (0..samples.len()).map(|t| samples.sample(t).to_vec()).collect();
        assert_eq!(distinct.len(), 6);
        assert!(distinct.iter().all(|s| s[0] < 2 && s[1] < 3 && s[2] == 0));
        assert!(JointSamples::enumerate(&layout, 5).is_err());
    }

    #[test]
    fn draws_stay_within_each_slot_and_cover_it() {
        let layout = RolloutLayout::new(&[1], &[2, 5]).unwrap();
        let mut rng = crate::seed::stream(1, crate::seed::Purpose::JointSamples, 0);
        let samples = JointSamples::draw(&layout, 200, &mut rng);
        assert_eq!(samples.len(), 200);
        let seen: BTreeSet<u32> = (0..200).map(|t| samples.sample(t)[1]).collect();
        assert_eq!(seen, (0..5).collect());
        assert!((0..200).all(|t| samples.sample(t)[0] < 2));
    }
}
