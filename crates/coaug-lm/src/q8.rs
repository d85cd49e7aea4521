//! Quantized weight matrices multiplied by a few f32 rows: the single-stream decode path.
//!
//! candle's quantized matmul quantizes the activations and hands each product to a
//! spin-barrier worker pool; for one token that hand-off costs more than the product,
//! and on a loaded machine the spinning collapses throughput. Here the weights stay
//! in the file's Q4_1 blocks ([`Q4Matrix`]) or, for other block types, 8-bit with one
//! scale per 32 inputs ([`Q8Matrix`]); activations stay f32 and rayon splits the
//! output features, so a decode step is bounded by reading the weights once.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use crate::simd::{multiversion, simd_level, SimdLevel};

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
        self.matmul_at(x, simd_level())
    }

    fn matmul_at(&self, x: &Tensor, level: SimdLevel) -> Result<Tensor> {
        let (rows, xs) = input_rows(x, self.in_dim, "q8")?;
        let nb = self.in_dim / BLOCK;
        split_output_features(x, self.out_dim, rows, |dst, first| q8_task_dispatch(level, self, dst, first, rows, &xs, nb))
    }
}

impl Q8Matrix {
    #[inline(always)]
    fn q8_task(&self, dst: &mut [f32], first: usize, rows: usize, xs: &[f32], nb: usize) {
        let in_dim = self.in_dim;
        for (jj, yrow) in dst.chunks_exact_mut(rows).enumerate() {
            let j = first + jj;
            let scales = &self.scales[j * nb..(j + 1) * nb];
            let quants = &self.quants[j * in_dim..(j + 1) * in_dim];
            for (r, y) in yrow.iter_mut().enumerate() {
                *y = dot(scales, quants, &xs[r * in_dim..(r + 1) * in_dim]);
            }
        }
    }
}

/// `(out, in)` weights in GGUF's Q4_1 blocks, kept as loaded (no re-quantization):
/// `w = d · q + m` with 4-bit `q`, and per block of 32 inputs a scale `d` and an offset `m`.
/// Half the bytes of [`Q8Matrix`], and decoding one token mostly streams weights.
pub(crate) struct Q4Matrix {
    out_dim: usize,
    in_dim: usize,
    /// `(d, m)` per block, as f32.
    dm: Vec<[f32; 2]>,
    /// 16 bytes per block: byte `i` holds input `i` (low nibble) and `i + 16` (high).
    nibbles: Vec<u8>,
}

impl Q4Matrix {
    /// From a Q4_1 `QTensor`; `None` for any other block type.
    pub fn from_qtensor(t: &candle_core::quantized::QTensor) -> Result<Option<Self>> {
        if t.dtype() != candle_core::quantized::GgmlDType::Q4_1 || !t.device().is_cpu() {
            return Ok(None);
        }
        let (out_dim, in_dim) = t.shape().dims2()?;
        let data = t.data()?;
        let nblocks = out_dim * in_dim / BLOCK;
        if in_dim % BLOCK != 0 || data.len() != nblocks * 20 {
            return Ok(None);
        }
        let mut dm = Vec::with_capacity(nblocks);
        let mut nibbles = Vec::with_capacity(nblocks * 16);
        for b in data.chunks_exact(20) {
            let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            let m = half::f16::from_le_bytes([b[2], b[3]]).to_f32();
            dm.push([d, m]);
            nibbles.extend_from_slice(&b[4..20]);
        }
        Ok(Some(Q4Matrix { out_dim, in_dim, dm, nibbles }))
    }

    /// `x Wᵀ` for `x` `(rows, in)` with `rows <= MAX_ROWS`: `(rows, out)`.
    pub fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        self.matmul_at(x, simd_level())
    }

    fn matmul_at(&self, x: &Tensor, level: SimdLevel) -> Result<Tensor> {
        Ok(Self::matmul_many_at(&[self], x, level)?.remove(0))
    }

    /// `x Wᵢᵀ` for several weights sharing the input (a block's q/k/v, or gate/up), in one
    /// rayon dispatch. Decoding a single stream runs seven small products per block, and
    /// with few threads each dispatch's wake-up and join was a fifth of the step (perf).
    pub fn matmul_many(ms: &[&Q4Matrix], x: &Tensor) -> Result<Vec<Tensor>> {
        Self::matmul_many_at(ms, x, simd_level())
    }

    fn matmul_many_at(ms: &[&Q4Matrix], x: &Tensor, level: SimdLevel) -> Result<Vec<Tensor>> {
        let Some(first) = ms.first() else { return Ok(Vec::new()) };
        if let Some(m) = ms.iter().find(|m| m.in_dim != first.in_dim) {
            candle_core::bail!("q4 matmul_many: inputs of {} and {} features", first.in_dim, m.in_dim);
        }
        let (rows, xs) = input_rows(x, first.in_dim, "q4")?;
        let nb = first.in_dim / BLOCK;
        // `m` multiplies the block's input sum, shared by every output feature.
        let xsum: Vec<f32> = xs.chunks_exact(BLOCK).map(|c| c.iter().sum()).collect();
        let mut outs: Vec<Vec<f32>> = ms.iter().map(|m| vec![0f32; m.out_dim * rows]).collect();
        let mut tasks: Vec<(usize, usize, &mut [f32])> = Vec::new();
        for (i, out) in outs.iter_mut().enumerate() {
            for (c, dst) in out.chunks_mut(FEATURES_PER_TASK * rows).enumerate() {
                tasks.push((i, c * FEATURES_PER_TASK, dst));
            }
        }
        tasks.into_par_iter().for_each(|(i, first, dst)| q4_task_dispatch(level, ms[i], dst, first, rows, &xs, &xsum, nb));
        outs.into_iter()
            .zip(ms)
            .map(|(yt, m)| Tensor::from_vec(yt, (m.out_dim, rows), x.device())?.t()?.contiguous())
            .collect()
    }

    #[inline(always)]
    fn q4_task(&self, dst: &mut [f32], first: usize, rows: usize, xs: &[f32], xsum: &[f32], nb: usize) {
        let in_dim = self.in_dim;
        for (jj, yrow) in dst.chunks_exact_mut(rows).enumerate() {
            let j = first + jj;
            let dm = &self.dm[j * nb..(j + 1) * nb];
            let nib = &self.nibbles[j * nb * 16..(j + 1) * nb * 16];
            for (r, y) in yrow.iter_mut().enumerate() {
                *y = dot_q4(dm, nib, &xs[r * in_dim..(r + 1) * in_dim], &xsum[r * nb..(r + 1) * nb]);
            }
        }
    }
}

/// `x` `(rows, in)` as f32 values, checked against the weight's input size.
fn input_rows(x: &Tensor, in_dim: usize, what: &str) -> Result<(usize, Vec<f32>)> {
    let (rows, got) = x.dims2()?;
    if got != in_dim {
        candle_core::bail!("{what} matmul: input has {got} features, weight expects {in_dim}");
    }
    Ok((rows, x.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?))
}

/// Runs `task(dst, first_feature)` over rayon tasks of `FEATURES_PER_TASK` output features and
/// returns `(rows, out)`. The output is built transposed, `(out, rows)`, so that each task owns a
/// contiguous slice.
fn split_output_features(
    x: &Tensor,
    out_dim: usize,
    rows: usize,
    task: impl Fn(&mut [f32], usize) + Sync,
) -> Result<Tensor> {
    let mut yt = vec![0f32; out_dim * rows];
    yt.par_chunks_mut(FEATURES_PER_TASK * rows)
        .enumerate()
        .for_each(|(i, dst)| task(dst, i * FEATURES_PER_TASK));
    Tensor::from_vec(yt, (out_dim, rows), x.device())?.t()?.contiguous()
}

multiversion!(Q4Matrix, q4_task, q4_task_avx2, q4_task_avx512, q4_task_dispatch(dst: &mut [f32], first: usize, rows: usize, xs: &[f32], xsum: &[f32], nb: usize));
multiversion!(Q8Matrix, q8_task, q8_task_avx2, q8_task_avx512, q8_task_dispatch(dst: &mut [f32], first: usize, rows: usize, xs: &[f32], nb: usize));

#[inline(always)]
fn dot_q4(dm: &[[f32; 2]], nib: &[u8], x: &[f32], xsum: &[f32]) -> f32 {
    let mut lo = [0f32; 16];
    let mut hi = [0f32; 16];
    let mut offset = 0f32;
    for (((&[d, m], q), xb), s) in dm.iter().zip(nib.chunks_exact(16)).zip(x.chunks_exact(BLOCK)).zip(xsum) {
        for i in 0..16 {
            lo[i] += d * ((q[i] & 0x0F) as f32 * xb[i]);
            hi[i] += d * ((q[i] >> 4) as f32 * xb[i + 16]);
        }
        offset += m * s;
    }
    lo.iter().sum::<f32>() + hi.iter().sum::<f32>() + offset
}

/// `Σ_b scale_b Σ_i q_{b,i} x_{b,i}` with 32 lanes of accumulators the compiler keeps in
/// vector registers (scale folded into the lane update, so no per-block reduction).
#[inline(always)]
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
    fn q4_1_blocks_match_their_dequantized_product() {
        use candle_core::quantized::{GgmlDType, QTensor};
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (70, 64), &dev).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let m = Q4Matrix::from_qtensor(&q).unwrap().expect("Q4_1 is supported");
        let x = Tensor::randn(0f32, 1.0, (2, 64), &dev).unwrap();
        let got = m.matmul(&x).unwrap();
        let want = x.matmul(&q.dequantize(&dev).unwrap().t().unwrap()).unwrap();
        let err = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        // Same weights exactly; only the summation order differs.
        assert!(err < 1e-4, "max error {err}");
        let q8 = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        assert!(Q4Matrix::from_qtensor(&q8).unwrap().is_none());
    }

    #[test]
    fn one_dispatch_for_several_weights_gives_each_ones_product() {
        use candle_core::quantized::{GgmlDType, QTensor};
        let dev = Device::Cpu;
        // Output sizes that leave partial tasks, as q/k/v of a GQA block do.
        let ms: Vec<Q4Matrix> = [70, 130, 64]
            .iter()
            .map(|&out| {
                let w = Tensor::randn(0f32, 1.0, (out, 96), &dev).unwrap();
                Q4Matrix::from_qtensor(&QTensor::quantize(&w, GgmlDType::Q4_1).unwrap()).unwrap().unwrap()
            })
            .collect();
        for rows in [1, 3] {
            let x = Tensor::randn(0f32, 1.0, (rows, 96), &dev).unwrap();
            let many = Q4Matrix::matmul_many(&ms.iter().collect::<Vec<_>>(), &x).unwrap();
            for (m, got) in ms.iter().zip(&many) {
                let want = m.matmul(&x).unwrap();
                assert_eq!(got.dims(), want.dims());
                assert_eq!(got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            }
        }
        let other = Q4Matrix::from_qtensor(&QTensor::quantize(&Tensor::zeros((8, 64), candle_core::DType::F32, &dev).unwrap(), GgmlDType::Q4_1).unwrap()).unwrap().unwrap();
        assert!(Q4Matrix::matmul_many(&[&ms[0], &other], &Tensor::zeros((1, 96), candle_core::DType::F32, &dev).unwrap()).is_err());
    }

    #[test]
    fn every_simd_level_of_this_cpu_gives_the_baseline_product() {
        use candle_core::quantized::{GgmlDType, QTensor};
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (200, 128), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (3, 128), &dev).unwrap();
        let q4 = Q4Matrix::from_qtensor(&QTensor::quantize(&w, GgmlDType::Q4_1).unwrap()).unwrap().unwrap();
        let q8 = Q8Matrix::quantize(&w).unwrap().unwrap();
        let base4 = q4.matmul_at(&x, SimdLevel::Baseline).unwrap();
        let base8 = q8.matmul_at(&x, SimdLevel::Baseline).unwrap();
        let mut levels = vec![simd_level()];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            levels.push(SimdLevel::Avx2);
        }
        for level in levels {
            for (got, want) in [(q4.matmul_at(&x, level).unwrap(), &base4), (q8.matmul_at(&x, level).unwrap(), &base8)] {
                let err = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(err < 1e-4, "{level:?}: max error {err}");
            }
        }
    }

    #[test]
    fn refuses_ragged_blocks() {
        let w = Tensor::zeros((4, 33), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(Q8Matrix::quantize(&w).unwrap().is_none());
    }
}
