//! Training: differentiable scoring of sampled replies under the same logits processing as the
//! sampler (`scoring`, with the fused head statistics of `token_stats`), the trainable subset and
//! LoRA (`trainable`), AdamW (`optim`) and checkpoints (`checkpoint`).

pub mod checkpoint;
pub mod optim;
pub mod scoring;
pub(crate) mod token_stats;
pub mod trainable;
