//! The encoder end to end on a tiny random BERT written to disk in the Hugging Face /
//! sentence-transformers layout: loading, pooling, batching invariance, query prefix,
//! truncation, stored vectors and the similarity matrix.

use std::path::Path;

use coaug_dense::testing::TinyBert;
use coaug_dense::{cosine, exact_top_k, open_or_encode, patch_documents, similarity_matrix, BatchPolicy, SentenceEncoder, StoredPrecision};

/// Writes a tiny BERT folder with the given pooling ("mean" or "cls").
fn write_tiny_bert(dir: &Path, pooling: &'static str, max_seq_length: usize) {
    coaug_dense::testing::write_tiny_bert(dir, &TinyBert { pooling, max_seq_length, seed: 1 }).unwrap();
}

const TEXTS: [&str; 5] = [
    "a man is eating food.",
    "a man is eating a piece of bread, quickly and with great joy in the kitchen.",
    "cats",
    "the quick brown fox jumps over the lazy dog.",
    "dense retrieval with sentence encoders",
];

fn assert_close(a: &[f32], b: &[f32], tol: f32) {
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < tol, "{x} vs {y}");
    }
}

#[test]
fn batching_by_length_does_not_change_any_vector() {
    for pooling in ["mean", "cls"] {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_bert(dir.path(), pooling, 48);
        let mut enc = SentenceEncoder::load(dir.path()).unwrap();
        assert_eq!(enc.dim(), 16);
        let batched = enc.encode_documents(&TEXTS, false).unwrap();
        assert_eq!(batched.len(), TEXTS.len());
        for (i, t) in TEXTS.iter().enumerate() {
            let alone = enc.encode_documents(&[t], false).unwrap();
            assert_close(alone.row(0), batched.row(i), 1e-5);
            let norm: f32 = batched.row(i).iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{pooling}: unit length, got {norm}");
        }
        // One text per batch gives the same vectors as one big padded batch.
        enc.set_batch_policy(BatchPolicy { max_tokens: 1, max_texts: 1 });
        let single = enc.encode_documents(&TEXTS, false).unwrap();
        assert_close(single.as_slice(), batched.as_slice(), 1e-5);
        // Different texts give different vectors (the weights are random, not degenerate).
        assert!(cosine(batched.row(0), batched.row(3)) < 0.9999);
    }
}

#[test]
fn mean_and_cls_pooling_differ_and_prefix_and_truncation_apply() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path(), "mean", 12);
    let mut enc = SentenceEncoder::load(dir.path()).unwrap();
    assert_eq!(enc.setup().max_length, 12);
    let ids = enc.tokenize(&TEXTS).unwrap();
    assert!(ids.iter().all(|t| t.len() <= 12 && t[0] == 2 && *t.last().unwrap() == 3));
    // Truncation: two texts sharing their first 10 word pieces embed identically.
    let long_a = "abc def ghi jkl mno pqr stu vwx yz abc def ghi";
    let long_b = "abc def ghi jkl mno pqr stu vwx yz abc xyz xyz xyz";
    let v = enc.encode_documents(&[long_a, long_b], false).unwrap();
    assert_close(v.row(0), v.row(1), 1e-6);

    enc.set_query_prefix(Some("query: ".into()));
    let q = enc.encode_queries(&["cats"], false).unwrap();
    let d = enc.encode_documents(&["query: cats"], false).unwrap();
    assert_close(q.row(0), d.row(0), 1e-6);
    let plain = enc.encode_documents(&["cats"], false).unwrap();
    assert!(cosine(q.row(0), plain.row(0)) < 0.9999, "the prefix changes the query vector");

    let cls_dir = tempfile::tempdir().unwrap();
    // Same weights, other pooling: copy the folder and switch the pooling config.
    for f in ["config.json", "model.safetensors", "tokenizer.json", "modules.json", "sentence_bert_config.json"] {
        std::fs::copy(dir.path().join(f), cls_dir.path().join(f)).unwrap();
    }
    std::fs::create_dir_all(cls_dir.path().join("1_Pooling")).unwrap();
    std::fs::write(cls_dir.path().join("1_Pooling/config.json"), r#"{"pooling_mode_cls_token":true}"#).unwrap();
    let cls = SentenceEncoder::load(cls_dir.path()).unwrap();
    let a = cls.encode_documents(&["cats and dogs"], false).unwrap();
    let b = SentenceEncoder::load(dir.path()).unwrap().encode_documents(&["cats and dogs"], false).unwrap();
    assert!(cosine(a.row(0), b.row(0)) < 0.9999);
}

#[test]
fn similarity_matrix_matches_individual_cosines() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path(), "mean", 48);
    let enc = SentenceEncoder::load(dir.path()).unwrap();
    let queries = ["cats", "a man is eating food.", "cats"];
    let docs = &TEXTS[1..];
    let m = similarity_matrix(&enc, &queries, docs).unwrap();
    assert_eq!((m.num_queries(), m.num_docs()), (3, 4));
    let qv = enc.encode_queries(&queries, false).unwrap();
    let dv = enc.encode_documents(docs, false).unwrap();
    for i in 0..3 {
        for j in 0..4 {
            assert!((m.get(i, j) - cosine(qv.row(i), dv.row(j))).abs() < 1e-5);
        }
    }
    assert_eq!(m.row(0), m.row(2), "duplicate rollouts score identically");
}

#[test]
fn stored_vectors_are_reused_until_the_texts_change() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path(), "mean", 48);
    let enc = SentenceEncoder::load(dir.path()).unwrap();
    let ids: Vec<String> = (0..TEXTS.len()).map(|i| format!("d{i}")).collect();
    let mut texts: Vec<String> = TEXTS.iter().map(|s| s.to_string()).collect();
    let store_dir = dir.path().join("vectors");
    let (store, built) = open_or_encode(&store_dir, &enc, &ids, &texts, StoredPrecision::F32).unwrap();
    assert!(built);
    let direct = enc.encode_documents(&TEXTS, false).unwrap();
    assert_eq!(store.to_embeddings(), direct);
    let hits = coaug_dense::search_queries(&enc, &store, &["cats"], 2).unwrap();
    assert_eq!(hits[0][0].0, "d2", "a text is its own nearest neighbour");
    let (_, built) = open_or_encode(&store_dir, &enc, &ids, &texts, StoredPrecision::F32).unwrap();
    assert!(!built);
    texts[4].push_str(" again");
    let (_, built) = open_or_encode(&store_dir, &enc, &ids, &texts, StoredPrecision::F32).unwrap();
    assert!(built);
    let (f16, built) = open_or_encode(&store_dir, &enc, &ids, &texts, StoredPrecision::F16).unwrap();
    assert!(built && f16.manifest().precision == StoredPrecision::F16);
}

#[test]
fn patching_augmented_rows_equals_re_encoding_the_augmented_corpus() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path(), "mean", 48);
    let mut enc = SentenceEncoder::load(dir.path()).unwrap();
    // Small batches, so the patched rows and the full re-encode are batched differently.
    enc.set_batch_policy(BatchPolicy { max_tokens: 64, max_texts: 2 });
    let ids: Vec<String> = (0..TEXTS.len()).map(|i| format!("d{i}")).collect();
    let texts: Vec<String> = TEXTS.iter().map(|s| s.to_string()).collect();
    let (store, _) = open_or_encode(&dir.path().join("vectors"), &enc, &ids, &texts, StoredPrecision::F32).unwrap();

    // Documents 1 and 3 get an abstract in front (the dense document composition).
    let augmented: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| if i == 1 || i == 3 { format!("an abstract about food and dogs.\n{t}") } else { t.clone() })
        .collect();
    let changed: Vec<(usize, &str)> = [1, 3].iter().map(|&i| (i, augmented[i].as_str())).collect();
    let patched = patch_documents(&enc, store.to_embeddings(), &changed).unwrap();

    let refs: Vec<&str> = augmented.iter().map(String::as_str).collect();
    let full = enc.encode_documents(&refs, false).unwrap();
    assert_eq!(patched.len(), full.len());
    assert_close(patched.as_slice(), full.as_slice(), 1e-5);
    for i in [0, 2, 4] {
        assert_eq!(patched.row(i), store.to_embeddings().row(i), "untouched rows are the stored vectors");
    }
    assert!(cosine(patched.row(1), store.to_embeddings().row(1)) < 0.9999, "the augmentation changed row 1");
    // Searching the patched matrix ranks like searching the re-encoded one.
    let q = enc.encode_queries(&["food and dogs"], false).unwrap();
    let a: Vec<u32> = exact_top_k(&q, &patched, 5).unwrap()[0].iter().map(|s| s.doc).collect();
    let b: Vec<u32> = exact_top_k(&q, &full, 5).unwrap()[0].iter().map(|s| s.doc).collect();
    assert_eq!(a, b);

    assert!(patch_documents(&enc, store.to_embeddings(), &[(TEXTS.len(), "x")]).is_err(), "row out of range");
    assert!(patch_documents(&enc, coaug_dense::Embeddings::new(8, vec![0.0; 8]), &[]).is_err(), "dim mismatch");
}
