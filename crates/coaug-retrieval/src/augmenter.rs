//! Writing the augmentations a retrieval run needs: query expansions (several samples, with
//! retrieved passages when asked) and document augmentations, through any [`Generator`] and the
//! augmentation store. `coaug eval` runs it with the LM of `--model`, RL validation with the
//! policy being trained: both augment the same way.

use std::collections::HashMap;

use anyhow::{bail, ensure, Context, Result};
use coaug_augment::prompts::query_with_context;
use coaug_augment::{
    AugmentItem, AugmentJob, AugmentReport, AugmentStore, DecodeSettings, Generator, ParsePolicy, PromptSet, Retriever, Role,
    StoredAugmentation, TokenBudget,
};
use coaug_data::{Document, Query};
use coaug_index::Bm25Index;

use crate::augmentations::Augmentations;

/// Everything that shapes what the LM writes, and how the work is cut up.
#[derive(Debug, Clone)]
pub struct AugmentSettings {
    pub prompts: PromptSet,
    /// More query prompts: each writes one more expansion of every query (per sample), combined
    /// with the main prompt's as several samples are (an ensemble of expansion styles, e.g.
    /// keywords and a passage).
    pub extra_query_prompts: Vec<PromptSet>,
    /// The prompts' role/retriever pair is chosen by the retriever the texts are written for.
    pub retriever: Retriever,
    /// Inputs (documents, queries) are cut at a word end to this many model tokens.
    pub max_input_tokens: usize,
    pub max_new_tokens: usize,
    /// Query expansions' own limit (a passage needs more than a keyword list); `None`: the same.
    pub query_max_new_tokens: Option<usize>,
    /// HF-style repetition penalty of the decoding (1 = off).
    pub repetition_penalty: f32,
    pub batch_size: usize,
    pub parse_policy: ParsePolicy,
    /// Expansions per query: 1 at temperature 0 is greedy; more are sampled.
    pub query_samples: usize,
    pub query_temperature: f32,
    /// Pseudo-relevance feedback: the top K passages of a plain BM25 search shown with the query.
    pub query_context: usize,
    /// Each passage of the context is cut to this many tokens.
    pub context_tokens: usize,
    /// Base seed of sampled expansions (sample i uses seed + i).
    pub seed: u64,
    /// Progress bar (or log lines when stderr is not a terminal).
    pub show_progress: bool,
}

impl Default for AugmentSettings {
    fn default() -> Self {
        Self {
            prompts: PromptSet::default(),
            extra_query_prompts: Vec::new(),
            retriever: Retriever::Sparse,
            max_input_tokens: 128,
            max_new_tokens: 64,
            query_max_new_tokens: None,
            repetition_penalty: 1.2,
            batch_size: 32,
            parse_policy: ParsePolicy::Lenient,
            query_samples: 1,
            query_temperature: 0.0,
            query_context: 0,
            context_tokens: 64,
            seed: 0,
            show_progress: false,
        }
    }
}

impl AugmentSettings {
    /// Greedy decoding: documents, and queries unless sampled.
    pub fn decoding(&self) -> DecodeSettings {
        DecodeSettings { repetition_penalty: self.repetition_penalty, ..DecodeSettings::greedy(self.max_new_tokens) }
    }

    /// The decoding of query expansion `sample`.
    pub fn query_decoding(&self, sample: usize) -> DecodeSettings {
        let max_new_tokens = self.query_max_new_tokens.unwrap_or(self.max_new_tokens);
        if self.query_temperature <= 0.0 {
            return DecodeSettings { max_new_tokens, ..self.decoding() };
        }
        DecodeSettings {
            temperature: self.query_temperature,
            top_p: 1.0,
            top_k: 0,
            repetition_penalty: self.repetition_penalty,
            max_new_tokens,
            seed: self.seed + sample as u64,
        }
    }

    /// Rejects settings that cannot work together, before any model loads.
    pub fn check(&self) -> Result<()> {
        ensure!(self.query_samples >= 1, "query samples must be at least 1");
        ensure!(
            self.query_samples == 1 || self.query_temperature > 0.0,
            "{} query samples need a temperature > 0: greedy decoding writes the same expansion every time",
            self.query_samples
        );
        ensure!(self.batch_size >= 1, "the batch size must be at least 1");
        Ok(())
    }

    /// The input budget of queries: with passages, room for them too.
    fn query_input_tokens(&self) -> usize {
        self.max_input_tokens + self.query_context * (self.context_tokens + 8)
    }
}

/// What augmenting produced, for reports.
#[derive(Debug, Clone, Default)]
pub struct AugmentReports {
    /// One per query sample.
    pub queries: Vec<AugmentReport>,
    pub documents: Option<AugmentReport>,
}

/// Augments through one generator and one store.
pub struct Augmenter<'a> {
    pub generator: &'a mut dyn Generator,
    /// Counts and cuts inputs in the model's tokens.
    pub budget: &'a dyn TokenBudget,
    pub store: &'a mut AugmentStore,
    pub settings: &'a AugmentSettings,
}

impl Augmenter<'_> {
    /// The expansions of `queries` by id (`settings.query_samples` per query prompt, empty ones
    /// dropped), written with the top passages of `context` (the plain BM25 index of the corpus)
    /// when `settings.query_context > 0`.
    pub fn expand_queries(
        &mut self,
        queries: &[Query],
        context: Option<&Bm25Index>,
        reports: &mut AugmentReports,
    ) -> Result<HashMap<String, Vec<String>>> {
        self.settings.check()?;
        let items = self.query_items(queries, context)?;
        let with_context = self.settings.query_context > 0;
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        let prompt_sets: Vec<PromptSet> =
            std::iter::once(self.settings.prompts.clone()).chain(self.settings.extra_query_prompts.iter().cloned()).collect();
        for prompts in &prompt_sets {
            for sample in 0..self.settings.query_samples {
                let decoding = self.settings.query_decoding(sample);
                let (report, found) = self.run(prompts, Role::Query, &items, decoding, with_context, self.settings.query_input_tokens())?;
                reports.queries.push(report);
                for (item, aug) in items.iter().zip(found) {
                    if let Some(text) = aug.map(|a| a.text).filter(|t| !t.trim().is_empty()) {
                        out.entry(item.id.clone()).or_default().push(text);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The augmentation of every document by id (non-empty only).
    pub fn augment_documents(&mut self, docs: &[Document], reports: &mut AugmentReports) -> Result<HashMap<String, String>> {
        let items = AugmentItem::from_documents(docs);
        let prompts = self.settings.prompts.clone();
        let (report, found) =
            self.run(&prompts, Role::Document, &items, self.settings.decoding(), false, self.settings.max_input_tokens)?;
        reports.documents = Some(report);
        Ok(items
            .iter()
            .zip(found)
            .filter_map(|(item, aug)| aug.map(|a| a.text).filter(|t| !t.trim().is_empty()).map(|t| (item.id.clone(), t)))
            .collect())
    }

    /// Both sides at once (either may be skipped).
    pub fn augment(
        &mut self,
        queries: Option<&[Query]>,
        docs: Option<&[Document]>,
        context: Option<&Bm25Index>,
    ) -> Result<(Augmentations, AugmentReports)> {
        let mut reports = AugmentReports::default();
        let mut augs = Augmentations::default();
        if let Some(queries) = queries {
            augs.queries = self.expand_queries(queries, context, &mut reports)?;
        }
        if let Some(docs) = docs {
            augs.documents = self.augment_documents(docs, &mut reports)?;
        }
        Ok((augs, reports))
    }

    /// Generates what the store lacks for `items` and returns every item's stored augmentation.
    fn run(
        &mut self,
        prompts: &PromptSet,
        role: Role,
        items: &[AugmentItem],
        decoding: DecodeSettings,
        with_context: bool,
        max_input_tokens: usize,
    ) -> Result<(AugmentReport, Vec<Option<StoredAugmentation>>)> {
        let mut job = AugmentJob::new(prompts, role, self.settings.retriever, decoding);
        job.budget = self.budget;
        job.max_input_tokens = max_input_tokens;
        job.batch_size = self.settings.batch_size;
        job.show_progress = self.settings.show_progress;
        job.with_context = with_context;
        job.parse_policy = self.settings.parse_policy;
        let report = job.run(self.store, self.generator, items)?;
        if let Some(first) = report.failed.first() {
            // Everything else is stored: a rerun asks only for these.
            bail!(
                "{} of {} {} got no reply from the model (first: {}: {}); the {} others are stored, rerun to retry",
                report.failed.len(),
                report.unique_inputs,
                role.plural(),
                first.id,
                first.reason,
                report.unique_inputs - report.failed.len()
            );
        }
        let found = job.lookup(self.store, &self.generator.fingerprint(), items)?;
        Ok((report, found))
    }

    /// The model inputs of the queries: the query alone, or with its retrieved passages.
    fn query_items(&self, queries: &[Query], context: Option<&Bm25Index>) -> Result<Vec<AugmentItem>> {
        if self.settings.query_context == 0 {
            return Ok(AugmentItem::from_queries(queries));
        }
        let index = context.context("query context needs the plain BM25 index of the corpus")?;
        let texts: Vec<&str> = queries.iter().map(|q| q.text.as_str()).collect();
        let hits = index.search_batch(&texts, self.settings.query_context);
        queries
            .iter()
            .zip(hits)
            .map(|(q, hits)| {
                let passages = hits
                    .iter()
                    .map(|h| {
                        let doc = index.document(h.doc)?;
                        let full = Document { id: doc.id, title: doc.title, text: doc.text }.full_text();
                        Ok(self.budget.truncate(&full, self.settings.context_tokens).to_string())
                    })
                    .collect::<Result<Vec<String>>>()?;
                Ok(AugmentItem::new(&q.id, query_with_context(&q.text, &passages)))
            })
            .collect()
    }
}
