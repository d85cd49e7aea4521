//! Text analysis shared by indexing, searching and the standalone BM25 scorer.
//!
//! Every path that turns text into terms goes through [`Analyzer`], so an index, its
//! queries and the RL reward can never disagree on what a term is.

use serde::{Deserialize, Serialize};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer, TokenStream, MAX_TOKEN_LEN,
};

/// Which stop words the analyzer drops (before stemming, as Lucene's EnglishAnalyzer does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopWords {
    None,
    /// Tantivy's list for [`AnalyzerConfig::language`] (for English: Lucene's 33 words).
    Language,
    Custom(Vec<String>),
}

/// How text becomes terms. Part of an index's fingerprint: changing it rebuilds the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyzerConfig {
    /// Language of the stemmer and of [`StopWords::Language`].
    pub language: Language,
    pub lowercase: bool,
    /// Fold accented Latin characters to ASCII ("café" -> "cafe").
    pub ascii_folding: bool,
    pub stop_words: StopWords,
    /// Snowball stemming for `language` (for English: Porter2).
    pub stemming: bool,
    /// Tokens longer than this many bytes are dropped (tantivy's default analyzer uses 40);
    /// `None` keeps them, up to tantivy's own hard limit.
    pub max_token_len: Option<usize>,
}

impl Default for AnalyzerConfig {
    /// English as Lucene's EnglishAnalyzer approximates it: lowercase, Lucene stop words,
    /// stemming; overly long tokens (sequences, URLs) are dropped.
    fn default() -> Self {
        Self {
            language: Language::English,
            lowercase: true,
            ascii_folding: false,
            stop_words: StopWords::Language,
            stemming: true,
            max_token_len: Some(40),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AnalyzerError {
    #[error("tantivy has no stop-word list for {0:?}; use StopWords::Custom or StopWords::None")]
    NoStopWords(Language),
}

/// A configured analyzer. Cheap to clone; safe to share between threads.
#[derive(Clone)]
pub struct Analyzer {
    config: AnalyzerConfig,
    pipeline: TextAnalyzer,
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("config", &self.config)
            .finish()
    }
}

impl Analyzer {
    pub fn new(config: AnalyzerConfig) -> Result<Self, AnalyzerError> {
        let pipeline = build_pipeline(&config)?;
        Ok(Self { config, pipeline })
    }

    pub fn config(&self) -> &AnalyzerConfig {
        &self.config
    }

    /// The tantivy analyzer, for registering with an index.
    pub(crate) fn tantivy_analyzer(&self) -> TextAnalyzer {
        self.pipeline.clone()
    }

    /// Calls `f` for every term of `text`, in order, exactly as tantivy indexes them.
    pub fn for_each_term(&self, text: &str, mut f: impl FnMut(&str)) {
        // Tantivy's TextAnalyzer needs `&mut`; a clone per text keeps `Analyzer` shareable.
        let mut pipeline = self.pipeline.clone();
        let mut stream = pipeline.token_stream(text);
        while stream.advance() {
            let term = &stream.token().text;
            // Tantivy's indexer silently skips such tokens (and does not count them in the
            // field length); skipping them here keeps lengths identical.
            if term.len() <= MAX_TOKEN_LEN {
                f(term);
            }
        }
    }

    /// The terms of `text`, in order, repeats included.
    pub fn terms(&self, text: &str) -> Vec<String> {
        let mut terms = Vec::new();
        self.for_each_term(text, |t| terms.push(t.to_owned()));
        terms
    }

    /// Distinct terms of `text` in first-occurrence order, each with its number of
    /// occurrences: a query as a bag of words whose repeats still count.
    pub fn counted_terms(&self, text: &str) -> Vec<(String, u32)> {
        let mut counted: Vec<(String, u32)> = Vec::new();
        let mut position: std::collections::HashMap<String, usize> = Default::default();
        self.for_each_term(text, |term| match position.get(term) {
            Some(&i) => counted[i].1 += 1,
            None => {
                position.insert(term.to_owned(), counted.len());
                counted.push((term.to_owned(), 1));
            }
        });
        counted
    }

    /// Number of terms in `text`: its field length as tantivy records it.
    pub fn num_terms(&self, text: &str) -> u32 {
        let mut n = 0;
        self.for_each_term(text, |_| n += 1);
        n
    }
}

impl Default for Analyzer {
    fn default() -> Self {
        Self::new(AnalyzerConfig::default()).expect("the default config is valid")
    }
}

fn build_pipeline(config: &AnalyzerConfig) -> Result<TextAnalyzer, AnalyzerError> {
    let mut builder = TextAnalyzer::builder(SimpleTokenizer::default()).dynamic();
    if let Some(limit) = config.max_token_len {
        builder = builder.filter_dynamic(RemoveLongFilter::limit(limit));
    }
    if config.lowercase {
        builder = builder.filter_dynamic(LowerCaser);
    }
    if config.ascii_folding {
        builder = builder.filter_dynamic(AsciiFoldingFilter);
    }
    match &config.stop_words {
        StopWords::None => {}
        StopWords::Language => {
            let filter = StopWordFilter::new(config.language)
                .ok_or(AnalyzerError::NoStopWords(config.language))?;
            builder = builder.filter_dynamic(filter);
        }
        StopWords::Custom(words) => {
            builder = builder.filter_dynamic(StopWordFilter::remove(words.iter().cloned()));
        }
    }
    if config.stemming {
        builder = builder.filter_dynamic(Stemmer::new(config.language));
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_default_lowercases_stems_and_drops_stop_words() {
        let a = Analyzer::default();
        assert_eq!(
            a.terms("The Running dogs: are they HAPPY?"),
            ["run", "dog", "happi"]
        );
    }

    #[test]
    fn counted_terms_keep_first_occurrence_order() {
        let a = Analyzer::default();
        let counted = a.counted_terms("bone Cells, bones and the cell bone");
        assert_eq!(counted, [("bone".into(), 3), ("cell".into(), 2)]);
    }

    #[test]
    fn punctuation_only_text_has_no_terms() {
        let a = Analyzer::default();
        assert!(a.terms("\"::-- ?!*( )").is_empty());
        assert_eq!(a.num_terms(""), 0);
    }

    #[test]
    fn settings_change_the_terms() {
        let plain = Analyzer::new(AnalyzerConfig {
            stop_words: StopWords::None,
            stemming: false,
            ..AnalyzerConfig::default()
        })
        .unwrap();
        assert_eq!(plain.terms("The Running dogs"), ["the", "running", "dogs"]);

        let custom = Analyzer::new(AnalyzerConfig {
            stop_words: StopWords::Custom(vec!["dog".into()]),
            ..AnalyzerConfig::default()
        })
        .unwrap();
        // Stop words are removed before stemming, so "dogs" survives and "dog" does not.
        assert_eq!(custom.terms("the dog dogs"), ["the", "dog"]);
    }

    #[test]
    fn long_tokens_are_dropped_and_not_counted() {
        let a = Analyzer::default();
        let long = "x".repeat(41);
        assert_eq!(a.terms(&format!("cell {long} wall")), ["cell", "wall"]);
        assert_eq!(a.num_terms(&format!("cell {long} wall")), 2);
    }

    #[test]
    fn missing_stop_word_list_is_an_error() {
        let err = Analyzer::new(AnalyzerConfig {
            language: Language::Greek,
            ..AnalyzerConfig::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("Greek"));
    }
}
