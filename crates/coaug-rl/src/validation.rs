//! Validation during training: greedy augmentation of a fixed held-out slice of queries and of
//! their judged documents, then nDCG@10 over the whole corpus with the run's retriever, as the
//! evaluation ranks: BM25 with a real tantivy index of the corpus in which the slice's
//! documents carry their augmentation, or the dense encoder with exact cosine search over the
//! corpus vectors in which the slice's documents are re-encoded with their abstract in front.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use coaug_augment::{augmented_text, Composition, ParsePolicy, PromptSet, Retriever, Role};
use coaug_data::{Document, Qrels, Query};
use coaug_dense::{
    document_text, exact_top_k, open_or_encode, patch_documents, MappedEmbeddings, SentenceEncoder,
    StoredPrecision,
};
use coaug_eval::{evaluate, EvalOptions, Run};
use coaug_index::{Bm25Index, IndexConfig, IndexDoc};
use coaug_lm::SamplingParams;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::metrics::ValidationMetrics;
use crate::policy::Policy;
use crate::rollout::{sample_role, Rollout, RoleSampling};

/// Hits per validation query (nDCG@10 needs only the first ten).
const HITS: usize = 100;

/// How validation ranks the corpus: the run's retriever, as the evaluation uses it.
pub enum ValidationIndex {
    /// A tantivy BM25 index of the corpus, rebuilt in this folder at every validation.
    Bm25 { dir: PathBuf },
    /// Exact cosine search with the encoder. The original corpus vectors are encoded once into
    /// `vectors_dir` (reused while the encoder and the texts are the same: pointing it at
    /// `coaug eval`'s store shares the work); each validation re-encodes only the augmented
    /// documents.
    Dense { encoder: Arc<SentenceEncoder>, vectors_dir: PathBuf },
}

/// [`ValidationIndex`] once opened: the dense corpus vectors are loaded.
enum Ranker {
    Bm25 { dir: PathBuf },
    Dense { encoder: Arc<SentenceEncoder>, corpus_vectors: MappedEmbeddings },
}

impl Ranker {
    fn retriever(&self) -> Retriever {
        match self {
            Ranker::Bm25 { .. } => Retriever::Sparse,
            Ranker::Dense { .. } => Retriever::Dense,
        }
    }
}

/// The held-out slice and the retriever it is ranked with.
pub struct Validator {
    queries: Vec<Query>,
    qrels: Qrels,
    corpus: Vec<Document>,
    /// Corpus positions of the documents that get augmented.
    augmented: Vec<usize>,
    ranker: Ranker,
    max_new_tokens: usize,
    max_document_tokens: usize,
    parse_policy: ParsePolicy,
    augment_queries: bool,
    augment_documents: bool,
}

/// Which slice to validate on.
pub struct ValidationSlice {
    pub queries: usize,
    pub documents_per_query: usize,
    pub seed: u64,
}

impl Validator {
    /// Picks `slice.queries` judged queries (a seeded, fixed choice) and up to
    /// `documents_per_query` of their judged documents each, most relevant first. A dense
    /// index encodes the corpus here unless its stored vectors are current.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        corpus: Vec<Document>,
        queries: &[Query],
        qrels: &Qrels,
        slice: &ValidationSlice,
        index: ValidationIndex,
        max_new_tokens: usize,
        max_document_tokens: usize,
        parse_policy: ParsePolicy,
        augment: (bool, bool),
    ) -> Result<Self> {
        let by_id: HashMap<&str, &Query> = queries.iter().map(|q| (q.id.as_str(), q)).collect();
        let mut judged: Vec<&String> = qrels
            .iter()
            .filter(|(id, j)| by_id.contains_key(id.as_str()) && j.values().any(|&g| g > 0))
            .map(|(id, _)| id)
            .collect();
        judged.shuffle(&mut ChaCha8Rng::seed_from_u64(slice.seed));
        judged.truncate(slice.queries);
        judged.sort();
        let position: HashMap<&str, usize> =
            corpus.iter().enumerate().map(|(i, d)| (d.id.as_str(), i)).collect();
        let mut kept = Qrels::new();
        let mut augmented = BTreeSet::new();
        for id in &judged {
            let judgements = qrels.get(id).expect("judged query");
            for (doc, &grade) in judgements {
                kept.insert(id.as_str(), doc.as_str(), grade);
            }
            let mut best: Vec<(&String, i32)> = judgements
                .iter()
                .filter(|(d, g)| **g > 0 && position.contains_key(d.as_str()))
                .map(|(d, g)| (d, *g))
                .collect();
            best.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            augmented.extend(
                best.iter()
                    .take(slice.documents_per_query)
                    .map(|(d, _)| position[d.as_str()]),
            );
        }
        if judged.is_empty() {
            bail!("no validation query has a relevant document");
        }
        let ranker = open_ranker(index, &corpus)?;
        Ok(Self {
            queries: judged.iter().map(|id| by_id[id.as_str()].clone()).collect(),
            qrels: kept,
            corpus,
            augmented: augmented.into_iter().collect(),
            ranker,
            max_new_tokens,
            max_document_tokens,
            parse_policy,
            augment_queries: augment.0,
            augment_documents: augment.1,
        })
    }

    pub fn num_queries(&self) -> usize {
        self.queries.len()
    }

    /// Greedy augmentation with the current policy, then nDCG@10 over the whole corpus.
    pub fn run(&self, policy: &Policy, prompts: &PromptSet, step: u64) -> Result<ValidationMetrics> {
        let start = Instant::now();
        let greedy = |max_input_tokens| RoleSampling {
            retriever: self.ranker.retriever(),
            params: SamplingParams {
                repetition_penalty: 1.2,
                ..SamplingParams::greedy(self.max_new_tokens)
            },
            parse_policy: self.parse_policy,
            max_input_tokens,
            keep_trunk_at: None,
        };
        let query_texts: Vec<String> = self.queries.iter().map(|q| q.text.clone()).collect();
        let q_sampling = greedy(None);
        let queries = sample_role(
            policy,
            prompts,
            Role::Query,
            &query_texts,
            self.augment_queries.then_some(&q_sampling),
        )?;
        let doc_texts: Vec<String> =
            self.augmented.iter().map(|&i| self.corpus[i].full_text()).collect();
        let d_sampling = greedy(Some(self.max_document_tokens));
        let documents = sample_role(
            policy,
            prompts,
            Role::Document,
            &doc_texts,
            self.augment_documents.then_some(&d_sampling),
        )?;
        let run = match &self.ranker {
            Ranker::Bm25 { dir } => self.bm25_run(dir, &queries, &documents)?,
            Ranker::Dense { encoder, corpus_vectors } => {
                self.dense_run(encoder, corpus_vectors, &queries, &documents)?
            }
        };
        let metrics = evaluate(&self.qrels, &run, &[10], &EvalOptions::default());
        let generated: Vec<_> = queries.iter().chain(&documents).filter(|r| r.is_generated()).collect();
        let format_valid = if generated.is_empty() {
            0.0
        } else {
            generated.iter().filter(|r| r.format_valid).count() as f64 / generated.len() as f64
        };
        Ok(ValidationMetrics {
            step,
            ndcg_at_10: metrics.mean.get("NDCG@10").copied().unwrap_or(0.0),
            queries: self.queries.len(),
            augmented_documents: self.augmented.len(),
            format_valid,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// BM25 over a fresh tantivy index of the corpus, the slice's documents carrying their
    /// augmentation in the index's augmentation field.
    fn bm25_run(&self, dir: &Path, queries: &[Rollout], documents: &[Rollout]) -> Result<Run> {
        let mut index_docs = IndexDoc::from_documents(&self.corpus);
        for (&i, rollout) in self.augmented.iter().zip(documents) {
            if !rollout.augmentation.is_empty() {
                index_docs[i].augmentation = Some(rollout.augmentation.clone());
            }
        }
        let index = Bm25Index::build(dir, &index_docs, &IndexConfig::default())
            .with_context(|| format!("building the validation index in {}", dir.display()))?;
        let texts: Vec<&str> = queries.iter().map(|r| r.retrieval_text.as_str()).collect();
        let hits = index.search_batch(&texts, HITS);
        let mut run = Run::new();
        for (query, hits) in self.queries.iter().zip(&hits) {
            for hit in hits {
                run.insert(query.id.clone(), index.doc_id(hit.doc), f64::from(hit.score));
            }
        }
        Ok(run)
    }

    /// Exact cosine search over the corpus vectors, the slice's augmented documents re-encoded
    /// in their dense composition (abstract, then the text `coaug eval` encodes).
    fn dense_run(
        &self,
        encoder: &SentenceEncoder,
        corpus_vectors: &MappedEmbeddings,
        queries: &[Rollout],
        documents: &[Rollout],
    ) -> Result<Run> {
        let changed: Vec<(usize, String)> = self
            .augmented
            .iter()
            .zip(documents)
            .filter(|(_, rollout)| !rollout.augmentation.is_empty())
            .map(|(&i, rollout)| (i, dense_augmented(&self.corpus[i], &rollout.augmentation)))
            .collect();
        let changed: Vec<(usize, &str)> = changed.iter().map(|(i, t)| (*i, t.as_str())).collect();
        let vectors = patch_documents(encoder, corpus_vectors.to_embeddings(), &changed)?;
        let texts: Vec<&str> = queries.iter().map(|r| r.retrieval_text.as_str()).collect();
        let query_vectors = encoder.encode_queries(&texts, false)?;
        let hits = exact_top_k(&query_vectors, &vectors, HITS)?;
        let mut run = Run::new();
        for (query, hits) in self.queries.iter().zip(&hits) {
            for hit in hits {
                run.insert(query.id.clone(), self.corpus[hit.doc as usize].id.clone(), f64::from(hit.score));
            }
        }
        Ok(run)
    }
}

/// A document as `coaug eval --retriever dense` encodes it once augmented: the abstract in
/// front of the text the stored vectors encode.
fn dense_augmented(doc: &Document, augmentation: &str) -> String {
    augmented_text(&document_text(doc), augmentation, Role::Document, Retriever::Dense, Composition::Full)
}

/// Opens the index: for dense, the original corpus vectors in `coaug eval`'s text form
/// (`document_text`), encoded now unless the store in `vectors_dir` is current.
fn open_ranker(index: ValidationIndex, corpus: &[Document]) -> Result<Ranker> {
    match index {
        ValidationIndex::Bm25 { dir } => Ok(Ranker::Bm25 { dir }),
        ValidationIndex::Dense { encoder, vectors_dir } => {
            let ids: Vec<String> = corpus.iter().map(|d| d.id.clone()).collect();
            let texts: Vec<String> = corpus.iter().map(document_text).collect();
            let (corpus_vectors, _) = open_or_encode(&vectors_dir, &encoder, &ids, &texts, StoredPrecision::F32)
                .with_context(|| format!("encoding the validation corpus into {}", vectors_dir.display()))?;
            Ok(Ranker::Dense { encoder, corpus_vectors })
        }
    }
}
