//! The LM's augmentations of a set of queries and documents, by id.

use std::collections::HashMap;

/// One policy's augmentations: what [`crate::AugmentedBm25`] composes with the originals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Augmentations {
    /// Query id → its expansions, one per sample (non-empty texts only; no entry: not expanded).
    pub queries: HashMap<String, Vec<String>>,
    /// Document id → its augmentation (non-empty only).
    pub documents: HashMap<String, String>,
}

impl Augmentations {
    /// The expansions of query `id` (empty when it has none).
    pub fn expansions(&self, id: &str) -> &[String] {
        self.queries.get(id).map_or(&[], Vec::as_slice)
    }

    pub fn document(&self, id: &str) -> Option<&str> {
        self.documents.get(id).map(String::as_str)
    }

    /// Adds a query expansion, ignoring empty text.
    pub fn add_expansion(&mut self, id: &str, text: &str) {
        let text = text.trim();
        if !text.is_empty() {
            self.queries.entry(id.to_string()).or_default().push(text.to_string());
        }
    }

    /// Sets a document's augmentation, ignoring empty text.
    pub fn set_document(&mut self, id: &str, text: &str) {
        let text = text.trim();
        if !text.is_empty() {
            self.documents.insert(id.to_string(), text.to_string());
        }
    }
}
