//! Pre-allocated key/value cache for batched incremental decoding.
//!
//! Appending writes in place (`slice_set`) instead of concatenating, so a decode
//! step costs O(new tokens), not O(cached tokens).

use candle_core::{DType, Device, Result, Tensor};

use crate::config::ModelConfig;

/// Keys and values of every layer for `rows` sequences: `(rows, kv_heads, capacity, head_dim)`.
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    pub fn new(cfg: &ModelConfig, rows: usize, capacity: usize, device: &Device) -> Result<Self> {
        let shape = (rows, cfg.num_kv_heads, capacity, cfg.head_dim);
        let layers = (0..cfg.num_layers)
            .map(|_| Ok((Tensor::zeros(shape, DType::F32, device)?, Tensor::zeros(shape, DType::F32, device)?)))
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
        if self.len + t > self.capacity {
            candle_core::bail!("kv cache full: {} cached + {t} new > capacity {}", self.len, self.capacity);
        }
        let (kc, vc) = &self.layers[layer];
        kc.slice_set(&k.contiguous()?, 2, self.len)?;
        vc.slice_set(&v.contiguous()?, 2, self.len)?;
        Ok((kc.narrow(2, 0, self.len + t)?, vc.narrow(2, 0, self.len + t)?))
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
                let dst = Tensor::zeros((rows, h, capacity, d), DType::F32, src.device())?;
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
