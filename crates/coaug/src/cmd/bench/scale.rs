//! `coaug bench scale`: a generated million-document corpus, indexed by `coaug index` in a child
//! process (peak RSS and documents/s from the kernel's accounting), then searched one query at a
//! time (p50/p99 latency).
//!
//! The corpus is deterministic for a seed and shaped like real abstracts: a vocabulary of
//! `vocabulary` made-up words drawn with Zipf's law (s = 1.07, like English text), document
//! lengths log-normal around 150 words (σ 0.6, 10 to 2000), titles of 4 to 14 words. Each query is
//! 2 to 6 words of one document, which is its one relevant document.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Documents generated.
    #[arg(long, default_value_t = 1_000_000)]
    pub docs: usize,

    /// Distinct words of the generated language.
    #[arg(long, default_value_t = 200_000)]
    pub vocabulary: usize,

    /// Queries generated (and timed).
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,

    /// Seed of the generator.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,

    /// Where the corpus (`synthetic-<docs>/`) and its index go; reused when already generated.
    #[arg(long, default_value = "target/scale", value_name = "DIR")]
    pub dir: PathBuf,

    /// Only write the corpus (e.g. for an augmentation run); no index, no timing.
    #[arg(long)]
    pub generate_only: bool,

    /// End with one JSON line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    ensure!(args.docs > 0 && args.vocabulary > 10 && args.queries > 0, "--docs, --vocabulary and --queries must be positive");
    let name = format!("synthetic-{}", args.docs);
    let dataset_dir = args.dir.join(&name);
    let stamp = dataset_dir.join("generated.json");
    let wanted = json!({"docs": args.docs, "vocabulary": args.vocabulary, "queries": args.queries, "seed": args.seed, "version": 1});
    let existing: Option<serde_json::Value> = std::fs::read(&stamp).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if existing.as_ref() != Some(&wanted) {
        let started = Instant::now();
        generate(&dataset_dir, &args)?;
        std::fs::write(&stamp, wanted.to_string())?;
        eprintln!("generated {} documents in {:.1} s into {}", args.docs, started.elapsed().as_secs_f64(), dataset_dir.display());
    } else {
        eprintln!("reusing the corpus in {}", dataset_dir.display());
    }
    let corpus_bytes = std::fs::metadata(dataset_dir.join("corpus.jsonl"))?.len();
    if args.generate_only {
        return Ok(());
    }

    // Index in a child process: its peak RSS is the command's, not this benchmark's.
    let index_dir = args.dir.join(format!("index-{}", args.docs));
    if index_dir.exists() {
        std::fs::remove_dir_all(&index_dir)?;
    }
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .args(["index", "--dataset", &name, "--log", "warn"])
        .arg("--data-dir")
        .arg(&args.dir)
        .arg("--index-dir")
        .arg(&index_dir)
        .spawn()
        .context("cannot start coaug index")?;
    let started = Instant::now();
    let (status, peak_rss_kib) = wait_with_peak_rss(child.id() as libc::pid_t)?;
    let _ = child.try_wait();
    let index_s = started.elapsed().as_secs_f64();
    ensure!(status == 0, "coaug index exited with status {status}");
    let docs_per_s = args.docs as f64 / index_s;
    eprintln!(
        "coaug index: {} documents in {index_s:.1} s ({docs_per_s:.0} docs/s), peak RSS {:.0} MiB",
        args.docs,
        peak_rss_kib as f64 / 1024.0
    );

    // Latency: one query at a time, as a server answers them.
    let index = coaug_index::Bm25Index::open(&index_dir)?;
    let dataset = coaug_data::Dataset::open(&dataset_dir)?;
    let queries = dataset.queries()?;
    let composition = coaug_retrieval::Composition::default();
    let mut results = serde_json::Map::new();
    for k in [10usize, 1000] {
        let mut latencies: Vec<f64> = queries
            .iter()
            .map(|q| {
                let t = Instant::now();
                let hits = coaug_retrieval::search_hits(
                    &index,
                    &composition,
                    &coaug_retrieval::QueryToRank { id: &q.id, text: &q.text, expansions: &[] },
                    k,
                );
                std::hint::black_box(hits);
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        let pct = |p: f64| super::percentile(&latencies, p);
        eprintln!("search top-{k}: p50 {:.2} ms, p99 {:.2} ms over {} queries (1 thread)", pct(50.0), pct(99.0), latencies.len());
        results.insert(format!("top{k}_p50_ms"), json!(pct(50.0)));
        results.insert(format!("top{k}_p99_ms"), json!(pct(99.0)));
    }
    if args.json {
        let mut out = json!({
            "docs": args.docs,
            "corpus_bytes": corpus_bytes,
            "index_s": index_s,
            "index_docs_per_s": docs_per_s,
            "index_peak_rss_mib": peak_rss_kib as f64 / 1024.0,
            "queries": queries.len(),
        });
        out.as_object_mut().expect("an object").extend(results);
        println!("{out}");
    }
    Ok(())
}

/// Waits for `pid`; its exit status and peak resident set (KiB) from `wait4`'s rusage.
fn wait_with_peak_rss(pid: libc::pid_t) -> Result<(i32, i64)> {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills; the pid is our own child's.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    ensure!(r == pid, "wait4 failed: {}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    Ok((code, usage.ru_maxrss))
}

/// The generated language: made-up words and their Zipf cumulative distribution.
struct Language {
    words: Vec<String>,
    cdf: Vec<f64>,
}

impl Language {
    fn new(size: usize, rng: &mut ChaCha8Rng) -> Self {
        const SYLLABLES: [&str; 24] = [
            "ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "pe", "da", "gi", "bo", "xa", "ze", "fu", "ho", "ja", "ly", "qu", "wi", "en",
            "or", "is", "um",
        ];
        let mut seen = std::collections::HashSet::with_capacity(size);
        let mut words = Vec::with_capacity(size);
        while words.len() < size {
            // Frequent words short, rare words long, as in natural languages.
            let syllables = 1 + (words.len() as f64).log10().max(0.0) as usize / 2 + rng.random_range(0..2);
            let word: String = (0..syllables).map(|_| SYLLABLES[rng.random_range(0..SYLLABLES.len())]).collect();
            if seen.insert(word.clone()) {
                words.push(word);
            }
        }
        let mut cdf = Vec::with_capacity(size);
        let mut total = 0.0;
        for rank in 1..=size {
            total += 1.0 / (rank as f64).powf(1.07);
            cdf.push(total);
        }
        cdf.iter_mut().for_each(|c| *c /= total);
        Self { words, cdf }
    }

    fn word(&self, rng: &mut ChaCha8Rng) -> &str {
        let u: f64 = rng.random();
        let i = self.cdf.partition_point(|&c| c < u).min(self.words.len() - 1);
        &self.words[i]
    }

    fn sentence(&self, words: usize, rng: &mut ChaCha8Rng) -> String {
        let mut s = String::with_capacity(words * 7);
        for i in 0..words {
            if i > 0 {
                s.push(if rng.random_range(0..12) == 0 { '.' } else { ' ' });
                if s.ends_with('.') {
                    s.push(' ');
                }
            }
            s.push_str(self.word(rng));
        }
        s
    }
}

/// Log-normal document length around 150 words.
fn doc_length(rng: &mut ChaCha8Rng) -> usize {
    // Box–Muller.
    let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
    let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (150.0 * (0.6 * normal).exp()).round().clamp(10.0, 2000.0) as usize
}

fn generate(dir: &Path, args: &Args) -> Result<()> {
    std::fs::create_dir_all(dir.join("qrels"))?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let language = Language::new(args.vocabulary, &mut rng);
    // Which documents the queries come from, chosen up front so the corpus streams to disk.
    let mut sources: Vec<usize> = (0..args.queries).map(|_| rng.random_range(0..args.docs)).collect();
    sources.sort_unstable();
    sources.dedup();
    let mut queries = BufWriter::new(std::fs::File::create(dir.join("queries.jsonl"))?);
    let mut qrels = BufWriter::new(std::fs::File::create(dir.join("qrels/test.tsv"))?);
    writeln!(qrels, "query-id\tcorpus-id\tscore")?;
    let tmp = dir.join("corpus.jsonl.partial");
    let mut corpus = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    let mut next_source = 0;
    for d in 0..args.docs {
        let title_words = rng.random_range(4..=14);
        let title = language.sentence(title_words, &mut rng);
        let text = language.sentence(doc_length(&mut rng), &mut rng);
        if sources.get(next_source) == Some(&d) {
            next_source += 1;
            let words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
            let n = rng.random_range(2..=6usize).min(words.len());
            let start = rng.random_range(0..=words.len() - n);
            let q = format!("q{d}");
            serde_json::to_writer(&mut queries, &json!({"_id": q, "text": words[start..start + n].join(" ")}))?;
            writeln!(queries)?;
            writeln!(qrels, "{q}\tdoc{d}\t1")?;
        }
        serde_json::to_writer(&mut corpus, &json!({"_id": format!("doc{d}"), "title": title, "text": text}))?;
        corpus.write_all(b"\n")?;
        if (d + 1) % 200_000 == 0 {
            eprintln!("generated {} of {} documents", d + 1, args.docs);
        }
    }
    corpus.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, dir.join("corpus.jsonl"))?;
    queries.flush()?;
    qrels.flush()?;
    Ok(())
}
