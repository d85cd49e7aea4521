//! Reading `queries.jsonl` (small enough to hold in memory).

use std::path::Path;

use crate::error::Result;
use crate::jsonl::RecordReader;
use crate::types::Query;

/// All queries in file order. A `title` field, if any, is ignored; `metadata` too (SciFact keeps
/// gold evidence there, which must never reach a model).
pub fn read_queries(path: impl AsRef<Path>) -> Result<Vec<Query>> {
    RecordReader::open(path.as_ref())?.map(|record| record.map(|r| Query { id: r.id, text: r.text })).collect()
}
