//! Prints `bench_lm` figures for the default model as JSON.
//! usage: cargo run --release -p coaug-lm --example bench [-- --skip-train] [--batches 16,64]
use coaug_lm::*;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mut opts = LmBenchOptions { skip_train: args.iter().any(|a| a == "--skip-train"), ..Default::default() };
    if let Some(i) = args.iter().position(|a| a == "--batches") {
        opts.batch_sizes = args[i + 1].split(',').map(|s| s.parse().unwrap()).collect();
    }
    let path = fetch_default_model(&cache_root())?;
    let report = bench_lm(&path, &opts)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
