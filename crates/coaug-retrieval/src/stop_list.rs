//! The stop lists BM25's English analyzer can drop, by name.

use std::fmt;
use std::str::FromStr;

use coaug_index::{AnalyzerConfig, StopWords};
use serde::{Deserialize, Serialize};

/// The stop words dropped before stemming (k1 = 1.2, b = 0.75, Porter2 stemming either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopList {
    /// Lucene's EnglishAnalyzer list (33 words).
    Lucene,
    /// NLTK's English list (179 words, bm25s's `en_plus`): +0.006 nDCG@10 on NFCorpus dev, the
    /// same on SciFact train (docs/results/sweep.md).
    #[default]
    Nltk,
    /// Keep every word.
    None,
}

impl StopList {
    pub fn name(self) -> &'static str {
        match self {
            StopList::Lucene => "lucene",
            StopList::Nltk => "nltk",
            StopList::None => "none",
        }
    }

    /// The analysis of every field and query.
    pub fn analyzer(self) -> AnalyzerConfig {
        let stop_words = match self {
            StopList::Lucene => StopWords::Language,
            StopList::Nltk => StopWords::Nltk,
            StopList::None => StopWords::None,
        };
        AnalyzerConfig { stop_words, ..AnalyzerConfig::default() }
    }
}

impl fmt::Display for StopList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StopList {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "lucene" => Ok(StopList::Lucene),
            "nltk" => Ok(StopList::Nltk),
            "none" => Ok(StopList::None),
            other => anyhow::bail!("stop list {other:?}: expected lucene, nltk or none"),
        }
    }
}
