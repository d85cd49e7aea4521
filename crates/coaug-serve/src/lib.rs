//! `coaug serve`: BM25 search over an augmented index as an HTTP API (axum).
//!
//! - [`SearchService`]: the index, the composition and, optionally, the [`QueryExpander`] —
//!   the same ranking as `coaug eval` and `coaug search` ([`coaug_retrieval::search_hits`]).
//! - [`QueryExpander`]: one thread owns the LM and the augmentation store; concurrent
//!   requests' queries are gathered into one LM batch (up to a size, or a few ms), expansions
//!   already in the store are served from it.
//! - [`http`]: the routes (`POST /search`, `GET /health`, `GET /metrics`), bounded concurrency,
//!   a body limit, JSON errors; [`metrics`]: Prometheus text.

pub mod expander;
pub mod http;
pub mod metrics;
pub mod service;

pub use expander::{ExpanderConfig, QueryExpander};
pub use http::{router, serve, ServeConfig};
pub use metrics::Metrics;
pub use service::{Hit, SearchReply, SearchService};
