use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use coaug_eval::{evaluate, EvalOptions, Measure};
use coaug_index::bench::time_search;
use coaug_index::{Bm25Index, IndexConfig, IndexDoc};
use serde_json::json;

use super::peers::{field, PeerArgs};
use super::{median, time_median};
use crate::cmd::retrieval::hits_to_run;

/// A few hundred queries take milliseconds: each timed sample loops over them this long.
const QPS_MIN_TIME: Duration = Duration::from_millis(300);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Datasets to measure (test split).
    #[arg(long, value_delimiter = ',', default_value = "nfcorpus,scifact")]
    pub datasets: Vec<String>,

    /// Folder holding the datasets (default: $COAUG_DATA, else the cache).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Timed repeats per figure; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,

    #[command(flatten)]
    pub peers: PeerArgs,

    /// End with one JSON line keyed by dataset.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let peers = if args.peers.no_peers { None } else { Some(args.peers.setup()?) };
    let threads = rayon::current_num_threads();
    let mut report = BTreeMap::new();
    for name in &args.datasets {
        let dataset = coaug_data::resolve(name, args.data_dir.as_deref())?;
        let split = dataset.load_split("test")?;
        let docs = IndexDoc::from_documents(&split.corpus);
        let texts: Vec<&str> = split.queries.iter().map(|q| q.text.as_str()).collect();
        let tmp = tempfile::tempdir()?;

        let (index_s, index) = time_median(args.repeats, || Ok(Bm25Index::build(tmp.path(), &docs, &IndexConfig::default())?))?;
        let qps = |threads: usize| -> Result<f64> {
            let samples = (0..args.repeats.max(1))
                .map(|_| Ok(time_search(&index, &texts, 1000, threads, QPS_MIN_TIME)?.queries_per_sec()))
                .collect::<Result<Vec<f64>>>()?;
            Ok(median(samples))
        };
        let (qps_1t, qps_all) = (qps(1)?, qps(threads)?);
        let hits = index.search_batch(&texts, 1000);
        let run = hits_to_run(&index, &split.queries, &hits);
        let metrics = evaluate(&split.qrels, &run, &[10, 100], &EvalOptions::default());

        let mut row = json!({
            "n_docs": docs.len(),
            "n_queries": texts.len(),
            "threads_all": threads,
            "coaug_index_docs_s": docs.len() as f64 / index_s,
            "coaug_qps_1t": qps_1t,
            "coaug_qps_all": qps_all,
            "coaug_ndcg10": metrics.get(Measure::Ndcg, 10),
            "coaug_recall100": metrics.get(Measure::Recall, 100),
        });
        if let Some(peers) = &peers {
            let data_root = dataset.root().parent().context("dataset folder has no parent")?;
            let b = peers.run_json("bm25s_bench.py", &[name.as_str()], &[("COAUG_DATA", &data_root.to_string_lossy())])?;
            let extra = json!({
                "bm25s_index_docs_s": field(&b, "index_docs_per_s"),
                "bm25s_qps_1t": field(&b, "qps_single_thread_incl_tokenize"),
                "bm25s_qps_all": field(&b, "qps_n_threads_2_incl_tokenize"),
                "bm25s_ndcg10": field(&b, "ndcg@10"),
                "bm25s_recall100": field(&b, "recall@100"),
            });
            merge(&mut row, extra);
            let ratio = |a: &str, b: &str| row[a].as_f64().unwrap_or(f64::NAN) / row[b].as_f64().unwrap_or(f64::NAN);
            let ratios = json!({
                "qps_1t_ratio": ratio("coaug_qps_1t", "bm25s_qps_1t"),
                "qps_all_ratio": ratio("coaug_qps_all", "bm25s_qps_all"),
                "index_ratio": ratio("coaug_index_docs_s", "bm25s_index_docs_s"),
            });
            merge(&mut row, ratios);
        }
        print_row(name, &row);
        report.insert(name.clone(), row);
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

fn merge(row: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(row), serde_json::Value::Object(extra)) = (row.as_object_mut(), extra) {
        row.extend(extra);
    }
}

fn print_row(name: &str, row: &serde_json::Value) {
    let get = |k: &str| row.get(k).and_then(|v| v.as_f64());
    let cell = |k: &str, prec: usize| get(k).map_or("-".to_string(), |v| format!("{v:.prec$}"));
    println!("{name}: {} docs, {} queries", row["n_docs"], row["n_queries"]);
    println!("  {:<22} {:>12} {:>12} {:>8}", "", "coaug", "bm25s", "ratio");
    for (label, a, b, r, prec) in [
        ("index docs/s", "coaug_index_docs_s", "bm25s_index_docs_s", "index_ratio", 0),
        ("queries/s, 1 thread", "coaug_qps_1t", "bm25s_qps_1t", "qps_1t_ratio", 0),
        ("queries/s, all threads", "coaug_qps_all", "bm25s_qps_all", "qps_all_ratio", 0),
        ("nDCG@10", "coaug_ndcg10", "bm25s_ndcg10", "", 4),
        ("Recall@100", "coaug_recall100", "bm25s_recall100", "", 4),
    ] {
        let ratio = if r.is_empty() { String::new() } else { cell(r, 2) + "x" };
        println!("  {:<22} {:>12} {:>12} {:>8}", label, cell(a, prec), cell(b, prec), ratio);
    }
}
