//! Test helper for `tests/kill_resume.rs`: augments the items of a JSONL file into a store with
//! a tiny randomly initialised LM (the real coaug-lm generation code, with the model's own
//! tokenizer budget), slowed down by a sleep per batch so it can be killed mid-run.
//!
//! Usage: augment-worker ITEMS.jsonl STORE.sqlite BATCH_SIZE SEED DELAY_MS
//! Each line of ITEMS.jsonl is `{"id": ..., "text": ...}`. Prints the report as JSON.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use coaug_augment::{
    AugmentItem, AugmentJob, AugmentStore, DecodeSettings, Generation, GenerationRequest, Generator, LmGenerator, PromptSet, Retriever,
    Role,
};

/// The tiny LM, sleeping before each batch.
struct Slow {
    inner: LmGenerator,
    delay: Duration,
}

impl Generator for Slow {
    fn fingerprint(&self) -> String {
        self.inner.fingerprint()
    }

    fn generate(&mut self, requests: &[GenerationRequest], decoding: &DecodeSettings) -> anyhow::Result<Vec<Generation>> {
        std::thread::sleep(self.delay);
        self.inner.generate(requests, decoding)
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() == 5, "usage: augment-worker ITEMS.jsonl STORE.sqlite BATCH_SIZE SEED DELAY_MS");
    let items_path = PathBuf::from(&args[0]);
    let store_path = PathBuf::from(&args[1]);
    let batch_size: usize = args[2].parse().context("BATCH_SIZE")?;
    let seed: u64 = args[3].parse().context("SEED")?;
    let delay_ms: u64 = args[4].parse().context("DELAY_MS")?;

    let content = std::fs::read_to_string(&items_path).with_context(|| format!("{}", items_path.display()))?;
    let items = content
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{}:{}", items_path.display(), i + 1))?;
            Ok(AugmentItem::new(v["id"].as_str().unwrap_or_default(), v["text"].as_str().unwrap_or_default()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let prompts = PromptSet::default();
    let mut job = AugmentJob::new(&prompts, Role::Document, Retriever::Sparse, DecodeSettings::sampled(48, seed));
    let inner = LmGenerator::tiny_random(7)?;
    let budget = inner.token_budget();
    job.budget = &budget;
    job.batch_size = batch_size;
    job.max_input_tokens = 256;
    let mut store = AugmentStore::open(&store_path)?;
    let mut generator = Slow { inner, delay: Duration::from_millis(delay_ms) };
    let report = job.run(&mut store, &mut generator, &items)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
