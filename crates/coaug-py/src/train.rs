//! `coaug.train`: the RL trainer of `coaug train`, in the same run directory protocol
//! (`coaug_rl::run`: config, metrics and validation lines, checkpoints, resume), on the CPU and
//! the sparse (BM25) retriever.

use std::path::PathBuf;

use coaug_augment::{PromptSet, Retriever};
use coaug_data::Dataset;
use coaug_lm::{Architecture, CausalLm, Device, LmTokenizer, ModelConfig};
use coaug_rl::run::{self, ConfigSource, RunEvent, TrainRun};
use coaug_rl::{Policy, TrainConfig, PRESETS};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::augment::report_progress;
use crate::convert::{expand_home, is_path};
use crate::errors::{not_found, value_error, IntoPyResult};

/// The `config` argument: a dict, a TOML file, a preset's name, or None (the saved config of a
/// resumed run, else `cpu-small`).
fn config_source(py: Python<'_>, config: Option<&Bound<'_, PyAny>>, dir: &std::path::Path, resume: bool) -> PyResult<TrainConfig> {
    let resolved = match config.filter(|c| !c.is_none()) {
        None => run::run_config(None, "cpu-small", dir, resume),
        Some(c) if c.hasattr("keys")? => {
            let text: String = py.import("json")?.call_method1("dumps", (crate::convert::as_dict(c, "config")?,))?.extract()?;
            let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| value_error(format!("config: {e}")))?;
            run::run_config(Some(ConfigSource::Json { value, source_name: "the config dict" }), "cpu-small", dir, resume)
        }
        Some(c) => {
            let text = if c.is_instance_of::<PyString>() { c.extract::<String>()? } else { c.str()?.to_string() };
            let path = expand_home(std::path::Path::new(&text));
            if PRESETS.contains(&text.as_str()) && !path.exists() {
                run::run_config(Some(ConfigSource::Preset(&text)), "cpu-small", dir, resume)
            } else if path.is_file() {
                run::run_config(Some(ConfigSource::File(&path)), "cpu-small", dir, resume)
            } else if is_path(&text) || text.ends_with(".toml") {
                return Err(not_found(format!("config {text:?}: no such file")));
            } else {
                return Err(value_error(format!(
                    "config {text:?}: not a preset ({}), a TOML file or a dict of settings",
                    PRESETS.join(", ")
                )));
            }
        }
    };
    resolved.map_err(|e| value_error(format!("{e:#}")))
}

/// RL training of the policy LM, as `coaug train` (same run directory, same resume): returns
/// `{run_dir, steps, total_steps, resumed_at, checkpoint, metrics, validation}`.
///
/// `config`: a TOML file, a dict of the same settings (an optional `"preset"` plus overrides), a
/// preset's name (`"cpu-small"`, `"paper"`), or None (the saved config when resuming, else
/// `cpu-small`). `dataset`: a BEIR folder or a name looked up in `data_dir`. `out`: the run
/// directory (`runs/train-<dataset>`). `model`: the policy's weights (the config's model
/// otherwise). `steps`: the cap on optimizer steps (`--max-steps`). `resume`: continue from the
/// latest checkpoint in `out`. `progress`: `callback(done, total)` or a tqdm bar, after every
/// step. CPU and the sparse (BM25) retriever only. Ctrl-C stops between steps with a checkpoint
/// of the last one. A bad config raises `ValueError`.
#[pyfunction]
#[pyo3(signature = (
    config = None, *, dataset, data_dir = None, out = None, model = None, prompts = None, steps = None,
    seed = None, resume = false, progress = None
))]
#[allow(clippy::too_many_arguments)]
pub fn train<'py>(
    py: Python<'py>,
    config: Option<&Bound<'py, PyAny>>,
    dataset: PathBuf,
    data_dir: Option<PathBuf>,
    out: Option<PathBuf>,
    model: Option<String>,
    prompts: Option<PathBuf>,
    steps: Option<u64>,
    seed: Option<u64>,
    resume: bool,
    progress: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let arg = dataset.to_string_lossy().into_owned();
    let dataset = py
        .detach(|| -> anyhow::Result<Dataset> {
            Ok(if is_path(&arg) { Dataset::open(expand_home(&dataset))? } else { coaug_data::resolve(&arg, data_dir.as_deref())? })
        })
        .py_err()?;
    let dir = out.map(|o| expand_home(&o)).unwrap_or_else(|| PathBuf::from(format!("runs/train-{}", dataset.name())));
    let mut config = config_source(py, config, &dir, resume)?;
    if let Some(cap) = steps {
        if cap == 0 {
            return Err(value_error("steps must be positive, got 0"));
        }
        config.schedule.max_steps = Some(cap);
    }
    if let Some(seed) = seed {
        config.seed = seed;
    }
    config.validate().map_err(|e| value_error(format!("{e:#}")))?;
    if config.retriever == Retriever::Dense {
        return Err(value_error("retriever = \"dense\" is not available from Python yet: run `coaug train --retriever dense`"));
    }
    if let Some(p) = &prompts {
        if !p.is_file() {
            return Err(not_found(format!("{}: no such prompts file", p.display())));
        }
    }
    if let Some(spec) = &model {
        let looks_like_path = spec.starts_with('/') || spec.starts_with('.') || spec.starts_with('~') || spec.ends_with(".gguf");
        if looks_like_path && !expand_home(std::path::Path::new(spec)).exists() {
            return Err(not_found(format!("{spec}: no such model file or folder")));
        }
    }

    let device = Device::Cpu;
    let mut run = py
        .detach(|| -> anyhow::Result<TrainRun> {
            run::start_dir(&dir, &config)?;
            let model_path = run::model_path(model.as_deref(), &config)?;
            let policy = Policy::load(&model_path, &config, &device)?;
            let prompts = match &prompts {
                Some(path) => PromptSet::load(path)?,
                None => PromptSet::default(),
            };
            TrainRun::prepare(&dataset, config, &dir, resume, policy, prompts, None, &device)
        })
        .py_err()?;

    let mut validations: Vec<String> = Vec::new();
    let mut metrics: Vec<String> = Vec::new();
    let resumed_at = run.resumed_at();
    let total = run.trainer().total_steps();
    py.detach(|| run.begin(&mut |e| record(e, &mut validations))).py_err()?;
    while !run.is_done() {
        let m = py.detach(|| run.step(&mut |e| record(e, &mut validations))).py_err()?;
        metrics.push(serde_json::to_string(&m).map_err(|e| value_error(e.to_string()))?);
        let done = run.trainer().step_index() as usize;
        // Ctrl-C (or an exception from the progress callback) stops between steps, with a
        // checkpoint at this step so that `resume=True` continues from here.
        if let Err(stop) = py.check_signals().and_then(|_| report_progress(progress, done, 1, total as usize)) {
            py.detach(|| run.checkpoint_now()).py_err()?;
            return Err(stop);
        }
    }
    py.detach(|| run.finish(&mut |e| record(e, &mut validations))).py_err()?;

    let json = py.import("json")?;
    let loads = |lines: &[String]| -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for line in lines {
            list.append(json.call_method1("loads", (line,))?)?;
        }
        Ok(list)
    };
    let result = PyDict::new(py);
    result.set_item("run_dir", run.dir().to_path_buf())?;
    result.set_item("steps", run.trainer().step_index())?;
    result.set_item("total_steps", total)?;
    result.set_item("resumed_at", resumed_at)?;
    let checkpoint = run::latest_checkpoint(run.dir()).py_err()?.map(|(_, path)| path);
    result.set_item("checkpoint", checkpoint)?;
    result.set_item("metrics", loads(&metrics)?)?;
    result.set_item("validation", loads(&validations)?)?;
    Ok(result)
}

fn record(event: RunEvent<'_>, validations: &mut Vec<String>) {
    if let RunEvent::Validated(m) = event {
        if let Ok(line) = serde_json::to_string(m) {
            validations.push(line);
        }
    }
}

/// Writes a tiny randomly initialised Llama (3 blocks, hidden size 32) with a word-level tokenizer
/// of `words` (ChatML's markers added first) as an HF folder: a model to train and augment with
/// in tests, in milliseconds. Its replies are noise made of `words`.
#[pyfunction]
#[pyo3(signature = (path, words, *, seed = 0))]
pub fn write_tiny_model(py: Python<'_>, path: PathBuf, words: Vec<String>, seed: u64) -> PyResult<PathBuf> {
    let mut vocabulary: Vec<String> = LmTokenizer::TINY_MARKERS.iter().map(|s| s.to_string()).collect();
    for w in words {
        if w.is_empty() || w.chars().any(char::is_whitespace) {
            return Err(value_error(format!("words: {w:?} is not one word")));
        }
        if !vocabulary.contains(&w) {
            vocabulary.push(w);
        }
    }
    py.detach(|| -> anyhow::Result<()> {
        let tokenizer = LmTokenizer::word_level(&vocabulary)?;
        let mut cfg = ModelConfig::tiny(Architecture::Llama, vocabulary.len());
        cfg.max_position_embeddings = 4096;
        cfg.eos_token_id = Some(0);
        let model = CausalLm::random(&cfg, seed, &Device::Cpu)?;
        coaug_lm::export_hf(&model, &tokenizer, &path)
    })
    .py_err()?;
    Ok(path)
}
