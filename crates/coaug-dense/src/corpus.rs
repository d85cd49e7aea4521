//! A corpus's dense index: document vectors encoded once, stored on disk next to a
//! manifest, reused while the encoder and the texts are the same.

use std::path::Path;

use anyhow::{bail, Context, Result};
use coaug_data::Document;

use crate::embeddings::Embeddings;
use crate::encoder::SentenceEncoder;
use crate::exact::exact_top_k;
use crate::store::{fingerprint, read_manifest, write_store, MappedEmbeddings, StoredPrecision};
use coaug_eval::Hit;

/// The text a dense encoder sees for a document: title and body joined by a space, as
/// BEIR's sentence-transformers evaluation does.
pub fn document_text(doc: &Document) -> String {
    match (doc.title.trim().is_empty(), doc.text.trim().is_empty()) {
        (true, _) => doc.text.clone(),
        (false, true) => doc.title.clone(),
        (false, false) => format!("{} {}", doc.title, doc.text),
    }
}

/// Identity of an encoder + text set, for reusing stored vectors.
pub fn corpus_fingerprint(encoder: &SentenceEncoder, ids: &[String], texts: &[String]) -> String {
    let setup = format!("{}|{:?}|{}|{}", encoder.name(), encoder.setup().pooling, encoder.setup().max_length, encoder.dim());
    let parts = std::iter::once(setup.as_str()).chain(ids.iter().zip(texts).flat_map(|(i, t)| [i.as_str(), t.as_str()]));
    fingerprint(parts.collect::<Vec<_>>())
}

/// Opens the store in `dir` when it matches, else encodes `texts` and writes it.
/// Returns the store and whether it was (re)built.
pub fn open_or_encode(
    dir: &Path,
    encoder: &SentenceEncoder,
    ids: &[String],
    texts: &[String],
    precision: StoredPrecision,
) -> Result<(MappedEmbeddings, bool)> {
    let fp = corpus_fingerprint(encoder, ids, texts);
    if let Some(m) = read_manifest(dir)? {
        if m.fingerprint == fp && m.precision == precision {
            return Ok((MappedEmbeddings::open(dir)?, false));
        }
        tracing::info!(dir = %dir.display(), "stored vectors are stale (other encoder, texts or precision): re-encoding");
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let embeddings = encoder.encode_documents(&refs, true)?;
    write_store(dir, ids, &embeddings, precision, encoder.name(), &fp).with_context(|| format!("writing vectors to {}", dir.display()))?;
    Ok((MappedEmbeddings::open(dir)?, true))
}

/// Document vectors after some documents' texts changed (e.g. an LM augmentation): `base`
/// (the stored corpus, copied into memory) with only the `changed` rows — `(row, new text)` —
/// re-encoded and written over. Encoding is the expensive part, and augmentations usually
/// cover a fraction of the corpus (quick mode: the first N documents), so re-encoding the
/// whole corpus per setting would waste most of the time. Rows are independent of their
/// batch (length-bucketed batching pads without changing any vector), so the result equals
/// a full re-encode of the changed corpus up to float rounding.
pub fn patch_documents(encoder: &SentenceEncoder, mut base: Embeddings, changed: &[(usize, &str)]) -> Result<Embeddings> {
    if base.dim() != encoder.dim() {
        bail!("stored vectors have dim {}, the encoder {} gives {}", base.dim(), encoder.name(), encoder.dim());
    }
    if let Some(&(row, _)) = changed.iter().find(|(row, _)| *row >= base.len()) {
        bail!("row {row} is out of the {} stored vectors", base.len());
    }
    let texts: Vec<&str> = changed.iter().map(|(_, text)| *text).collect();
    let vectors = encoder.encode_documents(&texts, texts.len() > 256)?;
    for (i, &(row, _)) in changed.iter().enumerate() {
        base.set_row(row, vectors.row(i));
    }
    Ok(base)
}

/// Encodes the queries and returns each one's top `k` documents by exact search, as
/// `(document id, cosine)` best first.
pub fn search_queries(encoder: &SentenceEncoder, store: &MappedEmbeddings, queries: &[&str], k: usize) -> Result<Vec<Vec<(String, f32)>>> {
    let q = encoder.encode_queries(queries, queries.len() > 256)?;
    let hits = exact_top_k(&q, store, k)?;
    Ok(hits.into_iter().map(|h| to_ids(store, &h)).collect())
}

fn to_ids(store: &MappedEmbeddings, hits: &[Hit]) -> Vec<(String, f32)> {
    hits.iter().map(|s| (store.ids()[s.doc as usize].clone(), s.score)).collect()
}
