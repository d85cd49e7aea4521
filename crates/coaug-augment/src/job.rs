//! The resumable augmentation job: generate what the store lacks, one committed batch at a time.

use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal;
use std::time::Instant;

use anyhow::{ensure, Context};
use coaug_data::{Document, Query};
use indicatif::{ProgressBar, ProgressStyle};

use crate::generator::{DecodeSettings, GenerationRequest, Generator};
use crate::key::AugmentationKey;
use crate::parse::{parse_answer_with, ParsePolicy};
use crate::prompts::{PromptSet, Retriever, Role};
use crate::store::{now_ms, AugmentStore, StoredAugmentation};
use crate::text::{TokenBudget, WhitespaceTokens};

/// One text to augment: a query, or a document as `"title. text"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AugmentItem {
    pub id: String,
    pub text: String,
}

impl AugmentItem {
    pub fn new(id: impl Into<String>, text: impl Into<String>) -> Self {
        Self { id: id.into(), text: text.into() }
    }

    pub fn from_documents(docs: &[Document]) -> Vec<Self> {
        docs.iter().map(|d| Self::new(&d.id, d.full_text())).collect()
    }

    pub fn from_queries(queries: &[Query]) -> Vec<Self> {
        queries.iter().map(|q| Self::new(&q.id, &q.text)).collect()
    }
}

static DEFAULT_BUDGET: WhitespaceTokens = WhitespaceTokens { tokens_per_word: 1.5 };

/// Everything that decides what is generated for an item, plus how the work is cut up.
pub struct AugmentJob<'a> {
    pub prompts: &'a PromptSet,
    pub role: Role,
    pub retriever: Retriever,
    pub decoding: DecodeSettings,
    /// Counts model-input tokens; the LM's tokenizer when available.
    pub budget: &'a dyn TokenBudget,
    /// Inputs longer than this are cut at a word boundary before prompting.
    pub max_input_tokens: usize,
    pub batch_size: usize,
    pub parse_policy: ParsePolicy,
    /// Generate the missing inputs longest first, so each batch holds inputs of similar length
    /// and a batched LM pads little. Results do not change: every request has its own seed.
    pub group_by_length: bool,
    /// Draw a progress bar with ETA on stderr; when stderr is not a terminal (a log file, `nohup`),
    /// log a progress line with ETA every [`LOG_EVERY`] instead.
    pub show_progress: bool,
    /// The items are queries with pseudo-relevance feedback ([`crate::prompts::query_with_context`]):
    /// the system prompt gains the note on using the retrieved passages.
    pub with_context: bool,
}

/// How often a job whose stderr is not a terminal logs its progress.
pub const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Why an item was not sent to the model as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputIssue {
    Empty,
    NoWords,
}

/// The text the model will read for one item, or why there is nothing to read.
struct PreparedInput {
    input: Result<String, InputIssue>,
    truncated: bool,
    replaced_utf8: bool,
}

/// What one run did, and every unusual input it met (by item id).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct AugmentReport {
    pub items: usize,
    /// Distinct model inputs among the items that were not skipped.
    pub unique_inputs: usize,
    /// Of those, found in the store at the start.
    pub already_stored: usize,
    /// Rows written by this run.
    pub generated: usize,
    pub batches: usize,
    /// Generated replies without a well-formed answer block.
    pub format_invalid: usize,
    pub generated_tokens: usize,
    pub elapsed_s: f64,
    /// Empty or whitespace-only: skipped, the original text stands alone.
    pub empty: Vec<String>,
    /// Letters and digits absent (e.g. only punctuation): skipped like empty ones.
    pub no_words: Vec<String>,
    /// Cut to the input budget before prompting.
    pub truncated: Vec<String>,
    /// Contain U+FFFD, i.e. invalid UTF-8 was replaced when reading them; augmented as is.
    pub replaced_utf8: Vec<String>,
    /// Got no reply (a remote server kept failing them): nothing stored, a rerun tries again.
    pub failed: Vec<FailedItem>,
}

/// An item the generator failed on, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FailedItem {
    pub id: String,
    pub reason: String,
}

impl AugmentReport {
    pub fn items_per_s(&self) -> f64 {
        rate(self.generated, self.elapsed_s)
    }

    pub fn generated_tokens_per_s(&self) -> f64 {
        rate(self.generated_tokens, self.elapsed_s)
    }
}

fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

impl fmt::Display for AugmentReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} items, {} distinct inputs: {} already stored, {} generated in {} batches ({:.1} s, {:.2} items/s, \
             {:.1} tokens/s), {} failed, {} without a well-formed answer; inputs skipped as empty: {}, without words: {}; \
             truncated: {}; with replaced invalid UTF-8: {}",
            self.items,
            self.unique_inputs,
            self.already_stored,
            self.generated,
            self.batches,
            self.elapsed_s,
            self.items_per_s(),
            self.generated_tokens_per_s(),
            self.failed.len(),
            self.format_invalid,
            self.empty.len(),
            self.no_words.len(),
            self.truncated.len(),
            self.replaced_utf8.len(),
        )
    }
}

impl<'a> AugmentJob<'a> {
    /// Defaults: 512 input tokens counted by [`WhitespaceTokens`], batches of 8 grouped by
    /// length, strict parsing, no progress bar.
    pub fn new(prompts: &'a PromptSet, role: Role, retriever: Retriever, decoding: DecodeSettings) -> Self {
        Self {
            prompts,
            role,
            retriever,
            decoding,
            budget: &DEFAULT_BUDGET,
            max_input_tokens: 512,
            batch_size: 8,
            parse_policy: ParsePolicy::Strict,
            group_by_length: true,
            show_progress: false,
            with_context: false,
        }
    }

    pub fn system_prompt(&self) -> String {
        let prompt = self.prompts.get(self.role, self.retriever);
        if self.with_context {
            format!("{prompt} {}", self.prompts.context_note)
        } else {
            prompt.to_string()
        }
    }

    fn prepare(&self, text: &str) -> PreparedInput {
        let replaced_utf8 = text.contains(char::REPLACEMENT_CHARACTER);
        let trimmed = text.trim();
        let input = if trimmed.is_empty() {
            Err(InputIssue::Empty)
        } else if !trimmed.chars().any(char::is_alphanumeric) {
            Err(InputIssue::NoWords)
        } else {
            Ok(self.budget.truncate(trimmed, self.max_input_tokens))
        };
        let truncated = input.as_ref().is_ok_and(|cut| cut.len() < trimmed.len());
        PreparedInput { input: input.map(str::to_string), truncated, replaced_utf8 }
    }

    /// The store key of a model input, for the generator with fingerprint `model`.
    fn key(&self, model: &str, input: &str) -> AugmentationKey {
        AugmentationKey::new(model, &self.system_prompt(), self.role, &self.decoding, input)
    }

    /// Each item's stored augmentation, in order; `None` where the item was skipped (empty, no
    /// words) or has not been generated yet. `model` is the generator's fingerprint. The text is
    /// re-parsed from the stored reply with this job's parse policy, so switching policies needs
    /// no regeneration.
    pub fn lookup(&self, store: &AugmentStore, model: &str, items: &[AugmentItem]) -> anyhow::Result<Vec<Option<StoredAugmentation>>> {
        items
            .iter()
            .map(|item| match self.prepare(&item.text).input {
                Ok(input) => Ok(store.get(&self.key(model, &input))?.map(|row| self.reparsed(row))),
                Err(_) => Ok(None),
            })
            .collect()
    }

    fn reparsed(&self, mut row: StoredAugmentation) -> StoredAugmentation {
        let parsed = parse_answer_with(&row.raw_response, self.parse_policy);
        row.text = parsed.text;
        row.format_valid = parsed.format_valid;
        row
    }

    /// Generates every augmentation of `items` the store lacks, `batch_size` at a time, each batch
    /// committed in one transaction. Killed at any point, a rerun loses at most the batch in flight
    /// and produces the same rows as an uninterrupted run: every request carries a seed derived
    /// from its own key. A request the generator fails on alone (see [`Generator::generate_streaming`])
    /// is listed in [`AugmentReport::failed`] and not stored; the job goes on with the others.
    pub fn run(&self, store: &mut AugmentStore, generator: &mut dyn Generator, items: &[AugmentItem]) -> anyhow::Result<AugmentReport> {
        ensure!(self.batch_size > 0, "batch size must be at least 1");
        let started = Instant::now();
        let model = generator.fingerprint();
        let mut report = AugmentReport { items: items.len(), ..Default::default() };

        // Key -> (first item with that input, the input): identical inputs are generated once.
        let mut pending: HashMap<AugmentationKey, (usize, String)> = HashMap::new();
        let mut keys = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let prepared = self.prepare(&item.text);
            if prepared.replaced_utf8 {
                report.replaced_utf8.push(item.id.clone());
            }
            if prepared.truncated {
                report.truncated.push(item.id.clone());
            }
            match prepared.input {
                Ok(input) => {
                    let key = self.key(&model, &input);
                    if let std::collections::hash_map::Entry::Vacant(slot) = pending.entry(key.clone()) {
                        slot.insert((index, input));
                        keys.push(key);
                    }
                }
                Err(InputIssue::Empty) => report.empty.push(item.id.clone()),
                Err(InputIssue::NoWords) => report.no_words.push(item.id.clone()),
            }
        }
        let mut missing = store.missing(&keys)?;
        if self.group_by_length {
            // Stable, so equal lengths keep item order.
            missing.sort_by_key(|key| std::cmp::Reverse(pending[key].1.len()));
        }
        report.unique_inputs = keys.len();
        report.already_stored = keys.len() - missing.len();

        let progress = self.progress_bar(missing.len() as u64);
        let mut log = ProgressLog::new(self.show_progress && !std::io::stderr().is_terminal(), missing.len());
        let system_prompt = self.system_prompt();
        let window = generator.window().unwrap_or(self.batch_size).max(self.batch_size);
        let what = format!("augmenting {} ({})", self.role.plural(), self.retriever);
        for (window_no, keys) in missing.chunks(window).enumerate() {
            let requests: Vec<GenerationRequest> = keys
                .iter()
                .map(|key| GenerationRequest {
                    system_prompt: system_prompt.clone(),
                    user_text: pending[key].1.clone(),
                    seed: AugmentationKey::item_seed(&system_prompt, self.role, &self.decoding, &pending[key].1),
                })
                .collect();
            let first_id = &items[pending[&keys[0]].0].id;
            // Replies are committed `batch_size` at a time as they arrive: killed at any point, a
            // rerun loses at most the replies of one uncommitted batch.
            let mut rows: Vec<StoredAugmentation> = Vec::with_capacity(self.batch_size);
            let mut replies = 0usize;
            let mut commit = |rows: &mut Vec<StoredAugmentation>, report: &mut AugmentReport| -> anyhow::Result<()> {
                if rows.is_empty() {
                    return Ok(());
                }
                report.format_invalid += rows.iter().filter(|r| !r.format_valid).count();
                report.generated_tokens += rows.iter().map(|r| r.generated_tokens).sum::<usize>();
                report.generated += store.put_batch(rows)?;
                report.batches += 1;
                progress.inc(rows.len() as u64);
                log.advance(rows.len(), &what);
                rows.clear();
                Ok(())
            };
            generator
                .generate_streaming(&requests, &self.decoding, &mut |i, reply| {
                    anyhow::ensure!(i < keys.len(), "the generator answered request {i} of {}", keys.len());
                    replies += 1;
                    let key = &keys[i];
                    match reply {
                        Err(failure) => {
                            report.failed.push(FailedItem { id: items[pending[key].0].id.clone(), reason: failure.reason });
                            progress.inc(1);
                        }
                        Ok(generation) => {
                            let parsed = parse_answer_with(&generation.text, self.parse_policy);
                            rows.push(StoredAugmentation {
                                key: key.clone(),
                                item_id: items[pending[key].0].id.clone(),
                                role: self.role,
                                retriever: self.retriever,
                                model: model.clone(),
                                raw_response: generation.text,
                                text: parsed.text,
                                format_valid: parsed.format_valid,
                                generated_tokens: generation.generated_tokens,
                                created_at_ms: now_ms(),
                            });
                            if rows.len() >= self.batch_size {
                                commit(&mut rows, &mut report)?;
                            }
                        }
                    }
                    Ok(())
                })
                .with_context(|| format!("generation failed in batch {window_no} (first item {first_id})"))?;
            commit(&mut rows, &mut report)?;
            ensure!(replies == keys.len(), "the generator returned {replies} replies for {} requests (batch {window_no})", keys.len());
        }
        progress.finish_and_clear();
        report.elapsed_s = started.elapsed().as_secs_f64();
        tracing::info!(role = %self.role, retriever = %self.retriever, "{report}");
        Ok(report)
    }

    fn progress_bar(&self, len: u64) -> ProgressBar {
        if !self.show_progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} [{elapsed_precise}, {per_sec}, ETA {eta_precise}]")
                .expect("valid template"),
        );
        bar.set_message(format!("augmenting {} ({})", self.role.plural(), self.retriever));
        bar
    }
}

/// Progress as log lines, for runs whose stderr is a file: done/total, rate and ETA every
/// [`LOG_EVERY`].
struct ProgressLog {
    enabled: bool,
    total: usize,
    done: usize,
    started: Instant,
    last: Instant,
}

impl ProgressLog {
    fn new(enabled: bool, total: usize) -> Self {
        let now = Instant::now();
        Self { enabled, total, done: 0, started: now, last: now }
    }

    fn advance(&mut self, n: usize, what: &str) {
        self.done += n;
        if !self.enabled || (self.last.elapsed() < LOG_EVERY && self.done < self.total) {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64();
        let rate = self.done as f64 / secs.max(1e-9);
        let eta = (self.total - self.done) as f64 / rate.max(1e-9);
        tracing::info!("{what}: {}/{} ({:.2}/s, elapsed {:.0} s, ETA {:.0} s)", self.done, self.total, rate, secs, eta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::KeywordEcho;
    use crate::generator::Generation;

    /// Records the input lengths of every batch.
    #[derive(Default)]
    struct Recorder {
        batches: Vec<Vec<usize>>,
    }

    impl Generator for Recorder {
        fn fingerprint(&self) -> String {
            "recorder".into()
        }

        fn generate(&mut self, requests: &[GenerationRequest], d: &DecodeSettings) -> anyhow::Result<Vec<Generation>> {
            self.batches.push(requests.iter().map(|r| r.user_text.len()).collect());
            KeywordEcho::new().generate(requests, d)
        }
    }

    fn items(lengths: &[usize]) -> Vec<AugmentItem> {
        lengths.iter().enumerate().map(|(i, n)| AugmentItem::new(format!("i{i}"), "w".repeat(*n))).collect()
    }

    #[test]
    fn batches_are_grouped_longest_first_or_kept_in_item_order() {
        let prompts = PromptSet::default();
        let mut job = AugmentJob::new(&prompts, Role::Query, Retriever::Sparse, DecodeSettings::greedy(16));
        job.batch_size = 2;
        let items = items(&[3, 9, 1, 7, 5]);

        let mut grouped = Recorder::default();
        job.run(&mut AugmentStore::open_in_memory().unwrap(), &mut grouped, &items).unwrap();
        assert_eq!(grouped.batches, vec![vec![9, 7], vec![5, 3], vec![1]]);

        job.group_by_length = false;
        let mut in_order = Recorder::default();
        job.run(&mut AugmentStore::open_in_memory().unwrap(), &mut in_order, &items).unwrap();
        assert_eq!(in_order.batches, vec![vec![3, 9], vec![1, 7], vec![5]]);
    }

    #[test]
    fn requests_carry_the_system_prompt_of_role_and_retriever() {
        struct Prompts(Vec<String>);
        impl Generator for Prompts {
            fn fingerprint(&self) -> String {
                "p".into()
            }
            fn generate(&mut self, r: &[GenerationRequest], d: &DecodeSettings) -> anyhow::Result<Vec<Generation>> {
                self.0.extend(r.iter().map(|x| x.system_prompt.clone()));
                KeywordEcho::new().generate(r, d)
            }
        }
        let prompts = PromptSet::default();
        let job = AugmentJob::new(&prompts, Role::Document, Retriever::Dense, DecodeSettings::greedy(16));
        let mut g = Prompts(Vec::new());
        job.run(&mut AugmentStore::open_in_memory().unwrap(), &mut g, &items(&[4])).unwrap();
        assert_eq!(g.0, vec![prompts.get(Role::Document, Retriever::Dense).to_string()]);
    }

    #[test]
    fn zero_batch_size_is_an_error() {
        let prompts = PromptSet::default();
        let mut job = AugmentJob::new(&prompts, Role::Query, Retriever::Sparse, DecodeSettings::greedy(16));
        job.batch_size = 0;
        let err = job.run(&mut AugmentStore::open_in_memory().unwrap(), &mut KeywordEcho::new(), &items(&[1]));
        assert!(err.unwrap_err().to_string().contains("batch size"));
    }
}
