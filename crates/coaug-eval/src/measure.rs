//! The measures reported, named as BEIR names them.

use std::fmt;

/// A cutoff measure; `Measure::Ndcg.key(10)` is BEIR's `"NDCG@10"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Measure {
    /// trec_eval `ndcg_cut`.
    Ndcg,
    /// trec_eval `map_cut`: divides by all relevant documents, not min(k, R).
    Map,
    /// trec_eval `recall`: relevant in the top k / all relevant.
    Recall,
    /// trec_eval `P`: relevant in the top k / k, even when fewer than k were retrieved.
    Precision,
    /// BEIR's MRR@k: 1 / rank of the first relevant document in the top k, else 0.
    Mrr,
}

impl Measure {
    pub const ALL: [Measure; 5] = [Measure::Ndcg, Measure::Map, Measure::Recall, Measure::Precision, Measure::Mrr];

    /// BEIR's name, the part before `@`.
    pub fn name(self) -> &'static str {
        match self {
            Measure::Ndcg => "NDCG",
            Measure::Map => "MAP",
            Measure::Recall => "Recall",
            Measure::Precision => "P",
            Measure::Mrr => "MRR",
        }
    }

    /// The key of this measure at cutoff `k` in [`Metrics`](crate::Metrics), e.g. `"MAP@100"`.
    pub fn key(self, k: usize) -> String {
        format!("{}@{k}", self.name())
    }

    /// Parses a key such as `"Recall@100"` (case-insensitive name).
    pub fn parse_key(key: &str) -> Option<(Measure, usize)> {
        let (name, k) = key.split_once('@')?;
        let measure = Measure::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(name))?;
        let k: usize = k.parse().ok().filter(|&k| k > 0)?;
        Some((measure, k))
    }
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_use_beir_names_and_parse_back() {
        let keys: Vec<String> = Measure::ALL.iter().map(|m| m.key(10)).collect();
        assert_eq!(keys, ["NDCG@10", "MAP@10", "Recall@10", "P@10", "MRR@10"]);
        for m in Measure::ALL {
            assert_eq!(Measure::parse_key(&m.key(1000)), Some((m, 1000)));
        }
        assert_eq!(Measure::parse_key("ndcg@3"), Some((Measure::Ndcg, 3)));
        assert_eq!(Measure::parse_key("NDCG@0"), None);
        assert_eq!(Measure::parse_key("NDCG"), None);
        assert_eq!(Measure::parse_key("BPREF@5"), None);
    }
}
