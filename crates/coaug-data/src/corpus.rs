//! Streaming `corpus.jsonl`: a user's corpus may have millions of lines, so nothing is held
//! in memory but the ids seen so far (to reject duplicates).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::jsonl::RecordReader;
use crate::types::Document;

/// Iterator over the documents of a corpus file, in file order.
///
/// Yields an error for the first malformed line, non-UTF-8 line, missing `_id`/`text`,
/// repeated id, or for a file without any document; it then stops.
pub struct CorpusReader<R = BufReader<File>> {
    records: RecordReader<R>,
}

impl CorpusReader {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self { records: RecordReader::open(path.as_ref())? })
    }
}

impl<R: BufRead> CorpusReader<R> {
    /// Reads from any buffered source; `path` only names it in errors.
    pub fn from_reader(reader: R, path: impl Into<PathBuf>) -> Self {
        Self { records: RecordReader::new(reader, path) }
    }

    /// Documents yielded so far.
    pub fn documents_read(&self) -> usize {
        self.records.records_read()
    }
}

impl<R: BufRead> Iterator for CorpusReader<R> {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        let record = self.records.next()?;
        Some(record.map(|r| Document { id: r.id, title: r.title, text: r.text }))
    }
}

/// Reads a whole corpus file into memory.
pub fn read_corpus(path: impl AsRef<Path>) -> Result<Vec<Document>> {
    CorpusReader::open(path)?.collect()
}
