//! Validation during training, on a fixed set of held-out queries (all judged dev queries by
//! default), in two kinds:
//!
//! - [`ValidationKind::Query`], every few steps: the current policy expands the queries, which
//!   search the corpus as it is. Cheap, and what the query side learned, alone.
//! - [`ValidationKind::Both`], at the start and the end: the policy also augments a
//!   label-independent pool of documents (the union of the plain BM25 top-k of the queries: no
//!   judgement decides which documents get augmented), and the queries search the corpus with
//!   the pool augmented.
//!
//! Each run keeps its per-query nDCG@10, so later validations are compared with step 0's paired,
//! with a bootstrap interval ([`ValidationMetrics::delta_vs_start`]). Ranking goes through the
//! evaluation's own pipeline: the policy writes through
//! [`coaug_retrieval::Augmenter`] with the generation settings of `coaug eval` (greedy, its
//! repetition penalty, its KV cache), BM25 ranks with [`coaug_retrieval::AugmentedBm25`] and the
//! run's composition and stop words, dense re-encodes the slice's documents with their abstract
//! in front of the stored corpus vectors.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use coaug_augment::{AugmentStore, LmTokenBudget, ModelGenerator, PromptSet, Retriever};
use coaug_data::{Document, Qrels, Query};
use coaug_dense::{SentenceEncoder, StoredPrecision};
use coaug_eval::{evaluate, EvalOptions, Run};
use coaug_index::AnalyzerConfig;
use coaug_lm::KvPrecision;
use coaug_retrieval::{AugmentSettings, Augmentations, AugmentedBm25, Augmenter, Composition, DenseIndex, QueryToRank};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::metrics::{ValidationKind, ValidationMetrics};
use crate::policy::Policy;

/// Hits per validation query (nDCG@10 needs only the first ten).
const HITS: usize = 100;

/// How validation ranks the corpus: the run's retriever, as the evaluation uses it.
pub enum ValidationIndex {
    /// A tantivy BM25 index of the corpus, rebuilt in this folder at every validation, composed
    /// and analysed as `coaug eval` does.
    Bm25 { dir: PathBuf, composition: Composition, analyzer: AnalyzerConfig },
    /// Exact cosine search with the encoder. The original corpus vectors are encoded once into
    /// `vectors_dir` (reused while the encoder and the texts are the same: pointing it at
    /// `coaug eval`'s store shares the work); each validation re-encodes only the augmented
    /// documents.
    Dense { encoder: Arc<SentenceEncoder>, vectors_dir: PathBuf },
}

/// [`ValidationIndex`] once opened: the dense corpus vectors are loaded.
enum Ranker {
    Bm25 { dir: PathBuf, composition: Composition, analyzer: AnalyzerConfig },
    Dense(DenseIndex),
}

impl Ranker {
    fn retriever(&self) -> Retriever {
        match self {
            Ranker::Bm25 { .. } => Retriever::Sparse,
            Ranker::Dense { .. } => Retriever::Dense,
        }
    }

    /// The union of the plain BM25 top-k of `queries` (corpus positions, sorted): which documents
    /// a validation augments, decided by the original texts alone. Dense runs pool with BM25 too.
    fn pool(&self, corpus: &[Document], queries: &[Query], k: usize) -> Result<Vec<usize>> {
        let (dir, analyzer) = match self {
            Ranker::Bm25 { dir, analyzer, .. } => (dir.with_extension("pool"), analyzer.clone()),
            Ranker::Dense { .. } => {
                (std::env::temp_dir().join(format!("coaug-validation-pool-{}", std::process::id())), AnalyzerConfig::default())
            }
        };
        let plain = AugmentedBm25::open_or_build(&dir, corpus, &Augmentations::default(), Composition::plain_append(), &analyzer)?;
        let texts: Vec<&str> = queries.iter().map(|q| q.text.as_str()).collect();
        let mut pool = BTreeSet::new();
        for hits in plain.index().search_batch(&texts, k) {
            pool.extend(hits.iter().map(|h| h.doc as usize));
        }
        Ok(pool.into_iter().collect())
    }
}

/// How validation augments: the generation settings of `coaug eval` (the prompts are the run's).
#[derive(Debug, Clone)]
pub struct ValidationGeneration {
    /// Greedy decoding with these token limits, penalty and parsing.
    pub settings: AugmentSettings,
    /// `coaug eval` generates with an 8-bit cache on the CPU.
    pub kv_cache: KvPrecision,
}

/// The held-out slice and the retriever it is ranked with.
pub struct Validator {
    queries: Vec<Query>,
    qrels: Qrels,
    corpus: Vec<Document>,
    /// Corpus positions of the documents that get augmented.
    augmented: Vec<usize>,
    ranker: Ranker,
    generation: ValidationGeneration,
    augment_queries: bool,
    augment_documents: bool,
}

/// Which queries and documents to validate on.
pub struct ValidationSlice {
    /// Judged queries of the split (a seeded, fixed choice); 0 takes every one.
    pub queries: usize,
    /// The documents augmented in a [`ValidationKind::Both`] run: the union of the plain BM25
    /// top-k of every validation query (label-independent), or `None` for the whole corpus.
    pub pool_per_query: Option<usize>,
    pub seed: u64,
}

impl Validator {
    /// Picks `slice.queries` judged queries (a seeded, fixed choice) and up to
    /// `documents_per_query` of their judged documents each, most relevant first. A dense
    /// index encodes the corpus here unless its stored vectors are current.
    pub fn new(
        corpus: Vec<Document>,
        queries: &[Query],
        qrels: &Qrels,
        slice: &ValidationSlice,
        index: ValidationIndex,
        generation: ValidationGeneration,
        augment: (bool, bool),
    ) -> Result<Self> {
        let by_id: HashMap<&str, &Query> = queries.iter().map(|q| (q.id.as_str(), q)).collect();
        let mut judged: Vec<&String> =
            qrels.iter().filter(|(id, j)| by_id.contains_key(id.as_str()) && j.values().any(|&g| g > 0)).map(|(id, _)| id).collect();
        if judged.is_empty() {
            bail!("no validation query has a relevant document");
        }
        if slice.queries > 0 && slice.queries < judged.len() {
            judged.shuffle(&mut ChaCha8Rng::seed_from_u64(slice.seed));
            judged.truncate(slice.queries);
        }
        judged.sort();
        let mut kept = Qrels::new();
        for id in &judged {
            for (doc, &grade) in qrels.get(id).expect("judged query") {
                kept.insert(id.as_str(), doc.as_str(), grade);
            }
        }
        let queries: Vec<Query> = judged.iter().map(|id| by_id[id.as_str()].clone()).collect();
        let ranker = open_ranker(index, &corpus)?;
        let augmented = match slice.pool_per_query {
            None => (0..corpus.len()).collect(),
            Some(k) => ranker.pool(&corpus, &queries, k)?,
        };
        Ok(Self { queries, qrels: kept, corpus, augmented, ranker, generation, augment_queries: augment.0, augment_documents: augment.1 })
    }

    pub fn num_queries(&self) -> usize {
        self.queries.len()
    }

    /// The validated queries and their judgements.
    pub fn queries(&self) -> (&[Query], &Qrels) {
        (&self.queries, &self.qrels)
    }

    /// The documents the policy augments.
    pub fn augmented_documents(&self) -> Vec<&Document> {
        self.augmented.iter().map(|&i| &self.corpus[i]).collect()
    }

    /// Augmentation with the current policy (as `coaug eval` augments), then nDCG@10 over the
    /// whole corpus, per query and on average.
    pub fn run(&self, policy: &Policy, prompts: &PromptSet, step: u64, kind: ValidationKind) -> Result<ValidationMetrics> {
        let start = Instant::now();
        let documents = kind == ValidationKind::Both && self.augment_documents;
        let (augs, format_valid) = self.augment(policy, prompts, step, documents)?;
        let run = self.rank(&augs)?;
        let metrics = evaluate(&self.qrels, &run, &[10], &EvalOptions::default());
        Ok(ValidationMetrics {
            step,
            kind,
            ndcg_at_10: metrics.mean.get("NDCG@10").copied().unwrap_or(0.0),
            queries: self.queries.len(),
            augmented_documents: if documents { self.augmented.len() } else { 0 },
            format_valid,
            seconds: start.elapsed().as_secs_f64(),
            per_query: metrics.per_query.iter().map(|(q, m)| (q.clone(), m.get("NDCG@10").copied().unwrap_or(0.0))).collect(),
            delta_vs_start: None,
        })
    }

    /// The policy's augmentations of the slice through the evaluation's augmenter (an in-memory
    /// store: nothing is kept between validations), and the share of well-formed replies.
    fn augment(&self, policy: &Policy, prompts: &PromptSet, step: u64, documents: bool) -> Result<(Augmentations, f64)> {
        let fingerprint = format!("policy-step-{step}");
        let mut generator = ModelGenerator {
            model: &policy.model,
            tokenizer: &policy.tokenizer,
            kv_cache: self.generation.kv_cache,
            fingerprint: &fingerprint,
        };
        let budget = LmTokenBudget::new(policy.tokenizer.clone());
        let mut store = AugmentStore::open_in_memory()?;
        let settings = AugmentSettings { prompts: prompts.clone(), retriever: self.ranker.retriever(), ..self.generation.settings.clone() };
        let mut augmenter = Augmenter { generator: &mut generator, budget: &budget, store: &mut store, settings: &settings };
        let docs: Vec<Document> = self.augmented.iter().map(|&i| self.corpus[i].clone()).collect();
        let (augs, reports) = augmenter.augment(self.augment_queries.then_some(&self.queries[..]), documents.then_some(&docs[..]), None)?;
        let generated: usize = reports.queries.iter().chain(&reports.documents).map(|r| r.generated).sum();
        let invalid: usize = reports.queries.iter().chain(&reports.documents).map(|r| r.format_invalid).sum();
        let format_valid = if generated == 0 { 0.0 } else { 1.0 - invalid as f64 / generated as f64 };
        Ok((augs, format_valid))
    }

    fn rank(&self, augs: &Augmentations) -> Result<Run> {
        let queries: Vec<QueryToRank<'_>> =
            self.queries.iter().map(|q| QueryToRank { id: &q.id, text: &q.text, expansions: augs.expansions(&q.id) }).collect();
        match &self.ranker {
            Ranker::Bm25 { dir, composition, analyzer } => {
                let retriever = AugmentedBm25::open_or_build(dir, &self.corpus, augs, *composition, analyzer)
                    .with_context(|| format!("building the validation index in {}", dir.display()))?;
                Ok(retriever.rank(&queries, HITS))
            }
            // The slice's augmented documents re-encoded in their dense composition, exact cosine
            // search over every corpus vector, as `coaug eval --retriever dense` ranks.
            Ranker::Dense(index) => {
                let vectors = index.augmented_vectors(&self.corpus, &augs.documents)?;
                index.retriever(&vectors, Composition::default()).rank(&queries, HITS)
            }
        }
    }
}

/// Opens the index: for dense, the original corpus vectors in `coaug eval`'s text form
/// (`document_text`), encoded now unless the store in `vectors_dir` is current.
fn open_ranker(index: ValidationIndex, corpus: &[Document]) -> Result<Ranker> {
    match index {
        ValidationIndex::Bm25 { dir, composition, analyzer } => Ok(Ranker::Bm25 { dir, composition, analyzer }),
        ValidationIndex::Dense { encoder, vectors_dir } => Ok(Ranker::Dense(
            DenseIndex::open_or_encode(encoder, &vectors_dir, corpus, StoredPrecision::F32)
                .with_context(|| format!("encoding the validation corpus into {}", vectors_dir.display()))?,
        )),
    }
}
