//! BEIR JSONL records (`{"_id", "title", "text", ...}`), one a line, with their ids checked.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{DataError, Result};
use crate::lines::LineReader;

/// One line of `corpus.jsonl` or `queries.jsonl`, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub id: String,
    pub title: String,
    pub text: String,
}

/// The fields BEIR uses; anything else (`metadata`, ...) is ignored.
#[derive(serde::Deserialize)]
struct RawRecord {
    #[serde(rename = "_id")]
    id: Option<Value>,
    title: Option<String>,
    text: Option<String>,
}

/// Streams validated records; fails on the first bad line, on a repeated id, or on a file with
/// no records at all. After an error it yields nothing more.
pub(crate) struct RecordReader<R> {
    lines: LineReader<R>,
    path: PathBuf,
    /// id -> line of first occurrence; the price of catching duplicates while streaming.
    seen: HashMap<String, usize>,
    finished: bool,
}

impl RecordReader<BufReader<File>> {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        Ok(Self::new(BufReader::with_capacity(1 << 16, file), path))
    }
}

impl<R: BufRead> RecordReader<R> {
    pub(crate) fn new(reader: R, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self { lines: LineReader::new(reader, path.clone()), path, seen: HashMap::new(), finished: false }
    }

    pub(crate) fn records_read(&self) -> usize {
        self.seen.len()
    }

    fn read_next(&mut self) -> Result<Option<Record>> {
        let Some((line_no, line)) = self.lines.next_line()? else {
            if self.seen.is_empty() {
                return Err(DataError::EmptyFile { path: self.path.clone() });
            }
            return Ok(None);
        };
        let record = parse_record(&self.path, line_no, line)?;
        if let Some(&first_line) = self.seen.get(&record.id) {
            return Err(DataError::DuplicateId { path: self.path.clone(), line: line_no, id: record.id, first_line });
        }
        self.seen.insert(record.id.clone(), line_no);
        Ok(Some(record))
    }
}

impl<R: BufRead> Iterator for RecordReader<R> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let next = self.read_next();
        if !matches!(next, Ok(Some(_))) {
            self.finished = true;
        }
        next.transpose()
    }
}

fn parse_record(path: &Path, line: usize, json: &str) -> Result<Record> {
    let raw: RawRecord = serde_json::from_str(json).map_err(|e| DataError::MalformedJson {
        path: path.to_path_buf(),
        line,
        message: describe_json_error(&e),
    })?;
    let id = match raw.id {
        None | Some(Value::Null) => return Err(DataError::MissingField { path: path.to_path_buf(), line, field: "_id" }),
        Some(value) => stringify_id(value).map_err(|message| DataError::InvalidId { path: path.to_path_buf(), line, message })?,
    };
    let text = raw.text.ok_or_else(|| DataError::MissingField { path: path.to_path_buf(), line, field: "text" })?;
    Ok(Record { id, title: raw.title.unwrap_or_default(), text })
}

/// User files sometimes carry numeric ids; qrels name them as text, so integers become strings.
fn stringify_id(value: Value) -> std::result::Result<String, String> {
    match value {
        Value::String(s) if s.trim().is_empty() => Err("empty".to_owned()),
        Value::String(s) => Ok(s),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Value::Number(n) => Err(format!("{n} is not an integer; use a string or an integer")),
        other => Err(format!("expected a string or an integer, found {}", json_kind(&other))),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// serde_json says "at line 1 column N" about the one line it saw; only the column means anything.
fn describe_json_error(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let message = full.rsplit_once(" at line ").map_or(full.as_str(), |(m, _)| m);
    format!("{message} (column {})", e.column())
}
