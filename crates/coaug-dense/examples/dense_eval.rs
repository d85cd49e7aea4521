//! Dense retrieval nDCG@10 on BEIR test splits without the CLI (which does the same via
//! `coaug eval --retriever dense`); vectors land in the same cache folder, so either reuses
//! the other's. `cargo run --release -p coaug-dense --example dense_eval -- nfcorpus scifact`

use coaug_dense::{document_text, open_or_encode, search_queries, SentenceEncoder, StoredPrecision};
use coaug_eval::{evaluate, EvalOptions, Run};

fn main() -> anyhow::Result<()> {
    let names: Vec<String> = std::env::args().skip(1).collect();
    let data_dir = std::env::var_os("COAUG_DATA").map(std::path::PathBuf::from);
    let encoder = SentenceEncoder::load(&coaug_dense::default_encoder()?)?;
    for name in names {
        let dataset = coaug_data::resolve(&name, data_dir.as_deref())?;
        let split = dataset.load_split("test")?;
        let dir = coaug_lm::cache_root().join("dense").join(dataset.name()).join(format!("{}-f32", encoder.name()));
        let ids: Vec<String> = split.corpus.iter().map(|d| d.id.clone()).collect();
        let texts: Vec<String> = split.corpus.iter().map(document_text).collect();
        let started = std::time::Instant::now();
        let (store, built) = open_or_encode(&dir, &encoder, &ids, &texts, StoredPrecision::F32)?;
        eprintln!("{name}: {} docs, built={built}, {:.1} s", ids.len(), started.elapsed().as_secs_f64());
        let queries: Vec<&str> = split.queries.iter().map(|q| q.text.as_str()).collect();
        let hits = search_queries(&encoder, &store, &queries, 1000)?;
        let mut run = Run::new();
        for (q, hits) in split.queries.iter().zip(hits) {
            for (doc, score) in hits {
                run.insert(q.id.clone(), doc, f64::from(score));
            }
        }
        let m = evaluate(&split.qrels, &run, &[10, 100], &EvalOptions::default());
        println!("{name}: dense nDCG@10 {:.4}  Recall@100 {:.4}", m.mean["NDCG@10"], m.mean["Recall@100"]);
    }
    Ok(())
}
