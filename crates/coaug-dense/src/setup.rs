//! What a sentence-transformers folder says about how to turn token states into one
//! vector: pooling (`modules.json` + `1_Pooling/config.json`), maximum length
//! (`sentence_bert_config.json`) and the query prompt (`config_sentence_transformers.json`).
//! A bare Hugging Face BERT folder (no sentence-transformers files) gets mean pooling, as
//! sentence-transformers itself would give it.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// How token states become a sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Average over the non-padding tokens (all-MiniLM, e5).
    Mean,
    /// The `[CLS]` token's state (bge).
    Cls,
    /// Per-dimension maximum over the non-padding tokens.
    Max,
}

/// The encoder's behaviour read from its folder; callers may override any field.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderSetup {
    pub pooling: Pooling,
    /// Tokens per text, `[CLS]` and `[SEP]` included; longer texts are truncated.
    pub max_length: usize,
    /// Prepended to queries only (bge: "Represent this sentence for searching relevant passages: ").
    pub query_prefix: Option<String>,
    /// Scale every vector to unit length, so that dot product = cosine.
    pub normalize: bool,
}

#[derive(Deserialize)]
struct Module {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize, Default)]
struct SentenceTransformersConfig {
    #[serde(default)]
    prompts: std::collections::BTreeMap<String, String>,
}

impl EncoderSetup {
    /// Reads the folder's sentence-transformers files; `max_positions` caps the length.
    pub fn read(dir: &Path, max_positions: usize) -> Result<Self> {
        let modules: Option<Vec<Module>> = read_json_opt(&dir.join("modules.json"))?;
        let pooling_module = modules.iter().flatten().find(|m| m.kind.ends_with("models.Pooling"));
        let pooling = match pooling_module {
            Some(m) => {
                let path = dir.join(&m.path).join("config.json");
                let cfg: PoolingConfig = read_json_opt(&path)?
                    .with_context(|| format!("{} lists a Pooling module but {} is missing", dir.display(), path.display()))?;
                pooling_from(&cfg).with_context(|| format!("in {}", path.display()))?
            }
            None => Pooling::Mean,
        };
        let sbert: Option<SentenceBertConfig> = read_json_opt(&dir.join("sentence_bert_config.json"))?;
        let max_length = sbert.and_then(|c| c.max_seq_length).unwrap_or(max_positions).min(max_positions);
        let st: SentenceTransformersConfig = read_json_opt(&dir.join("config_sentence_transformers.json"))?.unwrap_or_default();
        let query_prefix = st.prompts.get("query").filter(|p| !p.is_empty()).cloned();
        // Retrieval compares by cosine: normalise even when the folder has no Normalize
        // module (e5, bare BERT); rankings by cosine are what those models are meant for.
        Ok(Self { pooling, max_length, query_prefix, normalize: true })
    }
}

fn pooling_from(cfg: &PoolingConfig) -> Result<Pooling> {
    if cfg.pooling_mode_mean_sqrt_len_tokens {
        bail!("pooling_mode_mean_sqrt_len_tokens is not supported");
    }
    match (cfg.pooling_mode_cls_token, cfg.pooling_mode_mean_tokens, cfg.pooling_mode_max_tokens) {
        (true, false, false) => Ok(Pooling::Cls),
        (false, true, false) => Ok(Pooling::Mean),
        (false, false, true) => Ok(Pooling::Max),
        _ => bail!("exactly one of the cls / mean / max pooling modes must be set"),
    }
}

fn read_json_opt<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    #[test]
    fn reads_cls_pooling_length_and_query_prompt() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "modules.json",
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#,
        );
        write(
            dir.path(),
            "1_Pooling/config.json",
            r#"{"word_embedding_dimension":8,"pooling_mode_cls_token":true,"pooling_mode_mean_tokens":false}"#,
        );
        write(dir.path(), "sentence_bert_config.json", r#"{"max_seq_length":600}"#);
        write(dir.path(), "config_sentence_transformers.json", r#"{"prompts":{"query":"Q: "}}"#);
        let s = EncoderSetup::read(dir.path(), 512).unwrap();
        assert_eq!(s.pooling, Pooling::Cls);
        assert_eq!(s.max_length, 512, "capped by the position table");
        assert_eq!(s.query_prefix.as_deref(), Some("Q: "));
    }

    #[test]
    fn bare_folder_means_mean_pooling_and_bad_configs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let s = EncoderSetup::read(dir.path(), 128).unwrap();
        assert_eq!((s.pooling, s.max_length, s.query_prefix), (Pooling::Mean, 128, None));
        write(dir.path(), "modules.json", r#"[{"path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#);
        assert!(EncoderSetup::read(dir.path(), 128).is_err(), "missing pooling config");
        write(dir.path(), "1_Pooling/config.json", r#"{"pooling_mode_cls_token":true,"pooling_mode_mean_tokens":true}"#);
        assert!(EncoderSetup::read(dir.path(), 128).is_err(), "two pooling modes");
    }
}
