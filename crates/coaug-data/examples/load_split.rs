//! Loads one split and prints its validation report and the time taken:
//! `cargo run --release -p coaug-data --example load_split -- nfcorpus test [DATA_DIR]`
//! (DATA_DIR defaults to the shared collections; with `-` it resolves through the cache).

use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "nfcorpus".to_owned());
    let split = args.next().unwrap_or_else(|| "test".to_owned());
    let data_dir = match args.next().as_deref() {
        Some("-") => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(coaug_data::shared_beir_dir()),
    };
    let start = Instant::now();
    let dataset = coaug_data::resolve(&name, data_dir.as_deref())?;
    let loaded = dataset.load_split(&split)?;
    println!("{} ({:.1} ms)", loaded.report, start.elapsed().as_secs_f64() * 1e3);
    Ok(())
}
