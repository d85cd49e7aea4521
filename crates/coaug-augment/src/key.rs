//! Content fingerprints that identify one augmentation.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::generator::DecodeSettings;
use crate::prompts::Role;

/// Bumped when the fingerprint's inputs change meaning, so old rows are never mistaken for new.
const KEY_VERSION: u32 = 1;

/// sha256 (hex) of everything that determines a reply: model, system prompt, role, decoding
/// settings and the exact text the model reads. Two items with the same key get the same stored
/// augmentation, so nothing is ever generated twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AugmentationKey(String);

#[derive(Serialize)]
struct KeyMaterial<'a> {
    version: u32,
    model: &'a str,
    prompt: &'a str,
    role: Role,
    decoding: DecodeSettings,
    input: &'a str,
}

impl AugmentationKey {
    pub fn new(model: &str, prompt: &str, role: Role, decoding: &DecodeSettings, input: &str) -> Self {
        let material = KeyMaterial { version: KEY_VERSION, model, prompt, role, decoding: decoding.canonical(), input };
        // Field order is fixed by the struct and serde_json prints floats exactly, so this is stable.
        let bytes = serde_json::to_vec(&material).expect("plain strings and numbers serialise");
        Self(hex::encode(Sha256::digest(&bytes)))
    }

    /// Wraps a key read back from the store.
    pub fn from_hex(hex_digest: impl Into<String>) -> anyhow::Result<Self> {
        let s = hex_digest.into();
        anyhow::ensure!(
            s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "not a lowercase sha256 hex digest: {s:?}"
        );
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The sampling seed of one item: a hash of everything in its key but the model (the
    /// global seed is inside the decoding settings). It depends on nothing else: not on batch
    /// composition, not on where a resumed run restarted. Leaving the model out gives every
    /// model the same random numbers for the same item, so two policies (the base model and a
    /// trained checkpoint, or RL validation and `coaug eval` on the same weights) are compared on
    /// common draws.
    pub fn item_seed(prompt: &str, role: Role, decoding: &DecodeSettings, input: &str) -> u64 {
        let key = Self::new("", prompt, role, decoding, input);
        u64::from_str_radix(&key.0[..16], 16).expect("key is hex")
    }
}

impl fmt::Display for AugmentationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(model: &str, prompt: &str, role: Role, d: &DecodeSettings, input: &str) -> AugmentationKey {
        AugmentationKey::new(model, prompt, role, d, input)
    }

    #[test]
    fn every_component_changes_the_key() {
        let d = DecodeSettings::sampled(64, 7);
        let base = key("m", "p", Role::Query, &d, "x");
        assert_eq!(base, key("m", "p", Role::Query, &d, "x"));
        assert_eq!(base.as_str().len(), 64);
        assert_ne!(base, key("m2", "p", Role::Query, &d, "x"));
        assert_ne!(base, key("m", "p2", Role::Query, &d, "x"));
        assert_ne!(base, key("m", "p", Role::Document, &d, "x"));
        assert_ne!(base, key("m", "p", Role::Query, &d, "x "));
        assert_ne!(base, key("m", "p", Role::Query, &DecodeSettings::sampled(64, 8), "x"));
        assert_ne!(base, key("m", "p", Role::Query, &DecodeSettings::sampled(65, 7), "x"));
        let hotter = DecodeSettings { temperature: 1.3, ..d.clone() };
        assert_ne!(base, key("m", "p", Role::Query, &hotter, "x"));
    }

    #[test]
    fn fields_cannot_bleed_into_each_other() {
        let d = DecodeSettings::greedy(64);
        assert_ne!(key("ab", "c", Role::Query, &d, "x"), key("a", "bc", Role::Query, &d, "x"));
    }

    #[test]
    fn greedy_keys_ignore_seed_and_sampling_cuts() {
        let a = DecodeSettings::greedy(64);
        let b = DecodeSettings { seed: 99, top_k: 40, top_p: 0.9, ..a.clone() };
        assert_eq!(key("m", "p", Role::Query, &a, "x"), key("m", "p", Role::Query, &b, "x"));
        let c = DecodeSettings { repetition_penalty: 1.0, ..a.clone() };
        assert_ne!(key("m", "p", Role::Query, &a, "x"), key("m", "p", Role::Query, &c, "x"));
    }

    #[test]
    fn item_seeds_differ_per_item_and_global_seed_but_not_per_model() {
        let d = DecodeSettings::sampled(64, 1);
        let s1 = AugmentationKey::item_seed("p", Role::Query, &d, "x");
        assert_eq!(s1, AugmentationKey::item_seed("p", Role::Query, &d, "x"));
        assert_ne!(s1, AugmentationKey::item_seed("p", Role::Query, &d, "y"));
        assert_ne!(s1, AugmentationKey::item_seed("p", Role::Document, &d, "x"));
        assert_ne!(s1, AugmentationKey::item_seed("p", Role::Query, &DecodeSettings::sampled(64, 2), "x"));
        // The key itself does depend on the model.
        assert_ne!(key("m1", "p", Role::Query, &d, "x"), key("m2", "p", Role::Query, &d, "x"));
    }

    #[test]
    fn from_hex_checks_shape() {
        let k = key("m", "p", Role::Query, &DecodeSettings::greedy(8), "x");
        assert_eq!(AugmentationKey::from_hex(k.as_str()).unwrap(), k);
        assert!(AugmentationKey::from_hex("abc").is_err());
        assert!(AugmentationKey::from_hex("G".repeat(64)).is_err());
    }
}
