//! A tiny BEIR dataset and a word-level tokenizer for the random models the CLI tests export.

#![allow(dead_code)]

use std::path::Path;

use coaug_data::{Document, Qrels, Query};
use coaug_lm::LmTokenizer;

/// Words the tiny model writes and the corpus is made of.
pub fn words() -> Vec<String> {
    let mut w: Vec<String> = LmTokenizer::TINY_MARKERS.iter().map(|s| s.to_string()).collect();
    w.extend((0..40).map(|i| format!("w{i}")));
    w
}

pub fn tokenizer() -> LmTokenizer {
    LmTokenizer::word_level(&words()).unwrap()
}

/// 12 documents of filler words, 4 queries, every document judged for one of them.
pub fn write_dataset(dir: &Path) -> (Vec<Document>, Vec<Query>, Qrels) {
    let corpus: Vec<Document> = (0..12)
        .map(|d| Document {
            id: format!("d{d}"),
            title: format!("w{}", d % 7),
            text: (0..4).map(|k| format!("w{}", 5 + (d * 3 + k * 5) % 35)).collect::<Vec<_>>().join(" "),
        })
        .collect();
    let queries: Vec<Query> = (0..4).map(|q| Query { id: format!("q{q}"), text: format!("w{} w{}", 5 + q * 4, 6 + q * 7) }).collect();
    let mut qrels = Qrels::new();
    for d in 0..12 {
        qrels.insert(format!("q{}", d % 4), format!("d{d}"), 1 + (d % 2));
    }
    std::fs::create_dir_all(dir.join("qrels")).unwrap();
    let lines = |items: Vec<serde_json::Value>| items.iter().map(|v| v.to_string() + "\n").collect::<String>();
    std::fs::write(
        dir.join("corpus.jsonl"),
        lines(corpus.iter().map(|d| serde_json::json!({"_id": d.id, "title": d.title, "text": d.text})).collect()),
    )
    .unwrap();
    std::fs::write(dir.join("queries.jsonl"), lines(queries.iter().map(|q| serde_json::json!({"_id": q.id, "text": q.text})).collect()))
        .unwrap();
    let mut tsv = "query-id\tcorpus-id\tscore\n".to_string();
    for (q, judged) in qrels.iter() {
        for (d, g) in judged {
            tsv.push_str(&format!("{q}\t{d}\t{g}\n"));
        }
    }
    std::fs::write(dir.join("qrels/test.tsv"), tsv).unwrap();
    (corpus, queries, qrels)
}
