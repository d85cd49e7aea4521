//! Retrieval evaluation with the semantics of trec_eval as BEIR calls it through pytrec_eval.
//!
//! - [`Run`]: query id -> scored documents, read from / written to TREC run files.
//! - [`evaluate`]: nDCG@k, MAP@k, Recall@k, P@k and MRR@k averaged over the judged queries,
//!   keyed by BEIR's names (`"NDCG@10"`, `"MAP@10"`, `"Recall@100"`, `"P@10"`, `"MRR@10"`).
//! - [`gain`]: the nDCG formula on plain gain lists, for rewards computed inside training loops.
//! - [`table`]: plain-text and Markdown tables of results.
//! - [`fusion`]: several runs fused into one (RRF, normalised sums).
//! - [`matrix`]: [`ScoreMatrix`], every query's score against every document.
//! - [`bootstrap`]: paired differences between two systems with a bootstrap interval.
//!
//! Agreement with pytrec_eval is checked by `tests/golden.rs` on a real NFCorpus run.

pub mod bootstrap;
pub mod evaluate;
pub mod fusion;
pub mod gain;
pub mod matrix;
pub mod measure;
pub mod ranking;
pub mod run;
pub mod table;
pub mod trec_file;

pub use bootstrap::{bootstrap_deltas, paired_bootstrap, PairedDelta, DEFAULT_RESAMPLES};
pub use evaluate::{evaluate, evaluate_query, EvalOptions, Metrics};
pub use fusion::{fuse_runs, Fusion};
pub use gain::{dcg_at_k, ideal_dcg_at_k, ndcg_at_k, query_ndcg_at_k};
pub use matrix::{hit_order, Hit, MatrixError, ScoreMatrix};
pub use measure::Measure;
pub use ranking::{ScorePrecision, ScoredDoc};
pub use run::Run;
pub use table::{comparison_table, metrics_grid, TableStyle};
pub use trec_file::RunFileError;
