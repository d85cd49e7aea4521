//! Augmented corpus and queries as BEIR JSONL, for other engines (Pyserini, Elasticsearch).
//!
//! Each line carries the final augmented text in `text` with an empty `title`: engines that index
//! `title + text` then see exactly the text coaug indexes (the dense layout puts the augmentation
//! before the title, so the two cannot stay apart). The original title, the augmentation alone and
//! its format validity travel in `metadata`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{ensure, Context};
use coaug_data::{Document, Query};
use serde_json::json;

use crate::prompts::{Retriever, Role};
use crate::store::StoredAugmentation;
use crate::text::{augmented_text, Composition};

/// How many exported items had an augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportCounts {
    pub written: usize,
    pub augmented: usize,
}

/// Writes `corpus.jsonl`; `augmentations[i]` belongs to `docs[i]` (see `AugmentJob::lookup`).
pub fn write_corpus_jsonl(
    path: &Path,
    docs: &[Document],
    augmentations: &[Option<StoredAugmentation>],
    retriever: Retriever,
    composition: Composition,
) -> anyhow::Result<ExportCounts> {
    ensure!(docs.len() == augmentations.len(), "{} documents but {} augmentations", docs.len(), augmentations.len());
    let lines = docs.iter().zip(augmentations).map(|(doc, aug)| {
        let augmentation = aug.as_ref().map(|a| a.text.as_str()).unwrap_or("");
        json!({
            "_id": doc.id,
            "title": "",
            "text": augmented_text(&doc.full_text(), augmentation, Role::Document, retriever, composition),
            "metadata": metadata(aug, Some(&doc.title)),
        })
    });
    write_jsonl(path, lines, augmentations)
}

/// Writes `queries.jsonl`; `augmentations[i]` belongs to `queries[i]`.
pub fn write_queries_jsonl(
    path: &Path,
    queries: &[Query],
    augmentations: &[Option<StoredAugmentation>],
    retriever: Retriever,
    composition: Composition,
) -> anyhow::Result<ExportCounts> {
    ensure!(
        queries.len() == augmentations.len(),
        "{} queries but {} augmentations",
        queries.len(),
        augmentations.len()
    );
    let lines = queries.iter().zip(augmentations).map(|(query, aug)| {
        let augmentation = aug.as_ref().map(|a| a.text.as_str()).unwrap_or("");
        json!({
            "_id": query.id,
            "text": augmented_text(&query.text, augmentation, Role::Query, retriever, composition),
            "metadata": metadata(aug, None),
        })
    });
    write_jsonl(path, lines, augmentations)
}

fn metadata(aug: &Option<StoredAugmentation>, title: Option<&str>) -> serde_json::Value {
    let mut m = json!({
        "augmentation": aug.as_ref().map(|a| a.text.as_str()),
        "format_valid": aug.as_ref().map(|a| a.format_valid),
    });
    if let Some(title) = title {
        m["title"] = json!(title);
    }
    m
}

/// Writes beside the target and renames, so a reader never sees half a file.
fn write_jsonl(
    path: &Path,
    lines: impl Iterator<Item = serde_json::Value>,
    augmentations: &[Option<StoredAugmentation>],
) -> anyhow::Result<ExportCounts> {
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
    let augmented = augmentations.iter().filter(|a| a.as_ref().is_some_and(|a| !a.text.is_empty())).count();
    Ok(ExportCounts { written, augmented })
}
