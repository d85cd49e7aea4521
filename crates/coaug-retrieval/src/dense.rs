//! Dense retrieval of a corpus: a sentence encoder and the corpus vectors, encoded once per
//! dataset, encoder and precision and kept in the cache (a stale store is re-encoded, never
//! misused). Augmented documents are re-encoded from their dense composition (the abstract in
//! front of the text) on top of the stored vectors, so only those rows cost encoder time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use coaug_data::Document;
use coaug_dense::{
    document_text, exact_top_k, open_or_encode, patch_documents, Embeddings, MappedEmbeddings, SentenceEncoder, StoredPrecision, VectorRows,
};
use coaug_eval::{Run, ScoredDoc};

use crate::bm25::QueryToRank;
use crate::composition::Composition;

/// A corpus's dense index: the encoder and the stored corpus vectors.
pub struct DenseIndex {
    /// Shared: an RL run's reward encodes with the same one.
    pub encoder: Arc<SentenceEncoder>,
    pub store: MappedEmbeddings,
}

impl DenseIndex {
    /// Opens the corpus vectors in `dir`, encoding them first when the store is missing or stale
    /// (another encoder, other texts or precision).
    pub fn open_or_encode(encoder: Arc<SentenceEncoder>, dir: &Path, corpus: &[Document], precision: StoredPrecision) -> Result<Self> {
        let ids: Vec<String> = corpus.iter().map(|d| d.id.clone()).collect();
        let texts: Vec<String> = corpus.iter().map(document_text).collect();
        let started = std::time::Instant::now();
        let (store, built) = open_or_encode(dir, &encoder, &ids, &texts, precision)
            .with_context(|| format!("encoding the corpus with {}", encoder.name()))?;
        if built {
            tracing::info!(docs = ids.len(), secs = started.elapsed().as_secs_f64(), dir = %dir.display(), "encoded the corpus");
        } else {
            tracing::info!(dir = %dir.display(), "reusing stored document vectors");
        }
        Ok(Self { encoder, store })
    }

    /// Where a dataset's vectors for an encoder and precision are kept in the cache.
    pub fn store_dir(dataset: &str, encoder: &SentenceEncoder, precision: StoredPrecision) -> PathBuf {
        let precision = match precision {
            StoredPrecision::F32 => "f32",
            StoredPrecision::F16 => "f16",
        };
        coaug_data::cache_root().join("dense").join(dataset).join(format!("{}-{precision}", encoder.name()))
    }

    /// The corpus vectors with every augmented document re-encoded from its dense composition.
    /// Only those rows are encoded; the rest are the stored vectors.
    pub fn augmented_vectors(&self, corpus: &[Document], augmentations: &HashMap<String, String>) -> Result<Embeddings> {
        if self.store.ids().len() != corpus.len() {
            bail!("the stored vectors hold {} documents, the corpus {}", self.store.ids().len(), corpus.len());
        }
        let rows = augmented_rows(corpus, augmentations);
        let changed: Vec<(usize, &str)> = rows.iter().map(|(i, t)| (*i, t.as_str())).collect();
        let started = std::time::Instant::now();
        let vectors = patch_documents(&self.encoder, self.store.to_embeddings(), &changed)?;
        tracing::info!(docs = changed.len(), secs = started.elapsed().as_secs_f64(), "encoded the augmented documents");
        Ok(vectors)
    }

    /// Encodes the query texts (with the encoder's query instruction) and returns each query's
    /// top `k` of `docs` (rows in corpus order: the store, or patched vectors) as a run.
    pub fn run(&self, ids: &[&str], texts: &[String], docs: &dyn VectorRows, k: usize) -> Result<Run> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = self.encoder.encode_queries(&refs, refs.len() > 256)?;
        let hits = exact_top_k(&vectors, docs, k)?;
        let doc_ids = self.store.ids();
        let mut run = Run::new();
        for (id, hits) in ids.iter().zip(hits) {
            // A query without hits still counts (it scores 0), as with BM25.
            let ranking = hits.iter().map(|s| ScoredDoc::new(doc_ids[s.doc as usize].clone(), f64::from(s.score)));
            run.insert_ranking(id.to_string(), ranking);
        }
        Ok(run)
    }

    /// This index ranking queries composed by `composition` against `docs` (the stored vectors,
    /// or the augmented ones of [`DenseIndex::augmented_vectors`]).
    pub fn retriever<'a>(&'a self, docs: &'a dyn VectorRows, composition: Composition) -> DenseRetriever<'a> {
        DenseRetriever { index: self, docs, composition }
    }
}

/// A [`DenseIndex`] with the document vectors and the query composition it ranks with.
pub struct DenseRetriever<'a> {
    index: &'a DenseIndex,
    docs: &'a dyn VectorRows,
    composition: Composition,
}

impl DenseRetriever<'_> {
    pub fn rank(&self, queries: &[QueryToRank<'_>], k: usize) -> Result<Run> {
        let ids: Vec<&str> = queries.iter().map(|q| q.id).collect();
        let texts: Vec<String> = queries.iter().map(|q| self.composition.query_text(q.text, q.expansions)).collect();
        self.index.run(&ids, &texts, self.docs, k)
    }
}

/// `(row, augmented text)` of every document that has an augmentation, in corpus order. The
/// original is `document_text` (what the stored vectors encode), so a document without
/// augmentation keeps exactly its stored vector.
pub fn augmented_rows(corpus: &[Document], augmentations: &HashMap<String, String>) -> Vec<(usize, String)> {
    corpus
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let aug = augmentations.get(&d.id)?;
            Some((i, Composition::default().dense_document_text(&document_text(d), Some(aug))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, title: &str, text: &str) -> Document {
        Document { id: id.into(), title: title.into(), text: text.into() }
    }

    #[test]
    fn augmented_rows_prepend_the_abstract_and_skip_unaugmented_documents() {
        let corpus = [doc("a", "Title", "body a"), doc("b", "", "body b"), doc("c", "T", "body c")];
        let augs: HashMap<String, String> =
            [("c".to_string(), " an abstract ".to_string()), ("zz".to_string(), "not in corpus".to_string())].into();
        let rows = augmented_rows(&corpus, &augs);
        assert_eq!(rows, vec![(2, "an abstract\nT body c".to_string())]);
    }
}
