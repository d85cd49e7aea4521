//! all-MiniLM-L6-v2 reproduces sentence-transformers' published similarity. Skips with a note
//! when the encoder is not in coaug's cache (`coaug model fetch-encoder` fetches it), and fails
//! instead under `COAUG_REQUIRE_MODELS=1` (CI).

use coaug_dense::{cosine, default_encoder_dir, SentenceEncoder};

/// The cached default encoder, or `None` (with a note) where it has not been fetched.
fn cached_encoder() -> Option<SentenceEncoder> {
    let dir = default_encoder_dir(&coaug_lm::cache_root());
    if !coaug_data::cache::cached_or_skip(&dir.join("model.safetensors"), "coaug model fetch-encoder") {
        return None;
    }
    Some(SentenceEncoder::load(&dir).unwrap())
}

#[test]
fn minilm_cosine_matches_sentence_transformers() {
    let Some(enc) = cached_encoder() else { return };
    assert_eq!(enc.dim(), 384);
    assert_eq!(enc.setup().max_length, 256);
    let v = enc.encode_documents(&["A man is eating food.", "A man is eating a piece of bread."], false).unwrap();
    let c = cosine(v.row(0), v.row(1));
    // sentence-transformers prints 0.7553 for this pair.
    assert!((c - 0.7553).abs() < 6e-4, "cosine {c}");
}

/// Every text of `golden/minilm_golden.json` (accents, CJK, emoji, code, punctuation only, and one
/// past the 256-token limit) embeds like sentence-transformers does: cosine ≥ 0.999 per text.
#[test]
fn minilm_embeddings_match_the_sentence_transformers_golden_file() {
    let Some(enc) = cached_encoder() else { return };
    let golden: serde_json::Value = serde_json::from_str(include_str!("golden/minilm_golden.json")).expect("golden file is JSON");
    let texts: Vec<&str> = golden["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let want: Vec<Vec<f32>> = golden["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect();
    let got = enc.encode_documents(&texts, false).unwrap();
    let mut lowest = f32::INFINITY;
    for (i, (text, want)) in texts.iter().zip(&want).enumerate() {
        let c = cosine(got.row(i), want);
        assert!(c >= 0.999, "text {i} ({text:.40}): cosine {c} with sentence-transformers");
        lowest = lowest.min(c);
    }
    eprintln!("lowest cosine with sentence-transformers over {} texts: {lowest:.6}", texts.len());
}
