//! Pre-allocated key/value cache for batched incremental decoding.
//!
//! Appending writes in place (`slice_set`) instead of concatenating, so a decode
//! step costs O(new tokens), not O(cached tokens).

use candle_core::{DType, Device, Result, Tensor};

use crate::kernels::attention;
use crate::model::config::ModelConfig;

/// How a [`KvCache`] stores keys and values. Decoding reads the whole cache at every step, so
/// its attention is bound by memory: f16 halves those bytes (batch 64, 300-token prompts:
/// decoding 420 → 453 tokens/s in one `coaug bench lm` run), 8 bits with a scale per head
/// vector (`Q8`, 68 bytes for a 64-wide head) nearly halve them again. Attention still
/// computes in f32 on the widened values, but the log-probs of generation then differ from
/// the f32 scorer's (~1e-3 for f16), so training samples with `F32` (its importance ratios
/// start from exactly 1). `Q8` needs the CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvPrecision {
    #[default]
    F32,
    F16,
    Q8,
}

impl KvPrecision {
    fn dtype(self) -> DType {
        match self {
            KvPrecision::F32 => DType::F32,
            KvPrecision::F16 => DType::F16,
            KvPrecision::Q8 => DType::U8,
        }
    }

    /// The name the CLI and the benchmarks use.
    pub fn name(self) -> &'static str {
        match self {
            KvPrecision::F32 => "f32",
            KvPrecision::F16 => "f16",
            KvPrecision::Q8 => "q8",
        }
    }
}

impl std::str::FromStr for KvPrecision {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(KvPrecision::F32),
            "f16" => Ok(KvPrecision::F16),
            "q8" => Ok(KvPrecision::Q8),
            _ => Err(format!("unknown KV cache precision `{s}` (f32, f16 or q8)")),
        }
    }
}

/// Keys and values of every layer for `rows` sequences: `(rows, kv_heads, capacity, slot)`, a
/// slot being `head_dim` values in f32 or f16, or 8-bit values and their scale (see
/// [`KvPrecision`]).
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    pub fn new(cfg: &ModelConfig, rows: usize, capacity: usize, precision: KvPrecision, device: &Device) -> Result<Self> {
        if precision == KvPrecision::Q8 && !device.is_cpu() {
            candle_core::bail!("the 8-bit KV cache runs on the CPU only; use f16 or f32 on {device:?}");
        }
        let shape = (rows, cfg.num_kv_heads, capacity, attention::slot_len(precision.dtype(), cfg.head_dim));
        let dtype = precision.dtype();
        let layers = (0..cfg.num_layers)
            .map(|_| Ok((Tensor::zeros(shape, dtype, device)?, Tensor::zeros(shape, dtype, device)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache { layers, len: 0, capacity })
    }

    /// Cached positions (the same for every row; padding is masked, not skipped).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn rows(&self) -> usize {
        self.layers.first().map(|(k, _)| k.dims()[0]).unwrap_or(0)
    }

    /// Writes `k`, `v` (`(rows, kv_heads, t, head_dim)`) after the cached positions of
    /// `layer` and returns views over everything cached so far, new tokens included.
    pub(crate) fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        self.check_room(t)?;
        let (kc, vc) = &self.layers[layer];
        if kc.dtype() == DType::U8 {
            candle_core::bail!("the 8-bit KV cache is written by the CPU attention only (f32 activations, even head size up to 256)");
        }
        kc.slice_set(&k.to_dtype(kc.dtype())?.contiguous()?, 2, self.len)?;
        vc.slice_set(&v.to_dtype(vc.dtype())?.contiguous()?, 2, self.len)?;
        Ok((kc.narrow(2, 0, self.len + t)?, vc.narrow(2, 0, self.len + t)?))
    }

    /// [`KvCache::append`] straight from the projections `(rows, t, kv_heads·head_dim)`, the
    /// keys rotated by `cos`, `sin` `(rows, t, head_dim/2)` on the way in: one pass each instead
    /// of a layout copy, a rotation and a copy into the cache. `None`, writing nothing, where
    /// that fused write does not apply (off the CPU); the caller then appends.
    pub(crate) fn store(&mut self, layer: usize, k: &Tensor, v: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
        let t = k.dim(1)?;
        self.check_room(t)?;
        let (kc, vc) = &self.layers[layer];
        if !attention::store_rows(kc, k, Some((cos, sin)), self.len)? {
            return Ok(None);
        }
        if !attention::store_rows(vc, v, None, self.len)? {
            candle_core::bail!("values could not be stored where keys were");
        }
        Ok(Some((kc.narrow(2, 0, self.len + t)?, vc.narrow(2, 0, self.len + t)?)))
    }

    fn check_room(&self, t: usize) -> Result<()> {
        if self.len + t > self.capacity {
            candle_core::bail!("kv cache full: {} cached + {t} new > capacity {}", self.len, self.capacity);
        }
        Ok(())
    }

    /// Marks `t` more positions as cached once every layer has appended them.
    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }

    /// Keeps (or repeats) the given rows, e.g. to fan one prefill out to `n` samples or
    /// to drop finished sequences.
    pub fn select_rows(&mut self, rows: &[usize]) -> Result<()> {
        let device = self.layers[0].0.device().clone();
        let idx = Tensor::from_vec(rows.iter().map(|&r| r as u32).collect::<Vec<_>>(), rows.len(), &device)?;
        for (k, v) in self.layers.iter_mut() {
            *k = k.index_select(&idx, 0)?;
            *v = v.index_select(&idx, 0)?;
        }
        Ok(())
    }

    /// Builds a cache for `rows` sequences that all start with the single-row `prefix`.
    pub fn broadcast_prefix(prefix: &KvCache, rows: usize, capacity: usize) -> Result<Self> {
        let mut layers = Vec::with_capacity(prefix.layers.len());
        for (k, v) in &prefix.layers {
            let (_, h, _, d) = k.dims4()?;
            let mk = |src: &Tensor| -> Result<Tensor> {
                let dst = Tensor::zeros((rows, h, capacity, d), src.dtype(), src.device())?;
                let used = src.narrow(2, 0, prefix.len)?.broadcast_as((rows, h, prefix.len, d))?.contiguous()?;
                dst.slice_set(&used, 2, 0)?;
                Ok(dst)
            };
            layers.push((mk(k)?, mk(v)?));
        }
        Ok(KvCache { layers, len: prefix.len, capacity })
    }
}

impl KvCache {
    /// Stacks caches of equal length and capacity along the row dimension.
    pub fn concat_rows(parts: Vec<KvCache>) -> Result<Self> {
        let first = parts.first().ok_or_else(|| candle_core::Error::Msg("no caches to concatenate".into()))?;
        let (len, capacity, n_layers) = (first.len, first.capacity, first.layers.len());
        if parts.iter().any(|p| p.len != len || p.capacity != capacity) {
            candle_core::bail!("caches to concatenate differ in length or capacity");
        }
        if parts.len() == 1 {
            return Ok(parts.into_iter().next().expect("one part"));
        }
        let mut layers = Vec::with_capacity(n_layers);
        for l in 0..n_layers {
            let ks: Vec<&Tensor> = parts.iter().map(|p| &p.layers[l].0).collect();
            let vs: Vec<&Tensor> = parts.iter().map(|p| &p.layers[l].1).collect();
            layers.push((Tensor::cat(&ks, 0)?, Tensor::cat(&vs, 0)?));
        }
        Ok(KvCache { layers, len, capacity })
    }
}
