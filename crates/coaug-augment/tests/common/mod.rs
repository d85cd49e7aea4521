//! Shared by the integration tests: a small real slice of NFCorpus plus the bad inputs of issue 4.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use coaug_augment::{AugmentItem, AugmentStore, StoredAugmentation};

/// `$COAUG_DATA`, else `shared/data/beir` beside the repository.
pub fn beir_dir() -> PathBuf {
    coaug_data::shared_beir_dir()
}

/// The first `n` NFCorpus documents as `"title. text"` items.
pub fn nfcorpus_slice(n: usize) -> Vec<AugmentItem> {
    let path = beir_dir().join("nfcorpus/corpus.jsonl");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    BufReader::new(file)
        .lines()
        .take(n)
        .enumerate()
        .map(|(i, line)| {
            let line = line.unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1));
            let doc = coaug_data::Document {
                id: v["_id"].as_str().unwrap().into(),
                title: v["title"].as_str().unwrap_or("").into(),
                text: v["text"].as_str().unwrap_or("").into(),
            };
            AugmentItem::new(&doc.id, doc.full_text())
        })
        .collect()
}

/// An empty document, a 100k-character one, one that is only punctuation, and one read from
/// invalid UTF-8 (bytes replaced by U+FFFD).
pub fn bad_items() -> Vec<AugmentItem> {
    let long: String = (0..)
        .map(|i| format!("word{i} "))
        .take_while({
            let mut len = 0;
            move |w: &String| {
                len += w.len();
                len <= 100_000
            }
        })
        .collect();
    assert!(long.len() > 99_000);
    let invalid = String::from_utf8_lossy(b"Caf\xe9 latte and \xff\xfe coffee consumption").into_owned();
    vec![
        AugmentItem::new("bad-empty", "   "),
        AugmentItem::new("bad-long", long),
        AugmentItem::new("bad-punct", "?!... -- ;;"),
        AugmentItem::new("bad-utf8", invalid),
    ]
}

/// Rows without their creation time, which differs between runs by design.
pub fn comparable(store: &AugmentStore) -> Vec<StoredAugmentation> {
    store.all().unwrap().into_iter().map(|r| StoredAugmentation { created_at_ms: 0, ..r }).collect()
}
