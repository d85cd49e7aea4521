//! Dense retrieval for coaug: BERT-family sentence encoders on candle, embeddings stored
//! on disk, exact (blocked matrix products) and approximate (HNSW) search, hybrid fusion
//! with BM25, and the query × document similarity matrix the dense RL reward needs.

pub mod ann;
pub mod bench;
pub mod bert;
pub mod corpus;
pub mod embeddings;
pub mod encoder;
pub mod exact;
pub mod fetch;
pub mod setup;
pub mod similarity;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use ann::{recall_at_k, HnswIndex, HnswParams};
pub use bert::{BertConfig, BertModel};
pub use corpus::{document_text, open_or_encode, patch_documents, search_queries};
pub use embeddings::{cosine, Embeddings, VectorRows};
pub use encoder::{plan_batches, BatchPolicy, SentenceEncoder};
pub use exact::{dot_products, exact_top_k};
pub use fetch::{default_encoder_dir, fetch_default_encoder};
pub use setup::{EncoderSetup, Pooling};
pub use similarity::similarity_matrix;
pub use store::{MappedEmbeddings, StoreManifest, StoredPrecision};

/// The default encoder's folder in coaug's cache, fetched on first use.
pub fn default_encoder() -> anyhow::Result<std::path::PathBuf> {
    fetch_default_encoder(&coaug_lm::cache_root())
}
