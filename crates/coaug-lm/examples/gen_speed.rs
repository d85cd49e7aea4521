//! Quick generation timing for profiling: batched greedy generation on the default model.
//! usage: gen_speed [f32|q8] BATCH PROMPT_TOKENS NEW_TOKENS [f32|f16|q8 (KV cache)]
use std::time::Instant;

use candle_core::Device;
use coaug_lm::*;

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let prec = if a.get(1).map(String::as_str) == Some("q8") { Precision::Quantized } else { Precision::F32 };
    let num = |i: usize, d: usize| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (batch, plen, gen) = (num(2, 16), num(3, 300), num(4, 32));
    let path = fetch_default_model(&cache_root())?;
    let mut model = CausalLm::from_gguf(&path, prec, &Device::Cpu)?;
    // As `coaug augment` runs it.
    model.prepare_for_decoding()?;
    let vocab = model.config().vocab_size as u32;
    let prompts: Vec<Vec<u32>> = (0..batch).map(|r| (0..plen as u32).map(|i| (i * 31 + r as u32 * 7 + 100) % vocab).collect()).collect();
    let req = PromptBatch { prefix: &[], prompts: &prompts, stop_ids: &[], pad_id: 0 };
    let kv_cache: KvPrecision = a.get(5).map_or(Ok(KvPrecision::F32), |s| s.parse()).map_err(anyhow::Error::msg)?;
    let greedy = |n: usize| SamplingParams { kv_cache, ..SamplingParams::greedy(n) };
    // As `coaug bench lm` times it: a short warm-up run, then one timed run.
    generate(&model, &req, &greedy(2))?;
    let t0 = Instant::now();
    let (_, timing) = generate_timed(&model, &req, &greedy(gen + 1))?;
    let all = t0.elapsed().as_secs_f64();
    let (pre, dec) = (timing.prefill_s, timing.decode_s);
    println!(
        "batch {batch} prompt {plen} gen {gen}: prefill {pre:.2}s ({:.1} tok/s), decode {dec:.2}s ({:.1} tok/s), total {:.1} tok/s",
        (batch * plen) as f64 / pre,
        (batch * gen) as f64 / dec,
        (batch * (plen + gen + 1)) as f64 / all
    );
    Ok(())
}
