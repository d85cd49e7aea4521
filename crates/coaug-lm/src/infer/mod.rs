//! Inference: batched generation with a KV cache (`generate`) and the token sampler with its
//! logits processing (`sampler`), which reports each token's log-prob under the distribution it
//! drew from.

pub mod generate;
pub mod sampler;
