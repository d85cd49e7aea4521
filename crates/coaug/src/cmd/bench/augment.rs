//! `coaug bench augment`: corpus augmentation throughput of the LM, like for like with llama.cpp.
//!
//! The peer script (`llamacpp_bench.py expand_batched N`) prompts with its own system prompt and
//! each NFCorpus document's `title + " " + text` cut to 300 tokens, generates up to 64 tokens by plain
//! argmax, 32 sequences per batch. coaug is measured on exactly those prompts and settings first
//! (`coaug_docs_s`), then with its own defaults (its prompt, title + text cut to the default
//! budget, repetition penalty 1.2), which is what `coaug augment` runs.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use coaug_augment::{AugmentItem, AugmentJob, AugmentStore, DecodeSettings, GenerationRequest, Generator, Retriever, Role};
use serde_json::json;

use super::peers::{field, PeerArgs};
use crate::cmd::augment::{GenerationArgs, ModelArgs};

/// The peer script's system prompt, copied so both engines read the same tokens.
const PEER_SYSTEM: &str = "You are an expert in explaining articles. Based on your knowledge, provide a supplementary \
explanation of the text and extract keywords. Return the keywords in <answer> </answer> tags.";
/// The peer script's document budget (tokens) and generation length.
const PEER_DOC_TOKENS: usize = 300;
const PEER_NEW_TOKENS: usize = 64;
const PEER_SEQUENCES: usize = 32;
/// Documents in NFCorpus, for the wall-time extrapolation.
const NFCORPUS_DOCS: usize = 3633;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// NFCorpus documents augmented per engine (the first N of the corpus).
    #[arg(long, default_value_t = 64)]
    pub docs: usize,

    /// Folder holding the datasets (default: $COAUG_DATA, else the cache).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Skip the second coaug run with its own defaults (prompt, budget, penalty).
    #[arg(long)]
    pub no_defaults: bool,

    #[command(flatten)]
    pub peers: PeerArgs,

    /// End with one JSON line (`coaug_docs_s`, `coaug_gen_tok_s`, `llamacpp_docs_s`, …).
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub generation: GenerationArgs,
}

pub fn run(args: Args) -> Result<()> {
    let model_path = args.model.path()?;
    let dataset = coaug_data::resolve("nfcorpus", args.data_dir.as_deref())?;
    let mut corpus = dataset.load_corpus()?;
    corpus.truncate(args.docs);
    let mut generator = args.model.load_local()?;
    let tok = generator.tokenizer().clone();

    // 1. The peer's prompts: `title text` cut to 300 tokens, decoded back.
    let requests = corpus
        .iter()
        .map(|d| {
            let ids = tok.encode(&format!("{} {}", d.title, d.text))?;
            let text = tok.decode(&ids[..ids.len().min(PEER_DOC_TOKENS)])?;
            Ok(GenerationRequest { system_prompt: PEER_SYSTEM.into(), user_text: text, seed: 0 })
        })
        .collect::<Result<Vec<_>>>()?;
    let argmax = DecodeSettings { repetition_penalty: 1.0, ..DecodeSettings::greedy(PEER_NEW_TOKENS) };
    // Warm-up, like the peer's: a couple of prompts, a few tokens.
    generator.generate(&requests[..requests.len().min(2)], &DecodeSettings { max_new_tokens: 4, ..argmax.clone() })?;
    let bar = indicatif::ProgressBar::new(requests.len() as u64);
    bar.set_style(indicatif::ProgressStyle::with_template(
        "coaug, peer prompts {wide_bar} {pos}/{len} [{elapsed_precise}, ETA {eta_precise}]",
    )?);
    let started = Instant::now();
    let mut generated = 0usize;
    let mut sample = String::new();
    for batch in requests.chunks(PEER_SEQUENCES) {
        let out = generator.generate(batch, &argmax)?;
        generated += out.iter().map(|g| g.generated_tokens).sum::<usize>();
        if sample.is_empty() {
            sample = out[0].text.clone();
        }
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let coaug_docs_s = requests.len() as f64 / secs;
    let coaug_gen_tok_s = generated as f64 / secs;
    println!(
        "coaug (peer prompts, {} docs, batch {PEER_SEQUENCES}): {secs:.1} s, {coaug_docs_s:.3} docs/s, {coaug_gen_tok_s:.1} generated tokens/s → NFCorpus in {:.2} h",
        requests.len(),
        NFCORPUS_DOCS as f64 / coaug_docs_s / 3600.0
    );
    println!("  sample: {}", sample.replace('\n', " ⏎ ").chars().take(300).collect::<String>());

    // 2. coaug's defaults, through the job (in-memory store: nothing is reused).
    let mut defaults = json!(null);
    if !args.no_defaults {
        let settings = args.generation.settings(Retriever::Sparse)?;
        let budget = generator.token_budget();
        let mut job = AugmentJob::new(&settings.prompts, Role::Document, Retriever::Sparse, settings.decoding());
        job.budget = &budget;
        job.max_input_tokens = args.generation.max_input_tokens;
        job.batch_size = args.generation.batch_size;
        job.show_progress = true;
        let items = AugmentItem::from_documents(&corpus);
        let report = job.run(&mut AugmentStore::open_in_memory()?, &mut generator, &items)?;
        println!(
            "coaug (defaults: {}): {:.1} s, {:.3} docs/s, {:.1} generated tokens/s → NFCorpus in {:.2} h; {} of {} replies without a well-formed answer",
            args.generation.describe("default"),
            report.elapsed_s,
            report.items_per_s(),
            report.generated_tokens_per_s(),
            NFCORPUS_DOCS as f64 / report.items_per_s() / 3600.0,
            report.format_invalid,
            report.generated
        );
        defaults = json!({
            "docs_s": report.items_per_s(),
            "gen_tok_s": report.generated_tokens_per_s(),
            "nfcorpus_hours": NFCORPUS_DOCS as f64 / report.items_per_s() / 3600.0,
            "format_invalid": report.format_invalid,
            "batch_size": args.generation.batch_size,
            "max_input_tokens": args.generation.max_input_tokens,
            "max_new_tokens": args.generation.max_new_tokens,
        });
    }

    // 3. llama.cpp on the same GGUF and prompts.
    let mut peer = json!(null);
    let mut llamacpp_docs_s = f64::NAN;
    if !args.peers.no_peers {
        let python = args.peers.setup()?;
        let gguf = model_path.display().to_string();
        let n = args.docs.to_string();
        eprintln!("running llama.cpp expand_batched {n} …");
        let v = python.run_json("llamacpp_bench.py", &["expand_batched", &n], &[("COAUG_GGUF", &gguf)])?;
        llamacpp_docs_s = field(&v, "docs_per_s");
        println!(
            "llama.cpp (expand_batched, {} docs, {PEER_SEQUENCES} sequences): {:.1} s, {:.3} docs/s, {:.1} generated tokens/s → NFCorpus in {:.2} h",
            n,
            field(&v, "wall_s"),
            llamacpp_docs_s,
            field(&v, "gen_tok_per_s"),
            NFCORPUS_DOCS as f64 / llamacpp_docs_s / 3600.0
        );
        println!("coaug / llama.cpp documents/s: {:.2}×", coaug_docs_s / llamacpp_docs_s);
        peer = v;
    }

    if args.json {
        let out = json!({
            "model": model_path.display().to_string(),
            "docs": args.docs,
            "threads": rayon::current_num_threads(),
            "coaug_docs_s": coaug_docs_s,
            "coaug_gen_tok_s": coaug_gen_tok_s,
            "coaug_nfcorpus_hours": NFCORPUS_DOCS as f64 / coaug_docs_s / 3600.0,
            "coaug_defaults": defaults,
            "llamacpp_docs_s": llamacpp_docs_s,
            "llamacpp_gen_tok_s": field(&peer, "gen_tok_per_s"),
            "llamacpp_nfcorpus_hours": NFCORPUS_DOCS as f64 / llamacpp_docs_s / 3600.0,
        });
        println!("{}", serde_json::to_string(&out)?);
    }
    Ok(())
}
