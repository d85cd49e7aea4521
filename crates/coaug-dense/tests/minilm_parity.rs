//! all-MiniLM-L6-v2 reproduces sentence-transformers' published similarity. Skips (passes
//! with a note) when the encoder is not in coaug's cache: `coaug bench dense` fetches it.

use coaug_dense::{cosine, default_encoder_dir, SentenceEncoder};

#[test]
fn minilm_cosine_matches_sentence_transformers() {
    let dir = default_encoder_dir(&coaug_lm::cache_root());
    if !dir.join("model.safetensors").is_file() {
        eprintln!("skipping: {} not cached", dir.display());
        return;
    }
    let enc = SentenceEncoder::load(&dir).unwrap();
    assert_eq!(enc.dim(), 384);
    assert_eq!(enc.setup().max_length, 256);
    let v = enc.encode_documents(&["A man is eating food.", "A man is eating a piece of bread."], false).unwrap();
    let c = cosine(v.row(0), v.row(1));
    // sentence-transformers prints 0.7553 for this pair.
    assert!((c - 0.7553).abs() < 6e-4, "cosine {c}");
}
