//! Tantivy's BM25, term by term, so that scores computed outside tantivy (the in-memory
//! search engine, the RL reward) are the same f32 numbers tantivy computes.
//!
//! Tantivy (0.27, `query/bm25.rs`): `score = idf · (k1 + 1) · tf / (tf + k1 · (1 − b + b · dl / avgdl))`
//! with `idf = ln(1 + (N − n + 0.5) / (n + 0.5))`, `dl` the field length quantised to one
//! byte (Lucene's SmallFloat `intToByte4`), and `avgdl` the unquantised mean field length.
//! The operations below keep tantivy's order so the rounding matches too.

use tantivy::fieldnorm::FieldNormReader;

pub const K1: f32 = 1.2;
pub const B: f32 = 0.75;

/// One-byte code of a field length, as tantivy stores it (rounds down).
pub fn fieldnorm_id(num_terms: u32) -> u8 {
    FieldNormReader::fieldnorm_to_id(num_terms)
}

/// The field length a fieldnorm code stands for.
pub fn fieldnorm(id: u8) -> u32 {
    FieldNormReader::id_to_fieldnorm(id)
}

/// `ln(1 + (N − n + 0.5) / (n + 0.5))`. A `doc_freq` above `num_docs` (possible with
/// statistics assembled by hand) is treated as `num_docs`, where tantivy would panic.
pub fn idf(doc_freq: u64, num_docs: u64) -> f32 {
    let doc_freq = doc_freq.min(num_docs);
    let x = ((num_docs - doc_freq) as f32 + 0.5) / (doc_freq as f32 + 0.5);
    (1.0 + x).ln()
}

/// The part of a term's score that does not depend on the document: `idf · (k1 + 1)`.
pub fn term_weight(doc_freq: u64, num_docs: u64) -> f32 {
    idf(doc_freq, num_docs) * (1.0 + K1)
}

/// `k1 · (1 − b + b · dl / avgdl)` for each of the 256 fieldnorm codes.
#[derive(Debug, Clone)]
pub struct LengthNorms {
    avg_doc_len: f32,
    by_fieldnorm_id: Box<[f32; 256]>,
}

impl LengthNorms {
    pub fn new(avg_doc_len: f32) -> Self {
        let mut by_fieldnorm_id = Box::new([0.0f32; 256]);
        for (id, norm) in by_fieldnorm_id.iter_mut().enumerate() {
            let dl = fieldnorm(id as u8) as f32;
            *norm = K1 * (1.0 - B + B * dl / avg_doc_len);
        }
        Self { avg_doc_len, by_fieldnorm_id }
    }

    pub fn avg_doc_len(&self) -> f32 {
        self.avg_doc_len
    }

    /// Score of one term occurring `tf` times in a document whose length code is `fieldnorm_id`.
    #[inline]
    pub fn score(&self, term_weight: f32, tf: u32, fieldnorm_id: u8) -> f32 {
        let tf = tf as f32;
        term_weight * (tf / (tf + self.by_fieldnorm_id[fieldnorm_id as usize]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::query::Bm25Weight;

    #[test]
    fn fieldnorm_quantisation_is_lucene_small_float() {
        // Exact below 40, then rounded down to the 4-bit-mantissa grid.
        for n in 0..40 {
            assert_eq!(fieldnorm(fieldnorm_id(n)), n);
        }
        assert_eq!(fieldnorm(fieldnorm_id(41)), 40);
        assert_eq!(fieldnorm(fieldnorm_id(42)), 42);
        assert_eq!(fieldnorm(fieldnorm_id(100)), 96);
        assert_eq!(fieldnorm_id(u32::MAX), 255);
    }

    #[test]
    fn idf_matches_formula_and_clamps() {
        let expected = (1.0f32 + (10.0 - 3.0 + 0.5) / 3.5).ln();
        assert_eq!(idf(3, 10), expected);
        assert_eq!(idf(20, 10), idf(10, 10));
        assert!(idf(0, 10) > idf(1, 10));
    }

    #[test]
    fn term_scores_equal_tantivys_bm25_weight() {
        let avg = 137.25f32;
        let norms = LengthNorms::new(avg);
        for &(df, n) in &[(1u64, 3633u64), (57, 3633), (3000, 3633)] {
            let reference = Bm25Weight::for_one_term_without_explain(df, n, avg);
            let weight = term_weight(df, n);
            for fid in [0u8, 7, 40, 90, 200, 255] {
                for tf in [1u32, 2, 5, 40] {
                    assert_eq!(norms.score(weight, tf, fid), reference.score(fid, tf));
                }
            }
        }
    }
}
