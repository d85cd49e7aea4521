//! Augmented corpus and queries as BEIR JSONL, for other engines (Pyserini, Elasticsearch).
//!
//! Each line carries the final augmented text in `text` with an empty `title`: engines that index
//! `title + text` then see the terms coaug searches (the dense layout puts the augmentation before
//! the title, so the two cannot stay apart). Queries carry their expansions with the original
//! repeated as many times as its weight says (engines without term weights), or, for dense
//! retrieval, appended once. The original title and the augmentation alone travel in `metadata`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use coaug_augment::Retriever;
use coaug_data::{Document, Query};
use coaug_index::Analyzer;
use serde_json::json;

use crate::augmentations::Augmentations;
use crate::composition::Composition;

/// How many exported items had an augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportCounts {
    pub written: usize,
    pub augmented: usize,
}

/// Writes `corpus.jsonl`: every document with its augmentation composed for `retriever`.
pub fn write_corpus_jsonl(
    path: &Path,
    docs: &[Document],
    augs: &Augmentations,
    retriever: Retriever,
    composition: &Composition,
) -> anyhow::Result<ExportCounts> {
    let mut augmented = 0;
    let lines = docs.iter().map(|doc| {
        let aug = augs.document(&doc.id);
        augmented += usize::from(aug.is_some());
        let full = doc.full_text();
        let text = match (retriever, aug) {
            (_, None) => full,
            (Retriever::Dense, Some(a)) => composition.dense_document_text(&full, Some(a)),
            (Retriever::Sparse, Some(a)) if full.is_empty() => a.to_string(),
            (Retriever::Sparse, Some(a)) => format!("{full}\n{a}"),
        };
        json!({"_id": doc.id, "title": "", "text": text, "metadata": {"title": doc.title, "augmentation": aug}})
    });
    let written = write_jsonl(path, lines)?;
    Ok(ExportCounts { written, augmented })
}

/// Writes `queries.jsonl`: every query with its expansions composed for `retriever` (`analyzer`
/// counts terms for the adaptive query weight).
pub fn write_queries_jsonl(
    path: &Path,
    queries: &[Query],
    augs: &Augmentations,
    retriever: Retriever,
    composition: &Composition,
    analyzer: &Analyzer,
) -> anyhow::Result<ExportCounts> {
    let mut augmented = 0;
    let lines = queries.iter().map(|q| {
        let expansions = augs.expansions(&q.id);
        augmented += usize::from(!expansions.is_empty());
        let text = match retriever {
            Retriever::Sparse => composition.repeated_query_text(analyzer, &q.text, expansions),
            Retriever::Dense => composition.query_text(&q.text, expansions),
        };
        json!({"_id": q.id, "text": text, "metadata": {"expansions": expansions}})
    });
    let written = write_jsonl(path, lines)?;
    Ok(ExportCounts { written, augmented })
}

/// Writes beside the target and renames, so a reader never sees half a file.
fn write_jsonl(path: &Path, lines: impl Iterator<Item = serde_json::Value>) -> anyhow::Result<usize> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("jsonl.partial");
    let mut out = BufWriter::new(File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?);
    let mut written = 0;
    for line in lines {
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
        written += 1;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))?;
    Ok(written)
}
