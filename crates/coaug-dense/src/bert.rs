//! A BERT encoder (embeddings + post-norm transformer layers) on candle, reading Hugging
//! Face weight names with or without a `bert.` prefix. Inference only. Query, key and value
//! projections are fused into one matrix product, which runs faster on CPU than three.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

/// The fields of a Hugging Face `config.json` that BERT inference needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    /// Exact (erf) GELU, Hugging Face's "gelu".
    Gelu,
    /// tanh approximation ("gelu_new", "gelu_pytorch_tanh").
    GeluTanh,
    Relu,
}

impl Activation {
    fn parse(name: &str) -> Result<Self> {
        match name {
            "gelu" => Ok(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            "relu" => Ok(Self::Relu),
            other => candle_core::bail!("unsupported hidden_act {other:?}"),
        }
    }

    fn apply(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::Gelu => xs.gelu_erf(),
            Self::GeluTanh => xs.gelu(),
            Self::Relu => xs.relu(),
        }
    }
}

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: LayerNorm,
}

/// BERT's encoder stack: token ids in, last hidden states out.
pub struct BertModel {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    act: Activation,
}

impl BertModel {
    pub fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        if !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            candle_core::bail!("hidden_size {} is not a multiple of {} heads", cfg.hidden_size, cfg.num_attention_heads);
        }
        // Checkpoints saved from BertForX carry a "bert." (or "<model_type>.") prefix.
        let vb = [Some("bert".to_string()), cfg.model_type.clone()]
            .into_iter()
            .flatten()
            .find(|p| vb.contains_tensor(&format!("{p}.embeddings.word_embeddings.weight")))
            .map_or(vb.clone(), |p| vb.pp(p));
        let h = cfg.hidden_size;
        let e = vb.pp("embeddings");
        let word = embedding(cfg.vocab_size, h, e.pp("word_embeddings"))?;
        let position = embedding(cfg.max_position_embeddings, h, e.pp("position_embeddings"))?;
        let token_type = embedding(cfg.type_vocab_size, h, e.pp("token_type_embeddings"))?;
        let embed_norm = layer_norm(h, cfg.layer_norm_eps, e.pp("LayerNorm"))?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let sa = l.pp("attention.self");
            let (q, k, v) = (linear(h, h, sa.pp("query"))?, linear(h, h, sa.pp("key"))?, linear(h, h, sa.pp("value"))?);
            let weight = Tensor::cat(&[q.weight(), k.weight(), v.weight()], 0)?;
            let bias = match (q.bias(), k.bias(), v.bias()) {
                (Some(a), Some(b), Some(c)) => Some(Tensor::cat(&[a, b, c], 0)?),
                _ => None,
            };
            layers.push(Layer {
                qkv: Linear::new(weight, bias),
                attn_out: linear(h, h, l.pp("attention.output.dense"))?,
                attn_norm: layer_norm(h, cfg.layer_norm_eps, l.pp("attention.output.LayerNorm"))?,
                ffn_in: linear(h, cfg.intermediate_size, l.pp("intermediate.dense"))?,
                ffn_out: linear(cfg.intermediate_size, h, l.pp("output.dense"))?,
                ffn_norm: layer_norm(h, cfg.layer_norm_eps, l.pp("output.LayerNorm"))?,
            });
        }
        Ok(Self {
            word,
            position,
            token_type,
            embed_norm,
            layers,
            heads: cfg.num_attention_heads,
            act: Activation::parse(&cfg.hidden_act)?,
        })
    }

    /// `input_ids` and `mask` are `(batch, seq)` u32 (mask 1 = real token, 0 = padding);
    /// returns `(batch, seq, hidden)` f32.
    pub fn forward(&self, input_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let positions = Tensor::arange(0u32, t as u32, input_ids.device())?;
        let types = input_ids.zeros_like()?;
        let x = self.word.forward(input_ids)?.broadcast_add(&self.position.forward(&positions)?)?.add(&self.token_type.forward(&types)?)?;
        let mut x = self.embed_norm.forward(&x)?;
        // Additive mask over keys: 0 for tokens, a large negative number for padding.
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((b, 1, 1, t))?;
        for layer in &self.layers {
            x = self.layer_forward(layer, &x, &bias)?;
        }
        Ok(x)
    }

    fn layer_forward(&self, l: &Layer, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let hd = h / self.heads;
        let qkv = l.qkv.forward(x)?; // (b, t, 3h)
        let split = |i: usize| -> Result<Tensor> {
            qkv.narrow(D::Minus1, i * h, h)?.reshape((b, t, self.heads, hd))?.transpose(1, 2)?.contiguous()
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?.broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h))?;
        let x = l.attn_norm.forward(&(l.attn_out.forward(&ctx)? + x)?)?;
        let ffn = l.ffn_out.forward(&self.act.apply(&l.ffn_in.forward(&x)?)?)?;
        l.ffn_norm.forward(&(ffn + x)?)
    }
}
