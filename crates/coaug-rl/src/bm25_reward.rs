//! The step's similarity matrix with the evaluation's BM25 (docs/method.md): every query rollout
//! against every document rollout, composed as `coaug eval` composes them
//! ([`coaug_retrieval::Composition`]: the original query weighted against its expansion, a
//! document's augmentation in its body or in its own weighted field), with the same analyzer and
//! arithmetic as the index (`coaug_index::Bm25Scorer`).
//!
//! Statistics: document frequencies from the *original* corpus (for the augmentation field too:
//! the augmented corpus is what training changes, so its frequencies cannot be known), average
//! lengths from the step's documents. This is the one difference from the evaluation's index,
//! inherent to scoring a step's pool instead of the corpus.

use coaug_data::Document;
use coaug_index::{stats::avg_doc_len, Analyzer, AnalyzerConfig, Bm25Scorer, CollectionStats, WeightedQuery};
use coaug_retrieval::{Composition, DocField};

use crate::error::{Result, RlError};
use coaug_eval::ScoreMatrix;

pub struct Bm25Reward {
    analyzer: Analyzer,
    corpus_stats: CollectionStats,
    composition: Composition,
}

/// One side of the matrix: the original text and its augmentation (empty: none).
#[derive(Debug, Clone, Copy)]
pub struct Composed<'a> {
    pub original: &'a str,
    pub augmentation: &'a str,
}

impl<'a> Composed<'a> {
    fn expansions(&self) -> &[&'a str] {
        if self.augmentation.trim().is_empty() {
            &[]
        } else {
            std::slice::from_ref(&self.augmentation)
        }
    }
}

impl Bm25Reward {
    /// Statistics of the original corpus, analysed as the index analyses its body field.
    pub fn new(corpus: &[Document], analyzer: &AnalyzerConfig, composition: Composition) -> Result<Self> {
        let analyzer = Analyzer::new(analyzer.clone()).map_err(|e| RlError::Data(format!("BM25 analyzer: {e}")))?;
        let bodies: Vec<String> = corpus.iter().map(|d| d.full_text()).collect();
        let corpus_stats = CollectionStats::from_texts(&analyzer, &bodies);
        Ok(Self { analyzer, corpus_stats, composition })
    }

    pub fn composition(&self) -> &Composition {
        &self.composition
    }

    /// The BM25 query of a query rollout.
    pub fn query(&self, query: Composed<'_>) -> WeightedQuery {
        self.composition.bm25_query(&self.analyzer, query.original, query.expansions())
    }

    /// BM25 of every query against every document, computed once.
    pub fn similarity(&self, queries: &[Composed<'_>], documents: &[Composed<'_>]) -> Result<ScoreMatrix> {
        let scorer = |texts: &[String]| {
            Bm25Scorer::new(self.analyzer.clone(), self.corpus_stats.clone().with_avg_doc_len(avg_doc_len(&self.analyzer, texts)))
        };
        let queries: Vec<WeightedQuery> = queries.iter().map(|q| self.query(*q)).collect();
        let matrix = |texts: Vec<String>| {
            let scorer = scorer(&texts);
            let analysed_queries: Vec<_> = queries.iter().map(|q| scorer.analyse_weighted(q)).collect();
            let docs: Vec<_> = texts.iter().map(|t| scorer.analyse_doc(t)).collect();
            scorer.score_matrix(&analysed_queries, &docs)
        };
        match self.composition.doc_field {
            // `d ⊕ a_d`: one field, as the index's body joins them.
            DocField::Body => Ok(matrix(documents.iter().map(|d| join(d.original, d.augmentation)).collect())),
            DocField::Own(weight) => {
                let body = matrix(documents.iter().map(|d| d.original.to_string()).collect());
                let aug = matrix(documents.iter().map(|d| d.augmentation.trim().to_string()).collect());
                let values = body.as_slice().iter().zip(aug.as_slice()).map(|(b, a)| b + weight * a).collect();
                Ok(ScoreMatrix::new(queries.len(), documents.len(), values)?)
            }
        }
    }
}

/// The body of an augmented document: original and augmentation, as the index joins them.
fn join(original: &str, augmentation: &str) -> String {
    match (original.is_empty(), augmentation.trim()) {
        (_, "") => original.to_string(),
        (true, a) => a.to_string(),
        (false, a) => format!("{original} {a}"),
    }
}
