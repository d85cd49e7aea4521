//! What a document is to the index, and the tantivy schema that holds it.

use coaug_data::Document;
use serde::{Deserialize, Serialize};
use tantivy::schema::{Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, FAST, STORED, STRING};

/// A corpus document as indexed: the original fields plus an optional LM-written augmentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDoc {
    pub id: String,
    pub title: String,
    pub text: String,
    pub augmentation: Option<String>,
}

impl IndexDoc {
    pub fn from_documents(docs: &[Document]) -> Vec<IndexDoc> {
        docs.iter().map(IndexDoc::from).collect()
    }

    /// The searched `body` field: `title text`, plus the augmentation when it goes there.
    /// Joined by spaces; the analyzer splits on them, so no terms merge across parts.
    pub fn body(&self, fields: &FieldSetup) -> String {
        let mut body = String::with_capacity(self.title.len() + self.text.len() + 1);
        for part in [Some(&self.title), Some(&self.text)]
            .into_iter()
            .chain([self.augmentation.as_ref().filter(|_| fields.augmentation == AugmentationPlacement::Body)])
            .flatten()
            .filter(|p| !p.is_empty())
        {
            if !body.is_empty() {
                body.push(' ');
            }
            body.push_str(part);
        }
        body
    }
}

impl From<&Document> for IndexDoc {
    fn from(doc: &Document) -> Self {
        Self { id: doc.id.clone(), title: doc.title.clone(), text: doc.text.clone(), augmentation: None }
    }
}

/// Where a document's augmentation is searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AugmentationPlacement {
    /// Appended to the body: one field, one set of statistics (the reward's `d ⊕ a_d`).
    #[default]
    Body,
    /// A field of its own with its own statistics; a query's score is the sum of its BM25
    /// on the body and on the augmentation.
    OwnField,
}

/// How documents map to searched fields. Part of an index's fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FieldSetup {
    pub augmentation: AugmentationPlacement,
}

impl FieldSetup {
    pub fn searched_fields(&self) -> Vec<SearchField> {
        match self.augmentation {
            AugmentationPlacement::Body => vec![SearchField::Body],
            AugmentationPlacement::OwnField => vec![SearchField::Body, SearchField::Augmentation],
        }
    }
}

/// An indexed, searchable field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SearchField {
    Body,
    Augmentation,
}

/// Name under which the configured analyzer is registered with tantivy.
pub(crate) const ANALYZER_NAME: &str = "coaug";

/// The tantivy fields. Title, text and augmentation are stored so the index gives documents
/// back; `ord` (the document's position in the corpus) maps hits to ids without the doc store.
#[derive(Debug, Clone)]
pub(crate) struct IndexSchema {
    pub schema: Schema,
    pub id: Field,
    pub ord: Field,
    pub title: Field,
    pub text: Field,
    pub body: Field,
    pub augmentation: Field,
}

impl IndexSchema {
    pub const ORD: &'static str = "ord";

    pub fn new(fields: &FieldSetup) -> Self {
        let mut builder = Schema::builder();
        // BM25 needs frequencies, not positions; leaving positions out keeps the index small.
        let searched = TextOptions::default()
            .set_indexing_options(TextFieldIndexing::default().set_tokenizer(ANALYZER_NAME).set_index_option(IndexRecordOption::WithFreqs));
        // A fast (columnar) field too: opening an index reads every id from its compact column
        // instead of decompressing the whole doc store (which, mapped, put the stored text of a
        // million documents in the opening process's resident memory).
        let id = builder.add_text_field("id", STRING | STORED | FAST);
        let ord = builder.add_u64_field(Self::ORD, NumericOptions::default().set_fast());
        let title = builder.add_text_field("title", STORED);
        let text = builder.add_text_field("text", STORED);
        // The body repeats title and text, so it is searched but not stored.
        let body = builder.add_text_field("body", searched.clone());
        let augmentation = match fields.augmentation {
            AugmentationPlacement::Body => builder.add_text_field("augmentation", STORED),
            AugmentationPlacement::OwnField => builder.add_text_field("augmentation", searched.set_stored()),
        };
        Self { schema: builder.build(), id, ord, title, text, body, augmentation }
    }

    pub fn field(&self, field: SearchField) -> Field {
        match field {
            SearchField::Body => self.body,
            SearchField::Augmentation => self.augmentation,
        }
    }
}
