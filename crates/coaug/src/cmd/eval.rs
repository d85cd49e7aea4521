use std::path::PathBuf;

use anyhow::{Context, Result};
use coaug_eval::{evaluate, metrics_grid, EvalOptions, Measure, TableStyle};

use coaug_retrieval::{AugmentedBm25, Composition, QueryToRank, Retrieve};

use super::dense::{open_dense, with_retriever, RetrieverArgs};
use coaug_retrieval::table::KS;

use super::retrieval::{default_index_dir, open_or_build_index};
use super::DatasetArgs;

/// Indexes the corpus (or reuses a matching index; BM25 and/or dense vectors), retrieves the
/// top documents for every judged query of a split and prints BEIR's metrics (trec_eval semantics).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub dataset: DatasetArgs,

    /// Qrels split whose queries are run and judged.
    #[arg(long, default_value = "test")]
    pub split: String,

    /// Write `run.trec` and `metrics.json` (BEIR's key names) into this folder.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Where the BM25 index lives (default: the cache, one folder per dataset).
    #[arg(long, value_name = "DIR")]
    pub index_dir: Option<PathBuf>,

    /// Evaluate only the first N judged queries of the split (in the queries file's order): a
    /// quicker, fixed tuning set.
    #[arg(long, value_name = "N")]
    pub eval_limit: Option<usize>,

    /// Documents retrieved per query.
    #[arg(long, default_value_t = 1000)]
    pub top_k: usize,

    /// Keep documents whose id equals the query id (BEIR drops them by default).
    #[arg(long)]
    pub keep_identical_ids: bool,

    #[command(flatten)]
    pub retriever: RetrieverArgs,

    #[command(flatten)]
    pub bm25: super::retrieval::Bm25Args,

    #[command(flatten)]
    pub augmentation: super::augmented_eval::EvalAugmentArgs,
}

pub fn run(args: Args) -> Result<()> {
    let dataset = args.dataset.resolve()?;
    let analyzers = args.bm25.analyzers();
    if args.augmentation.is_active() {
        let ctx = super::augmented_eval::EvalContext {
            dataset: &dataset,
            split: &args.split,
            top_k: args.top_k,
            ignore_identical_ids: !args.keep_identical_ids,
            out: args.out.as_deref(),
            index_dir: args.index_dir.as_deref(),
            retriever: &args.retriever,
            analyzers: &analyzers,
            eval_limit: args.eval_limit,
        };
        return super::augmented_eval::run(ctx, &args.augmentation);
    }
    let mut split = dataset.load_split(&args.split)?;
    eprintln!("{}", split.report);
    if let Some(n) = args.eval_limit {
        split.keep_first_queries(n);
    }
    let kind = args.retriever.retriever;
    // Both retrievers are opened (index built, corpus encoded) before the clock starts, so
    // queries/s measures retrieval alone.
    let bm25 = if kind.uses_bm25() {
        let (stop_list, analyzer) = args.bm25.analyzer()?;
        let index_dir = args.index_dir.clone().unwrap_or_else(|| default_index_dir(&dataset, &stop_list));
        Some(AugmentedBm25::from_index(open_or_build_index(&index_dir, &split.corpus, &analyzer)?, Composition::plain_append())?)
    } else {
        None
    };
    let dense = if kind.uses_dense() { Some(open_dense(&args.retriever, &dataset, &split.corpus)?) } else { None };
    let dense_retriever = dense.as_ref().map(|d| d.retriever(&d.store, Composition::plain_append()));

    let started = std::time::Instant::now();
    let queries: Vec<QueryToRank> = split.queries.iter().map(|q| QueryToRank { id: &q.id, text: &q.text, expansions: &[] }).collect();
    let (run, tag) = with_retriever(
        &args.retriever,
        bm25.as_ref().map(|r| r as &dyn Retrieve),
        dense_retriever.as_ref().map(|r| r as &dyn Retrieve),
        |r| Ok((r.rank(&queries, args.top_k)?, r.run_tag())),
    )?;
    let secs = started.elapsed().as_secs_f64();
    let num_docs = bm25.as_ref().map_or(split.corpus.len(), |r| r.index().num_docs());

    let opts = EvalOptions { ignore_identical_ids: !args.keep_identical_ids, ..EvalOptions::default() };
    let metrics = evaluate(&split.qrels, &run, &KS, &opts);
    println!(
        "{} / {}: {}, {} queries ({:.0} queries/s), {} documents",
        dataset.name(),
        args.split,
        super::dense::describe(&args.retriever, dense.as_ref()),
        metrics.num_queries,
        queries.len() as f64 / secs,
        num_docs
    );
    println!("{}", metrics_grid(&metrics, &Measure::ALL, &KS, TableStyle::Plain));

    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        run.write_trec(out.join("run.trec"), tag).with_context(|| format!("writing {}", out.join("run.trec").display()))?;
        super::write_json(&out.join("metrics.json"), &metrics.mean)?;
        eprintln!("wrote {}/run.trec and metrics.json", out.display());
    }
    Ok(())
}
