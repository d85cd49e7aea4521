//! An 8-bit weight matrix multiplied by a few f32 rows: the single-stream decode path.
//!
//! candle's quantized matmul quantizes the activations and hands each product to a
//! spin-barrier worker pool; for one token that hand-off costs more than the product,
//! and on a loaded machine the spinning collapses throughput. Here the weights are
//! 8-bit with one f32 scale per 32 inputs (Q8_0's layout), activations stay f32, and
//! rayon splits the output features, so a decode step is bounded by reading the
//! weights once.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

/// Inputs per scale, as in GGUF's Q8_0.
const BLOCK: usize = 32;
/// Output features per rayon task.
const FEATURES_PER_TASK: usize = 64;
/// Most activation rows this path handles; larger products go to gemm.
pub(crate) const MAX_ROWS: usize = 8;

/// `(out, in)` weights as `i8` with a scale per block of 32 inputs.
pub(crate) struct Q8Matrix {
    out_dim: usize,
    in_dim: usize,
    scales: Vec<f32>,
    quants: Vec<i8>,
}

impl Q8Matrix {
    /// Quantizes a dense `(out, in)` f32 weight (round to nearest, absmax scale per block).
    /// `None` when `in` is not a multiple of the block size.
    pub fn quantize(w: &Tensor) -> Result<Option<Self>> {
        let (out_dim, in_dim) = w.dims2()?;
        if in_dim % BLOCK != 0 {
            return Ok(None);
        }
        let data = w.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut scales = Vec::with_capacity(out_dim * in_dim / BLOCK);
        let mut quants = Vec::with_capacity(out_dim * in_dim);
        for block in data.chunks_exact(BLOCK) {
            let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
            let scale = amax / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            scales.push(scale);
            quants.extend(block.iter().map(|x| (x * inv).round().clamp(-127.0, 127.0) as i8));
        }
        Ok(Some(Q8Matrix { out_dim, in_dim, scales, quants }))
    }

    /// `x Wᵀ` for `x` `(rows, in)` with `rows <= MAX_ROWS`: `(rows, out)`.
    pub fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        let (rows, in_dim) = x.dims2()?;
        if in_dim != self.in_dim {
            candle_core::bail!("q8 matmul: input has {in_dim} features, weight expects {}", self.in_dim);
        }
        let xs = x.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let nb = in_dim / BLOCK;
        // Output transposed `(out, rows)` so each task owns a contiguous slice.
        let mut yt = vec![0f32; self.out_dim * rows];
        yt.par_chunks_mut(FEATURES_PER_TASK * rows).enumerate().for_each(|(task, dst)| {
            let first = task * FEATURES_PER_TASK;
            for (jj, yrow) in dst.chunks_exact_mut(rows).enumerate() {
                let j = first + jj;
                let scales = &self.scales[j * nb..(j + 1) * nb];
                let quants = &self.quants[j * in_dim..(j + 1) * in_dim];
                for (r, y) in yrow.iter_mut().enumerate() {
                    *y = dot(scales, quants, &xs[r * in_dim..(r + 1) * in_dim]);
                }
            }
        });
        let yt = Tensor::from_vec(yt, (self.out_dim, rows), x.device())?;
        yt.t()?.contiguous()
    }
}

/// `Σ_b scale_b Σ_i q_{b,i} x_{b,i}` with 32 lanes of accumulators the compiler keeps in
/// vector registers (scale folded into the lane update, so no per-block reduction).
#[inline]
fn dot(scales: &[f32], quants: &[i8], x: &[f32]) -> f32 {
    let mut acc = [0f32; BLOCK];
    for ((s, q), xb) in scales.iter().zip(quants.chunks_exact(BLOCK)).zip(x.chunks_exact(BLOCK)) {
        for i in 0..BLOCK {
            acc[i] += s * (q[i] as f32 * xb[i]);
        }
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_dense_product_within_quantization_error() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (130, 96), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (3, 96), &dev).unwrap();
        let q = Q8Matrix::quantize(&w).unwrap().unwrap();
        let got = q.matmul(&x).unwrap();
        let want = x.matmul(&w.t().unwrap()).unwrap();
        assert_eq!(got.dims(), &[3, 130]);
        let err = (got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        // 8-bit weights: relative error well under 1% of the largest output.
        assert!(err < 0.01 * scale, "max error {err} vs output scale {scale}");
        assert!(err > 0.0, "quantization should perturb the product a little");
    }

    #[test]
    fn refuses_ragged_blocks() {
        let w = Tensor::zeros((4, 33), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(Q8Matrix::quantize(&w).unwrap().is_none());
    }
}
