//! The decoder-only transformer (Llama / Qwen2) with two execution modes:
//! fused kernels without autograd for generation, and differentiable ops for training.

pub mod cache;
pub mod config;
pub(crate) mod linear;
pub mod load;

use std::ops::Range;

use candle_core::{DType, Device, Result, Tensor, D};
use candle_nn::{ops, rotary_emb};

use crate::kernels::attention;
use crate::model::cache::KvCache;
use crate::model::config::ModelConfig;
use crate::model::linear::{view, Dense, Linear, Weight};

/// One transformer block.
#[derive(Clone)]
pub(crate) struct Block {
    pub attn_norm: Tensor,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub mlp_norm: Tensor,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
    /// `[gate; up]` `(2·intermediate, hidden)` in one tensor, whose halves `gate` and `up` then
    /// view (see [`CausalLm::prepare_for_decoding`]): a prefill's MLP goes through one input
    /// product instead of two (`swiglu::mlp_residual`).
    pub gate_up: Option<Tensor>,
}

/// Which path a forward pass takes. `Infer` runs the no-gradient kernels (attention on raw
/// slices over the KV cache, the few-rows matmul, the fused SwiGLU) on detached weights; `Train`
/// records candle's autograd graph through the trainable parameters. A frozen parameter stays
/// detached in either pass: [`Pass::train_if`] gives one parameter's or one block's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Infer,
    Train,
}

impl Pass {
    /// `Train` where this pass trains and `trainable` holds, else `Infer`.
    pub fn train_if(self, trainable: bool) -> Pass {
        if self == Pass::Train && trainable {
            Pass::Train
        } else {
            Pass::Infer
        }
    }

    /// Whether this pass records an autograd graph.
    pub fn tracks_grad(self) -> bool {
        self == Pass::Train
    }
}

/// Where new tokens sit: their rotary positions `(rows, t)` (u32) and an additive
/// attention bias `(rows, 1, t, cached + t)` (0 or -inf) encoding causality and padding.
pub struct AttentionInput {
    pub positions: Tensor,
    pub bias: Tensor,
}

impl AttentionInput {
    /// Builds positions and bias from per-row validity of every key slot (cached
    /// slots first, then the `t_new` new ones). A token's position counts the valid
    /// slots before it, so left padding and masked gaps do not shift positions.
    /// A query always sees itself, so padded queries stay finite (their output is unused).
    pub fn from_valid(valid: &[Vec<bool>], t_new: usize, device: &Device) -> Result<Self> {
        let rows = valid.len();
        let l = valid.first().map(|v| v.len()).unwrap_or(0);
        let past = l - t_new;
        let mut pos = Vec::with_capacity(rows * t_new);
        let mut bias = vec![f32::NEG_INFINITY; rows * t_new * l];
        for (r, row) in valid.iter().enumerate() {
            assert_eq!(row.len(), l, "every row needs the same number of slots");
            let mut seen = row[..past].iter().filter(|&&x| x).count() as u32;
            for i in 0..t_new {
                let q_slot = past + i;
                pos.push(if row[q_slot] { seen } else { 0 });
                if row[q_slot] {
                    seen += 1;
                }
                let base = (r * t_new + i) * l;
                for s in 0..=q_slot {
                    if row[s] || s == q_slot {
                        bias[base + s] = 0.0;
                    }
                }
            }
        }
        Ok(AttentionInput {
            positions: Tensor::from_vec(pos, (rows, t_new), device)?,
            bias: Tensor::from_vec(bias, (rows, 1, t_new, l), device)?,
        })
    }

    /// Unpadded causal input for `rows` sequences of `t` tokens.
    pub fn causal(rows: usize, t: usize, device: &Device) -> Result<Self> {
        Self::from_valid(&vec![vec![true; t]; rows], t, device)
    }
}

/// Where a block's attention gets its keys and values.
pub enum Keys<'a> {
    /// Appended to a decode cache; attends to everything cached.
    Cache(&'a mut KvCache),
    /// The batch's own tokens, after `after`'s keys and values when given (one pair per layer
    /// run, `(rows, kv_heads, slots, head_dim)`; gradients flow back into them, and the
    /// attention bias then spans `slots + t`). With `record`, each layer pushes the rotated
    /// keys and values it attended to, graph and all, so a later batch can continue after
    /// this one.
    Batch { after: Option<&'a [(Tensor, Tensor)]>, record: Option<&'a mut Vec<(Tensor, Tensor)>> },
}

impl Keys<'_> {
    /// The batch's own tokens only.
    pub fn own() -> Self {
        Keys::Batch { after: None, record: None }
    }
}

/// A causal LM. Cheap to clone (tensors are reference-counted).
#[derive(Clone)]
pub struct CausalLm {
    pub(crate) cfg: ModelConfig,
    pub(crate) device: Device,
    pub(crate) embed: Tensor,
    pub(crate) blocks: Vec<Block>,
    pub(crate) norm: Tensor,
    /// `None` when tied to `embed` and dense.
    pub(crate) lm_head: Option<Linear>,
    cos: Tensor,
    sin: Tensor,
    /// Layers below this hold no trainable weight and get no autograd graph.
    pub(crate) first_grad_layer: usize,
    /// Whether the embedding table is trainable.
    pub(crate) embed_trainable: bool,
    /// The tied embedding's transpose, for decoding (see [`CausalLm::prepare_for_decoding`]).
    embed_t: Option<Tensor>,
}

impl CausalLm {
    pub(crate) fn assemble(
        cfg: ModelConfig,
        device: Device,
        embed: Tensor,
        blocks: Vec<Block>,
        norm: Tensor,
        lm_head: Option<Linear>,
    ) -> Result<Self> {
        let (cos, sin) = rope_tables(&cfg, &device)?;
        let n = cfg.num_layers;
        Ok(CausalLm { cfg, device, embed, blocks, norm, lm_head, cos, sin, first_grad_layer: n, embed_trainable: false, embed_t: None })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn num_layers(&self) -> usize {
        self.cfg.num_layers
    }

    /// True when any projection runs on GGUF-quantized blocks.
    pub fn is_quantized(&self) -> bool {
        self.blocks.iter().any(|b| matches!(b.q.weight, Weight::Quantized(_)))
    }

    /// Readies a model that will only generate from now on: every weight becomes a plain
    /// tensor again (a trained checkpoint's variables too; a later `set_trainable` starts over
    /// from these values), and each dense f32 CPU projection, the tied vocabulary one included,
    /// gets a transposed copy that decoding reads in place (see `linear::Dense`): batch-64
    /// decoding 484–493 → 545–569 tokens/s, for the weights' size again in memory (540 MB for
    /// the 135M model).
    /// Anything that changes weights afterwards (`set_trainable`, loading a checkpoint) drops
    /// the copies.
    pub fn prepare_for_decoding(&mut self) -> Result<()> {
        for slot in self.slots() {
            *slot.tensor = slot.tensor.detach();
        }
        self.first_grad_layer = self.cfg.num_layers;
        self.embed_trainable = false;
        let transposed = |w: &Tensor| -> Result<Option<Tensor>> {
            (w.device().is_cpu() && w.dtype() == DType::F32).then(|| w.t()?.contiguous()).transpose()
        };
        let mut gate_ups = Vec::with_capacity(self.blocks.len());
        for blk in &mut self.blocks {
            let plain = |l: &Linear| match (&l.weight, &l.bias, &l.lora) {
                (Weight::Dense(w), None, None) if w.device().is_cpu() && w.dtype() == DType::F32 => Some(w.clone()),
                _ => None,
            };
            gate_ups.push(match (plain(&blk.gate), plain(&blk.up)) {
                (Some(gate), Some(up)) => {
                    let fused = Tensor::cat(&[&gate, &up], 0)?;
                    let f = gate.dim(0)?;
                    blk.gate.weight = Weight::Dense(fused.narrow(0, 0, f)?);
                    blk.up.weight = Weight::Dense(fused.narrow(0, f, up.dim(0)?)?);
                    Some(fused)
                }
                _ => None,
            });
        }
        for (_, _, lin) in self.projections_mut() {
            if let Weight::Dense(w) = &lin.weight {
                lin.decode = transposed(w)?;
            }
        }
        // After `projections_mut`, which drops every copy.
        for (blk, fused) in self.blocks.iter_mut().zip(gate_ups) {
            blk.gate_up = fused;
        }
        if let Some(head) = &mut self.lm_head {
            if let Weight::Dense(w) = &head.weight {
                head.decode = transposed(w)?;
            }
        }
        if self.lm_head.is_none() {
            self.embed_t = transposed(&self.embed)?;
        }
        Ok(())
    }

    /// Token embeddings `(rows, t, hidden)` for ids `(rows, t)`.
    pub fn embed(&self, ids: &Tensor, pass: Pass) -> Result<Tensor> {
        let (rows, t) = ids.dims2()?;
        let table = view(&self.embed, pass.train_if(self.embed_trainable));
        table.index_select(&ids.flatten_all()?, 0)?.reshape((rows, t, self.cfg.hidden_size))
    }

    /// Runs blocks `layers` on `hidden` `(rows, t, hidden)`. With a cache, the new keys
    /// and values are appended (the cache must then cover every layer, and
    /// `attn.bias` must span cached + new slots); the cache advances once the last
    /// layer has run. A [`Pass::Train`] records an autograd graph for the layers that train.
    pub fn forward_layers(
        &self,
        hidden: &Tensor,
        layers: Range<usize>,
        attn: &AttentionInput,
        cache: Option<&mut KvCache>,
        pass: Pass,
    ) -> Result<Tensor> {
        let keys = match cache {
            Some(c) => Keys::Cache(c),
            None => Keys::own(),
        };
        self.run_layers(hidden, layers, attn, keys, pass, false)
    }

    /// [`CausalLm::forward_layers`] with any source of keys: the trainer runs a shared prompt
    /// once, recording its keys, and its completions after them.
    pub fn forward_layers_keyed(
        &self,
        hidden: &Tensor,
        layers: Range<usize>,
        attn: &AttentionInput,
        keys: Keys<'_>,
        pass: Pass,
    ) -> Result<Tensor> {
        self.run_layers(hidden, layers, attn, keys, pass, false)
    }

    /// [`CausalLm::forward_layers_keyed`] for a prompt batch whose outputs are wanted at its
    /// last position only (what follows attends to its recorded keys): the last block computes
    /// keys and values everywhere but its query, attention output and MLP at the last position.
    /// Returns `(rows, 1, hidden)`.
    pub fn forward_prompt_last(
        &self,
        hidden: &Tensor,
        layers: Range<usize>,
        attn: &AttentionInput,
        keys: Keys<'_>,
        pass: Pass,
    ) -> Result<Tensor> {
        self.run_layers(hidden, layers, attn, keys, pass, true)
    }

    /// Runs blocks `layers`; with `last_only`, the last one works at the last position only.
    fn run_layers(
        &self,
        hidden: &Tensor,
        layers: Range<usize>,
        attn: &AttentionInput,
        mut keys: Keys<'_>,
        pass: Pass,
        last_only: bool,
    ) -> Result<Tensor> {
        let (rows, t, _) = hidden.dims3()?;
        if let Keys::Batch { after: Some(kv), .. } = &keys {
            if kv.len() != layers.len() {
                candle_core::bail!("{} prefix key sets for {} layers", kv.len(), layers.len());
            }
        }
        let (cos, sin) = self.rope_for(&attn.positions, rows, t)?;
        let mut h = hidden.clone();
        let (first, last) = (layers.start, layers.end);
        for l in layers {
            let g = pass.train_if(l >= self.first_grad_layer);
            let layer_keys = match &mut keys {
                Keys::Cache(c) => Keys::Cache(c),
                Keys::Batch { after, record } => {
                    Keys::Batch { after: after.map(|kv| &kv[l - first..=l - first]), record: record.as_deref_mut() }
                }
            };
            h = self.block_forward(l, &h, &cos, &sin, &attn.bias, layer_keys, g, last_only && l + 1 == last)?;
        }
        if let Keys::Cache(c) = keys {
            if last == self.cfg.num_layers {
                c.advance(t);
            }
        }
        if last_only && first == last {
            return h.narrow(1, t - 1, 1);
        }
        Ok(h)
    }

    /// Final RMSNorm.
    pub fn final_norm(&self, hidden: &Tensor, pass: Pass) -> Result<Tensor> {
        let g = pass.train_if(self.first_grad_layer < self.cfg.num_layers);
        rms_norm(hidden, &view(&self.norm, g), self.cfg.rms_norm_eps, g)
    }

    /// Runs blocks `start_layer..` and the final norm: the trainer reuses frozen-trunk
    /// activations and recomputes only the top blocks.
    pub fn forward_from_layer(
        &self,
        hidden: &Tensor,
        start_layer: usize,
        attn: &AttentionInput,
        cache: Option<&mut KvCache>,
        pass: Pass,
    ) -> Result<Tensor> {
        let h = self.forward_layers(hidden, start_layer..self.cfg.num_layers, attn, cache, pass)?;
        self.final_norm(&h, pass)
    }

    /// Hidden states entering block `layer` (`0` = embeddings), without autograd.
    pub fn hidden_at_layer(&self, ids: &Tensor, attn: &AttentionInput, layer: usize) -> Result<Tensor> {
        let h = self.embed(ids, Pass::Infer)?;
        self.forward_layers(&h, 0..layer, attn, None, Pass::Infer)
    }

    /// Final-normed hidden states for every position.
    pub fn forward_hidden(&self, ids: &Tensor, attn: &AttentionInput, cache: Option<&mut KvCache>, pass: Pass) -> Result<Tensor> {
        let h = self.embed(ids, pass)?;
        self.forward_from_layer(&h, 0, attn, cache, pass)
    }

    /// Logits `(n, vocab)` for normed hidden rows `(n, hidden)`: callers gather only the
    /// positions they need first, since the vocabulary projection dominates small models.
    pub fn logits(&self, normed: &Tensor, pass: Pass) -> Result<Tensor> {
        match &self.lm_head {
            Some(head) => head.forward(normed, pass.train_if(self.first_grad_layer < self.cfg.num_layers)),
            None => {
                let g = pass.train_if(self.embed_trainable);
                if g == Pass::Infer && normed.dim(0)? <= crate::model::linear::FEW_ROWS && self.device.is_cpu() {
                    crate::model::linear::few_rows_matmul(normed, Dense { w: &self.embed, t: self.embed_t.as_ref() })
                } else {
                    normed.matmul(&view(&self.embed, g).t()?)
                }
            }
        }
    }

    /// The vocabulary projection `(vocab, hidden)` when it is a plain dense matrix that takes
    /// no gradient in this pass: scoring then fuses it with the log-softmax.
    pub(crate) fn frozen_head_weight(&self, pass: Pass) -> Option<Tensor> {
        match &self.lm_head {
            None => (pass.train_if(self.embed_trainable) == Pass::Infer).then(|| self.embed.detach()),
            Some(head) => match (&head.weight, &head.bias, &head.lora) {
                (Weight::Dense(w), None, None) if pass.train_if(self.first_grad_layer < self.cfg.num_layers) == Pass::Infer => {
                    Some(w.detach())
                }
                _ => None,
            },
        }
    }

    fn rope_for(&self, positions: &Tensor, rows: usize, t: usize) -> Result<(Tensor, Tensor)> {
        let half = self.cfg.head_dim / 2;
        let idx = positions.flatten_all()?;
        let cos = self.cos.index_select(&idx, 0)?.reshape((rows, t, half))?;
        let sin = self.sin.index_select(&idx, 0)?.reshape((rows, t, half))?;
        Ok((cos, sin))
    }

    #[allow(clippy::too_many_arguments)]
    fn block_forward(
        &self,
        l: usize,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        bias: &Tensor,
        keys: Keys<'_>,
        g: Pass,
        last_only: bool,
    ) -> Result<Tensor> {
        let blk = &self.blocks[l];
        let eps = self.cfg.rms_norm_eps;
        let h = rms_norm(x, &view(&blk.attn_norm, g), eps, g)?;
        let a = self.attention(l, &h, cos, sin, bias, keys, g, last_only)?;
        let x = if last_only { x.narrow(1, x.dim(1)? - 1, 1)?.contiguous()? } else { x.clone() };
        let (x, h) = match g.tracks_grad() {
            true => {
                let x = (x + a)?;
                let h = rms_norm(&x, &view(&blk.mlp_norm, g), eps, g)?;
                (x, h)
            }
            false => crate::kernels::rms_norm::add_rms_norm(&x, Some(&a), &blk.mlp_norm, eps as f32)?,
        };
        let (b, t, d) = h.dims3()?;
        if let (Some(fused), Weight::Dense(down), None, None) = (&blk.gate_up, &blk.down.weight, &blk.down.bias, &blk.down.lora) {
            if g == Pass::Infer && b * t > crate::model::linear::FEW_ROWS {
                let rows = |y: &Tensor| y.reshape((b * t, d));
                return crate::kernels::swiglu::mlp_residual(&rows(&x)?, &rows(&h)?, fused, down)?.reshape((b, t, d));
            }
        }
        let [gate, up]: [Tensor; 2] = Linear::forward_many(&[&blk.gate, &blk.up], &h, g)?.try_into().expect("two projections");
        let act = if g.tracks_grad() { (ops::silu(&gate)? * up)? } else { crate::kernels::swiglu::swiglu(&gate, &up)? };
        let m = blk.down.forward(&act, g)?;
        x + m
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        l: usize,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        bias: &Tensor,
        mut keys: Keys<'_>,
        g: Pass,
        last_only: bool,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let blk = &self.blocks[l];
        let (b, tk, _) = x.dims3()?;
        let (h, kvh, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let rep = h / kvh;
        // Every position's keys and values, but queries only where outputs are wanted.
        let (q, k, v) = if last_only {
            let [k, v]: [Tensor; 2] = Linear::forward_many(&[&blk.k, &blk.v], x, g)?.try_into().expect("two projections");
            (blk.q.forward(&x.narrow(1, tk - 1, 1)?, g)?, k, v)
        } else {
            let [q, k, v]: [Tensor; 3] = Linear::forward_many(&[&blk.q, &blk.k, &blk.v], x, g)?.try_into().expect("three projections");
            (q, k, v)
        };
        if g == Pass::Infer {
            if let Some(out) = self.fused_attention(l, &q, &k, &v, cos, sin, bias, &mut keys, last_only)? {
                return blk.o.forward(&out, g);
            }
        }
        let k = rope(&split_heads(&k, kvh)?, cos, sin, g)?;
        let v = split_heads(&v, kvh)?;
        let (q, bias, t) = if last_only {
            let at = |y: &Tensor| y.narrow(1, tk - 1, 1)?.contiguous();
            (rope(&split_heads(&q, h)?, &at(cos)?, &at(sin)?, g)?, bias.narrow(2, tk - 1, 1)?, 1)
        } else {
            (rope(&split_heads(&q, h)?, cos, sin, g)?, bias.clone(), tk)
        };
        let bias = &bias;
        let (k, v) = match keys {
            Keys::Cache(c) => c.append(l, &k, &v)?,
            Keys::Batch { after, record } => Self::batch_keys(k, v, after, record)?,
        };
        // A cache may hold f16; the generic path computes in f32.
        let (k, v) = (k.to_dtype(DType::F32)?, v.to_dtype(DType::F32)?);
        let len = k.dim(2)?;
        // Grouped-query attention without copying K/V: fold the query heads that share
        // a KV head into the row dimension.
        // Scaling the queries is a pass over fewer numbers than scaling the scores.
        let q = (q.reshape((b, kvh, rep * t, hd))? * (1.0 / (hd as f64).sqrt()))?;
        let scores = q.matmul(&k.t()?)?;
        let scores = scores.reshape((b, kvh, rep, t, len))?.broadcast_add(&bias.unsqueeze(1)?)?.reshape((b, kvh, rep * t, len))?;
        let probs = match g.tracks_grad() {
            true => match crate::kernels::softmax::softmax_last_dim(&scores)? {
                Some(p) => p,
                None => ops::softmax(&scores, D::Minus1)?,
            },
            false => ops::softmax_last_dim(&scores)?,
        };
        let out = probs.matmul(&v)?; // (b, kvh, rep*t, hd)
        let out = out.reshape((b, h, t, hd))?.transpose(1, 2)?.reshape((b, t, h * hd))?;
        blk.o.forward(&out, g)
    }

    /// The inference path on the CPU (see `attention`): queries rotated into the grouped layout,
    /// keys and values rotated and stored in one pass, output in the order the output projection
    /// reads. `None` where it does not apply; nothing has been stored then.
    #[allow(clippy::too_many_arguments)]
    fn fused_attention(
        &self,
        l: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        bias: &Tensor,
        keys: &mut Keys<'_>,
        last_only: bool,
    ) -> Result<Option<Tensor>> {
        let (h, kvh, hd) = (self.cfg.num_heads, self.cfg.num_kv_heads, self.cfg.head_dim);
        let tk = k.dim(1)?;
        let (q_cos, q_sin, bias) = match last_only {
            true => (cos.narrow(1, tk - 1, 1)?.contiguous()?, sin.narrow(1, tk - 1, 1)?.contiguous()?, bias.narrow(2, tk - 1, 1)?),
            false => (cos.clone(), sin.clone(), bias.clone()),
        };
        let Some(q) = attention::group_queries(q, &q_cos, &q_sin, h, kvh)? else {
            return Ok(None);
        };
        let (k, v) = match keys {
            Keys::Cache(c) => match c.store(l, k, v, cos, sin)? {
                Some(kv) => kv,
                None => return Ok(None),
            },
            Keys::Batch { after, record } => {
                let k = rope(&split_heads(k, kvh)?, cos, sin, Pass::Infer)?;
                Self::batch_keys(k, split_heads(v, kvh)?, *after, record.as_deref_mut())?
            }
        };
        // Past this point the keys are stored (or recorded): a fall back would do it twice.
        match attention::attend(&q, &k, &v, &bias, 1.0 / (hd as f32).sqrt())? {
            Some(out) => Ok(Some(out)),
            None => candle_core::bail!("fused attention refused keys it had stored ({:?}, {:?})", k.dtype(), k.dims()),
        }
    }

    /// A batch's own keys and values after `after`'s, recorded when asked.
    fn batch_keys(
        k: Tensor,
        v: Tensor,
        after: Option<&[(Tensor, Tensor)]>,
        record: Option<&mut Vec<(Tensor, Tensor)>>,
    ) -> Result<(Tensor, Tensor)> {
        let (k, v) = match after {
            Some(kv) => {
                let (pk, pv) = &kv[0];
                (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?)
            }
            None => (k, v),
        };
        if let Some(out) = record {
            out.push((k.clone(), v.clone()));
        }
        Ok((k, v))
    }
}

/// `(b, t, heads·hd)` projections as contiguous `(b, heads, t, hd)`.
fn split_heads(y: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, t, width) = y.dims3()?;
    y.reshape((b, t, heads, width / heads))?.transpose(1, 2)?.contiguous()
}

fn rms_norm(x: &Tensor, w: &Tensor, eps: f64, pass: Pass) -> Result<Tensor> {
    if pass.tracks_grad() {
        crate::kernels::rms_norm::rms_norm(x, w, eps as f32)
    } else {
        Ok(crate::kernels::rms_norm::add_rms_norm(&x.contiguous()?, None, w, eps as f32)?.1)
    }
}

/// Rotate-half rotary embedding; `cos`/`sin` are `(b, t, head_dim/2)`.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, pass: Pass) -> Result<Tensor> {
    if pass == Pass::Infer {
        return rotary_emb::rope(x, cos, sin);
    }
    if let Some(y) = crate::kernels::rope::rope(x, cos, sin)? {
        return Ok(y);
    }
    let half = x.dim(D::Minus1)? / 2;
    let cos = Tensor::cat(&[cos, cos], D::Minus1)?.unsqueeze(1)?;
    let sin = Tensor::cat(&[sin, sin], D::Minus1)?.unsqueeze(1)?;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
}

fn rope_tables(cfg: &ModelConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = cfg.head_dim / 2;
    let inv: Vec<f32> = (0..half).map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / cfg.head_dim as f64) as f32).collect();
    let n = cfg.max_position_embeddings;
    let inv = Tensor::from_vec(inv, (1, half), device)?;
    let pos = Tensor::arange(0u32, n as u32, device)?.to_dtype(DType::F32)?.reshape((n, 1))?;
    let freqs = pos.broadcast_mul(&inv)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// A named full-precision tensor of the model; `layer` is its block, if any.
pub(crate) struct Slot<'a> {
    pub name: String,
    pub layer: Option<usize>,
    pub tensor: &'a mut Tensor,
}

impl CausalLm {
    /// Every dense tensor under its HF name (LoRA factors as `<proj>.lora_a` / `.lora_b`).
    /// Quantized weights are not listed: they cannot be trained or exported as-is. Whoever
    /// changes one makes the decoding copies stale, so they go.
    pub(crate) fn slots(&mut self) -> Vec<Slot<'_>> {
        self.drop_decoding_copies();
        let mut out = vec![Slot { name: "model.embed_tokens.weight".into(), layer: None, tensor: &mut self.embed }];
        for (i, b) in self.blocks.iter_mut().enumerate() {
            let p = format!("model.layers.{i}");
            out.push(Slot { name: format!("{p}.input_layernorm.weight"), layer: Some(i), tensor: &mut b.attn_norm });
            out.push(Slot { name: format!("{p}.post_attention_layernorm.weight"), layer: Some(i), tensor: &mut b.mlp_norm });
            let projs: [(&str, &mut Linear); 7] = [
                ("self_attn.q_proj", &mut b.q),
                ("self_attn.k_proj", &mut b.k),
                ("self_attn.v_proj", &mut b.v),
                ("self_attn.o_proj", &mut b.o),
                ("mlp.gate_proj", &mut b.gate),
                ("mlp.up_proj", &mut b.up),
                ("mlp.down_proj", &mut b.down),
            ];
            for (n, lin) in projs {
                linear_slots(&format!("{p}.{n}"), Some(i), lin, &mut out);
            }
        }
        out.push(Slot { name: "model.norm.weight".into(), layer: None, tensor: &mut self.norm });
        if let Some(h) = self.lm_head.as_mut() {
            linear_slots("lm_head", None, h, &mut out);
        }
        out
    }

    /// Projections of each block by HF name, for attaching adapters.
    pub(crate) fn projections_mut(&mut self) -> Vec<(String, usize, &mut Linear)> {
        self.drop_decoding_copies();
        let mut out = Vec::new();
        for (i, b) in self.blocks.iter_mut().enumerate() {
            let p = format!("model.layers.{i}");
            out.push((format!("{p}.self_attn.q_proj"), i, &mut b.q));
            out.push((format!("{p}.self_attn.k_proj"), i, &mut b.k));
            out.push((format!("{p}.self_attn.v_proj"), i, &mut b.v));
            out.push((format!("{p}.self_attn.o_proj"), i, &mut b.o));
            out.push((format!("{p}.mlp.gate_proj"), i, &mut b.gate));
            out.push((format!("{p}.mlp.up_proj"), i, &mut b.up));
            out.push((format!("{p}.mlp.down_proj"), i, &mut b.down));
        }
        out
    }
}

impl CausalLm {
    fn drop_decoding_copies(&mut self) {
        self.embed_t = None;
        for blk in &mut self.blocks {
            blk.gate_up = None;
        }
        let heads = self.lm_head.iter_mut();
        for lin in
            self.blocks.iter_mut().flat_map(|b| [&mut b.q, &mut b.k, &mut b.v, &mut b.o, &mut b.gate, &mut b.up, &mut b.down]).chain(heads)
        {
            lin.decode = None;
        }
    }
}

fn linear_slots<'a>(prefix: &str, layer: Option<usize>, lin: &'a mut Linear, out: &mut Vec<Slot<'a>>) {
    if let Weight::Dense(w) = &mut lin.weight {
        out.push(Slot { name: format!("{prefix}.weight"), layer, tensor: w });
    }
    if let Some(b) = lin.bias.as_mut() {
        out.push(Slot { name: format!("{prefix}.bias"), layer, tensor: b });
    }
    if let Some(l) = lin.lora.as_mut() {
        out.push(Slot { name: format!("{prefix}.lora_a"), layer, tensor: &mut l.a });
        out.push(Slot { name: format!("{prefix}.lora_b"), layer, tensor: &mut l.b });
    }
}

impl CausalLm {
    /// Full-precision weights under HF names with adapters folded in and quantized
    /// weights dequantized: what a merged HF export holds.
    pub fn merged_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![("model.embed_tokens.weight".to_string(), self.embed.detach())];
        for (i, b) in self.blocks.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.push((format!("{p}.input_layernorm.weight"), b.attn_norm.detach()));
            out.push((format!("{p}.post_attention_layernorm.weight"), b.mlp_norm.detach()));
            for (n, lin) in [
                ("self_attn.q_proj", &b.q),
                ("self_attn.k_proj", &b.k),
                ("self_attn.v_proj", &b.v),
                ("self_attn.o_proj", &b.o),
                ("mlp.gate_proj", &b.gate),
                ("mlp.up_proj", &b.up),
                ("mlp.down_proj", &b.down),
            ] {
                out.push((format!("{p}.{n}.weight"), lin.merged_weight()?));
                if let Some(bias) = &lin.bias {
                    out.push((format!("{p}.{n}.bias"), bias.detach()));
                }
            }
        }
        out.push(("model.norm.weight".to_string(), self.norm.detach()));
        if !self.cfg.tie_word_embeddings {
            match &self.lm_head {
                Some(h) => out.push(("lm_head.weight".to_string(), h.merged_weight()?)),
                None => out.push(("lm_head.weight".to_string(), self.embed.detach())),
            }
        }
        Ok(out)
    }
}
