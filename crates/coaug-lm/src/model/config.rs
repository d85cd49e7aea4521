//! Architecture hyper-parameters shared by every weight source (GGUF, HF, random).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Model family. Both are pre-norm decoder-only transformers with RMSNorm, SwiGLU
/// and rotary embeddings; they differ in biases and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Llama, SmolLM, Mistral-style: no attention biases.
    Llama,
    /// Qwen2 / Qwen2.5: biases on the q/k/v projections.
    Qwen2,
}

impl Architecture {
    /// Name used by HF `config.json` (`model_type`).
    pub fn hf_model_type(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
        }
    }
}

/// Hyper-parameters of a causal LM. Rotary embeddings always use the HF
/// "rotate-half" layout; GGUF llama weights are un-permuted on load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
    /// Biases on the q/k/v projections (Qwen2).
    pub qkv_bias: bool,
    pub max_position_embeddings: usize,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

impl ModelConfig {
    /// A small model for tests: 2 query heads per KV head so GQA paths are exercised.
    pub fn tiny(architecture: Architecture, vocab_size: usize) -> Self {
        ModelConfig {
            architecture,
            vocab_size,
            hidden_size: 32,
            intermediate_size: 64,
            num_layers: 3,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 8,
            rope_theta: 10_000.0,
            rms_norm_eps: 1e-5,
            tie_word_embeddings: architecture == Architecture::Llama,
            qkv_bias: architecture == Architecture::Qwen2,
            max_position_embeddings: 512,
            bos_token_id: None,
            eos_token_id: None,
        }
    }

    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// Checks the head arithmetic the attention code relies on.
    pub fn validate(&self) -> Result<()> {
        if self.num_kv_heads == 0 || !self.num_heads.is_multiple_of(self.num_kv_heads) {
            bail!("num_heads ({}) must be a positive multiple of num_kv_heads ({})", self.num_heads, self.num_kv_heads);
        }
        if !self.head_dim.is_multiple_of(2) {
            bail!("head_dim ({}) must be even for rotary embeddings", self.head_dim);
        }
        if self.num_layers == 0 || self.vocab_size == 0 || self.hidden_size == 0 {
            bail!("model has no layers, vocabulary or width: {self:?}");
        }
        Ok(())
    }

    /// Reads a HF `config.json` (llama or qwen2 `model_type`).
    pub fn from_hf_json(text: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(text).context("config.json is not JSON")?;
        let get_usize = |k: &str| -> Result<usize> {
            v.get(k).and_then(|x| x.as_u64()).map(|x| x as usize).with_context(|| format!("config.json: missing or non-integer `{k}`"))
        };
        let model_type = v.get("model_type").and_then(|x| x.as_str()).unwrap_or("");
        let architecture = match model_type {
            "llama" | "mistral" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            other => bail!("config.json: unsupported model_type `{other}` (llama or qwen2)"),
        };
        let hidden_size = get_usize("hidden_size")?;
        let num_heads = get_usize("num_attention_heads")?;
        let first_id = |k: &str| -> Option<u32> {
            match v.get(k)? {
                serde_json::Value::Number(n) => n.as_u64().map(|x| x as u32),
                serde_json::Value::Array(a) => a.first()?.as_u64().map(|x| x as u32),
                _ => None,
            }
        };
        let cfg = ModelConfig {
            architecture,
            vocab_size: get_usize("vocab_size")?,
            hidden_size,
            intermediate_size: get_usize("intermediate_size")?,
            num_layers: get_usize("num_hidden_layers")?,
            num_heads,
            num_kv_heads: get_usize("num_key_value_heads").unwrap_or(num_heads),
            head_dim: get_usize("head_dim").unwrap_or(hidden_size / num_heads),
            rope_theta: v.get("rope_theta").and_then(|x| x.as_f64()).unwrap_or(10_000.0),
            rms_norm_eps: v.get("rms_norm_eps").and_then(|x| x.as_f64()).unwrap_or(1e-6),
            tie_word_embeddings: v.get("tie_word_embeddings").and_then(|x| x.as_bool()).unwrap_or(false),
            qkv_bias: architecture == Architecture::Qwen2 || v.get("attention_bias").and_then(|x| x.as_bool()).unwrap_or(false),
            max_position_embeddings: get_usize("max_position_embeddings").unwrap_or(4096),
            bos_token_id: first_id("bos_token_id"),
            eos_token_id: first_id("eos_token_id"),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Writes the HF `config.json` for an exported model.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let arch_class = match self.architecture {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
        };
        let mut v = serde_json::json!({
            "architectures": [arch_class],
            "model_type": self.architecture.hf_model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        });
        if self.architecture == Architecture::Llama {
            v["attention_bias"] = serde_json::json!(self.qkv_bias);
        }
        if let Some(b) = self.bos_token_id {
            v["bos_token_id"] = b.into();
        }
        if let Some(e) = self.eos_token_id {
            v["eos_token_id"] = e.into();
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_json_round_trips() {
        for arch in [Architecture::Llama, Architecture::Qwen2] {
            let mut cfg = ModelConfig::tiny(arch, 100);
            cfg.eos_token_id = Some(7);
            let back = ModelConfig::from_hf_json(&cfg.to_hf_json().to_string()).unwrap();
            assert_eq!(back, cfg);
        }
    }

    #[test]
    fn rejects_unknown_model_type() {
        let err = ModelConfig::from_hf_json(r#"{"model_type":"gpt2"}"#).unwrap_err();
        assert!(err.to_string().contains("gpt2"), "{err}");
    }
}
