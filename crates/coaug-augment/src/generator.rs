//! The contract between augmentation and whatever LM produces the text.
//!
//! [`crate::lm::LmGenerator`] implements [`Generator`] with coaug-lm; prompts, parsing, storage and
//! the resumable job only see the trait, so they are tested with a fake model too.

use serde::{Deserialize, Serialize};

/// One prompt to complete: the system prompt, the user turn and the seed that drives sampling.
///
/// The seed travels with the request (not with the batch) so that an item's sample does not
/// depend on which other items share its batch, nor on where a resumed run restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationRequest {
    pub system_prompt: String,
    pub user_text: String,
    pub seed: u64,
}

/// What the model produced for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The raw completion, special tokens and all; parsing happens later.
    pub text: String,
    /// New tokens sampled, for throughput figures.
    pub generated_tokens: usize,
}

/// Decoding settings. They change what the model writes, so they are part of every
/// augmentation's fingerprint (see [`DecodeSettings::canonical`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodeSettings {
    /// 0 means greedy decoding.
    pub temperature: f32,
    pub top_p: f32,
    /// 0 means no top-k cut.
    pub top_k: usize,
    pub repetition_penalty: f32,
    pub max_new_tokens: usize,
    /// Global seed; each request gets its own seed derived from this and the item.
    pub seed: u64,
}

impl DecodeSettings {
    /// docs/method.md §6: greedy, repetition penalty 1.2.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self { temperature: 0.0, top_p: 1.0, top_k: 0, repetition_penalty: 1.2, max_new_tokens, seed: 0 }
    }

    /// docs/method.md §3: temperature 1.2, repetition penalty 1.2, top-p 1.
    pub fn sampled(max_new_tokens: usize, seed: u64) -> Self {
        Self { temperature: 1.2, top_p: 1.0, top_k: 0, repetition_penalty: 1.2, max_new_tokens, seed }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// The settings with everything that cannot change the output normalised away: under greedy
    /// decoding the seed, top-p and top-k are irrelevant, so two greedy runs that differ only in
    /// them share their stored augmentations instead of generating them again.
    pub fn canonical(&self) -> Self {
        if self.is_greedy() {
            Self { temperature: 0.0, top_p: 1.0, top_k: 0, seed: 0, ..self.clone() }
        } else {
            self.clone()
        }
    }
}

/// Why one request of a batch got no reply, when the others may have: a remote server that kept
/// failing it through every retry, or refused it (e.g. an input over its context length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFailure {
    pub reason: String,
}

impl std::fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// A language model that completes chat prompts.
pub trait Generator {
    /// Identifies the weights (and anything else that changes outputs, e.g. the dtype).
    /// Part of every augmentation's fingerprint: a different model never reuses stored text.
    fn fingerprint(&self) -> String;

    /// Completes every request, returning exactly one [`Generation`] per request, in order.
    /// Sampling for request `i` must depend only on `requests[i]` (its seed included) and
    /// `decoding`, never on the other requests of the batch.
    fn generate(&mut self, requests: &[GenerationRequest], decoding: &DecodeSettings) -> anyhow::Result<Vec<Generation>>;

    /// Like [`Generator::generate`], but hands each reply to `sink(index, reply)` as soon as it
    /// exists, in any order, so the caller (the resumable job) can commit replies while others
    /// are still being generated. One request may fail on its own (`Err(RequestFailure)`, e.g. a
    /// remote server that kept failing it) without failing the others; the returned `Err` still
    /// means nothing more can succeed (a model that does not load, a refused API key), as does
    /// an `Err` from `sink`, which stops the generation. The default is for an in-process model,
    /// which fails all or nothing: it generates everything, then hands the replies over in order.
    fn generate_streaming(
        &mut self,
        requests: &[GenerationRequest],
        decoding: &DecodeSettings,
        sink: &mut dyn FnMut(usize, Result<Generation, RequestFailure>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        for (i, generation) in self.generate(requests, decoding)?.into_iter().enumerate() {
            sink(i, Ok(generation))?;
        }
        Ok(())
    }

    /// How many requests the resumable job hands over in one [`Generator::generate_streaming`]
    /// call. `None`: its batch size, for a model that generates a batch together (an in-process
    /// LM). A remote backend asks for more, so its workers stay busy across commits instead of
    /// waiting for each batch's slowest request.
    fn window(&self) -> Option<usize> {
        None
    }

    /// Counts and cuts inputs in the model's tokens. The default approximates them from words
    /// ([`crate::text::WhitespaceTokens`]), for a model whose tokenizer coaug does not hold (a
    /// remote server's).
    fn token_budget(&self) -> Box<dyn crate::text::TokenBudget> {
        Box::new(crate::text::WhitespaceTokens::default())
    }
}
