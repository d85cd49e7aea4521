//! `coaug serve`: the HTTP search API over an index (coaug-serve), with query augmentation by
//! the LM batched across concurrent requests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use coaug_augment::{AugmentStore, Retriever};
use coaug_index::Bm25Index;
use coaug_serve::{ExpanderConfig, Metrics, QueryExpander, SearchService, ServeConfig};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The index folder (`coaug index`, or the augmented indexes `coaug eval` caches).
    #[arg(long, value_name = "DIR")]
    pub index: PathBuf,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    pub addr: SocketAddr,

    /// Expand every query with the LM of --model/--backend first (through the augmentation
    /// store); a request can opt out with `"augment": false`.
    #[arg(long)]
    pub augment_queries: bool,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub composition: super::augmented_eval::CompositionArgs,

    #[command(flatten)]
    pub model: super::augment::ModelArgs,

    #[command(flatten)]
    pub generation: super::augment::GenerationArgs,
}

/// Limits of the server and of its batching.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Requests handled at once; more wait in line (each holds a connection, nothing more).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_concurrent: usize,

    /// Largest `k` a request may ask for.
    #[arg(long, default_value_t = 1000, value_name = "K")]
    pub max_k: usize,

    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = 64 * 1024, value_name = "BYTES")]
    pub max_body_bytes: usize,

    /// Queries of concurrent requests expanded in one LM batch at most.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_batch: usize,

    /// How long the first query of an LM batch waits for others (milliseconds).
    #[arg(long, default_value_t = 5, value_name = "MS")]
    pub max_wait_ms: u64,

    /// Queries waiting for the LM at most; beyond, requests get 503 at once.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_queued: usize,

    /// Seconds a request may wait (in line and for the LM) before it gets 503.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub request_timeout: u64,
}

impl LimitArgs {
    pub fn serve_config(&self) -> ServeConfig {
        ServeConfig {
            max_k: self.max_k,
            max_body_bytes: self.max_body_bytes,
            max_concurrent: self.max_concurrent.max(1),
            request_timeout: Duration::from_secs(self.request_timeout),
            ..ServeConfig::default()
        }
    }

    pub fn expander_config(&self) -> ExpanderConfig {
        ExpanderConfig { max_batch: self.max_batch, max_wait: Duration::from_millis(self.max_wait_ms), max_queued: self.max_queued }
    }
}

/// The index, the composition and (with `augment`) the expander, as `coaug serve` runs them.
pub fn service(
    index: &std::path::Path,
    augment: bool,
    composition: &super::augmented_eval::CompositionArgs,
    model: &super::augment::ModelArgs,
    generation: &super::augment::GenerationArgs,
    limits: &LimitArgs,
    metrics: Arc<Metrics>,
) -> Result<SearchService> {
    if !index.exists() {
        bail!("no index at {} (build one with `coaug index`)", index.display());
    }
    let bm25 = Bm25Index::open(index)?;
    let composition = composition.one()?;
    let expander = if augment {
        let settings = generation.settings(Retriever::Sparse)?;
        let store = AugmentStore::open(&generation.store_path())?;
        let model = model.clone();
        Some(QueryExpander::start(Box::new(move || model.load()), store, settings, limits.expander_config(), metrics)?)
    } else {
        None
    };
    Ok(SearchService { index: bm25, composition, expander })
}

pub fn run(args: Args) -> Result<()> {
    let metrics = Arc::new(Metrics::default());
    let service =
        service(&args.index, args.augment_queries, &args.composition, &args.model, &args.generation, &args.limits, metrics.clone())?;
    let documents = service.index.num_docs();
    let router = coaug_serve::router(Arc::new(service), metrics, args.limits.serve_config());
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("cannot listen on {}", args.addr))?;
        eprintln!(
            "serving {} documents from {} on http://{} (POST /search, GET /health, GET /metrics){}; Ctrl-C stops",
            documents,
            args.index.display(),
            listener.local_addr()?,
            if args.augment_queries { ", queries expanded by the LM" } else { "" }
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("stopping: finishing the requests in flight");
        };
        coaug_serve::serve(listener, router, shutdown).await.context("the server failed")
    })
}
