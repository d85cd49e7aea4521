//! Index-build and search throughput on the shared BEIR collections.
//! `cargo run --release -p coaug-index --example bm25_bench [dataset ...]`

use std::time::Duration;

use coaug_data::Dataset;
use coaug_index::bench::{time_build, time_search, time_tantivy_search};
use coaug_index::{IndexConfig, IndexDoc};

fn main() -> anyhow::Result<()> {
    let names: Vec<String> = std::env::args().skip(1).collect();
    let names = if names.is_empty() { vec!["nfcorpus".into(), "scifact".into()] } else { names };
    let min_time = Duration::from_secs(2);
    for name in names {
        let dataset = Dataset::open(coaug_data::shared_beir_dir().join(&name))?;
        let docs = IndexDoc::from_documents(&dataset.load_corpus()?);
        let queries: Vec<String> = dataset.queries()?.into_iter().map(|q| q.text).collect();
        let dir = tempfile::tempdir()?;
        let (index, build) = time_build(&dir.path().join(&name), &docs, &IndexConfig::default())?;
        println!(
            "{name}: {} docs built in {:.2?} ({:.0} docs/s), opened in {:.2?}",
            build.num_docs,
            build.build,
            build.docs_per_sec(),
            build.open
        );
        for k in [10, 1000] {
            for threads in [1, 2] {
                let t = time_search(&index, &queries, k, threads, min_time)?;
                println!("{name}: k={k:<4} threads={threads}: {:.0} queries/s", t.queries_per_sec());
            }
            let t = time_tantivy_search(&index, &queries, k, min_time)?;
            println!("{name}: k={k:<4} tantivy collector, 1 thread: {:.0} queries/s", t.queries_per_sec());
        }
    }
    Ok(())
}
