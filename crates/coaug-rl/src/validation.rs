//! Validation during training: greedy augmentation of a fixed held-out slice of queries and of
//! their judged documents, then nDCG@10 with the real BM25 index (a tantivy index of the whole
//! corpus, in which the slice's documents carry their augmentation).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use coaug_augment::{ParsePolicy, PromptSet, Role};
use coaug_data::{Document, Qrels, Query};
use coaug_eval::{evaluate, EvalOptions, Run};
use coaug_index::{Bm25Index, IndexConfig, IndexDoc};
use coaug_lm::SamplingParams;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::metrics::ValidationMetrics;
use crate::policy::Policy;
use crate::rollout::{sample_role, RoleSampling};

/// The held-out slice and where its index is built.
pub struct Validator {
    queries: Vec<Query>,
    qrels: Qrels,
    corpus: Vec<Document>,
    /// Corpus positions of the documents that get augmented.
    augmented: Vec<usize>,
    index_dir: PathBuf,
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
    /// `documents_per_query` of their judged documents each, most relevant first.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        corpus: Vec<Document>,
        queries: &[Query],
        qrels: &Qrels,
        slice: &ValidationSlice,
        index_dir: PathBuf,
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
            anyhow::bail!("no validation query has a relevant document");
        }
        Ok(Self {
            queries: judged.iter().map(|id| by_id[id.as_str()].clone()).collect(),
            qrels: kept,
            corpus,
            augmented: augmented.into_iter().collect(),
            index_dir,
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
        let mut index_docs = IndexDoc::from_documents(&self.corpus);
        for (&i, rollout) in self.augmented.iter().zip(&documents) {
            if !rollout.augmentation.is_empty() {
                index_docs[i].augmentation = Some(rollout.augmentation.clone());
            }
        }
        let index = Bm25Index::build(&self.index_dir, &index_docs, &IndexConfig::default())
            .with_context(|| format!("building the validation index in {}", self.index_dir.display()))?;
        let texts: Vec<&str> = queries.iter().map(|r| r.retrieval_text.as_str()).collect();
        let hits = index.search_batch(&texts, 100);
        let mut run = Run::new();
        for (query, hits) in self.queries.iter().zip(&hits) {
            for hit in hits {
                run.insert(query.id.clone(), index.doc_id(hit.doc), f64::from(hit.score));
            }
        }
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
}
