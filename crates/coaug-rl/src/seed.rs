//! Reproducible random streams derived from one run seed.
//!
//! Every consumer of randomness (the order of training queries in an epoch, the documents of
//! a step's groups, the joint samples of a step's reward) gets its own ChaCha stream keyed by
//! `(seed, purpose, index)`. A step's randomness is therefore a pure function of the seed and
//! the step number: resuming at step `s` reproduces the trajectory without replaying steps
//! `0..s`, and adding a consumer never shifts the numbers another one sees.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a random stream is used for; part of the stream's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Purpose {
    /// The permutation of training queries for one epoch (index = epoch).
    EpochOrder = 1,
    /// The documents of every group of one step (index = step).
    GroupDocuments = 2,
    /// The joint samples σ_t of one step's reward (index = step).
    JointSamples = 3,
    /// The sampling seeds of one step's rollouts (index = step).
    Rollouts = 4,
}

/// The generator for `(seed, purpose, index)`.
pub fn stream(seed: u64, purpose: Purpose, index: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(purpose as u64).to_le_bytes());
    key[16..24].copy_from_slice(&index.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn same_key_same_numbers_different_key_different_numbers() {
        let draw = |seed, purpose, index| -> Vec<u64> {
            let mut rng = stream(seed, purpose, index);
            (0..4).map(|_| rng.random()).collect()
        };
        assert_eq!(draw(7, Purpose::JointSamples, 3), draw(7, Purpose::JointSamples, 3));
        assert_ne!(draw(7, Purpose::JointSamples, 3), draw(7, Purpose::JointSamples, 4));
        assert_ne!(draw(7, Purpose::JointSamples, 3), draw(8, Purpose::JointSamples, 3));
        assert_ne!(draw(7, Purpose::JointSamples, 3), draw(7, Purpose::GroupDocuments, 3));
    }
}
