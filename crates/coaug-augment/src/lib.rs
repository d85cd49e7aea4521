//! Query and document augmentation by an LM (method.md §2, §6): the system prompts, parsing the
//! replies, forming augmented texts, the SQLite store of every augmentation, the resumable job
//! that fills it, and BEIR JSONL export.
//!
//! The LM stays behind the [`Generator`] trait, so everything but [`lm`] is tested with a fake;
//! [`LmGenerator`] is the real model (coaug-lm).

pub mod export;
pub mod fake;
pub mod generator;
pub mod job;
pub mod key;
pub mod lm;
pub mod parse;
pub mod prompts;
pub mod store;
pub mod text;

pub use export::{write_corpus_jsonl, write_queries_jsonl, ExportCounts};
pub use generator::{DecodeSettings, Generation, GenerationRequest, Generator};
pub use job::{AugmentItem, AugmentJob, AugmentReport};
pub use key::AugmentationKey;
pub use lm::{LmGenerator, LmTokenBudget};
pub use parse::{parse_answer, parse_answer_with, ParsePolicy, ParsedAnswer};
pub use prompts::{PromptSet, Retriever, Role};
pub use store::{AugmentStore, StoredAugmentation};
pub use text::{augmented_text, Composition, TokenBudget, WhitespaceTokens};
