//! What a training step and a validation report, one JSON object per line.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One step's numbers (`metrics.jsonl`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: u64,
    /// Mean reward of the query rollouts: their expected nDCG@k over the step's documents.
    pub reward_query: f64,
    pub reward_positive_document: f64,
    pub reward_negative_document: f64,
    /// nDCG@k of the query rollouts against the *original* documents (no document
    /// augmentation), which isolates what the query side learned.
    pub ndcg_query_rollouts: f64,
    pub format_valid_query: f64,
    pub format_valid_document: f64,
    /// Mean generated tokens per reply.
    pub response_tokens_query: f64,
    pub response_tokens_document: f64,
    /// Mean over query prompts of the standard deviation of their rollouts' rewards: how much
    /// the n rollouts of a prompt differ (no spread, no signal).
    #[serde(default)]
    pub reward_spread_query: f64,
    /// The same over document prompts.
    #[serde(default)]
    pub reward_spread_document: f64,
    /// Share of prompts whose rollouts all got a zero advantage (they teach nothing).
    #[serde(default)]
    pub zero_advantage_prompts: f64,
    pub nonzero_advantages: usize,
    /// True when every advantage was 0 and the update was skipped.
    pub skipped: bool,
    pub loss: f64,
    pub clip_fraction: f64,
    pub kl: f64,
    pub entropy: f64,
    pub approx_kl_to_old: f64,
    pub grad_norm: f64,
    pub generation_s: f64,
    pub reward_s: f64,
    pub update_s: f64,
    pub step_s: f64,
}

/// One validation (`validation.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationMetrics {
    /// Optimizer steps taken before it (0: the base model).
    pub step: u64,
    /// Queries alone, or queries and the document pool.
    #[serde(default = "query_kind")]
    pub kind: ValidationKind,
    pub ndcg_at_10: f64,
    pub queries: usize,
    pub augmented_documents: usize,
    pub format_valid: f64,
    pub seconds: f64,
    /// nDCG@10 of every validation query.
    #[serde(default)]
    pub per_query: std::collections::BTreeMap<String, f64>,
    /// The paired difference from the same kind's validation at step 0, over the same queries
    /// (mean and bootstrap 95% interval).
    #[serde(default)]
    pub delta_vs_start: Option<coaug_eval::PairedDelta>,
}

fn query_kind() -> ValidationKind {
    ValidationKind::Query
}

impl ValidationMetrics {
    /// Fills [`Self::delta_vs_start`] from `start`'s per-query values (queries both have).
    pub fn compare_with(&mut self, start: &ValidationMetrics) {
        let deltas: Vec<f64> = self.per_query.iter().filter_map(|(q, v)| start.per_query.get(q).map(|s| v - s)).collect();
        self.delta_vs_start = Some(coaug_eval::bootstrap_deltas(&deltas, coaug_eval::DEFAULT_RESAMPLES, 0));
    }
}

/// Appends one record as a JSON line.
pub fn append_jsonl<T: Serialize>(path: &Path, record: &T) -> Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{}", serde_json::to_string(record)?)?;
    Ok(())
}

/// Records of a JSONL file (none when it does not exist).
pub fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    BufReader::new(file)
        .lines()
        .filter(|l| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .enumerate()
        .map(|(i, line)| serde_json::from_str(&line?).with_context(|| format!("{} line {}", path.display(), i + 1)))
        .collect()
}

/// Keeps only the records before `step` (a resumed run redoes the later ones).
pub fn truncate_jsonl_from_step(path: &Path, step: u64) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path)?;
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                .is_some_and(|s| s < step)
        })
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    std::fs::write(path, out)?;
    Ok(())
}

/// What a validation run augments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidationKind {
    /// The queries alone, against the corpus as it is.
    Query,
    /// The queries and the document pool.
    Both,
}
