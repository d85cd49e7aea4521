//! `coaug bench lm`: the policy LM's generation and training throughput on this CPU,
//! next to llama.cpp on the same GGUF, measured in the same run.

use anyhow::Result;
use coaug_lm::bench::{bench_lm_with_progress, bench_stages, LmBenchOptions, LmBenchReport};
use coaug_lm::TrainableSet;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::peers::{field, PeerArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// GGUF model to measure: a file or a known model's name (`coaug model list`, fetched on
    /// first use). Default: smollm2-135m. llama.cpp runs the same file.
    #[arg(long, value_name = "GGUF|NAME")]
    pub model: Option<String>,

    /// Batch sizes (sequences) for batched generation; the largest is compared with
    /// llama.cpp at the same batch size.
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    pub batches: Vec<usize>,

    /// Prompt tokens per sequence in batched generation.
    #[arg(long, default_value_t = 300)]
    pub prompt_tokens: usize,

    /// Tokens generated per sequence in batched generation.
    #[arg(long, default_value_t = 64)]
    pub new_tokens: usize,

    /// KV cache of batched generation: `q8` (what `coaug augment` uses), `f16`, or `f32` (what the
    /// RL sampler uses). The largest batch also runs with each of the others.
    #[arg(long, default_value = "q8", value_parser = ["q8", "f16", "f32"])]
    pub kv_cache: String,

    /// Which weights the training step updates: `all`, or `last:K` for the top K blocks.
    #[arg(long, default_value = "last:4", value_parser = parse_train_set)]
    pub train: TrainableSet,

    /// Skip the training-step measurement.
    #[arg(long)]
    pub skip_train: bool,

    #[command(flatten)]
    pub peers: PeerArgs,

    /// Threads for llama.cpp (coaug uses rayon's pool: RAYON_NUM_THREADS).
    #[arg(long, default_value_t = 2)]
    pub peer_threads: usize,

    /// End with one JSON line holding every figure.
    #[arg(long)]
    pub json: bool,
}

fn parse_train_set(s: &str) -> Result<TrainableSet, String> {
    match s {
        "all" => Ok(TrainableSet::All),
        _ => s
            .strip_prefix("last:")
            .and_then(|k| k.parse().ok())
            .map(TrainableSet::LastBlocks)
            .ok_or_else(|| format!("`{s}`: expected `all` or `last:K`")),
    }
}

pub fn run(args: Args) -> Result<()> {
    let model = coaug_lm::resolve_model(args.model.as_deref().unwrap_or(coaug_lm::DEFAULT_MODEL), &coaug_data::cache_root())?;
    let opts = LmBenchOptions {
        batch_sizes: args.batches.clone(),
        batch_prompt_tokens: args.prompt_tokens,
        batch_new_tokens: args.new_tokens,
        batch_kv_cache: args.kv_cache.parse().map_err(anyhow::Error::msg)?,
        train_set: args.train.clone(),
        skip_train: args.skip_train,
        ..Default::default()
    };
    let peer_batch = args.batches.iter().copied().max().unwrap_or(32);
    let peer_stages = if args.peers.no_peers { 0 } else { 3 };
    let bar = ProgressBar::new((bench_stages(&opts) + peer_stages) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} (eta {eta}) {msg}").expect("valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));

    let mut first = true;
    let report = bench_lm_with_progress(&model, &opts, &mut |label| {
        if !first {
            bar.inc(1);
        }
        first = false;
        bar.set_message(label.to_string());
    })?;
    bar.inc(1);

    let peers = if args.peers.no_peers {
        None
    } else {
        bar.set_message("setting up the peers' venv");
        let py = args.peers.setup()?;
        bar.inc(1);
        let gguf = model.to_string_lossy().to_string();
        let threads = args.peer_threads.to_string();
        let env = [("COAUG_GGUF", gguf.as_str()), ("THREADS", threads.as_str())];
        bar.set_message("llama.cpp single-stream");
        let single = py.run_json("llamacpp_bench.py", &["single"], &env)?;
        bar.inc(1);
        bar.set_message(format!("llama.cpp batched, {peer_batch} sequences"));
        let (n, p, g) = (peer_batch.to_string(), args.prompt_tokens.to_string(), args.new_tokens.to_string());
        let batched = py.run_json("llamacpp_bench.py", &["batched", &n, &p, &g], &env)?;
        bar.inc(1);
        Some((single, batched))
    };
    bar.finish_and_clear();

    let summary = summarize(&report, peers.as_ref(), &args.train, &args.kv_cache);
    print_table(&report, &summary);
    if args.json {
        println!("{}", json!({ "summary": summary, "coaug": report, "llamacpp": peers.map(|(s, b)| json!({"single": s, "batched": b})) }));
    }
    Ok(())
}

/// The headline figures and ratios (coaug / llama.cpp).
fn summarize(r: &LmBenchReport, peers: Option<&(Value, Value)>, train: &TrainableSet, kv_cache: &str) -> Value {
    let largest = r.batched.iter().filter(|b| b.kv_cache == kv_cache).max_by_key(|b| b.batch);
    // The extra runs of the largest batch with the other KV caches.
    let other_kv = r.batched.iter().find(|b| b.kv_cache != kv_cache);
    let by_kv: serde_json::Map<String, Value> = r
        .batched
        .iter()
        .filter(|b| Some(b.batch) == largest.map(|l| l.batch))
        .map(|b| {
            (b.kv_cache.clone(), json!({ "tok_s": b.total_tok_s, "fraction_of_workload_limit": b.total_tok_s / b.matmul_limit_tok_s }))
        })
        .collect();
    let coaug_batched = largest.map(|b| b.total_tok_s).unwrap_or(f64::NAN);
    let coaug_prefill = r.prefill_tok_s_f32.max(r.prefill_tok_s_quantized);
    let coaug_single = r.single_decode_tok_s_f32.max(r.single_decode_tok_s_quantized);
    let (l_prefill, l_single, l_batched, l_batched_decode) = match peers {
        Some((s, b)) => {
            let prompt = field(b, "prompt_tokens_total");
            let generated = field(b, "n_prompts") * field(b, "gen_per_prompt");
            (
                field(s, "pp_tok_per_s_median"),
                field(s, "decode_tok_per_s_median"),
                (prompt + generated) / field(b, "total_s"),
                field(b, "decode_tok_per_s_aggregate"),
            )
        }
        None => (f64::NAN, f64::NAN, f64::NAN, f64::NAN),
    };
    // The compute limit: every token of the largest batched run costs `flops_per_token` at the
    // best rate measured on any of the model's shapes.
    let limit_tok_s = r.matmul_gflops * 1e9 / r.flops_per_token;
    // The same run's matrix products, each at its own shape's rate (see `workload_seconds`).
    let workload_limit = largest.map(|b| b.matmul_limit_tok_s).unwrap_or(f64::NAN);
    let projection_limit = largest.map(|b| b.projection_limit_tok_s).unwrap_or(f64::NAN);
    let num = |x: f64| if x.is_finite() { json!(x) } else { Value::Null };
    json!({
        "coaug_prefill_tok_s": num(coaug_prefill),
        "coaug_single_tok_s": num(coaug_single),
        "coaug_batched_tok_s": num(coaug_batched),
        "coaug_batched_batch": largest.map(|b| b.batch),
        "coaug_batched_kv_cache": kv_cache,
        "coaug_batched_other_kv_cache": other_kv.map(|b| b.kv_cache.clone()),
        "coaug_batched_other_kv_tok_s": num(other_kv.map(|b| b.total_tok_s).unwrap_or(f64::NAN)),
        "other_kv_fraction_of_workload_limit": num(other_kv.map(|b| b.total_tok_s / b.matmul_limit_tok_s).unwrap_or(f64::NAN)),
        "coaug_batched_by_kv_cache": by_kv,
        "coaug_batched_decode_tok_s": num(largest.map(|b| b.decode_tok_s).unwrap_or(f64::NAN)),
        "llamacpp_prefill_tok_s": num(l_prefill),
        "llamacpp_single_tok_s": num(l_single),
        "llamacpp_batched_tok_s": num(l_batched),
        "llamacpp_batched_decode_tok_s": num(l_batched_decode),
        "train_tok_s": r.train_tok_s.map(num),
        "train_set": format!("{train:?}"),
        "peak_rss_mb": r.peak_rss_mb,
        "matmul_gflops": r.matmul_gflops,
        "compute_limit_tok_s": limit_tok_s,
        "ratio_prefill": num(coaug_prefill / l_prefill),
        "ratio_single": num(coaug_single / l_single),
        "ratio_batched": num(coaug_batched / l_batched),
        "batched_fraction_of_limit": num(coaug_batched / limit_tok_s),
        "batched_workload_limit_tok_s": num(workload_limit),
        "batched_fraction_of_workload_limit": num(coaug_batched / workload_limit),
        "batched_projection_limit_tok_s": num(projection_limit),
        "batched_fraction_of_projection_limit": num(coaug_batched / projection_limit),
    })
}

fn print_table(r: &LmBenchReport, s: &Value) {
    let f = |k: &str| s.get(k).and_then(Value::as_f64).map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
    println!(
        "threads: {}   f32 matmul limit: {:.1} GFLOP/s ({:.0} tok/s at {:.0} MFLOP/token)",
        r.threads,
        r.matmul_gflops,
        r.matmul_gflops * 1e9 / r.flops_per_token,
        r.flops_per_token / 1e6
    );
    println!("{:<34} {:>10} {:>10} {:>7}", "tokens/s", "coaug", "llama.cpp", "ratio");
    println!(
        "{:<34} {:>10} {:>10} {:>7}",
        "prefill (~400-token prompt)",
        f("coaug_prefill_tok_s"),
        f("llamacpp_prefill_tok_s"),
        f("ratio_prefill")
    );
    println!("{:<34} {:>10} {:>10} {:>7}", "single-stream decode", f("coaug_single_tok_s"), f("llamacpp_single_tok_s"), f("ratio_single"));
    println!(
        "{:<34} {:>10} {:>10} {:>7}",
        "batched, prompt+generated",
        f("coaug_batched_tok_s"),
        f("llamacpp_batched_tok_s"),
        f("ratio_batched")
    );
    println!(
        "  coaug prefill: quantized {:.1}, f32 {:.1}; single decode: quantized {:.1}, f32 {:.1}",
        r.prefill_tok_s_quantized, r.prefill_tok_s_f32, r.single_decode_tok_s_quantized, r.single_decode_tok_s_f32
    );
    for b in &r.batched {
        println!(
            "  coaug batch {:>3}, {} KV: prefill {:.1} tok/s, decode {:.1} tok/s, end-to-end {:.1} tok/s ({:.0}% of its matmuls' limit, {:.0} tok/s; {:.0}% of its projections' alone)",
            b.batch,
            b.kv_cache,
            b.prefill_tok_s,
            b.decode_tok_s,
            b.total_tok_s,
            100.0 * b.total_tok_s / b.matmul_limit_tok_s,
            b.matmul_limit_tok_s,
            100.0 * b.total_tok_s / b.projection_limit_tok_s
        );
    }
    if let Some(t) = r.train_tok_s {
        println!("training ({}): {:.1} tok/s ({:.1} s/step)", s["train_set"].as_str().unwrap_or(""), t, r.train_step_s.unwrap_or(f64::NAN));
    }
    println!("peak RSS: {:.0} MB", r.peak_rss_mb);
}
