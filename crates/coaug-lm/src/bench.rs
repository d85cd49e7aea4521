//! Throughput measurements for `coaug bench lm`: prefill, single-stream and batched
//! decode, training steps, peak memory, and the f32 matmul rate that bounds them.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::infer::generate::{generate, generate_timed, PromptBatch};
use crate::infer::sampler::SamplingParams;
use crate::kernels::cpu_f32::{matmul, MatMut, MatRef, Threads};
use crate::model::cache::KvPrecision;
use crate::model::linear::Dense;
use crate::model::load::Precision;
use crate::model::Pass;
use crate::model::{AttentionInput, CausalLm};
use crate::text::chat::ChatRole;
use crate::text::tokenizer::LmTokenizer;
use crate::train::optim::{AdamW, AdamWConfig};
use crate::train::scoring::score;
use crate::train::trainable::TrainableSet;

/// What to measure. Defaults mirror the llama.cpp peer script (`llamacpp_bench.py`).
#[derive(Debug, Clone)]
pub struct LmBenchOptions {
    /// Tokens of the single-stream prefill prompt.
    pub prefill_tokens: usize,
    /// Greedy tokens decoded single-stream.
    pub single_decode_tokens: usize,
    /// Batch sizes for batched generation.
    pub batch_sizes: Vec<usize>,
    /// Prompt tokens per sequence in batched generation.
    pub batch_prompt_tokens: usize,
    /// Tokens generated per sequence in batched generation.
    pub batch_new_tokens: usize,
    /// KV cache of batched generation (f16, as `coaug augment` generates). The largest batch
    /// also runs with the other precision, for comparison.
    pub batch_kv_cache: KvPrecision,
    /// Training micro-batch: sequences × tokens.
    pub train_batch: (usize, usize),
    pub train_set: TrainableSet,
    /// Skip the (slow) training measurement.
    pub skip_train: bool,
}

impl Default for LmBenchOptions {
    fn default() -> Self {
        LmBenchOptions {
            prefill_tokens: 400,
            single_decode_tokens: 128,
            batch_sizes: vec![16, 64],
            batch_prompt_tokens: 300,
            batch_new_tokens: 64,
            batch_kv_cache: KvPrecision::Q8,
            train_batch: (8, 256),
            train_set: TrainableSet::All,
            skip_train: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchedFigures {
    pub batch: usize,
    /// `f16` or `f32`.
    pub kv_cache: String,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    pub prefill_s: f64,
    pub decode_s: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    /// (prompt + generated tokens) / total time.
    pub total_tok_s: f64,
    /// The same run's tokens over the time its f32 matrix products alone take at the rates
    /// measured for their shapes: the projections (prefill's at 2048 rows, decoding's at the
    /// batch's rows, the vocabulary projection only where a token is sampled) and the prompts'
    /// attention products (see `workload_seconds`). The compute limit of this workload.
    pub matmul_limit_tok_s: f64,
    /// The same with the projections alone (this benchmark's limit before it counted the
    /// attention products).
    pub projection_limit_tok_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MatmulFigure {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub gflops: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LmBenchReport {
    pub threads: usize,
    pub prefill_tok_s_quantized: f64,
    pub prefill_tok_s_f32: f64,
    pub single_decode_tok_s_quantized: f64,
    pub single_decode_tok_s_f32: f64,
    /// Batched generation on the f32 weights (the fast path for large batches).
    pub batched: Vec<BatchedFigures>,
    pub train_tok_s: Option<f64>,
    pub train_step_s: Option<f64>,
    pub peak_rss_mb: f64,
    pub matmul: Vec<MatmulFigure>,
    /// Best f32 matmul rate over the model's shapes: the compute limit.
    pub matmul_gflops: f64,
    /// Model FLOPs per generated token (2 × matmul parameters, attention excluded).
    pub flops_per_token: f64,
}

/// Runs every measurement on the GGUF at `model_path` (CPU).
pub fn bench_lm(model_path: &Path, opts: &LmBenchOptions) -> Result<LmBenchReport> {
    bench_lm_with_progress(model_path, opts, &mut |_| {})
}

/// Number of measurement stages [`bench_lm_with_progress`] reports.
pub fn bench_stages(opts: &LmBenchOptions) -> usize {
    5 + opts.batch_sizes.len() + usize::from(!opts.batch_sizes.is_empty()) + usize::from(!opts.skip_train) + 1
}

/// [`bench_lm`], calling `stage` with a label before each of its [`bench_stages`] stages.
pub fn bench_lm_with_progress(model_path: &Path, opts: &LmBenchOptions, stage: &mut dyn FnMut(&str)) -> Result<LmBenchReport> {
    let device = Device::Cpu;
    stage("loading the model (quantized and f32)");
    let tok = LmTokenizer::from_gguf(model_path)?;
    let quant = CausalLm::from_gguf(model_path, Precision::Quantized, &device)?;
    let mut dense = CausalLm::from_gguf(model_path, Precision::F32, &device)?;
    // As `coaug augment` holds it (the training measurement's copy drops the extra copies).
    dense.prepare_for_decoding()?;
    let filler = filler_prompt(&tok, opts.prefill_tokens)?;

    stage("prefill, quantized");
    let prefill_tok_s_quantized = prefill_rate(&quant, &filler)?;
    stage("prefill, f32");
    let prefill_tok_s_f32 = prefill_rate(&dense, &filler)?;
    let short = tok.chat_ids(
        &[
            (ChatRole::System, "You are a helpful assistant."),
            (ChatRole::User, "Explain why regular exercise is good for cardiovascular health."),
        ],
        true,
    )?;
    stage("single-stream decode, quantized");
    let single_decode_tok_s_quantized = single_decode_rate(&quant, &short, opts.single_decode_tokens)?;
    stage("single-stream decode, f32");
    let single_decode_tok_s_f32 = single_decode_rate(&dense, &short, opts.single_decode_tokens)?;

    let mut batched = Vec::new();
    // The largest batch also runs with each other KV cache, for the comparison.
    let others: Vec<KvPrecision> =
        [KvPrecision::Q8, KvPrecision::F16, KvPrecision::F32].into_iter().filter(|&kv| kv != opts.batch_kv_cache).collect();
    let largest = opts.batch_sizes.iter().copied().max();
    let runs = opts
        .batch_sizes
        .iter()
        .map(|&b| (b, opts.batch_kv_cache))
        .chain(largest.into_iter().flat_map(|b| others.iter().map(move |&kv| (b, kv))));
    for (b, kv) in runs {
        stage(&format!("batched generation, {b} sequences, {} KV cache", kv.name()));
        batched.push(batched_rate(&dense, &tok, b, opts.batch_prompt_tokens, opts.batch_new_tokens, kv)?);
    }
    let (train_tok_s, train_step_s) = if opts.skip_train {
        (None, None)
    } else {
        stage(&format!("training step ({}×{}, {:?})", opts.train_batch.0, opts.train_batch.1, opts.train_set));
        let (r, s) = train_rate(&dense, opts.train_batch, &opts.train_set)?;
        (Some(r), Some(s))
    };
    let cfg = dense.config();
    let (d, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let (q, kv) = (cfg.q_dim(), cfg.kv_dim());
    let mut shapes = vec![];
    // A decoding step multiplies as many rows as the batch has sequences.
    let mut decode_rows = opts.batch_sizes.clone();
    decode_rows.sort_unstable();
    decode_rows.dedup();
    for &rows in decode_rows.iter().chain([&PREFILL_ROWS]) {
        for (k, n) in [(d, q), (d, kv), (q, d), (d, f), (f, d)] {
            if !shapes.contains(&(rows, k, n)) {
                shapes.push((rows, k, n));
            }
        }
    }
    for &rows in &decode_rows {
        shapes.push((rows, d, v));
    }
    let (scores, mix) = attention_shapes(cfg);
    shapes.extend([scores, mix]);
    stage("f32 matmul rate");
    let matmul: Vec<MatmulFigure> = shapes.iter().map(|&(m, k, n)| matmul_rate(m, k, n)).collect::<Result<_>>()?;
    let matmul_gflops = matmul.iter().map(|x| x.gflops).fold(0.0, f64::max);
    for b in &mut batched {
        let w = workload_seconds(cfg, &matmul, b);
        let tokens = (b.prompt_tokens + b.new_tokens) as f64;
        b.matmul_limit_tok_s = tokens / (w.projections + w.attention);
        b.projection_limit_tok_s = tokens / w.projections;
    }
    let per_layer = cfg.q_dim() * d * 2 + cfg.kv_dim() * d * 2 + 3 * d * f;
    let flops_per_token = 2.0 * (cfg.num_layers * per_layer + v * d) as f64;
    Ok(LmBenchReport {
        threads: rayon::current_num_threads(),
        prefill_tok_s_quantized,
        prefill_tok_s_f32,
        single_decode_tok_s_quantized,
        single_decode_tok_s_f32,
        batched,
        train_tok_s,
        train_step_s,
        peak_rss_mb: peak_rss_mb(),
        matmul,
        matmul_gflops,
        flops_per_token,
    })
}

/// Rows of the matmul shapes measured for prefill (decoding's are the batch sizes).
const PREFILL_ROWS: usize = 2048;

/// Queries per attention product in a prefill, and the slots a product's chunk sees for the
/// measured shape: the mean over a causal 300-token prompt's chunks is ~180.
const ATTENTION_QUERIES: usize = 64;
const ATTENTION_SLOTS: usize = 192;

/// The prefill's two attention products as `(m, k, n)`: a chunk's scores, all heads of a kv
/// group against the slots (`(queries · heads per group, head dim) × (head dim, slots)`), and
/// one head's weighted values (`(queries, slots) × (slots, head dim)`).
fn attention_shapes(cfg: &crate::ModelConfig) -> ((usize, usize, usize), (usize, usize, usize)) {
    let rep = cfg.num_heads / cfg.num_kv_heads.max(1);
    ((ATTENTION_QUERIES * rep, cfg.head_dim, ATTENTION_SLOTS), (ATTENTION_QUERIES, ATTENTION_SLOTS, cfg.head_dim))
}

/// Seconds a batched run's f32 matrix products take at their shapes' measured rates.
struct WorkloadSeconds {
    /// Every prompt and generated token passes every block's seven projections, and the
    /// vocabulary projection runs once per sampled token (the prompt's last position and each
    /// generated token but the last).
    projections: f64,
    /// The prompts' scores and weighted values, at the causal minimum: query `i` against
    /// slots `0..=i`, `2 · head_dim` FLOPs per head for each product (the run computes more,
    /// chunks see a few slots past their queries). A decoding step's attention is left out:
    /// it reads each cached row once, bounded by memory rather than by these rates.
    attention: f64,
}

fn workload_seconds(cfg: &crate::ModelConfig, rates: &[MatmulFigure], b: &BatchedFigures) -> WorkloadSeconds {
    let (d, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let (q, kv) = (cfg.q_dim(), cfg.kv_dim());
    let rate = |(m, k, n): (usize, usize, usize)| rates.iter().find(|x| (x.m, x.k, x.n) == (m, k, n)).map_or(f64::NAN, |x| x.gflops * 1e9);
    let seconds_per_row = |rows: usize, k: usize, n: usize| 2.0 * (k * n) as f64 / rate((rows, k, n));
    let block = |rows: usize| -> f64 {
        let s = |k, n| seconds_per_row(rows, k, n);
        cfg.num_layers as f64 * (s(d, q) + 2.0 * s(d, kv) + s(q, d) + 2.0 * s(d, f) + s(f, d))
    };
    let sampled = b.new_tokens as f64;
    let projections = b.prompt_tokens as f64 * block(PREFILL_ROWS)
        + (b.new_tokens - b.batch) as f64 * block(b.batch)
        + sampled * seconds_per_row(b.batch, d, v);
    let t = b.prompt_tokens as f64 / b.batch as f64;
    let pairs = b.batch as f64 * t * (t + 1.0) / 2.0;
    let flops = pairs * (cfg.num_layers * cfg.num_heads) as f64 * 2.0 * cfg.head_dim as f64;
    let (scores, mix) = attention_shapes(cfg);
    WorkloadSeconds { projections, attention: flops / rate(scores) + flops / rate(mix) }
}

const FILLER: &str = "Dietary fibre, found in whole grains, legumes, fruits and vegetables, is associated with a lower risk \
of cardiovascular disease, type 2 diabetes and colorectal cancer. Randomised trials suggest that soluble fibre reduces \
LDL cholesterol, while observational cohorts link higher intake to lower all-cause mortality. Mechanisms include \
fermentation by gut microbiota into short-chain fatty acids, improved insulin sensitivity and reduced inflammation. ";

/// A chat prompt of exactly `n` tokens in the model's template (user text cut to fit).
pub fn filler_prompt(tok: &LmTokenizer, n: usize) -> Result<Vec<u32>> {
    let chat = tok.chat_prompt("You are a helpful assistant.")?;
    let head = [chat.prefix.clone(), tok.encode("Summarize: ")?].concat();
    let tail = tok.encode(chat.suffix())?;
    let body_len = n.saturating_sub(head.len() + tail.len());
    let mut body = Vec::new();
    while body.len() < body_len {
        body.extend(tok.encode(FILLER)?);
    }
    body.truncate(body_len);
    Ok([head, body, tail].concat())
}

pub fn prefill_rate(model: &CausalLm, prompt: &[u32]) -> Result<f64> {
    let device = model.device();
    let t = prompt.len();
    let ids = Tensor::from_vec(prompt.to_vec(), (1, t), device)?;
    let attn = AttentionInput::causal(1, t, device)?;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let h = model.forward_hidden(&ids, &attn, None, Pass::Infer)?;
        model.logits(&h.narrow(1, t - 1, 1)?.squeeze(1)?, Pass::Infer)?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(t as f64 / best)
}

pub fn single_decode_rate(model: &CausalLm, prompt: &[u32], n: usize) -> Result<f64> {
    let time = |max_new: usize| -> Result<f64> {
        let prompts = [prompt.to_vec()];
        let req = PromptBatch { prefix: &[], prompts: &prompts, stop_ids: &[], pad_id: 0 };
        let start = Instant::now();
        generate(model, &req, &SamplingParams::greedy(max_new))?;
        Ok(start.elapsed().as_secs_f64())
    };
    time(4)?; // warm-up
    let prefill_only = time(1)?;
    let full = time(n + 1)?;
    Ok(n as f64 / (full - prefill_only).max(1e-9))
}

/// Timed runs of each batched generation; the fastest counts.
const BATCHED_RUNS: usize = 3;

pub fn batched_rate(
    model: &CausalLm,
    tok: &LmTokenizer,
    batch: usize,
    plen: usize,
    gen: usize,
    kv_cache: KvPrecision,
) -> Result<BatchedFigures> {
    let base = filler_prompt(tok, plen)?;
    // Distinct prompts (rotate the body) so nothing is shared between rows.
    let prompts: Vec<Vec<u32>> = (0..batch)
        .map(|i| {
            let mut p = base.clone();
            let body = 20..plen.saturating_sub(12).max(21);
            if body.end <= p.len() {
                p[body].rotate_left(i % 50);
            }
            p
        })
        .collect();
    let req = PromptBatch { prefix: &[], prompts: &prompts, stop_ids: &[], pad_id: tok.pad_id() };
    let greedy = |n| SamplingParams { kv_cache, ..SamplingParams::greedy(n) };
    generate(model, &req, &greedy(2))?; // warm-up (allocator, thread pool)
                                        // The fastest of three runs, as the matmul limit it is compared with keeps the best of its
                                        // three timing windows: a busy moment on a shared machine should lower neither side.
    let mut best: Option<crate::GenerationTiming> = None;
    for _ in 0..BATCHED_RUNS {
        let (_, timing) = generate_timed(model, &req, &greedy(gen))?;
        if best.as_ref().is_none_or(|b| timing.prefill_s + timing.decode_s < b.prefill_s + b.decode_s) {
            best = Some(timing);
        }
    }
    let timing = best.expect("at least one run");
    let (prefill_s, decode_s) = (timing.prefill_s, timing.decode_s.max(1e-9));
    let total_s = prefill_s + decode_s;
    let prompt_tokens: usize = prompts.iter().map(|p| p.len()).sum();
    let new_tokens = batch * gen;
    Ok(BatchedFigures {
        batch,
        kv_cache: kv_cache.name().to_string(),
        prompt_tokens,
        new_tokens,
        prefill_s,
        decode_s,
        prefill_tok_s: prompt_tokens as f64 / prefill_s,
        decode_tok_s: (new_tokens - batch) as f64 / decode_s,
        total_tok_s: (prompt_tokens + new_tokens) as f64 / total_s,
        matmul_limit_tok_s: f64::NAN,
        projection_limit_tok_s: f64::NAN,
    })
}

pub fn train_rate(model: &CausalLm, (rows, len): (usize, usize), set: &TrainableSet) -> Result<(f64, f64)> {
    let mut m = model.clone();
    let tr = m.set_trainable(set)?;
    let mut opt = AdamW::new(&tr, AdamWConfig::default())?;
    let vocab = m.config().vocab_size as u32;
    let seqs: Vec<Vec<u32>> = (0..rows).map(|r| (0..len as u32).map(|i| (i * 31 + r as u32 * 7 + 100) % vocab).collect()).collect();
    let prompts: Vec<&[u32]> = seqs.iter().map(|s| &s[..len / 2]).collect();
    let comps: Vec<&[u32]> = seqs.iter().map(|s| &s[len / 2..]).collect();
    let start = Instant::now();
    let sc = score(&m, &prompts, &comps, 0, &SamplingParams::at_temperature(1.0), Pass::Train)?;
    let loss = sc.logprobs.mean_all()?.neg()?;
    opt.accumulate(&loss)?;
    opt.step()?;
    let s = start.elapsed().as_secs_f64();
    Ok(((rows * len) as f64 / s, s))
}

pub fn matmul_rate(m: usize, k: usize, n: usize) -> Result<MatmulFigure> {
    let device = Device::Cpu;
    let a = Tensor::ones((m, k), DType::F32, &device)?;
    let w = Tensor::ones((n, k), DType::F32, &device)?; // stored (out, in), as in the model
    let flops = 2.0 * (m * k * n) as f64;
    let reps = ((2e10 / flops) as usize).clamp(2, 200);
    // Every way the model may compute it; the fastest is the shape's limit. Each is timed
    // three times and the best window kept, so a busy moment on a shared machine does not
    // lower the limit (and flatter the ratios measured against it).
    let plain = || a.matmul(&w.t()?);
    let few_rows = || crate::model::linear::few_rows_matmul(&a, Dense::plain(&w));
    let wt = w.t()?.contiguous()?;
    let transposed = || crate::model::linear::few_rows_matmul(&a, Dense { w: &w, t: Some(&wt) });
    let dense = || crate::model::linear::dense_matmul(&a, &w);
    // As a prefill's attention runs its products: one whole product per thread, all threads at
    // once (each thread's product counts).
    let threads = rayon::current_num_threads();
    let (xs, ws) = (vec![1f32; m * k], vec![1f32; n * k]);
    // Outputs allocated once, outside the timed calls (as the attention's scratch is).
    let outs = std::sync::Mutex::new(vec![vec![0f32; m * n]; threads]);
    let concurrent = || -> candle_core::Result<Tensor> {
        use rayon::prelude::*;
        outs.lock().expect("no panics while held").par_iter_mut().for_each(|out| {
            // `ws` (n, k) row-major, read as (k, n).
            matmul(Threads::Caller, MatMut::row_major(out, m, n), MatRef::row_major(&xs, m, k), MatRef::transpose_of(&ws, k, n));
        });
        Ok(a.clone())
    };
    let mut best = 0f64;
    let ways: [(&dyn Fn() -> candle_core::Result<Tensor>, f64); 5] =
        [(&plain, 1.0), (&few_rows, 1.0), (&transposed, 1.0), (&dense, 1.0), (&concurrent, threads as f64)];
    for (f, products) in ways {
        f()?;
        for _ in 0..3 {
            let start = Instant::now();
            for _ in 0..reps {
                f()?;
            }
            best = best.max(products * flops * reps as f64 / start.elapsed().as_secs_f64() / 1e9);
        }
    }
    Ok(MatmulFigure { m, k, n, gflops: best })
}

/// Peak resident set size of this process (Linux `VmHWM`; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Architecture, ModelConfig};

    #[test]
    fn workload_limit_charges_each_product_at_its_shapes_rate() {
        let cfg = ModelConfig::tiny(Architecture::Llama, 100);
        let (d, f, v, q, kv) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.q_dim(), cfg.kv_dim());
        // Prefill shapes run at 2 GFLOP/s, decoding's at 1, the vocabulary projection at 0.5,
        // the attention scores at 0.25 and the weighted values at 0.125.
        let mut rates = vec![];
        // Decoding's shapes have the batch's 2 rows.
        for (rows, gflops) in [(PREFILL_ROWS, 2.0), (2, 1.0)] {
            for (k, n) in [(d, q), (d, kv), (q, d), (d, f), (f, d)] {
                rates.push(MatmulFigure { m: rows, k, n, gflops });
            }
        }
        rates.push(MatmulFigure { m: 2, k: d, n: v, gflops: 0.5 });
        let (scores, mix) = attention_shapes(&cfg);
        assert_eq!(scores, (ATTENTION_QUERIES * cfg.num_heads / cfg.num_kv_heads, cfg.head_dim, ATTENTION_SLOTS));
        rates.push(MatmulFigure { m: scores.0, k: scores.1, n: scores.2, gflops: 0.25 });
        rates.push(MatmulFigure { m: mix.0, k: mix.1, n: mix.2, gflops: 0.125 });
        // Two prompts of 5 tokens, 3 new tokens each.
        let b = BatchedFigures {
            batch: 2,
            kv_cache: "f32".into(),
            prompt_tokens: 10,
            new_tokens: 6,
            prefill_s: 1.0,
            decode_s: 1.0,
            prefill_tok_s: 0.0,
            decode_tok_s: 0.0,
            total_tok_s: 0.0,
            matmul_limit_tok_s: f64::NAN,
            projection_limit_tok_s: f64::NAN,
        };
        let block_flops = cfg.num_layers as f64 * 2.0 * (2 * d * q + 2 * d * kv + 3 * d * f) as f64;
        let projections = 10.0 * block_flops / 2e9 + 4.0 * block_flops / 1e9 + 6.0 * 2.0 * (d * v) as f64 / 0.5e9;
        // 1 + 2 + … + 5 = 15 (query, slot) pairs per prompt and head.
        let attention_flops = 2.0 * 15.0 * (cfg.num_layers * cfg.num_heads) as f64 * 2.0 * cfg.head_dim as f64;
        let attention = attention_flops / 0.25e9 + attention_flops / 0.125e9;
        let got = workload_seconds(&cfg, &rates, &b);
        assert!((got.projections - projections).abs() < 1e-9 * projections, "{} vs {projections}", got.projections);
        assert!((got.attention - attention).abs() < 1e-9 * attention, "{} vs {attention}", got.attention);
    }
}
