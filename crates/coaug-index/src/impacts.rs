//! A searched field's postings, read once from tantivy into memory with every posting's BM25
//! contribution precomputed. Term-at-a-time search over it needs no per-query BM25 arithmetic
//! and gives tantivy's scores (same statistics, same f32 operations, see `bm25`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use tantivy::postings::Postings;
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocSet, Searcher, TERMINATED};

use crate::bm25::{term_weight, LengthNorms};
use crate::error::{io_err, tantivy_err, Result};
use crate::stats::{mean_len, CollectionStats};

/// Postings of one field, grouped by term, documents numbered by corpus position (`ord`).
pub(crate) struct FieldImpacts {
    term_ids: HashMap<String, u32>,
    /// Postings of term `t` are `docs[starts[t]..starts[t + 1]]` (same for `impacts`).
    starts: Vec<usize>,
    docs: Vec<u32>,
    impacts: Vec<f32>,
    stats: CollectionStats,
}

impl FieldImpacts {
    /// Reads `field` from every segment; `segment_ords[s][doc]` is the corpus position of
    /// tantivy document `doc` of segment `s`.
    pub fn load(path: &Path, searcher: &Searcher, field: Field, segment_ords: &[Vec<u32>]) -> Result<Self> {
        let mut per_term: BTreeMap<String, Vec<(u32, u32, u8)>> = BTreeMap::new();
        let mut total_terms = 0u64;
        let mut num_docs = 0u64;
        for (segment, ords) in searcher.segment_readers().iter().zip(segment_ords) {
            num_docs += u64::from(segment.max_doc());
            let inverted = segment.inverted_index(field).map_err(tantivy_err(path, "open the inverted index"))?;
            let fieldnorms = segment.get_fieldnorms_reader(field).map_err(tantivy_err(path, "read field lengths"))?;
            total_terms += inverted.total_num_tokens();
            let mut terms = inverted.terms().stream().map_err(io_err(path))?;
            while terms.advance() {
                let term = String::from_utf8_lossy(terms.key()).into_owned();
                let mut postings =
                    inverted.read_postings_from_terminfo(terms.value(), IndexRecordOption::WithFreqs).map_err(io_err(path))?;
                let list = per_term.entry(term).or_default();
                let mut doc = postings.doc();
                while doc != TERMINATED {
                    list.push((ords[doc as usize], postings.term_freq(), fieldnorms.fieldnorm_id(doc)));
                    doc = postings.advance();
                }
            }
        }

        let norms = LengthNorms::new(mean_len(total_terms, num_docs));
        let num_postings = per_term.values().map(Vec::len).sum();
        let mut term_ids = HashMap::with_capacity(per_term.len());
        let mut doc_freq = HashMap::with_capacity(per_term.len());
        let mut starts = Vec::with_capacity(per_term.len() + 1);
        let mut docs = Vec::with_capacity(num_postings);
        let mut impacts = Vec::with_capacity(num_postings);
        for (term, mut list) in per_term {
            // Ascending corpus order keeps accumulator writes sequential.
            list.sort_unstable_by_key(|&(ord, _, _)| ord);
            let df = list.len() as u64;
            let weight = term_weight(df, num_docs);
            term_ids.insert(term.clone(), starts.len() as u32);
            starts.push(docs.len());
            for (ord, tf, fieldnorm_id) in list {
                docs.push(ord);
                impacts.push(norms.score(weight, tf, fieldnorm_id));
            }
            doc_freq.insert(term, df);
        }
        starts.push(docs.len());
        let stats = CollectionStats { num_docs, avg_doc_len: norms.avg_doc_len(), doc_freq };
        Ok(Self { term_ids, starts, docs, impacts, stats })
    }

    pub fn term_id(&self, term: &str) -> Option<u32> {
        self.term_ids.get(term).copied()
    }

    /// (document ords, BM25 contributions) of a term.
    #[inline]
    pub fn postings(&self, term_id: u32) -> (&[u32], &[f32]) {
        let range = self.starts[term_id as usize]..self.starts[term_id as usize + 1];
        (&self.docs[range.clone()], &self.impacts[range])
    }

    pub fn stats(&self) -> &CollectionStats {
        &self.stats
    }
}
