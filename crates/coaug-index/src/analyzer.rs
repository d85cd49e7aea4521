//! Text analysis shared by indexing, searching and the standalone BM25 scorer.
//!
//! Every path that turns text into terms goes through [`Analyzer`], so an index, its
//! queries and the RL reward can never disagree on what a term is.

use serde::{Deserialize, Serialize};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer, TokenStream,
    MAX_TOKEN_LEN,
};

/// Which stop words the analyzer drops (before stemming, as Lucene's EnglishAnalyzer does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopWords {
    None,
    /// Tantivy's list for [`AnalyzerConfig::language`] (for English: Lucene's 33 words).
    Language,
    /// NLTK's English list (179 words, bm25s's `en_plus`), less the forms with an apostrophe,
    /// which the tokenizer never produces (it splits "don't" into "don" and "t", both listed).
    Nltk,
    Custom(Vec<String>),
}

/// [`StopWords::Nltk`]: NLTK's English stop words without the apostrophe forms.
pub const NLTK_ENGLISH: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "ain",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "aren",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "couldn",
    "d",
    "did",
    "didn",
    "do",
    "does",
    "doesn",
    "doing",
    "don",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "hadn",
    "has",
    "hasn",
    "have",
    "haven",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "isn",
    "it",
    "its",
    "itself",
    "just",
    "ll",
    "m",
    "ma",
    "me",
    "mightn",
    "more",
    "most",
    "mustn",
    "my",
    "myself",
    "needn",
    "no",
    "nor",
    "not",
    "now",
    "o",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "re",
    "s",
    "same",
    "shan",
    "she",
    "should",
    "shouldn",
    "so",
    "some",
    "such",
    "t",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "ve",
    "very",
    "was",
    "wasn",
    "we",
    "were",
    "weren",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "won",
    "wouldn",
    "y",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

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
        f.debug_struct("Analyzer").field("config", &self.config).finish()
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
            let filter = StopWordFilter::new(config.language).ok_or(AnalyzerError::NoStopWords(config.language))?;
            builder = builder.filter_dynamic(filter);
        }
        StopWords::Nltk => {
            builder = builder.filter_dynamic(StopWordFilter::remove(NLTK_ENGLISH.iter().map(|w| w.to_string())));
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
        assert_eq!(a.terms("The Running dogs: are they HAPPY?"), ["run", "dog", "happi"]);
    }

    #[test]
    fn punctuation_only_text_has_no_terms() {
        let a = Analyzer::default();
        assert!(a.terms("\"::-- ?!*( )").is_empty());
        assert_eq!(a.num_terms(""), 0);
    }

    #[test]
    fn settings_change_the_terms() {
        let plain = Analyzer::new(AnalyzerConfig { stop_words: StopWords::None, stemming: false, ..AnalyzerConfig::default() }).unwrap();
        assert_eq!(plain.terms("The Running dogs"), ["the", "running", "dogs"]);

        let custom =
            Analyzer::new(AnalyzerConfig { stop_words: StopWords::Custom(vec!["dog".into()]), ..AnalyzerConfig::default() }).unwrap();
        // Stop words are removed before stemming, so "dogs" survives and "dog" does not.
        assert_eq!(custom.terms("the dog dogs"), ["the", "dog"]);
    }

    #[test]
    fn nltk_list_drops_more_function_words_than_lucene() {
        let text = "What are the effects of these drugs on my heart, and why don't they work?";
        assert_eq!(Analyzer::default().terms(text), ["what", "effect", "drug", "my", "heart", "whi", "don", "t", "work"]);
        let nltk = Analyzer::new(AnalyzerConfig { stop_words: StopWords::Nltk, ..AnalyzerConfig::default() }).unwrap();
        assert_eq!(nltk.terms(text), ["effect", "drug", "heart", "work"]);
        assert!(NLTK_ENGLISH.iter().all(|w| !w.contains('\'') && w.to_lowercase() == *w));
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
        let err = Analyzer::new(AnalyzerConfig { language: Language::Greek, ..AnalyzerConfig::default() }).unwrap_err();
        assert!(err.to_string().contains("Greek"));
    }
}
