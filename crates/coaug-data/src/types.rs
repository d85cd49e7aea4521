//! The records a BEIR dataset is made of.

use std::collections::BTreeMap;

/// One corpus entry. `title` may be empty.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Document {
    pub id: String,
    pub title: String,
    pub text: String,
}

impl Document {
    /// The text an LM or a single-field retriever sees: `"{title}. {text}"`, or the text alone.
    pub fn full_text(&self) -> String {
        if self.title.trim().is_empty() {
            self.text.clone()
        } else {
            format!("{}. {}", self.title.trim_end_matches('.'), self.text)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Query {
    pub id: String,
    pub text: String,
}

/// Graded relevance judgements: query id -> document id -> score.
/// BTreeMaps keep every iteration (and so every result) deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Qrels {
    judgements: BTreeMap<String, BTreeMap<String, i32>>,
}

impl Qrels {
    pub fn new() -> Self {
        Self::default()
    }

    /// A repeated (query, document) pair keeps the last score, as trec_eval does.
    pub fn insert(&mut self, query_id: impl Into<String>, doc_id: impl Into<String>, score: i32) {
        self.judgements.entry(query_id.into()).or_default().insert(doc_id.into(), score);
    }

    pub fn get(&self, query_id: &str) -> Option<&BTreeMap<String, i32>> {
        self.judgements.get(query_id)
    }

    pub fn relevance(&self, query_id: &str, doc_id: &str) -> i32 {
        self.get(query_id).and_then(|d| d.get(doc_id)).copied().unwrap_or(0)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &BTreeMap<String, i32>)> {
        self.judgements.iter()
    }

    pub fn query_ids(&self) -> impl Iterator<Item = &String> {
        self.judgements.keys()
    }

    pub fn num_queries(&self) -> usize {
        self.judgements.len()
    }

    pub fn num_judgements(&self) -> usize {
        self.judgements.values().map(|d| d.len()).sum()
    }

    pub fn retain_queries(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.judgements.retain(|q, _| keep(q));
    }
}
