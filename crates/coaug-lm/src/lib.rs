//! coaug-lm: the policy causal LM (Llama / Qwen2) on candle — loading (GGUF, HF),
//! tokenization and ChatML, batched sampling with per-token log-probs, differentiable
//! scoring, and training support (trainable subsets, LoRA, AdamW, checkpoints).

mod attention;
pub mod cache;
pub mod chat;
pub mod config;
mod cpu_f32;
mod fast_exp;
pub mod fetch;
pub mod hub;
mod linear;
pub mod load;
pub mod model;
mod q8;
mod rms_norm;
mod rope;
mod simd;
mod softmax;
mod swiglu;
pub mod tokenizer;

pub use cache::{KvCache, KvPrecision};
pub use chat::ChatTemplate;
pub use config::{Architecture, ModelConfig};
pub use fetch::{
    cache_root, default_model_path, fetch_default_model, fetch_model, known_model, resolve_model, KnownModel, DEFAULT_MODEL, KNOWN_MODELS,
};
pub use load::{load_model, load_tokenizer, Precision};
pub use model::{AttentionInput, CausalLm, Keys};
pub use tokenizer::{ChatPrompt, ChatRole, LmTokenizer};
pub mod generate;
pub mod sampler;
pub use generate::{generate, generate_timed, generate_with_trunk, GenerationTiming, PromptBatch, Sample};
pub use sampler::{PenaltyScope, SamplingParams};
pub mod scoring;
mod token_stats;
pub use scoring::{score, score_grouped, GroupedLayout, GroupedTrunk, TokenScores};
pub mod trainable;
pub use trainable::{LoraConfig, Trainable, TrainableSet};
pub mod optim;
pub use optim::{AdamW, AdamWConfig, StepStats};
pub mod checkpoint;
pub use checkpoint::{export_hf, load_checkpoint, save_checkpoint, LoadedCheckpoint};
pub mod bench;
pub use bench::{bench_lm, LmBenchOptions, LmBenchReport};
/// Re-exported so callers can pick a device without depending on candle directly.
pub use candle_core::Device;
