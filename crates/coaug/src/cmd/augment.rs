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
    /// A GGUF file or a HF directory (config.json, *.safetensors, tokenizer.json). Default: the
    /// default model (SmolLM2-135M-Instruct Q4_1), fetched into the cache on first use.
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,

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
        match &self.model {
            Some(p) => Ok(p.clone()),
            None => coaug_lm::fetch_default_model(&coaug_lm::cache_root()).context("fetching the default model"),
        }
    }

    pub fn kv_precision(&self) -> KvPrecision {
        self.kv_cache.parse().expect("clap checked the value")
    }

    pub fn load(&self) -> Result<LmGenerator> {
        let precision = if self.precision == "f32" { Precision::F32 } else { Precision::Quantized };
        let path = self.path()?;
        let started = std::time::Instant::now();
        let generator = LmGenerator::load(&path, precision)?.with_kv_cache(self.kv_precision());
        tracing::info!(model = %path.display(), secs = started.elapsed().as_secs_f64(), "loaded the LM");
        Ok(generator)
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
    pub fn decoding(&self) -> DecodeSettings {
        DecodeSettings { repetition_penalty: self.repetition_penalty, ..DecodeSettings::greedy(self.max_new_tokens) }
    }

    pub fn store_path(&self) -> PathBuf {
        self.store.clone().unwrap_or_else(|| crate::paths::cache_root().join("augment").join("store.sqlite"))
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
            "model {model}; greedy, repetition penalty {}, ≤{} new tokens, input ≤{} tokens, batch {}, {:?} parsing{}",
            self.repetition_penalty,
            self.max_new_tokens,
            self.max_input_tokens,
            self.batch_size,
            self.parse,
            self.prompts.as_ref().map(|p| format!(", prompts {}", p.display())).unwrap_or_default()
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
    let budget = generator.token_budget();
    let mut job = AugmentJob::new(prompts, role, retriever, settings.decoding());
    job.budget = &budget;
    job.max_input_tokens = settings.max_input_tokens;
    job.batch_size = settings.batch_size;
    job.show_progress = true;
    job.parse_policy = settings.parse.policy();
    let report = job.run(store, generator, items)?;
    let found = job.lookup(store, &generator.fingerprint(), items)?;
    Ok((report, found))
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

/// Expands one free-text query through the store (generating it if new) and prints the result.
/// `coaug search` is BM25, so the sparse prompt writes the expansion.
pub fn augment_one_query(model: &ModelArgs, settings: &GenerationArgs, query: &str) -> Result<String> {
    let mut generator = model.load()?;
    let mut store = AugmentStore::open(&settings.store_path())?;
    let prompts = settings.prompt_set()?;
    let items = [AugmentItem::new("query", query)];
    let (report, found) = augment(&mut generator, &mut store, &prompts, settings, Role::Query, Retriever::Sparse, &items)?;
    if report.generated == 0 && found[0].is_some() {
        eprintln!("(augmentation found in the store)");
    }
    let augmentation = found[0].as_ref().map(|a| a.text.as_str()).unwrap_or("");
    let text = coaug_augment::augmented_text(query, augmentation, Role::Query, Retriever::Sparse, Composition::Full);
    println!("augmented query: {}", text.replace('\n', " ⏎ "));
    Ok(text)
}
