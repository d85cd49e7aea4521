//! `coaug bench serve`: a bounded load test of `coaug serve` on loopback — throughput and p50/p99
//! latency at 1, 8 and 32 concurrent clients, without augmentation, with the in-process LM
//! expanding every query, and with a remote OpenAI-compatible server expanding them.
//!
//! The server runs in this process (the same router and expander `coaug serve` builds) on an
//! ephemeral port; the clients are threads with their own HTTP connections, each sending its
//! next request when the last reply arrived (closed loop). Augmented modes start from an empty
//! store and send each query once, so every expansion is generated, never served from the store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use coaug_serve::Metrics;
use serde_json::{json, Value};

use crate::cmd::augment::{BackendArg, GenerationArgs, ModelArgs};
use crate::cmd::augmented_eval::CompositionArgs;
use crate::cmd::serve::LimitArgs;
use crate::cmd::DatasetArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The dataset whose plain BM25 index is served and whose queries (all splits) are sent.
    #[command(flatten)]
    pub dataset: DatasetArgs,

    /// Concurrent clients, one level after another.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32", value_name = "N,…")]
    pub concurrency: Vec<usize>,

    /// Requests per level without augmentation.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub requests: usize,

    /// Requests per level with augmentation: this many per client (at least 8 in all); each is
    /// a new query, so each is generated.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub augmented_requests_per_client: usize,

    /// Hits per request.
    #[arg(long, default_value_t = 10)]
    pub k: usize,

    /// Skip the in-process LM mode.
    #[arg(long)]
    pub no_local: bool,

    /// The OpenAI-compatible server of the remote mode (e.g. llama.cpp's, started by
    /// `../shared/peers/llamacpp_server.sh GGUF PORT`); without it the remote mode is skipped.
    #[arg(long, value_name = "URL")]
    pub remote_url: Option<String>,

    /// The model name sent to --remote-url.
    #[arg(long, default_value = "remote", value_name = "NAME")]
    pub remote_model: String,

    /// End with one JSON line: every level of every mode.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub generation: GenerationArgs,
}

/// One level's figures.
struct Level {
    mode: &'static str,
    clients: usize,
    requests: usize,
    errors: usize,
    seconds: f64,
    /// Ascending.
    latencies_ms: Vec<f64>,
    lm_batches: u64,
}

impl Level {
    fn percentile(&self, p: f64) -> f64 {
        super::percentile(&self.latencies_ms, p)
    }

    fn json(&self) -> Value {
        json!({
            "mode": self.mode,
            "clients": self.clients,
            "requests": self.requests,
            "errors": self.errors,
            "requests_per_s": self.requests as f64 / self.seconds,
            "p50_ms": self.percentile(50.0),
            "p99_ms": self.percentile(99.0),
            "lm_batches": self.lm_batches,
        })
    }
}

pub fn run(args: Args) -> Result<()> {
    let dataset = args.dataset.resolve()?;
    let corpus = dataset.load_corpus()?;
    let queries: Vec<String> = dataset.queries()?.into_iter().map(|q| q.text).collect();
    anyhow::ensure!(!queries.is_empty(), "the dataset has no queries");
    // The default analysis (NLTK stop words), as `coaug index` builds it.
    let stop_list = coaug_retrieval::StopList::Nltk;
    let index_dir = crate::cmd::retrieval::default_index_dir(&dataset, stop_list.name());
    drop(crate::cmd::retrieval::open_or_build_index(&index_dir, &corpus, &stop_list.analyzer())?);
    let composition = CompositionArgs::default();

    let mut modes: Vec<(&'static str, Option<ModelArgs>)> = vec![("plain", None)];
    if !args.no_local {
        modes.push(("local_lm", Some(args.model.clone())));
    }
    if let Some(url) = &args.remote_url {
        let mut remote = args.model.clone();
        remote.backend = BackendArg::Openai;
        remote.base_url = Some(url.clone());
        remote.model = Some(args.remote_model.clone());
        modes.push(("remote_lm", Some(remote)));
    }
    let mut levels = Vec::new();
    let mut next_query = 0usize;
    for (mode, model) in &modes {
        for &clients in &args.concurrency {
            let clients = clients.max(1);
            let requests = if model.is_some() { (clients * args.augmented_requests_per_client).max(8) } else { args.requests };
            // Augmented modes: fresh queries for every level, a fresh store for every mode.
            let sent: Vec<String> = if model.is_some() {
                let slice: Vec<String> = (0..requests).map(|i| queries[(next_query + i) % queries.len()].clone()).collect();
                next_query += requests;
                slice
            } else {
                queries.clone()
            };
            let store = tempfile::tempdir()?;
            let mut generation = args.generation.clone();
            generation.store = Some(store.path().join("store.sqlite"));
            let metrics = Arc::new(Metrics::default());
            let service = crate::cmd::serve::service(
                &index_dir,
                model.is_some(),
                &composition,
                model.as_ref().unwrap_or(&args.model),
                &generation,
                &args.limits,
                metrics.clone(),
            )?;
            let level = load_test(service, metrics, &args.limits, mode, clients, requests, &sent, args.k)?;
            eprintln!(
                "{mode:>9}, {clients:>2} clients: {:>6.1} requests/s, p50 {:>8.1} ms, p99 {:>8.1} ms ({} requests, {} errors, {} LM batches)",
                level.requests as f64 / level.seconds,
                level.percentile(50.0),
                level.percentile(99.0),
                level.requests,
                level.errors,
                level.lm_batches
            );
            levels.push(level);
        }
    }
    if args.json {
        let out = json!({
            "dataset": dataset.name(),
            "documents": corpus.len(),
            "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "levels": levels.iter().map(Level::json).collect::<Vec<_>>(),
        });
        println!("{out}");
    }
    Ok(())
}

/// Serves `service` on an ephemeral loopback port and sends `requests` requests from `clients`
/// threads, each waiting for its reply before the next.
#[allow(clippy::too_many_arguments)]
fn load_test(
    service: coaug_serve::SearchService,
    metrics: Arc<Metrics>,
    limits: &LimitArgs,
    mode: &'static str,
    clients: usize,
    requests: usize,
    queries: &[String],
    k: usize,
) -> Result<Level> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let router = coaug_serve::router(Arc::new(service), metrics.clone(), limits.serve_config());
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}/search", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    runtime.spawn(coaug_serve::serve(listener, router, async {
        let _ = stopped.await;
    }));

    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let per_client: Vec<(Vec<f64>, usize)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs(600)))
                        .build()
                        .into();
                    let (mut latencies, mut errors) = (Vec::new(), 0);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= requests {
                            break;
                        }
                        let body = json!({"query": queries[i % queries.len()], "k": k}).to_string();
                        let sent = Instant::now();
                        let ok = agent
                            .post(&url)
                            .header("content-type", "application/json")
                            .send(body.as_bytes())
                            .ok()
                            .and_then(|mut r| (r.status() == 200).then(|| r.body_mut().read_to_string().ok()).flatten())
                            .is_some();
                        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                        errors += usize::from(!ok);
                    }
                    (latencies, errors)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a client thread panicked")).collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let _ = stop.send(());
    let lm_batches = metrics.lm_batches.get();
    let (mut latencies_ms, errors) = per_client.into_iter().fold((Vec::new(), 0), |(mut all, e), (l, n)| {
        all.extend(l);
        (all, e + n)
    });
    latencies_ms.sort_by(f64::total_cmp);
    Ok(Level { mode, clients, requests, errors, seconds, latencies_ms, lm_batches })
}
