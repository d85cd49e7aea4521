//! BM25 of arbitrary (query, document) text pairs, outside any index, with the same analyzer
//! and the same arithmetic as tantivy. The RL reward scores every query rollout against every
//! document rollout of a step with it.

use coaug_eval::ScoreMatrix;
use std::collections::HashMap;

use rayon::prelude::*;

use crate::analyzer::Analyzer;
use crate::bm25::{fieldnorm_id, term_weight, LengthNorms};
use crate::query::WeightedQuery;
use crate::stats::CollectionStats;

/// A query reduced to its distinct terms (first-occurrence order), each with its weight in the
/// query ([`WeightedQuery`]: for a plain text, its number of occurrences, as in a Lucene
/// BooleanQuery of term queries) and its BM25 term weight under the scorer's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysedQuery {
    terms: Vec<QueryTerm>,
}

#[derive(Debug, Clone, PartialEq)]
struct QueryTerm {
    text: String,
    count: f32,
    weight: f32,
}

impl AnalysedQuery {
    pub fn num_distinct_terms(&self) -> usize {
        self.terms.len()
    }
}

/// A document reduced to term frequencies and its quantised length.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysedDoc {
    term_freqs: HashMap<String, u32>,
    num_terms: u32,
    fieldnorm_id: u8,
}

impl AnalysedDoc {
    pub fn num_terms(&self) -> u32 {
        self.num_terms
    }

    pub fn term_freq(&self, term: &str) -> u32 {
        self.term_freqs.get(term).copied().unwrap_or(0)
    }
}

/// BM25 (k1 = 1.2, b = 0.75) under fixed collection statistics.
#[derive(Debug, Clone)]
pub struct Bm25Scorer {
    analyzer: Analyzer,
    stats: CollectionStats,
    norms: LengthNorms,
}

impl Bm25Scorer {
    pub fn new(analyzer: Analyzer, stats: CollectionStats) -> Self {
        let norms = LengthNorms::new(stats.avg_doc_len);
        Self { analyzer, stats, norms }
    }

    pub fn analyzer(&self) -> &Analyzer {
        &self.analyzer
    }

    pub fn stats(&self) -> &CollectionStats {
        &self.stats
    }

    pub fn analyse_query(&self, text: &str) -> AnalysedQuery {
        self.analyse_weighted(&WeightedQuery::from_text(&self.analyzer, text))
    }

    /// A weighted query (terms analysed already) under this scorer's statistics.
    pub fn analyse_weighted(&self, query: &WeightedQuery) -> AnalysedQuery {
        let terms = (query.terms().iter())
            .map(|(text, count)| QueryTerm {
                text: text.clone(),
                count: *count,
                weight: term_weight(self.stats.doc_freq(text), self.stats.num_docs),
            })
            .collect();
        AnalysedQuery { terms }
    }

    pub fn analyse_doc(&self, text: &str) -> AnalysedDoc {
        let mut term_freqs: HashMap<String, u32> = HashMap::new();
        let mut num_terms = 0u32;
        self.analyzer.for_each_term(text, |term| {
            num_terms += 1;
            match term_freqs.get_mut(term) {
                Some(tf) => *tf += 1,
                None => {
                    term_freqs.insert(term.to_owned(), 1);
                }
            }
        });
        AnalysedDoc { term_freqs, num_terms, fieldnorm_id: fieldnorm_id(num_terms) }
    }

    pub fn score(&self, query: &str, doc: &str) -> f32 {
        self.score_analysed(&self.analyse_query(query), &self.analyse_doc(doc))
    }

    pub fn score_analysed(&self, query: &AnalysedQuery, doc: &AnalysedDoc) -> f32 {
        let mut score = 0.0f32;
        for term in &query.terms {
            let tf = doc.term_freq(&term.text);
            if tf > 0 {
                score += term.count * self.norms.score(term.weight, tf, doc.fieldnorm_id);
            }
        }
        score
    }

    /// Every query against every document. Equal, pair by pair, to [`Self::score_analysed`]:
    /// terms are added in the same order.
    pub fn score_matrix(&self, queries: &[AnalysedQuery], docs: &[AnalysedDoc]) -> ScoreMatrix {
        // Only terms some query asks for matter; number them, then list per term the
        // documents containing it, so each row touches only matching documents.
        let mut term_ids: HashMap<&str, usize> = HashMap::new();
        for term in queries.iter().flat_map(|q| &q.terms) {
            let next = term_ids.len();
            term_ids.entry(term.text.as_str()).or_insert(next);
        }
        let mut postings: Vec<Vec<(u32, u32)>> = vec![Vec::new(); term_ids.len()];
        for (d, doc) in docs.iter().enumerate() {
            for (term, &tf) in &doc.term_freqs {
                if let Some(&id) = term_ids.get(term.as_str()) {
                    postings[id].push((d as u32, tf));
                }
            }
        }
        let num_docs = docs.len();
        let mut scores = vec![0.0f32; queries.len() * num_docs];
        if num_docs > 0 {
            scores.par_chunks_mut(num_docs).zip(queries).for_each(|(row, query)| {
                for term in &query.terms {
                    let count = term.count;
                    for &(d, tf) in &postings[term_ids[term.text.as_str()]] {
                        let fid = docs[d as usize].fieldnorm_id;
                        row[d as usize] += count * self.norms.score(term.weight, tf, fid);
                    }
                }
            });
        }
        ScoreMatrix::new(queries.len(), num_docs, scores).expect("a BM25 row per query, finite scores")
    }

    /// [`Self::score_matrix`] of raw texts, each analysed once (in parallel).
    pub fn score_texts<Q, D>(&self, queries: &[Q], docs: &[D]) -> ScoreMatrix
    where
        Q: AsRef<str> + Sync,
        D: AsRef<str> + Sync,
    {
        let queries: Vec<AnalysedQuery> = queries.par_iter().map(|q| self.analyse_query(q.as_ref())).collect();
        let docs: Vec<AnalysedDoc> = docs.par_iter().map(|d| self.analyse_doc(d.as_ref())).collect();
        self.score_matrix(&queries, &docs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bm25::{idf, K1};

    fn scorer(corpus: &[&str]) -> Bm25Scorer {
        let analyzer = Analyzer::default();
        let stats = CollectionStats::from_texts(&analyzer, corpus);
        Bm25Scorer::new(analyzer, stats)
    }

    const CORPUS: [&str; 4] = [
        "Vitamin D deficiency and bone fractures in older adults",
        "Statins lower cholesterol; statins and muscle pain",
        "Bone density, calcium and vitamin supplements",
        "Coffee consumption and heart disease",
    ];

    #[test]
    fn hand_computed_single_term_score() {
        let s = scorer(&CORPUS);
        // "statins" -> "statin": tf 2 in doc 1, df 1 of 4. Doc 1 has 6 terms
        // (statin lower cholesterol statin muscl pain); avgdl = (7 + 6 + 5 + 4) / 4.
        let avgdl = 22.0f32 / 4.0;
        let idf = idf(1, 4);
        let expected = idf * (1.0 + K1) * 2.0 / (2.0 + K1 * (1.0 - 0.75 + 0.75 * 6.0 / avgdl));
        assert!((s.score("statins", CORPUS[1]) - expected).abs() < 1e-6);
        assert_eq!(s.score("statins", CORPUS[0]), 0.0);
    }

    #[test]
    fn repeated_query_terms_count_per_occurrence() {
        let s = scorer(&CORPUS);
        let once = s.score("bone", CORPUS[2]);
        assert!(once > 0.0);
        assert_eq!(s.score("bone bone", CORPUS[2]), 2.0 * once);
        // Inflected forms are the same term after stemming.
        assert_eq!(s.score("bones", CORPUS[2]), once);
    }

    #[test]
    fn rarer_terms_and_shorter_documents_score_higher() {
        let s = scorer(&CORPUS);
        assert!(s.score("coffee", CORPUS[3]) > s.score("vitamin", CORPUS[2]));
        let short = "vitamin";
        let long = "vitamin with many other words about unrelated matters entirely here";
        assert!(s.score("vitamin", short) > s.score("vitamin", long));
    }

    #[test]
    fn terms_unknown_to_the_statistics_get_the_highest_idf() {
        let s = scorer(&CORPUS);
        assert!(s.score("melatonin", "melatonin") > s.score("coffee", "coffee"));
    }

    #[test]
    fn matrix_equals_pairwise_scores() {
        let s = scorer(&CORPUS);
        let queries = ["vitamin bone", "statins statins pain", "", "?!", "heart coffee bone"];
        let docs: Vec<&str> = CORPUS.iter().copied().chain(["", "bone bone bone"]).collect();
        let m = s.score_texts(&queries, &docs);
        assert_eq!((m.num_queries(), m.num_docs()), (5, 6));
        let mut nonzero = 0;
        for (qi, q) in queries.iter().enumerate() {
            for (di, d) in docs.iter().enumerate() {
                assert_eq!(m.get(qi, di), s.score(q, d), "query {qi} doc {di}");
                nonzero += usize::from(m.get(qi, di) > 0.0);
            }
        }
        assert!(nonzero >= 6);
        assert!(m.row(2).iter().all(|&x| x == 0.0));
    }

    #[test]
    fn matrix_with_no_documents_is_empty() {
        let s = scorer(&CORPUS);
        let m = s.score_texts(&["bone"], &Vec::<String>::new());
        assert_eq!((m.num_queries(), m.num_docs()), (1, 0));
    }
}
