//! Collection statistics that BM25 needs: N, average field length, document frequencies.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::analyzer::Analyzer;

/// Statistics of one searched field over a collection.
///
/// `avg_doc_len` follows tantivy: total number of terms (unquantised) divided by the number of
/// documents, computed in f32 as `total as f32 / num_docs as f32`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionStats {
    pub num_docs: u64,
    pub avg_doc_len: f32,
    /// Number of documents containing each (analysed) term. Absent terms have frequency 0.
    pub doc_freq: HashMap<String, u64>,
}

impl CollectionStats {
    /// Statistics of `texts` analysed with `analyzer`: what an index holding exactly these
    /// texts in one field would report.
    pub fn from_texts<S: AsRef<str> + Sync>(analyzer: &Analyzer, texts: &[S]) -> Self {
        let per_text: Vec<(Vec<String>, u64)> = texts
            .par_iter()
            .map(|text| {
                let mut terms = analyzer.terms(text.as_ref());
                let len = terms.len() as u64;
                terms.sort_unstable();
                terms.dedup();
                (terms, len)
            })
            .collect();
        let mut doc_freq: HashMap<String, u64> = HashMap::new();
        let mut total_terms = 0u64;
        for (terms, len) in per_text {
            total_terms += len;
            for term in terms {
                *doc_freq.entry(term).or_default() += 1;
            }
        }
        let num_docs = texts.len() as u64;
        Self { num_docs, avg_doc_len: mean_len(total_terms, num_docs), doc_freq }
    }

    pub fn doc_freq(&self, term: &str) -> u64 {
        self.doc_freq.get(term).copied().unwrap_or(0)
    }

    /// The same statistics with the average length taken from other texts (the RL reward
    /// keeps the original corpus's document frequencies but the augmented documents' length).
    pub fn with_avg_doc_len(mut self, avg_doc_len: f32) -> Self {
        self.avg_doc_len = avg_doc_len;
        self
    }
}

/// Tantivy's average field length of `texts`.
pub fn avg_doc_len<S: AsRef<str> + Sync>(analyzer: &Analyzer, texts: &[S]) -> f32 {
    let total: u64 = texts.par_iter().map(|t| u64::from(analyzer.num_terms(t.as_ref()))).sum();
    mean_len(total, texts.len() as u64)
}

/// `total / n` as tantivy computes it; an empty collection has average 0.
pub(crate) fn mean_len(total_terms: u64, num_docs: u64) -> f32 {
    if num_docs == 0 {
        0.0
    } else {
        total_terms as f32 / num_docs as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_documents_not_occurrences() {
        let a = Analyzer::default();
        let stats = CollectionStats::from_texts(&a, &["cells cells divide", "a cell wall", "walls"]);
        assert_eq!(stats.num_docs, 3);
        assert_eq!(stats.doc_freq("cell"), 2);
        assert_eq!(stats.doc_freq("wall"), 2);
        assert_eq!(stats.doc_freq("divid"), 1);
        assert_eq!(stats.doc_freq("absent"), 0);
        // 3 + 2 ("a" is a stop word) + 1 terms.
        assert_eq!(stats.avg_doc_len, 2.0);
        assert_eq!(avg_doc_len(&a, &["cells cells divide", "a cell wall", "walls"]), 2.0);
    }

    #[test]
    fn empty_collection_has_zero_average() {
        let a = Analyzer::default();
        let stats = CollectionStats::from_texts::<&str>(&a, &[]);
        assert_eq!(stats.num_docs, 0);
        assert_eq!(stats.avg_doc_len, 0.0);
    }
}
