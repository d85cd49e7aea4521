//! Building a `CausalLm` from a GGUF file, a HF directory or a seeded random draw.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::{gguf_file, QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::model::config::{Architecture, ModelConfig};
use crate::model::linear::{Linear, QuantWeight, Weight};
use crate::model::{Block, CausalLm};

/// How projection weights are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Keep GGUF blocks (fast single-stream inference, no gradients). HF weights
    /// have nothing to keep and load as f32.
    Quantized,
    /// Dequantize to f32: required for training, fastest for large batches.
    F32,
}

impl CausalLm {
    /// A seeded random model (uniform weights of std 0.02, unit norms), for tests.
    pub fn random(cfg: &ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut draw = |rows: usize, cols: usize| -> Result<Tensor> {
            let a = 0.02f32 * 3f32.sqrt();
            let v: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-a..a)).collect();
            Ok(Tensor::from_vec(v, (rows, cols), device)?)
        };
        let (d, f) = (cfg.hidden_size, cfg.intermediate_size);
        let embed = draw(cfg.vocab_size, d)?;
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for _ in 0..cfg.num_layers {
            let mut bias = |n: usize| -> Result<Option<Tensor>> { Ok(if cfg.qkv_bias { Some(draw(1, n)?.flatten_all()?) } else { None }) };
            let (qb, kb, vb) = (bias(cfg.q_dim())?, bias(cfg.kv_dim())?, bias(cfg.kv_dim())?);
            blocks.push(Block {
                gate_up: None,
                attn_norm: Tensor::ones(d, DType::F32, device)?,
                q: Linear::dense(draw(cfg.q_dim(), d)?, qb),
                k: Linear::dense(draw(cfg.kv_dim(), d)?, kb),
                v: Linear::dense(draw(cfg.kv_dim(), d)?, vb),
                o: Linear::dense(draw(d, cfg.q_dim())?, None),
                mlp_norm: Tensor::ones(d, DType::F32, device)?,
                gate: Linear::dense(draw(f, d)?, None),
                up: Linear::dense(draw(f, d)?, None),
                down: Linear::dense(draw(d, f)?, None),
            });
        }
        let lm_head = if cfg.tie_word_embeddings { None } else { Some(Linear::dense(draw(cfg.vocab_size, d)?, None)) };
        let norm = Tensor::ones(d, DType::F32, device)?;
        Ok(CausalLm::assemble(cfg.clone(), device.clone(), embed, blocks, norm, lm_head)?)
    }

    /// Loads a HF directory: `config.json` and every `*.safetensors` in it.
    pub fn from_hf_dir(dir: &Path, device: &Device) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).with_context(|| format!("reading {}", cfg_path.display()))?;
        let cfg = ModelConfig::from_hf_json(&text).with_context(|| format!("parsing {}", cfg_path.display()))?;
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("{}: no *.safetensors files", dir.display());
        }
        let mut tensors = HashMap::new();
        for f in &files {
            let t = candle_core::safetensors::load(f, device).with_context(|| format!("reading {}", f.display()))?;
            tensors.extend(t);
        }
        from_named_tensors(cfg, tensors, device)
    }

    /// Loads a GGUF file (architectures `llama` and `qwen2`).
    pub fn from_gguf(path: &Path, precision: Precision, device: &Device) -> Result<Self> {
        let mut reader = BufReader::new(File::open(path).with_context(|| format!("opening {}", path.display()))?);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| anyhow!("{}: not a GGUF file: {e}", path.display()))?;
        let cfg = config_from_gguf(&content).with_context(|| format!("{}: reading model metadata", path.display()))?;
        let mut get = |name: &str| -> Result<QTensor> {
            content.tensor(&mut reader, name, device).map_err(|e| anyhow!("{}: tensor `{name}`: {e}", path.display()))
        };
        let permute = cfg.architecture == Architecture::Llama;
        let dense = |q: &QTensor| -> Result<Tensor> { Ok(q.dequantize(device)?.to_dtype(DType::F32)?) };
        let proj = |q: QTensor, heads: Option<usize>| -> Result<Linear> {
            // GGUF llama stores Q/K rows interleaved for `rope_i`; restore HF order so a
            // single rotate-half rope serves every source.
            let q = match heads {
                Some(n) if permute => unpermute_rows(&q, n, device)?,
                _ => q,
            };
            let weight = match precision {
                Precision::Quantized => {
                    // Keep the file's Q4_1 blocks for decoding before re-quantizing for gemm.
                    let q4 = crate::kernels::q8::Q4Matrix::from_qtensor(&q)?;
                    let mm = QMatMul::from_qtensor(fast_block_type(q, device)?)?;
                    Weight::Quantized(Arc::new(QuantWeight::new(mm, q4, device)?))
                }
                Precision::F32 => Weight::Dense(dense(&q)?),
            };
            Ok(Linear { weight, bias: None, lora: None, decode: None })
        };
        let token_embd = get("token_embd.weight")?;
        let embed = dense(&token_embd)?;
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let p = |s: &str| format!("blk.{i}.{s}");
            let mut q = proj(get(&p("attn_q.weight"))?, Some(cfg.num_heads))?;
            let mut k = proj(get(&p("attn_k.weight"))?, Some(cfg.num_kv_heads))?;
            let mut v = proj(get(&p("attn_v.weight"))?, None)?;
            if cfg.qkv_bias {
                q.bias = Some(dense(&get(&p("attn_q.bias"))?)?);
                k.bias = Some(dense(&get(&p("attn_k.bias"))?)?);
                v.bias = Some(dense(&get(&p("attn_v.bias"))?)?);
            }
            blocks.push(Block {
                gate_up: None,
                attn_norm: dense(&get(&p("attn_norm.weight"))?)?,
                q,
                k,
                v,
                o: proj(get(&p("attn_output.weight"))?, None)?,
                mlp_norm: dense(&get(&p("ffn_norm.weight"))?)?,
                gate: proj(get(&p("ffn_gate.weight"))?, None)?,
                up: proj(get(&p("ffn_up.weight"))?, None)?,
                down: proj(get(&p("ffn_down.weight"))?, None)?,
            });
        }
        let norm = dense(&get("output_norm.weight")?)?;
        let lm_head = match (content.tensor_infos.contains_key("output.weight"), precision) {
            (true, _) => Some(proj(get("output.weight")?, None)?),
            (false, Precision::Quantized) => Some(proj(token_embd, None)?),
            (false, Precision::F32) => None,
        };
        Ok(CausalLm::assemble(cfg, device.clone(), embed, blocks, norm, lm_head)?)
    }
}

/// Builds a dense model from HF-named tensors (`model.layers.N.self_attn.q_proj.weight`, …).
pub(crate) fn from_named_tensors(cfg: ModelConfig, mut t: HashMap<String, Tensor>, _device: &Device) -> Result<CausalLm> {
    let mut take = |name: &str| -> Result<Tensor> {
        let x = t.remove(name).ok_or_else(|| anyhow!("missing tensor `{name}`"))?;
        Ok(x.to_dtype(DType::F32)?)
    };
    let embed = take("model.embed_tokens.weight")?;
    let mut blocks = Vec::with_capacity(cfg.num_layers);
    for i in 0..cfg.num_layers {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        let mut lin = |s: &str, bias: bool| -> Result<Linear> {
            let w = take(&p(&format!("{s}.weight")))?;
            let b = if bias { Some(take(&p(&format!("{s}.bias")))?) } else { None };
            Ok(Linear::dense(w, b))
        };
        let q = lin("self_attn.q_proj", cfg.qkv_bias)?;
        let k = lin("self_attn.k_proj", cfg.qkv_bias)?;
        let v = lin("self_attn.v_proj", cfg.qkv_bias)?;
        let o = lin("self_attn.o_proj", false)?;
        let gate = lin("mlp.gate_proj", false)?;
        let up = lin("mlp.up_proj", false)?;
        let down = lin("mlp.down_proj", false)?;
        blocks.push(Block {
            gate_up: None,
            attn_norm: take(&p("input_layernorm.weight"))?,
            q,
            k,
            v,
            o,
            mlp_norm: take(&p("post_attention_layernorm.weight"))?,
            gate,
            up,
            down,
        });
    }
    let norm = take("model.norm.weight")?;
    let lm_head = if cfg.tie_word_embeddings { None } else { Some(Linear::dense(take("lm_head.weight")?, None)) };
    let device = embed.device().clone();
    Ok(CausalLm::assemble(cfg, device, embed, blocks, norm, lm_head)?)
}

fn config_from_gguf(ct: &gguf_file::Content) -> Result<ModelConfig> {
    let md = |k: &str| ct.metadata.get(k).ok_or_else(|| anyhow!("missing metadata `{k}`"));
    let arch_name = md("general.architecture")?.to_string()?.clone();
    let architecture = match arch_name.as_str() {
        "llama" => Architecture::Llama,
        "qwen2" => Architecture::Qwen2,
        other => bail!("unsupported architecture `{other}` (llama or qwen2)"),
    };
    let u = |k: &str| -> Result<usize> { Ok(md(&format!("{arch_name}.{k}"))?.to_u32()? as usize) };
    let hidden_size = u("embedding_length")?;
    let num_heads = u("attention.head_count")?;
    let vocab_size = ct.tensor_infos.get("token_embd.weight").ok_or_else(|| anyhow!("missing tensor `token_embd.weight`"))?.shape.dims()[0];
    let id = |k: &str| ct.metadata.get(k).and_then(|v| v.to_u32().ok());
    let cfg = ModelConfig {
        architecture,
        vocab_size,
        hidden_size,
        intermediate_size: u("feed_forward_length")?,
        num_layers: u("block_count")?,
        num_heads,
        num_kv_heads: u("attention.head_count_kv").unwrap_or(num_heads),
        head_dim: u("rope.dimension_count").unwrap_or(hidden_size / num_heads),
        rope_theta: md(&format!("{arch_name}.rope.freq_base")).and_then(|v| Ok(v.to_f32()? as f64)).unwrap_or(10_000.0),
        rms_norm_eps: md(&format!("{arch_name}.attention.layer_norm_rms_epsilon"))?.to_f32()? as f64,
        tie_word_embeddings: !ct.tensor_infos.contains_key("output.weight"),
        qkv_bias: ct.tensor_infos.contains_key("blk.0.attn_q.bias"),
        max_position_embeddings: u("context_length").unwrap_or(4096),
        bos_token_id: id("tokenizer.ggml.bos_token_id"),
        eos_token_id: id("tokenizer.ggml.eos_token_id"),
    };
    cfg.validate()?;
    Ok(cfg)
}

/// candle's CPU kernels for Q4_1/Q5_x are scalar (measured 2–4× slower than Q8_0 on
/// AVX-512); re-quantizing their dequantized values to Q8_0 is near-lossless.
fn fast_block_type(q: QTensor, device: &Device) -> Result<QTensor> {
    use candle_core::quantized::GgmlDType as G;
    if !device.is_cpu() || !matches!(q.dtype(), G::Q4_1 | G::Q5_0 | G::Q5_1) {
        return Ok(q);
    }
    Ok(QTensor::quantize(&q.dequantize(device)?, G::Q8_0)?)
}

/// Undoes llama.cpp's Q/K row permutation (`(heads, 2, hd/2)` → `(heads, hd/2, 2)`)
/// by moving whole rows, which works on quantized blocks too.
fn unpermute_rows(q: &QTensor, heads: usize, device: &Device) -> Result<QTensor> {
    let (rows, cols) = q.shape().dims2()?;
    let hd = rows / heads;
    let dtype = q.dtype();
    let row_bytes = cols / dtype.block_size() * dtype.type_size();
    let data = q.data()?;
    if data.len() != rows * row_bytes {
        bail!("unexpected quantized size {} for {rows}x{cols} {dtype:?}", data.len());
    }
    let mut out = vec![0u8; data.len()];
    for h in 0..heads {
        for half in 0..2 {
            for i in 0..hd / 2 {
                let dst = h * hd + half * (hd / 2) + i;
                let src = h * hd + 2 * i + half;
                out[dst * row_bytes..(dst + 1) * row_bytes].copy_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    let storage = QStorage::from_data(Cow::Owned(out), device, dtype)?;
    Ok(QTensor::new(storage, (rows, cols))?)
}

/// Loads only the tokenizer of a GGUF file or a HF directory (`tokenizer.json`; the end-of-text
/// id from `config.json`).
pub fn load_tokenizer(path: &Path) -> Result<crate::text::tokenizer::LmTokenizer> {
    if path.is_dir() {
        let cfg_path = path.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).with_context(|| format!("reading {}", cfg_path.display()))?;
        let cfg = ModelConfig::from_hf_json(&text).with_context(|| format!("parsing {}", cfg_path.display()))?;
        crate::text::tokenizer::LmTokenizer::from_file(&path.join("tokenizer.json"), cfg.eos_token_id)
    } else {
        crate::text::tokenizer::LmTokenizer::from_gguf(path)
    }
}

/// Loads a model and its tokenizer from a GGUF file or a HF directory.
pub fn load_model(path: &Path, precision: Precision, device: &Device) -> Result<(CausalLm, crate::text::tokenizer::LmTokenizer)> {
    if path.is_dir() {
        let model = CausalLm::from_hf_dir(path, device)?;
        let tok = crate::text::tokenizer::LmTokenizer::from_file(&path.join("tokenizer.json"), model.config().eos_token_id)?;
        Ok((model, tok))
    } else {
        let model = CausalLm::from_gguf(path, precision, device)?;
        let tok = crate::text::tokenizer::LmTokenizer::from_gguf(path)?;
        Ok((model, tok))
    }
}
