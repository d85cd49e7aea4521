mod augment;
mod bm25;
mod dense;
mod lm;
mod peers;
mod scale;
mod serve;
mod train;

use anyhow::Result;

/// What to measure. Each benchmark runs coaug and its peers in the same process run, so
/// their ratio is meaningful on a shared, noisy machine; figures are medians of repeats.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// BM25: index docs/s, queries/s (top-1000; 1 thread and all threads) and nDCG@10 on
    /// NFCorpus and SciFact, next to bm25s (PyStemmer, method "lucene").
    Bm25(bm25::Args),
    /// Dense: sentence-encoder texts/s and tokens/s on the first NFCorpus documents, as a
    /// fraction of this machine's f32 matmul rate on the encoder's shapes; exact and HNSW
    /// search queries/s, HNSW recall against exact.
    Dense(dense::Args),
    /// Corpus augmentation: documents/s and generated tokens/s of the default LM, the wall time
    /// for all of NFCorpus, next to llama.cpp batched on the same GGUF and prompts.
    Augment(Box<augment::Args>),
    /// Policy LM: prefill, single-stream and batched generation tokens/s, a training step
    /// and peak RSS, next to llama.cpp on the same GGUF (same run).
    Lm(lm::Args),
    /// `coaug serve` under load on loopback: requests/s and p50/p99 latency at 1, 8 and 32
    /// clients, without augmentation, with the in-process LM, and with a remote server.
    Serve(Box<serve::Args>),
    /// A generated million-document corpus: `coaug index` peak RSS and docs/s, then search
    /// latency p50/p99 on it.
    Scale(scale::Args),
    /// RL training step: seconds per phase (generation, reward, update) for the cpu-small
    /// configuration with the default policy LM.
    Train(train::Args),
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Bm25(args) => bm25::run(args),
        Command::Dense(args) => dense::run(args),
        Command::Augment(args) => augment::run(*args),
        Command::Lm(args) => lm::run(args),
        Command::Train(args) => train::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::Scale(args) => scale::run(args),
    }
}

/// The median of a non-empty sample.
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of an ascending sample; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Times `f` `repeats` times and returns the median seconds and the last result.
pub fn time_median<T>(repeats: usize, mut f: impl FnMut() -> Result<T>) -> Result<(f64, T)> {
    let mut secs = Vec::with_capacity(repeats);
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let started = std::time::Instant::now();
        last = Some(f()?);
        secs.push(started.elapsed().as_secs_f64());
    }
    Ok((median(secs), last.expect("at least one repeat")))
}
