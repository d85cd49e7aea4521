//! What BM25 searches with: weighted terms, and the weight of each searched field.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::analyzer::Analyzer;

/// A query as BM25 reads it: distinct analysed terms in first-occurrence order, each with a
/// weight that multiplies its BM25 contribution.
///
/// A term's weight is the sum, over its occurrences, of the weight of the text it occurs in. One
/// plain text gives each term its number of occurrences, as a Lucene BooleanQuery of one term
/// query per token scores it; a query expanded as `q ×5 + a` gives the original query's terms five
/// times the weight of the expansion's without repeating any string.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WeightedQuery {
    terms: Vec<(String, f32)>,
    position: HashMap<String, usize>,
}

impl WeightedQuery {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every token of `text` with weight 1.
    pub fn from_text(analyzer: &Analyzer, text: &str) -> Self {
        let mut query = Self::new();
        query.add_text(analyzer, text, 1.0);
        query
    }

    /// Adds every token of `text` with weight `weight` (a zero weight adds nothing).
    pub fn add_text(&mut self, analyzer: &Analyzer, text: &str, weight: f32) -> &mut Self {
        if weight != 0.0 {
            analyzer.for_each_term(text, |term| self.add_term(term, weight));
        }
        self
    }

    /// Adds `weight` to an analysed term.
    pub fn add_term(&mut self, term: &str, weight: f32) {
        match self.position.get(term) {
            Some(&i) => self.terms[i].1 += weight,
            None => {
                self.position.insert(term.to_owned(), self.terms.len());
                self.terms.push((term.to_owned(), weight));
            }
        }
    }

    /// (term, weight), first occurrence first.
    pub fn terms(&self) -> &[(String, f32)] {
        &self.terms
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The weight of `term` (0 when absent).
    pub fn weight(&self, term: &str) -> f32 {
        self.position.get(term).map_or(0.0, |&i| self.terms[i].1)
    }

    /// The sum of all weights: the query's total mass.
    pub fn total_weight(&self) -> f32 {
        self.terms.iter().map(|(_, w)| w).sum()
    }
}

/// How much each searched field counts: a document's score is the body's BM25 plus
/// `augmentation` times the augmentation field's (when the augmentation has a field of its own).
/// A search-time setting: the same index serves every weight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FieldWeights {
    pub augmentation: f32,
}

impl Default for FieldWeights {
    /// Every field counts fully, as one Lucene BooleanQuery over both fields scores them.
    fn default() -> Self {
        Self { augmentation: 1.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_add_up_per_occurrence_and_per_text() {
        let a = Analyzer::default();
        let mut q = WeightedQuery::from_text(&a, "bone Cells, bones and the cell bone");
        assert_eq!(q.terms(), [("bone".to_string(), 3.0), ("cell".to_string(), 2.0)]);
        q.add_text(&a, "calcium bone", 0.5);
        assert_eq!(q.weight("bone"), 3.5);
        assert_eq!(q.weight("calcium"), 0.5);
        assert_eq!(q.weight("absent"), 0.0);
        assert_eq!(q.total_weight(), 6.0);
        let order: Vec<&str> = q.terms().iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(order, ["bone", "cell", "calcium"]);
    }

    #[test]
    fn zero_weight_and_stop_words_add_nothing() {
        let a = Analyzer::default();
        let mut q = WeightedQuery::new();
        q.add_text(&a, "vitamin", 0.0).add_text(&a, "the and of", 2.0);
        assert!(q.is_empty());
    }
}
