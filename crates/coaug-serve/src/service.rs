//! What a search request computes: expand the query (optionally), rank, look up titles.

use coaug_index::Bm25Index;
use coaug_retrieval::{search_hits, Composition, QueryToRank};
use serde::Serialize;

use crate::expander::QueryExpander;

/// The index searched, how queries are composed, and the LM that expands them (if any).
pub struct SearchService {
    pub index: Bm25Index,
    pub composition: Composition,
    pub expander: Option<QueryExpander>,
}

/// One ranked document.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hit {
    pub id: String,
    pub score: f32,
    pub title: String,
}

/// The reply to a search.
#[derive(Debug, Clone, Serialize)]
pub struct SearchReply {
    pub query: String,
    /// The expansions the LM wrote for it (empty without augmentation).
    pub expansions: Vec<String>,
    /// The query as searched: the original, then the expansions, one per line.
    pub augmented_query: String,
    pub hits: Vec<Hit>,
}

impl SearchService {
    /// Ranks `query` with its `expansions` (blocking: BM25 and the stored-document reads).
    pub fn rank(&self, query: &str, expansions: Vec<String>, k: usize) -> anyhow::Result<SearchReply> {
        let to_rank = QueryToRank { id: "query", text: query, expansions: &expansions };
        let hits = search_hits(&self.index, &self.composition, &to_rank, k)
            .into_iter()
            .map(|hit| {
                let doc = self.index.document(hit.doc)?;
                // Untitled corpora: the start of the text names the hit.
                let title = if doc.title.is_empty() { doc.text.chars().take(80).collect() } else { doc.title };
                Ok(Hit { id: doc.id, score: hit.score, title })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let augmented_query = self.composition.query_text(query, &expansions);
        Ok(SearchReply { query: query.to_string(), expansions, augmented_query, hits })
    }
}
