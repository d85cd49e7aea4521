//! Builders for the dataset directories the tests read.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::fs;
use std::path::Path;

use tempfile::TempDir;

pub const CORPUS: &str = concat!(
    r#"{"_id": "d1", "title": "Vitamin D", "text": "Vitamin D and bone health."}"#,
    "\n",
    r#"{"_id": "d2", "title": "", "text": "Statins and cancer."}"#,
    "\n",
    r#"{"_id": "d3", "title": "Fibre", "text": "Dietary fibre.", "metadata": {"url": "x"}}"#,
    "\n",
);
pub const QUERIES: &str = concat!(
    r#"{"_id": "q1", "text": "does vitamin d help bones", "metadata": {}}"#,
    "\n",
    r#"{"_id": "q2", "text": "statins"}"#,
    "\n",
    r#"{"_id": "q3", "text": "an unjudged query"}"#,
    "\n",
);
pub const QRELS: &str = "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td3\t1\nq2\td2\t1\n";

/// Writes `files` (paths relative to a fresh temporary directory) and returns the directory.
pub fn dir_with(files: &[(&str, &[u8])]) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, contents) in files {
        write(dir.path(), path, contents);
    }
    dir
}

/// A small valid dataset with one override: `(path, contents)` replaces that file.
pub fn dataset_with(path: &str, contents: &[u8]) -> TempDir {
    let mut files: Vec<(&str, &[u8])> =
        vec![("corpus.jsonl", CORPUS.as_bytes()), ("queries.jsonl", QUERIES.as_bytes()), ("qrels/test.tsv", QRELS.as_bytes())];
    files.retain(|(p, _)| *p != path);
    files.push((path, contents));
    dir_with(&files)
}

pub fn valid_dataset() -> TempDir {
    dataset_with("qrels/test.tsv", QRELS.as_bytes())
}

pub fn write(root: &Path, path: &str, contents: &[u8]) {
    let path = root.join(path);
    fs::create_dir_all(path.parent().expect("has a parent")).expect("create dirs");
    fs::write(path, contents).expect("write file");
}

pub fn crlf(text: &str) -> String {
    text.replace('\n', "\r\n")
}
