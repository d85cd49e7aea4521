//! BERT-family sentence encoder on candle: tokenise, sort by length, run length-bucketed
//! batches (padding only to the longest text of each bucket), pool, normalise.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, IndexOp, Tensor, D};
use candle_nn::VarBuilder;
use indicatif::{ProgressBar, ProgressStyle};
use tokenizers::{Tokenizer, TruncationParams};

use crate::bert::{BertConfig, BertModel};
use crate::embeddings::Embeddings;
use crate::setup::{EncoderSetup, Pooling};

/// How texts are grouped into forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Padded tokens (texts × longest text) per forward pass: large enough for efficient
    /// matrix products, small enough that attention scores stay in cache-friendly sizes.
    pub max_tokens: usize,
    /// Texts per forward pass.
    pub max_texts: usize,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        Self { max_tokens: 8192, max_texts: 128 }
    }
}

/// Groups texts into batches of similar length: indices sorted by length (longest first,
/// ties by index for determinism), cut whenever the padded size would exceed the policy.
pub fn plan_batches(lengths: &[usize], policy: BatchPolicy) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        // Sorted longest first, so the batch's first text sets its padded width.
        let width = current.first().map_or(lengths[i], |&f| lengths[f]).max(1);
        if !current.is_empty() && ((current.len() + 1) * width > policy.max_tokens || current.len() >= policy.max_texts) {
            batches.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// A sentence encoder: BERT weights, its tokenizer and the pooling/normalisation setup.
pub struct SentenceEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
    setup: EncoderSetup,
    dim: usize,
    layers: usize,
    intermediate: usize,
    device: Device,
    name: String,
    policy: BatchPolicy,
}

impl SentenceEncoder {
    /// Loads a Hugging Face / sentence-transformers BERT folder (`config.json`,
    /// `model.safetensors`, `tokenizer.json`, optional sentence-transformers files).
    pub fn load(dir: &Path) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config: BertConfig =
            serde_json::from_str(&std::fs::read_to_string(&config_path).with_context(|| format!("reading {}", config_path.display()))?)
                .with_context(|| format!("{} is not a BERT config", config_path.display()))?;
        let weights = weight_files(dir)?;
        let device = Device::Cpu;
        // SAFETY: the weight files are memory-mapped read-only; coaug never writes them while loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&weights, DType::F32, &device) }
            .with_context(|| format!("mapping the weights in {}", dir.display()))?;
        let model = BertModel::load(vb, &config).with_context(|| format!("loading BERT weights from {}", dir.display()))?;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| anyhow::anyhow!("loading {}: {e}", tok_path.display()))?;
        let setup = EncoderSetup::read(dir, config.max_position_embeddings)?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "encoder".into());
        Self::from_parts(model, &config, tokenizer, setup, name)
    }

    /// Assembles an encoder from loaded parts (tests build a tiny random BERT this way).
    pub fn from_parts(model: BertModel, config: &BertConfig, mut tokenizer: Tokenizer, setup: EncoderSetup, name: String) -> Result<Self> {
        if setup.max_length < 2 {
            bail!("max_length {} leaves no room for [CLS] and [SEP]", setup.max_length);
        }
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: setup.max_length, ..Default::default() }))
            .map_err(|e| anyhow::anyhow!("setting truncation: {e}"))?;
        let device = Device::Cpu;
        Ok(Self {
            model,
            tokenizer,
            setup,
            dim: config.hidden_size,
            layers: config.num_hidden_layers,
            intermediate: config.intermediate_size,
            device,
            name,
            policy: BatchPolicy::default(),
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn intermediate_size(&self) -> usize {
        self.intermediate
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn setup(&self) -> &EncoderSetup {
        &self.setup
    }

    /// Replaces (or removes) the instruction prepended to queries.
    pub fn set_query_prefix(&mut self, prefix: Option<String>) {
        self.setup.query_prefix = prefix;
    }

    /// Shortens the truncation length (never beyond what the model can take).
    pub fn set_max_length(&mut self, max_length: usize) -> Result<()> {
        if !(2..=self.setup.max_length).contains(&max_length) {
            bail!("max_length must be in 2..={}", self.setup.max_length);
        }
        self.setup.max_length = max_length;
        self.tokenizer
            .with_truncation(Some(TruncationParams { max_length, ..Default::default() }))
            .map_err(|e| anyhow::anyhow!("setting truncation: {e}"))?;
        Ok(())
    }

    pub fn set_batch_policy(&mut self, policy: BatchPolicy) {
        self.policy = policy;
    }

    pub fn batch_policy(&self) -> BatchPolicy {
        self.policy
    }

    /// Floating-point operations of one padded token position in a batch `width` wide:
    /// the four attention projections and the feed-forward pair (2·h·(4h + 2f) per layer)
    /// plus scores and weighted sum (4·width·h per layer). Embeddings, norms and
    /// activations are ignored (they are not matrix products).
    pub fn flops_per_token(&self, width: f64) -> f64 {
        let h = self.dim as f64;
        let f = self.intermediate as f64;
        self.layers as f64 * (2.0 * h * (4.0 * h + 2.0 * f) + 4.0 * width * h)
    }

    /// (padded tokens, sum over batches of padded tokens × width) of encoding `ids`, to
    /// turn a measured time into FLOP/s.
    pub fn padding_plan(&self, ids: &[Vec<u32>]) -> (usize, f64) {
        let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
        let mut padded = 0;
        let mut flops = 0.0;
        for batch in plan_batches(&lengths, self.policy) {
            let width = batch.iter().map(|&i| lengths[i]).max().unwrap_or(0);
            padded += width * batch.len();
            flops += (width * batch.len()) as f64 * self.flops_per_token(width as f64);
        }
        (padded, flops)
    }

    /// Token ids with `[CLS]`/`[SEP]`, truncated to `max_length`.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
        Ok(encodings.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Embeds documents (passages) as they are.
    pub fn encode_documents(&self, texts: &[&str], progress: bool) -> Result<Embeddings> {
        let ids = self.tokenize(texts)?;
        self.encode_ids(&ids, progress)
    }

    /// Embeds queries, with the query instruction prepended when the encoder has one.
    pub fn encode_queries(&self, texts: &[&str], progress: bool) -> Result<Embeddings> {
        match &self.setup.query_prefix {
            Some(prefix) => {
                let prefixed: Vec<String> = texts.iter().map(|t| format!("{prefix}{t}")).collect();
                let refs: Vec<&str> = prefixed.iter().map(String::as_str).collect();
                self.encode_documents(&refs, progress)
            }
            None => self.encode_documents(texts, progress),
        }
    }

    /// Embeds pre-tokenised texts, in input order.
    pub fn encode_ids(&self, ids: &[Vec<u32>], progress: bool) -> Result<Embeddings> {
        let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
        let batches = plan_batches(&lengths, self.policy);
        let bar = if progress { ProgressBar::new(ids.len() as u64) } else { ProgressBar::hidden() };
        bar.set_style(ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} texts, {per_sec}, ETA {eta}").expect("valid template"));
        bar.set_prefix(format!("encoding ({})", self.name));
        let mut out = vec![0f32; ids.len() * self.dim];
        for batch in &batches {
            let rows: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
            let pooled = self.forward_batch(&rows)?;
            for (j, &i) in batch.iter().enumerate() {
                out[i * self.dim..(i + 1) * self.dim].copy_from_slice(&pooled[j * self.dim..(j + 1) * self.dim]);
            }
            bar.inc(batch.len() as u64);
        }
        bar.finish_and_clear();
        Ok(Embeddings::new(self.dim, out))
    }

    /// One padded forward pass; returns pooled (and normalised) vectors, row-major.
    fn forward_batch(&self, rows: &[&[u32]]) -> Result<Vec<f32>> {
        let width = rows.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
        let n = rows.len();
        let mut input = vec![0u32; n * width];
        let mut mask = vec![0u32; n * width];
        for (b, row) in rows.iter().enumerate() {
            input[b * width..b * width + row.len()].copy_from_slice(row);
            mask[b * width..b * width + row.len()].fill(1);
        }
        let input = Tensor::from_vec(input, (n, width), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, width), &self.device)?;
        let states = self.model.forward(&input, &mask)?; // (n, width, dim)
        let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, width, 1)
        let pooled = match self.setup.pooling {
            Pooling::Cls => states.i((.., 0, ..))?.contiguous()?,
            Pooling::Mean => {
                let sum = states.broadcast_mul(&maskf)?.sum(1)?;
                sum.broadcast_div(&maskf.sum(1)?.clamp(1e-9f32, f32::MAX)?)?
            }
            Pooling::Max => {
                // Padding must never win the maximum: push it far below any real state.
                let penalty = ((maskf.ones_like()? - &maskf)? * -1e9f64)?;
                states.broadcast_add(&penalty)?.max(1)?
            }
        };
        let pooled = if self.setup.normalize {
            let norm = pooled.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
            pooled.broadcast_div(&norm)?
        } else {
            pooled
        };
        Ok(pooled.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// `model.safetensors`, or the shards listed by `model.safetensors.index.json`.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&index)?).with_context(|| format!("parsing {}", index.display()))?;
        let mut files: Vec<String> = v["weight_map"]
            .as_object()
            .with_context(|| format!("{} has no weight_map", index.display()))?
            .values()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    bail!("{} has no model.safetensors (PyTorch .bin weights are not supported; convert them to safetensors)", dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_group_similar_lengths_within_the_budget() {
        let lengths = [5, 100, 7, 98, 6, 99];
        let policy = BatchPolicy { max_tokens: 300, max_texts: 8 };
        let batches = plan_batches(&lengths, policy);
        assert_eq!(batches, vec![vec![1, 5, 3], vec![2, 4, 0]]);
        for b in &batches {
            let width = b.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(b.len() * width <= policy.max_tokens);
        }
        let capped = plan_batches(&lengths, BatchPolicy { max_tokens: 10_000, max_texts: 4 });
        assert_eq!(capped.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 2]);
        // Every index exactly once, even when one text alone exceeds the budget.
        let mut all: Vec<usize> = plan_batches(&lengths, BatchPolicy { max_tokens: 50, max_texts: 8 }).concat();
        all.sort();
        assert_eq!(all, (0..6).collect::<Vec<_>>());
    }
}
