//! A tiny BERT sentence encoder written to disk in the Hugging Face / sentence-transformers
//! layout, for tests here and in crates that use the encoder (the RL trainer's dense reward).
//! 16 dimensions, 2 layers, a WordPiece vocabulary of single letters and digits, so any
//! lower-case ASCII text tokenizes without `[UNK]` and different texts embed differently.
//! Weights come from a seeded generator: the same seed writes the same encoder, so tests
//! that depend on the vectors are reproducible.

use std::path::Path;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use crate::bert::{BertConfig, BertModel};

/// The folder's shape; `Default` is mean pooling, 48 tokens, seed 0.
#[derive(Debug, Clone)]
pub struct TinyBert {
    /// `"mean"` or `"cls"`, written to `1_Pooling/config.json`.
    pub pooling: &'static str,
    /// `max_seq_length` of `sentence_bert_config.json` (at most 64, the position table).
    pub max_seq_length: usize,
    pub seed: u64,
}

impl Default for TinyBert {
    fn default() -> Self {
        Self { pooling: "mean", max_seq_length: 48, seed: 0 }
    }
}

const CONFIG: &str = r#"{"architectures":["BertModel"],"attention_probs_dropout_prob":0.1,"hidden_act":"gelu",
"hidden_dropout_prob":0.1,"hidden_size":16,"initializer_range":0.02,"intermediate_size":32,"layer_norm_eps":1e-12,
"max_position_embeddings":64,"model_type":"bert","num_attention_heads":2,"num_hidden_layers":2,"pad_token_id":0,
"position_embedding_type":"absolute","type_vocab_size":2,"vocab_size":VOCAB}"#;

/// Special tokens, two punctuation marks, then every letter and digit alone and as a
/// word-piece continuation.
fn vocab() -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", ".", ","].iter().map(|s| s.to_string()).collect();
    for c in ('a'..='z').chain('0'..='9') {
        v.push(c.to_string());
        v.push(format!("##{c}"));
    }
    v
}

fn tokenizer_json() -> String {
    let vocab: serde_json::Map<String, serde_json::Value> =
        vocab().into_iter().enumerate().map(|(i, t)| (t, serde_json::json!(i))).collect();
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": null,
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab}
    })
    .to_string()
}

/// Writes the encoder folder into `dir` (config, weights, tokenizer, sentence-transformers
/// files), ready for `SentenceEncoder::load`.
pub fn write_tiny_bert(dir: &Path, tiny: &TinyBert) -> Result<()> {
    let config_text = CONFIG.replace("VOCAB", &vocab().len().to_string());
    std::fs::write(dir.join("config.json"), &config_text)?;
    let config: BertConfig = serde_json::from_str(&config_text)?;
    let varmap = VarMap::new();
    BertModel::load(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu), &config)?;
    seed_weights(&varmap, tiny.seed)?;
    varmap.save(dir.join("model.safetensors"))?;
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json())?;
    std::fs::write(
        dir.join("modules.json"),
        r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
            {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
    )?;
    std::fs::create_dir_all(dir.join("1_Pooling"))?;
    let (cls, mean) = (tiny.pooling == "cls", tiny.pooling == "mean");
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        format!(r#"{{"word_embedding_dimension":16,"pooling_mode_cls_token":{cls},"pooling_mode_mean_tokens":{mean}}}"#),
    )?;
    std::fs::write(dir.join("sentence_bert_config.json"), format!(r#"{{"max_seq_length":{}}}"#, tiny.max_seq_length))?;
    Ok(())
}

/// Overwrites candle's (thread-random) initialisation with values from a seeded generator:
/// uniform in ±0.5, layer-norm scales around 1 so no layer collapses its input.
fn seed_weights(varmap: &VarMap, seed: u64) -> Result<()> {
    let vars = varmap.data().lock().expect("the var map is not shared yet");
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let mut uniform = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    for name in names {
        let var = &vars[name];
        let centre = if name.contains("LayerNorm.weight") { 1.0 } else { 0.0 };
        let values: Vec<f32> = (0..var.elem_count()).map(|_| centre + uniform()).collect();
        var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu)?)?;
    }
    Ok(())
}
