//! Every way reading or fetching a dataset can fail, each naming the file (and line) at fault.

use std::fmt;
use std::path::PathBuf;

pub type Result<T, E = DataError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{}: no such directory", path.display())]
    NoSuchDirectory { path: PathBuf },

    #[error("{}: not a BEIR dataset: missing {}{}", dir.display(), missing.join(", "), nested_hint(nested))]
    NotADataset { dir: PathBuf, missing: Vec<String>, nested: Vec<String> },

    #[error("{}: empty file (no records)", path.display())]
    EmptyFile { path: PathBuf },

    #[error("{}:{line}: invalid UTF-8 at byte {column} of the line", path.display())]
    InvalidUtf8 { path: PathBuf, line: usize, column: usize },

    #[error("{}:{line}: malformed JSON: {message}", path.display())]
    MalformedJson { path: PathBuf, line: usize, message: String },

    #[error("{}:{line}: missing field `{field}`", path.display())]
    MissingField { path: PathBuf, line: usize, field: &'static str },

    #[error("{}:{line}: invalid `_id`: {message}", path.display())]
    InvalidId { path: PathBuf, line: usize, message: String },

    #[error("{}:{line}: duplicate id `{id}` (first seen on line {first_line})", path.display())]
    DuplicateId { path: PathBuf, line: usize, id: String, first_line: usize },

    #[error("{}:{line}: {message}", path.display())]
    MalformedQrels { path: PathBuf, line: usize, message: String },

    #[error("{}: no qrels split `{split}` (available: {})", dir.display(), available.join(", "))]
    UnknownSplit { dir: PathBuf, split: String, available: Vec<String> },

    #[error("invalid dataset name `{name}`: use letters, digits, `-`, `_` or `.` (not leading)")]
    InvalidName { name: String },

    #[error("dataset `{name}` not found in {} (the data directory {origin}); expected {}", searched.display(), searched.join(name).display())]
    DatasetNotFound { name: String, searched: PathBuf, origin: DataDirOrigin },

    #[error("downloading {url}: {message}")]
    Download { url: String, message: String },

    #[error("downloading {url}: md5 mismatch: expected {expected}, got {actual}")]
    ChecksumMismatch { url: String, expected: String, actual: String },

    #[error("unpacking {url}: {message}")]
    Archive { url: String, message: String },
}

/// Where an explicitly chosen data directory came from, so "not found" can say which knob to turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirOrigin {
    /// Passed by the caller (the CLI's `--data-dir`).
    Argument,
    /// Read from `$COAUG_DATA`.
    Environment,
}

impl fmt::Display for DataDirOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataDirOrigin::Argument => "given by --data-dir",
            DataDirOrigin::Environment => "given by $COAUG_DATA",
        })
    }
}

fn nested_hint(nested: &[String]) -> String {
    if nested.is_empty() {
        String::new()
    } else {
        format!(" (it holds datasets in sub-directories: {})", nested.join(", "))
    }
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }
}
