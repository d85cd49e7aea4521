//! Query expansion for concurrent requests, batched: one thread owns the LM and the store, takes
//! the first waiting query, gathers whatever else arrives within `max_wait` (up to `max_batch`),
//! and expands them together — one LM batch for all the queries the store lacks.
//!
//! A dedicated thread, not a tokio task: generation is seconds of CPU work that must not stall
//! the async runtime, and the model and the SQLite connection stay on the thread that made them.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use coaug_augment::{AugmentStore, Generator};
use coaug_data::Query;
use coaug_retrieval::{AugmentReports, AugmentSettings, Augmenter};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// How requests are gathered into batches.
#[derive(Debug, Clone, Copy)]
pub struct ExpanderConfig {
    /// Queries expanded together at most.
    pub max_batch: usize,
    /// How long the first query of a batch waits for company.
    pub max_wait: Duration,
    /// Queries waiting at most; beyond, a request is refused as busy (503) instead of queueing
    /// without bound.
    pub max_queued: usize,
}

impl Default for ExpanderConfig {
    fn default() -> Self {
        Self { max_batch: 32, max_wait: Duration::from_millis(5), max_queued: 1024 }
    }
}

type Reply = oneshot::Sender<Result<Vec<String>, String>>;

struct Job {
    query: String,
    reply: Reply,
}

/// Why a query was not expanded.
#[derive(Debug, PartialEq, Eq)]
pub enum ExpandError {
    /// The queue is full: try again later.
    Busy,
    /// The expander thread is gone (it failed to start or the LM failed).
    Stopped,
    Failed(String),
}

/// The handle requests use; the thread stops when every handle is dropped.
pub struct QueryExpander {
    jobs: SyncSender<Job>,
}

impl QueryExpander {
    /// Starts the thread. `make_generator` runs on it (the model never crosses threads); a model
    /// that fails to load is reported here, before the server accepts requests.
    pub fn start(
        make_generator: Box<dyn FnOnce() -> Result<Box<dyn Generator>> + Send>,
        store: AugmentStore,
        settings: AugmentSettings,
        config: ExpanderConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        anyhow::ensure!(config.max_batch >= 1 && config.max_queued >= 1, "the expander needs a batch and a queue of at least 1");
        anyhow::ensure!(settings.query_context == 0, "coaug serve does not expand with retrieved passages (--query-context 0)");
        let (jobs, queue) = mpsc::sync_channel::<Job>(config.max_queued);
        let (ready, started) = mpsc::channel::<Result<()>>();
        std::thread::Builder::new().name("query-expander".into()).spawn(move || {
            let mut generator = match make_generator() {
                Ok(g) => {
                    let _ = ready.send(Ok(()));
                    g
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            let mut store = store;
            run(queue, generator.as_mut(), &mut store, &settings, config, &metrics);
        })?;
        started.recv().map_err(|_| anyhow::anyhow!("the expander thread died while loading the model"))??;
        Ok(Self { jobs })
    }

    /// The expansions of `query` (empty when the model wrote nothing usable).
    pub async fn expand(&self, query: String) -> Result<Vec<String>, ExpandError> {
        let (reply, answer) = oneshot::channel();
        match self.jobs.try_send(Job { query, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ExpandError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(ExpandError::Stopped),
        }
        match answer.await {
            Ok(Ok(expansions)) => Ok(expansions),
            Ok(Err(e)) => Err(ExpandError::Failed(e)),
            Err(_) => Err(ExpandError::Stopped),
        }
    }
}

fn run(
    queue: Receiver<Job>,
    generator: &mut dyn Generator,
    store: &mut AugmentStore,
    settings: &AugmentSettings,
    config: ExpanderConfig,
    metrics: &Metrics,
) {
    let budget = generator.token_budget();
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + config.max_wait;
        while batch.len() < config.max_batch {
            match queue.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // Identical queries of one batch are one item.
        let mut ids: HashMap<String, String> = HashMap::new();
        let mut queries = Vec::new();
        for job in &batch {
            let next = ids.len();
            ids.entry(job.query.clone()).or_insert_with(|| {
                queries.push(Query { id: format!("q{next}"), text: job.query.clone() });
                format!("q{next}")
            });
        }
        let mut reports = AugmentReports::default();
        let mut augmenter = Augmenter { generator, budget: budget.as_ref(), store, settings };
        let result = augmenter.expand_queries(&queries, None, &mut reports);
        for report in &reports.queries {
            metrics.expansion_cache_hits.inc_by(report.already_stored as u64);
            metrics.expansions_generated.inc_by(report.generated as u64);
            if report.generated > 0 {
                metrics.lm_batch_size.observe(report.generated as f64);
                metrics.lm_batches.inc();
            }
        }
        match result {
            Ok(expansions) => {
                for job in batch {
                    let id = &ids[&job.query];
                    let _ = job.reply.send(Ok(expansions.get(id).cloned().unwrap_or_default()));
                }
            }
            Err(e) => {
                let message = format!("query expansion failed: {e:#}");
                tracing::warn!("{message}");
                for job in batch {
                    let _ = job.reply.send(Err(message.clone()));
                }
            }
        }
    }
}
