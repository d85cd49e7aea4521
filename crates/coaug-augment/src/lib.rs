//! Query and document augmentation by an LM (docs/method.md §2, §6): the system prompts, parsing the
//! replies, the SQLite store of every augmentation, and the resumable job that fills it.
//!
//! The LM stays behind the [`Generator`] trait, so everything but [`lm`] is tested with a fake;
//! [`LmGenerator`] is the real model (coaug-lm).

#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub mod generator;
pub mod job;
pub mod key;
pub mod lm;
pub mod parse;
pub mod prompts;
pub mod remote;
pub mod store;
pub mod text;

pub use generator::{DecodeSettings, Generation, GenerationRequest, Generator, RequestFailure};
pub use job::{AugmentItem, AugmentJob, AugmentReport, FailedItem};
pub use key::AugmentationKey;
pub use lm::{LmGenerator, LmTokenBudget, ModelGenerator};
pub use parse::{parse_answer, parse_answer_with, ParsePolicy, ParsedAnswer};
pub use prompts::{PromptSet, Retriever, Role};
pub use remote::{OpenAiConfig, OpenAiGenerator, RetryPolicy};
pub use store::{AugmentStore, StoredAugmentation};
pub use text::{TokenBudget, WhitespaceTokens};
