//! Errors of building, opening and searching an index.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: tantivy failed to {action}: {source}")]
    Tantivy { path: PathBuf, action: &'static str, source: tantivy::TantivyError },
    #[error("{path}: malformed manifest: {source}")]
    Manifest { path: PathBuf, source: serde_json::Error },
    #[error("{path}: manifest format {found}, this build reads format {expected}; rebuild the index")]
    FormatVersion { path: PathBuf, found: u32, expected: u32 },
    #[error("{path}: exists, is not empty and holds no coaug index manifest; refusing to overwrite it")]
    NotAnIndex { path: PathBuf },
    #[error("document {second} (0-based) repeats the id {id:?} of document {first}")]
    DuplicateId { id: String, first: usize, second: usize },
    #[error("{path}: index holds {found} documents, its manifest says {expected}")]
    DocCount { path: PathBuf, found: usize, expected: usize },
    /// The corpus being streamed in failed to read (its own message names file and line).
    #[error("reading the corpus: {0}")]
    Corpus(String),
    #[error(transparent)]
    Analyzer(#[from] crate::analyzer::AnalyzerError),
    #[error("cannot start a search thread pool: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
}

pub type Result<T, E = IndexError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> IndexError {
    let path = path.into();
    move |source| IndexError::Io { path, source }
}

pub(crate) fn tantivy_err(path: impl Into<PathBuf>, action: &'static str) -> impl FnOnce(tantivy::TantivyError) -> IndexError {
    let path = path.into();
    move |source| IndexError::Tantivy { path, action, source }
}
