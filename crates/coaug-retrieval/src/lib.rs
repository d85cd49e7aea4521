//! The augmented retrieval pipeline, one for every caller: how an augmented query and an
//! augmented document are composed ([`Composition`]), and ranking a corpus with them
//! ([`AugmentedBm25`]). `coaug eval`, `coaug search`, the exports, the RL reward and RL validation
//! all go through it, so training optimises exactly what evaluation measures.

pub mod augmentations;
pub mod augmenter;
pub mod bm25;
pub mod composition;
pub mod dense;
pub mod export;
pub mod retriever;
pub mod stop_list;
pub mod table;

pub use augmentations::Augmentations;
pub use augmenter::{AugmentReports, AugmentSettings, Augmenter};
pub use bm25::{search_hits, AugmentedBm25, QueryToRank};
pub use composition::{Composition, DocField, QueryWeight, SampleFusion};
pub use dense::{augmented_rows, DenseIndex, DenseRetriever};
pub use export::{write_corpus_jsonl, write_queries_jsonl, ExportCounts, ExportFormat, LuceneExport};
pub use retriever::{Hybrid, Retrieve};
pub use stop_list::StopList;
