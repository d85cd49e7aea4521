//! The dense reward's building block: embed a step's augmented queries and documents in
//! batches and return every query × document cosine, as the RL trainer consumes them.

use anyhow::Result;
use coaug_eval::ScoreMatrix;

use crate::encoder::SentenceEncoder;
use crate::exact::dot_products;

/// Cosine of every query text (query instruction applied) with every document text.
/// Duplicate texts — common among sampled rollouts — are embedded once.
pub fn similarity_matrix(encoder: &SentenceEncoder, queries: &[&str], docs: &[&str]) -> Result<ScoreMatrix> {
    let (q_unique, q_map) = dedup(queries);
    let (d_unique, d_map) = dedup(docs);
    let q = encoder.encode_queries(&q_unique, false)?;
    let d = encoder.encode_documents(&d_unique, false)?;
    let unique = dot_products(&q, &d)?;
    let mut scores = Vec::with_capacity(queries.len() * docs.len());
    for &qi in &q_map {
        scores.extend(d_map.iter().map(|&di| unique[qi * d_unique.len() + di]));
    }
    Ok(ScoreMatrix::new(queries.len(), docs.len(), scores)?)
}

/// Distinct texts in first-seen order, and each input's index among them.
fn dedup<'a>(texts: &[&'a str]) -> (Vec<&'a str>, Vec<usize>) {
    let mut seen = std::collections::HashMap::new();
    let mut unique = Vec::new();
    let map = texts
        .iter()
        .map(|t| {
            *seen.entry(*t).or_insert_with(|| {
                unique.push(*t);
                unique.len() - 1
            })
        })
        .collect();
    (unique, map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keeps_first_seen_order() {
        let (u, m) = dedup(&["b", "a", "b", "c", "a"]);
        assert_eq!(u, ["b", "a", "c"]);
        assert_eq!(m, [0, 1, 0, 2, 1]);
    }
}
