//! The step's similarity matrix with the evaluation's BM25 (method.md §4): IDF from the
//! *original* corpus, average document length from the step's augmented documents, the same
//! analyzer and arithmetic as the index (`coaug_index::Bm25Scorer`).

use coaug_data::Document;
use coaug_index::{stats::avg_doc_len, Analyzer, AnalyzerConfig, Bm25Scorer, CollectionStats};

use crate::error::{Result, RlError};
use crate::similarity::SimilarityMatrix;

pub struct Bm25Reward {
    analyzer: Analyzer,
    corpus_stats: CollectionStats,
}

impl Bm25Reward {
    /// Statistics of the original corpus, analysed as the index analyses its body field.
    pub fn new(corpus: &[Document]) -> Result<Self> {
        let analyzer = Analyzer::new(AnalyzerConfig::default())
            .map_err(|e| RlError::Data(format!("BM25 analyzer: {e}")))?;
        let bodies: Vec<String> = corpus.iter().map(|d| d.full_text()).collect();
        let corpus_stats = CollectionStats::from_texts(&analyzer, &bodies);
        Ok(Self {
            analyzer,
            corpus_stats,
        })
    }

    /// BM25 of every query text against every document text, computed once.
    pub fn similarity<Q: AsRef<str> + Sync, D: AsRef<str> + Sync>(
        &self,
        queries: &[Q],
        documents: &[D],
    ) -> Result<SimilarityMatrix> {
        let avgdl = avg_doc_len(&self.analyzer, documents);
        let stats = self.corpus_stats.clone().with_avg_doc_len(avgdl);
        let scorer = Bm25Scorer::new(self.analyzer.clone(), stats);
        let matrix = scorer.score_texts(queries, documents);
        SimilarityMatrix::new(queries.len(), documents.len(), matrix.as_slice().to_vec())
    }
}
