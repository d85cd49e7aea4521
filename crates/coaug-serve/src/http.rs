//! The HTTP API: routes, limits and JSON errors.
//!
//! - `POST /search {"query": str, "k": int (default 10), "augment": bool (default: when an LM is
//!   loaded)}` → `{"query", "expansions", "augmented_query", "hits": [{"id", "score", "title"}],
//!   "took_ms"}`.
//! - `GET /health` → `{"status": "ok", "documents": n, "augmentation": bool}`.
//! - `GET /metrics` → Prometheus text.
//!
//! Every bad request gets a 4xx with `{"error": "…"}`; requests beyond the concurrency limit wait
//! their turn; a full expansion queue answers 503.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::expander::ExpandError;
use crate::metrics::Metrics;
use crate::service::SearchService;

/// Limits of the HTTP layer.
#[derive(Debug, Clone, Copy)]
pub struct ServeConfig {
    /// Largest `k` a request may ask for.
    pub max_k: usize,
    /// Longest query, in bytes.
    pub max_query_bytes: usize,
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Requests handled at once; more wait in line.
    pub max_concurrent: usize,
    /// A request that waits longer than this (in line, for the LM) is answered 503.
    pub request_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_k: 1000,
            max_query_bytes: 8 * 1024,
            max_body_bytes: 64 * 1024,
            max_concurrent: 64,
            request_timeout: Duration::from_secs(120),
        }
    }
}

struct App {
    service: Arc<SearchService>,
    metrics: Arc<Metrics>,
    config: ServeConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchRequest {
    query: String,
    k: Option<usize>,
    augment: Option<bool>,
}

/// A JSON error reply.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

/// The routes, with `service` behind them.
pub fn router(service: Arc<SearchService>, metrics: Arc<Metrics>, config: ServeConfig) -> Router {
    let app = Arc::new(App { service, metrics: metrics.clone(), config });
    Router::new()
        .route("/search", post(search))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route: POST /search, GET /health, GET /metrics".into()) })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(tower::limit::ConcurrencyLimitLayer::new(config.max_concurrent))
        .layer(middleware::from_fn_with_state(metrics, record))
        .with_state(app)
}

/// Serves `router` on `listener` until `shutdown` resolves (in-flight requests finish).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

/// Counts every reply by route and status, and its latency.
async fn record(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let path = match request.uri().path() {
        p @ ("/search" | "/health" | "/metrics") => p.to_string(),
        _ => "other".to_string(),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.record_request(&path, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

async fn health(State(app): State<Arc<App>>) -> Response {
    Json(json!({
        "status": "ok",
        "documents": app.service.index.num_docs(),
        "augmentation": app.service.expander.is_some(),
    }))
    .into_response()
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], app.metrics.encode()).into_response()
}

async fn search(State(app): State<Arc<App>>, body: Result<Json<SearchRequest>, JsonRejection>) -> Result<Response, ApiError> {
    let started = Instant::now();
    // Malformed JSON (400), wrong types or unknown fields (422), a body over the limit (413),
    // not JSON at all (415): axum's status, our JSON shape.
    let Json(request) = body.map_err(|r| ApiError(r.status(), r.body_text()))?;
    let query = request.query.trim().to_string();
    if query.is_empty() {
        return Err(bad_request("the query is empty"));
    }
    if query.len() > app.config.max_query_bytes {
        return Err(bad_request(format!("the query is {} bytes; at most {} are searched", query.len(), app.config.max_query_bytes)));
    }
    let k = request.k.unwrap_or(10);
    if k == 0 || k > app.config.max_k {
        return Err(bad_request(format!("k must be between 1 and {}, not {k}", app.config.max_k)));
    }
    let expansions = match (&app.service.expander, request.augment) {
        (None, Some(true)) => return Err(bad_request("this server has no LM to expand queries (start it with --augment-queries)")),
        (Some(expander), None | Some(true)) => {
            match tokio::time::timeout(app.config.request_timeout, expander.expand(query.clone())).await {
                Err(_) => return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "query expansion timed out".into())),
                Ok(Err(ExpandError::Busy)) => {
                    return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "too many queries waiting for the LM; retry".into()))
                }
                Ok(Err(ExpandError::Stopped)) => {
                    return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "the query expander stopped".into()))
                }
                Ok(Err(ExpandError::Failed(e))) => return Err(ApiError(StatusCode::BAD_GATEWAY, e)),
                Ok(Ok(expansions)) => expansions,
            }
        }
        _ => Vec::new(),
    };
    let service = app.service.clone();
    let reply = tokio::task::spawn_blocking(move || service.rank(&query, expansions, k))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("search task failed: {e}")))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("search failed: {e:#}")))?;
    let mut value = serde_json::to_value(&reply).expect("plain data serialises");
    value["took_ms"] = json!(started.elapsed().as_secs_f64() * 1e3);
    Ok(Json(value).into_response())
}
