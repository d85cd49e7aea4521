//! Generation on a remote OpenAI-compatible server (vLLM, SGLang, TGI, Ollama, llama.cpp's
//! server, OpenAI itself): [`OpenAiGenerator`] sends each request to `/v1/chat/completions`
//! with bounded concurrency, per-request timeouts, and retries with exponential backoff and
//! jitter ([`RetryPolicy`]) on the failures that pass (429, 5xx, timeouts, dropped connections,
//! malformed or truncated replies). A request that still fails is reported on its own
//! ([`crate::Generator::generate_streaming`]); the job stores every other reply, so an outage loses
//! nothing and a rerun generates only what is missing.

#[cfg(any(test, feature = "testing"))]
pub mod fault_server;
mod openai;
mod retry;

pub use openai::{OpenAiConfig, OpenAiGenerator};
pub use retry::RetryPolicy;
