//! `coaug bench dense`: encoding throughput of the sentence encoder on NFCorpus documents,
//! set against this machine's f32 matrix-product rate on the same shapes, and exact /
//! HNSW search rates with HNSW's recall against exact search.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use coaug_dense::bench::{layer_shapes, matmul_gflops};
use coaug_dense::{document_text, exact_top_k, recall_at_k, Embeddings, HnswIndex, HnswParams};
use serde_json::json;

use super::time_median;
use crate::cmd::dense::{load_encoder, EncoderArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Dataset whose first documents are encoded, and whose test queries are searched.
    #[arg(long, default_value = "nfcorpus")]
    pub dataset: String,

    /// Folder holding the dataset (default: $COAUG_DATA, else the cache).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Documents encoded for the throughput figures (the dataset's first N).
    #[arg(long, default_value_t = 1000)]
    pub docs: usize,

    /// Size of the corpus searched: the encoded documents plus noisy copies of them (unit
    /// vectors near real ones), so that search rates and HNSW recall are measured at a
    /// scale where they matter.
    #[arg(long, default_value_t = 20_000)]
    pub search_docs: usize,

    /// Documents per query for the search figures.
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,

    /// HNSW candidate list size at search time.
    #[arg(long, default_value_t = 100)]
    pub ef: usize,

    /// Timed repeats of each search figure; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,

    #[command(flatten)]
    pub encoder: EncoderArgs,

    /// End with one JSON line of the figures (encode_texts_s, encode_tok_s, search_qps,
    /// matmul_gflops, hnsw_qps, hnsw_recall, …).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    if args.docs == 0 || args.top_k == 0 {
        bail!("--docs and --top-k must be at least 1");
    }
    let dataset = coaug_data::resolve(&args.dataset, args.data_dir.as_deref())?;
    let split = dataset.load_split("test")?;
    let encoder = load_encoder(&args.encoder)?;
    let threads = rayon::current_num_threads();

    // Encoding: tokenisation excluded (it is not the bottleneck and runs in parallel).
    let texts: Vec<String> = split.corpus.iter().take(args.docs).map(document_text).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ids = encoder.tokenize(&refs)?;
    let tokens: usize = ids.iter().map(Vec::len).sum();
    let (padded, flops) = encoder.padding_plan(&ids);
    encoder.encode_ids(&ids[..ids.len().min(8)], false)?; // warm-up
    let started = Instant::now();
    let doc_vectors = encoder.encode_ids(&ids, true)?;
    let encode_s = started.elapsed().as_secs_f64();
    let encode_texts_s = texts.len() as f64 / encode_s;
    let encode_tok_s = tokens as f64 / encode_s;
    let encode_gflops = flops / encode_s / 1e9;

    // The ceiling: the same matrix products at the batch size the encoder uses.
    let batch_tokens = encoder.batch_policy().max_tokens.min(padded.max(1));
    let mut shape_rates = Vec::new();
    for (m, k, n) in layer_shapes(batch_tokens, encoder.dim(), encoder.intermediate_size()) {
        shape_rates.push(((m, k, n), matmul_gflops(m, k, n, 1.0)?));
    }
    let matmul = shape_rates.iter().map(|(_, g)| *g).fold(0.0, f64::max);

    println!(
        "encoder {} ({} threads): {} docs, {} tokens ({} padded, {:.1}% padding), {:.2} s",
        encoder.name(),
        threads,
        texts.len(),
        tokens,
        padded,
        100.0 * (padded - tokens) as f64 / padded.max(1) as f64,
        encode_s
    );
    println!("  {encode_texts_s:.1} texts/s, {encode_tok_s:.0} tokens/s, {encode_gflops:.1} GFLOP/s in matrix products");
    for ((m, k, n), g) in &shape_rates {
        println!("  matmul {m}×{k}·{k}×{n}: {g:.1} GFLOP/s");
    }
    println!("  encoding reaches {:.0}% of the best matmul rate ({matmul:.1} GFLOP/s)", 100.0 * encode_gflops / matmul);

    // Search: the real test queries against real + noisy-copy vectors.
    let query_texts: Vec<&str> = split.queries.iter().map(|q| q.text.as_str()).collect();
    let queries = encoder.encode_queries(&query_texts, false)?;
    let corpus = grow_corpus(&doc_vectors, args.search_docs.max(doc_vectors.len()));
    let (exact_s, exact) = time_median(args.repeats, || exact_top_k(&queries, &corpus, args.top_k))?;
    let search_qps = queries.len() as f64 / exact_s;
    let started = Instant::now();
    let hnsw = HnswIndex::build(&corpus, HnswParams::default());
    let hnsw_build_s = started.elapsed().as_secs_f64();
    let (hnsw_s, approx) = time_median(args.repeats, || Ok(hnsw.search(&queries, args.top_k, args.ef)))?;
    let hnsw_qps = queries.len() as f64 / hnsw_s;
    let recall = recall_at_k(&exact, &approx, args.top_k);
    println!("search: {} queries × {} vectors (dim {}), top-{}", queries.len(), corpus.len(), corpus.dim(), args.top_k);
    println!("  exact (blocked matmul): {search_qps:.0} queries/s");
    println!(
        "  HNSW (m=16, ef_construction=200, ef={}): {hnsw_qps:.0} queries/s, recall@{} {recall:.4}, built in {hnsw_build_s:.1} s",
        args.ef, args.top_k
    );

    if args.json {
        let report = json!({
            "encoder": encoder.name(),
            "threads": threads,
            "docs": texts.len(),
            "tokens": tokens,
            "padded_tokens": padded,
            "encode_s": encode_s,
            "encode_texts_s": encode_texts_s,
            "encode_tok_s": encode_tok_s,
            "encode_gflops": encode_gflops,
            "matmul_gflops": matmul,
            "matmul_fraction": encode_gflops / matmul,
            "search_docs": corpus.len(),
            "search_queries": queries.len(),
            "top_k": args.top_k,
            "search_qps": search_qps,
            "hnsw_qps": hnsw_qps,
            "hnsw_recall": recall,
            "hnsw_ef": args.ef,
            "hnsw_build_s": hnsw_build_s,
        });
        println!("{report}");
    }
    Ok(())
}

/// `n` unit vectors: the real ones, then copies of them with deterministic noise (σ = 0.03
/// per dimension, renormalised) — near-duplicates like a larger corpus of the same domain.
fn grow_corpus(real: &Embeddings, n: usize) -> Embeddings {
    let d = real.dim();
    let mut data = real.as_slice().to_vec();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = || {
        // Sum of uniforms ≈ normal; enough for benchmark data.
        let mut s = 0.0f32;
        for _ in 0..4 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            s += (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        }
        s * 0.03 * 1.732
    };
    for i in real.len()..n {
        let src = real.row(i % real.len());
        let row: Vec<f32> = src.iter().map(|x| x + noise()).collect();
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        data.extend(row.iter().map(|x| x / norm));
    }
    Embeddings::new(d, data)
}
