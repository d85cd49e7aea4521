//! A retrieval run: for each query, the retrieved documents and their scores.

use std::collections::BTreeMap;

use crate::ranking::{sort_trec_eval, ScorePrecision, ScoredDoc};

/// Query id -> document id -> score.
///
/// Stored as maps, like the dicts pytrec_eval takes: a document appears at most once per query
/// (trec_eval rejects duplicates), and the rank is derived from the scores, never stored,
/// because trec_eval ignores the rank column too. BTreeMaps keep every result deterministic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Run {
    scores: BTreeMap<String, BTreeMap<String, f64>>,
}

impl Run {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the score of `doc_id` for `query_id`, returning the score it replaces.
    pub fn insert(&mut self, query_id: impl Into<String>, doc_id: impl Into<String>, score: f64) -> Option<f64> {
        self.scores.entry(query_id.into()).or_default().insert(doc_id.into(), score)
    }

    /// Adds a query's retrieved documents (e.g. a retriever's top-k) to the run.
    /// An empty list still records the query as run (it then scores 0 on every metric).
    pub fn insert_ranking(&mut self, query_id: impl Into<String>, docs: impl IntoIterator<Item = ScoredDoc>) {
        let entry = self.scores.entry(query_id.into()).or_default();
        for doc in docs {
            entry.insert(doc.doc_id, doc.score);
        }
    }

    /// The documents retrieved for `query_id`, by document id.
    pub fn scores(&self, query_id: &str) -> Option<&BTreeMap<String, f64>> {
        self.scores.get(query_id)
    }

    /// The documents retrieved for `query_id` in trec_eval's order (empty if the query is absent).
    pub fn ranking(&self, query_id: &str, precision: ScorePrecision) -> Vec<ScoredDoc> {
        let mut docs: Vec<ScoredDoc> =
            self.scores(query_id).into_iter().flatten().map(|(doc_id, &score)| ScoredDoc::new(doc_id.clone(), score)).collect();
        sort_trec_eval(&mut docs, precision);
        docs
    }

    pub fn query_ids(&self) -> impl Iterator<Item = &String> {
        self.scores.keys()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &BTreeMap<String, f64>)> {
        self.scores.iter()
    }

    pub fn num_queries(&self) -> usize {
        self.scores.len()
    }

    /// Number of (query, document) entries.
    pub fn num_entries(&self) -> usize {
        self.scores.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Keeps the best `depth` documents of every query (in trec_eval's order).
    pub fn truncate(&mut self, depth: usize, precision: ScorePrecision) {
        let query_ids: Vec<String> = self.scores.keys().cloned().collect();
        for query_id in query_ids {
            let kept = self.ranking(&query_id, precision).into_iter().take(depth);
            let docs = kept.map(|d| (d.doc_id, d.score)).collect();
            self.scores.insert(query_id, docs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_replaces_a_documents_score() {
        let mut run = Run::new();
        assert_eq!(run.insert("q", "d", 1.0), None);
        assert_eq!(run.insert("q", "d", 2.0), Some(1.0));
        assert_eq!(run.num_entries(), 1);
        assert_eq!(run.scores("q").unwrap()["d"], 2.0);
    }

    #[test]
    fn ranking_follows_trec_eval_order() {
        let mut run = Run::new();
        run.insert_ranking("q", [ScoredDoc::new("a", 1.0), ScoredDoc::new("b", 3.0), ScoredDoc::new("c", 1.0)]);
        let ids: Vec<String> = run.ranking("q", ScorePrecision::F64).into_iter().map(|d| d.doc_id).collect();
        assert_eq!(ids, ["b", "c", "a"]);
        assert!(run.ranking("missing", ScorePrecision::F64).is_empty());
    }

    #[test]
    fn empty_ranking_still_records_the_query() {
        let mut run = Run::new();
        run.insert_ranking("q", []);
        assert_eq!(run.num_queries(), 1);
        assert_eq!(run.num_entries(), 0);
    }

    #[test]
    fn truncate_keeps_the_top_documents() {
        let mut run = Run::new();
        for (doc, score) in [("a", 0.1), ("b", 0.9), ("c", 0.5), ("d", 0.5)] {
            run.insert("q", doc, score);
        }
        run.truncate(2, ScorePrecision::F64);
        let kept: Vec<&String> = run.scores("q").unwrap().keys().collect();
        assert_eq!(kept, ["b", "d"]);
    }
}
