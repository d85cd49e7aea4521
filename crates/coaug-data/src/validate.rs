//! Cross-checks between a split's qrels and the corpus and queries they refer to.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::Path;

use crate::qrels_tsv::QrelsStats;
use crate::types::{Document, Qrels, Query};

/// How many examples a warning lists before it just counts.
const EXAMPLES: usize = 5;

/// What loading a split found. Counts of dangling references are problems in the data that
/// loading survived; `is_clean` says whether there were any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationReport {
    pub split: String,
    pub documents: usize,
    /// Queries in `queries.jsonl`.
    pub queries_total: usize,
    /// Queries with judgements in this split (after dropping unknown ones).
    pub queries_judged: usize,
    /// Judgements kept.
    pub judgements: usize,
    /// Qrels lines repeating a (query, document) pair; the last score was kept.
    pub duplicate_judgements: usize,
    /// Distinct qrels query ids absent from `queries.jsonl`.
    pub unknown_queries: usize,
    /// Judgements of those queries, dropped: a query without text cannot be run.
    pub dropped_judgements: usize,
    /// Distinct qrels document ids absent from the corpus.
    pub unknown_documents: usize,
    /// Judgements naming those documents. They are kept, as BEIR and trec_eval keep them:
    /// such a document counts as relevant but can never be retrieved.
    pub judgements_to_unknown_documents: usize,
}

impl ValidationReport {
    pub fn is_clean(&self) -> bool {
        self.duplicate_judgements == 0 && self.unknown_queries == 0 && self.unknown_documents == 0
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "split {}: {} documents, {} of {} queries judged, {} judgements",
            self.split, self.documents, self.queries_judged, self.queries_total, self.judgements
        )?;
        if self.duplicate_judgements > 0 {
            write!(f, "; {} duplicate judgements", self.duplicate_judgements)?;
        }
        if self.unknown_queries > 0 {
            write!(f, "; {} unknown queries ({} judgements dropped)", self.unknown_queries, self.dropped_judgements)?;
        }
        if self.unknown_documents > 0 {
            write!(f, "; {} unknown documents ({} judgements)", self.unknown_documents, self.judgements_to_unknown_documents)?;
        }
        Ok(())
    }
}

/// Drops judgements of unknown queries from `qrels` and reports every dangling reference.
pub(crate) fn cross_check(
    qrels_path: &Path,
    corpus: &[Document],
    queries: &[Query],
    qrels: &mut Qrels,
    stats: QrelsStats,
    split: &str,
) -> ValidationReport {
    let doc_ids: HashSet<&str> = corpus.iter().map(|d| d.id.as_str()).collect();
    let query_ids: HashSet<&str> = queries.iter().map(|q| q.id.as_str()).collect();

    let mut unknown_queries = BTreeSet::new();
    let mut dropped_judgements = 0;
    let mut unknown_documents = BTreeSet::new();
    let mut judgements_to_unknown_documents = 0;
    for (query_id, judged) in qrels.iter() {
        if !query_ids.contains(query_id.as_str()) {
            unknown_queries.insert(query_id.clone());
            dropped_judgements += judged.len();
            continue;
        }
        for doc_id in judged.keys().filter(|d| !doc_ids.contains(d.as_str())) {
            unknown_documents.insert(doc_id.clone());
            judgements_to_unknown_documents += 1;
        }
    }
    qrels.retain_queries(|q| !unknown_queries.contains(q));

    let file = qrels_path.display();
    if stats.duplicate_pairs > 0 {
        tracing::warn!("{file}: {} repeated (query, document) pairs; kept the last score", stats.duplicate_pairs);
    }
    if !unknown_queries.is_empty() {
        tracing::warn!(
            "{file}: {} query ids not in queries.jsonl, {dropped_judgements} judgements dropped (e.g. {})",
            unknown_queries.len(),
            examples(&unknown_queries)
        );
    }
    if !unknown_documents.is_empty() {
        tracing::warn!(
            "{file}: {} document ids not in corpus.jsonl, in {judgements_to_unknown_documents} judgements (e.g. {})",
            unknown_documents.len(),
            examples(&unknown_documents)
        );
    }

    ValidationReport {
        split: split.to_owned(),
        documents: corpus.len(),
        queries_total: queries.len(),
        queries_judged: qrels.num_queries(),
        judgements: qrels.num_judgements(),
        duplicate_judgements: stats.duplicate_pairs,
        unknown_queries: unknown_queries.len(),
        dropped_judgements,
        unknown_documents: unknown_documents.len(),
        judgements_to_unknown_documents,
    }
}

fn examples(ids: &BTreeSet<String>) -> String {
    let shown: Vec<&str> = ids.iter().take(EXAMPLES).map(String::as_str).collect();
    shown.join(", ")
}
