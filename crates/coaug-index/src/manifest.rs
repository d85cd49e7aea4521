//! The small JSON file next to an index that says what it was built from, so a caller can
//! tell whether an index on disk matches the corpus and settings it wants.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::analyzer::AnalyzerConfig;
use crate::error::{io_err, IndexError, Result};
use crate::schema::{FieldSetup, IndexDoc};

/// Bumped whenever the on-disk layout or the analysis code changes meaning.
pub const FORMAT_VERSION: u32 = 2;
pub const MANIFEST_FILE: &str = "coaug-manifest.json";

/// Settings an index is built with; all of them are part of its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IndexConfig {
    pub analyzer: AnalyzerConfig,
    pub fields: FieldSetup,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// sha256 of (format version, config, corpus hash): equal fingerprints, equal indexes.
    pub fingerprint: String,
    pub corpus_sha256: String,
    pub num_docs: usize,
    pub config: IndexConfig,
    pub tantivy_version: String,
}

impl Manifest {
    pub fn new(docs: &[IndexDoc], config: &IndexConfig) -> Self {
        let mut hasher = CorpusHasher::default();
        docs.iter().for_each(|d| hasher.add(d));
        Self::from_hasher(hasher, config)
    }

    /// The manifest of the corpus `hasher` has seen, indexed with `config`.
    pub fn from_hasher(hasher: CorpusHasher, config: &IndexConfig) -> Self {
        let (corpus_sha256, num_docs) = hasher.finish();
        Self {
            format_version: FORMAT_VERSION,
            fingerprint: fingerprint(config, &corpus_sha256),
            corpus_sha256,
            num_docs,
            config: config.clone(),
            tantivy_version: tantivy::version_string().to_owned(),
        }
    }

    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|source| IndexError::Manifest { path: path.clone(), source })?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(IndexError::FormatVersion { path, found: manifest.format_version, expected: FORMAT_VERSION });
        }
        Ok(manifest)
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let json = serde_json::to_vec_pretty(self).expect("a manifest always serialises");
        std::fs::write(&path, json).map_err(io_err(&path))
    }
}

fn fingerprint(config: &IndexConfig, corpus_sha256: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(FORMAT_VERSION.to_le_bytes());
    hasher.update(serde_json::to_vec(config).expect("a config always serialises"));
    hasher.update(corpus_sha256.as_bytes());
    hex::encode(hasher.finalize())
}

/// Hash of every document's fields, each length-prefixed so that moving text between fields
/// (or between documents) changes the hash, then the document count. Fed one document at a
/// time, so a corpus streamed from disk is hashed without holding it.
#[derive(Default)]
pub struct CorpusHasher {
    hasher: Sha256,
    docs: usize,
}

impl CorpusHasher {
    pub fn add(&mut self, doc: &IndexDoc) {
        let augmentation = doc.augmentation.as_deref();
        for part in [Some(doc.id.as_str()), Some(&doc.title), Some(&doc.text), augmentation] {
            match part {
                Some(s) => {
                    self.hasher.update([1u8]);
                    self.hasher.update((s.len() as u64).to_le_bytes());
                    self.hasher.update(s.as_bytes());
                }
                None => self.hasher.update([0u8]),
            }
        }
        self.docs += 1;
    }

    /// (hex sha256, documents seen).
    pub fn finish(mut self) -> (String, usize) {
        self.hasher.update((self.docs as u64).to_le_bytes());
        (hex::encode(self.hasher.finalize()), self.docs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::StopWords;
    use crate::schema::AugmentationPlacement;

    fn doc(id: &str, title: &str, text: &str) -> IndexDoc {
        IndexDoc { id: id.into(), title: title.into(), text: text.into(), augmentation: None }
    }

    #[test]
    fn fingerprint_tracks_corpus_and_config() {
        let docs = vec![doc("a", "T", "x y"), doc("b", "", "z")];
        let config = IndexConfig::default();
        let base = Manifest::new(&docs, &config).fingerprint;
        assert_eq!(base, Manifest::new(&docs.clone(), &config).fingerprint);

        let mut moved = docs.clone();
        moved[0] = doc("a", "T x", "y");
        assert_ne!(base, Manifest::new(&moved, &config).fingerprint);

        let mut augmented = docs.clone();
        augmented[1].augmentation = Some(String::new());
        assert_ne!(base, Manifest::new(&augmented, &config).fingerprint);

        let mut other = config.clone();
        other.analyzer.stop_words = StopWords::None;
        assert_ne!(base, Manifest::new(&docs, &other).fingerprint);
        let mut other = config.clone();
        other.fields.augmentation = AugmentationPlacement::OwnField;
        assert_ne!(base, Manifest::new(&docs, &other).fingerprint);
    }

    #[test]
    fn round_trips_and_rejects_other_formats() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = Manifest::new(&[doc("a", "", "x")], &IndexConfig::default());
        manifest.write(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), manifest);

        let mut old = manifest.clone();
        old.format_version = 0;
        old.write(dir.path()).unwrap();
        assert!(matches!(Manifest::read(dir.path()), Err(IndexError::FormatVersion { .. })));

        std::fs::write(dir.path().join(MANIFEST_FILE), "{").unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains(MANIFEST_FILE) && err.contains("malformed"), "{err}");
    }
}
