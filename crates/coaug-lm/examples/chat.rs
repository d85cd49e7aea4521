//! Greedy chat completion with the default model on both weight paths.
//! usage: cargo run --release -p coaug-lm --example chat -- "question" [max_new_tokens] [KV caches, e.g. f32,f16,q8]
use std::time::Instant;

use candle_core::Device;
use coaug_lm::*;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let question = args.get(1).cloned().unwrap_or_else(|| "What are the health benefits of green tea?".into());
    let max_new: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(48);
    let caches: Vec<KvPrecision> =
        args.get(3).map_or("f32", |s| s.as_str()).split(',').map(str::parse).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?;
    let path = fetch_default_model(&cache_root())?;
    let tok = LmTokenizer::from_gguf(&path)?;
    let prompt = tok.chat_ids(&[(ChatRole::System, "You are a helpful assistant."), (ChatRole::User, &question)], true)?;
    for precision in [Precision::Quantized, Precision::F32] {
        let model = CausalLm::from_gguf(&path, precision, &Device::Cpu)?;
        let req = PromptBatch { prefix: &[], prompts: std::slice::from_ref(&prompt), stop_ids: tok.stop_ids(), pad_id: tok.pad_id() };
        for &kv_cache in &caches {
            let start = Instant::now();
            let out = generate(&model, &req, &SamplingParams { kv_cache, ..SamplingParams::greedy(max_new) })?;
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{precision:?}, {} KV ({secs:.2}s, {} tokens): {}",
                kv_cache.name(),
                out[0].tokens.len(),
                tok.decode_text(&out[0].tokens)?
            );
            println!("  ids: {:?}", &out[0].tokens);
        }
    }
    Ok(())
}
