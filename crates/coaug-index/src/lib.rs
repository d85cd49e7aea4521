//! BM25 retrieval for coaug: an on-disk tantivy index over a corpus, searched term-at-a-time
//! from memory, and [`Bm25Scorer`], which scores arbitrary (query, document) texts with the
//! same analyzer and the same arithmetic as the index.
//!
//! BM25 parameters are tantivy's fixed k1 = 1.2, b = 0.75.

pub mod analyzer;
pub mod bench;
pub mod bm25;
mod error;
mod impacts;
mod index;
mod manifest;
mod query;
mod schema;
pub mod scorer;
mod search;
pub mod stats;

pub use analyzer::{Analyzer, AnalyzerConfig, AnalyzerError, StopWords, NLTK_ENGLISH};
pub use bm25::{B, K1};
pub use coaug_eval::ScoreMatrix;
pub use error::{IndexError, Result};
pub use index::Bm25Index;
pub use manifest::{CorpusHasher, IndexConfig, Manifest, FORMAT_VERSION, MANIFEST_FILE};
pub use query::{FieldWeights, WeightedQuery};
pub use schema::{AugmentationPlacement, FieldSetup, IndexDoc, SearchField};
pub use scorer::{AnalysedDoc, AnalysedQuery, Bm25Scorer};
pub use search::{hit_order, Hit};
pub use stats::CollectionStats;
/// Stemmer and stop-word language of an [`AnalyzerConfig`].
pub use tantivy::tokenizer::Language;
