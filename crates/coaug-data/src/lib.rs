//! BEIR datasets: corpus, queries and relevance judgements; loading with validation, finding a
//! dataset by name, and downloading it on first use. Also coaug's cache folder and fetching
//! pinned files into it ([`cache`]), which every crate shares.

pub mod cache;
mod corpus;
mod dataset;
mod download;
mod error;
mod jsonl;
mod lines;
mod qrels_tsv;
mod queries;
mod resolve;
mod types;
mod validate;

pub use cache::cache_root;
pub use corpus::{read_corpus, CorpusReader};
pub use dataset::{Dataset, LoadedSplit};
pub use download::{install_dataset, DatasetSource};
pub use error::{DataDirOrigin, DataError, Result};
pub use qrels_tsv::read_qrels;
pub use queries::read_queries;
pub use resolve::{known_md5, resolve, Resolver, DEFAULT_BEIR_URL};
pub use types::{Document, Qrels, Query};
pub use validate::ValidationReport;

/// The BEIR test collections shared with this repository (`../shared/data/beir` beside the
/// checkout), or `$COAUG_DATA`. For tests and benchmarks run from a source tree.
#[cfg(any(test, feature = "testing"))]
pub fn shared_beir_dir() -> std::path::PathBuf {
    std::env::var_os("COAUG_DATA")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/beir"))
}
