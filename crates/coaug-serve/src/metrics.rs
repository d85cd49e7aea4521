//! Prometheus metrics of the server (text exposition at `GET /metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub path: String,
    pub status: u16,
}

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by route and status (4xx and 5xx are the errors).
    pub requests: Family<RequestLabels, Counter>,
    /// Seconds from request to reply.
    pub latency: Histogram,
    /// Queries generated per LM batch (stored expansions are not generated).
    pub lm_batch_size: Histogram,
    /// Queries whose expansions came from the store.
    pub expansion_cache_hits: Counter,
    /// Queries sent to the LM.
    pub expansions_generated: Counter,
    /// LM batches run.
    pub lm_batches: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("coaug");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by route and status", requests.clone());
        // 0.25 ms .. ~8 s.
        let latency = Histogram::new(exponential_buckets(0.00025, 2.0, 16));
        registry.register("http_request_duration_seconds", "Seconds from request to reply", latency.clone());
        let lm_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 8));
        registry.register("lm_batch_size", "Queries generated together in one LM batch", lm_batch_size.clone());
        let expansion_cache_hits = Counter::default();
        registry.register("expansion_cache_hits", "Queries whose expansions were already in the store", expansion_cache_hits.clone());
        let expansions_generated = Counter::default();
        registry.register("expansions_generated", "Queries expanded by the LM", expansions_generated.clone());
        let lm_batches = Counter::default();
        registry.register("lm_batches", "LM batches run for query expansion", lm_batches.clone());
        Self { registry, requests, latency, lm_batch_size, expansion_cache_hits, expansions_generated, lm_batches }
    }
}

impl Metrics {
    pub fn record_request(&self, path: &str, status: u16, seconds: f64) {
        self.requests.get_or_create(&RequestLabels { path: path.to_string(), status }).inc();
        self.latency.observe(seconds);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
