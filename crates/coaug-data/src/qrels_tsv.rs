//! Reading `qrels/<split>.tsv`: `query-id <TAB> corpus-id <TAB> score`, an optional header line,
//! LF or CRLF line endings, integer (graded) scores.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::lines::LineReader;
use crate::types::Qrels;

/// What parsing noticed without failing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QrelsStats {
    /// Lines repeating an earlier (query, document) pair; the last score wins.
    pub duplicate_pairs: usize,
}

/// Reads a qrels file. A repeated (query, document) pair keeps the last score, as trec_eval does.
pub fn read_qrels(path: impl AsRef<Path>) -> Result<Qrels> {
    Ok(read_qrels_with_stats(path.as_ref())?.0)
}

pub(crate) fn read_qrels_with_stats(path: &Path) -> Result<(Qrels, QrelsStats)> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    parse_qrels(BufReader::new(file), path)
}

pub(crate) fn parse_qrels(reader: impl BufRead, path: impl Into<PathBuf>) -> Result<(Qrels, QrelsStats)> {
    let path = path.into();
    let mut lines = LineReader::new(reader, path.clone());
    let mut qrels = Qrels::new();
    let mut stats = QrelsStats::default();
    let mut first = true;
    while let Some((line_no, line)) = lines.next_line()? {
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        if std::mem::take(&mut first) && is_header(&fields) {
            continue;
        }
        let malformed = |message: String| DataError::MalformedQrels { path: path.clone(), line: line_no, message };
        let [query_id, doc_id, score] = fields[..] else {
            return Err(malformed(format!("expected 3 tab-separated columns (query-id, corpus-id, score), found {}", fields.len())));
        };
        if query_id.is_empty() || doc_id.is_empty() {
            return Err(malformed("empty query-id or corpus-id".to_owned()));
        }
        let score: i32 = score.parse().map_err(|_| malformed(format!("score `{score}` is not an integer")))?;
        if qrels.get(query_id).is_some_and(|docs| docs.contains_key(doc_id)) {
            stats.duplicate_pairs += 1;
        }
        qrels.insert(query_id, doc_id, score);
    }
    if qrels.num_queries() == 0 {
        return Err(DataError::EmptyFile { path });
    }
    Ok((qrels, stats))
}

/// BEIR writes `query-id corpus-id score`; a third column named `score` is the tell.
fn is_header(fields: &[&str]) -> bool {
    fields.len() == 3 && fields[2].eq_ignore_ascii_case("score")
}
