//! Quantized weight matrices multiplied by a few f32 rows: the single-stream decode path.
//!
//! candle's quantized matmul hands each product to a spin-barrier worker pool; for one
//! token that hand-off costs more than the product, and on a loaded machine the spinning
//! collapses throughput. Here the weights stay in the file's Q4_1 blocks ([`Q4Matrix`]) or,
//! for other block types, 8-bit with one scale per 32 inputs ([`Q8Matrix`]); the input rows
//! are quantized to 8 bits per block as llama.cpp does ([`Q8Rows`]), so each block's product
//! is an integer dot product (`vpdpbusd` where the CPU has it, see `kernels`), and rayon
//! splits the output features. A decode step is then bounded by reading the weights once.

mod kernels;

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use kernels::{dot_level, q4_dot, q8_dot, DotLevel, InputRow, Q4Row, Q8Row};

/// Inputs per block, as in GGUF's Q4_1 and Q8_0.
const BLOCK: usize = 32;
/// Output features per rayon task.
const FEATURES_PER_TASK: usize = 64;
/// Most activation rows this path handles; larger products go to gemm.
pub(crate) const MAX_ROWS: usize = 8;

/// Blocks per stored row: the kernels take blocks in pairs (one 512-bit vector of 8-bit
/// values), so an odd count gets a zero block at the end.
fn padded_blocks(in_dim: usize) -> usize {
    (in_dim / BLOCK).next_multiple_of(2)
}

/// `(out, in)` weights as `i8` (`-127..=127`) with a scale per block of 32 inputs.
pub(crate) struct Q8Matrix {
    out_dim: usize,
    in_dim: usize,
    /// `padded_blocks(in_dim)` scales per output feature.
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
        let nbp = padded_blocks(in_dim);
        let mut scales = Vec::with_capacity(out_dim * nbp);
        let mut quants = Vec::with_capacity(out_dim * nbp * BLOCK);
        for row in data.chunks_exact(in_dim) {
            for block in row.chunks_exact(BLOCK) {
                let (scale, q) = quantize_block(block);
                scales.push(scale);
                quants.extend_from_slice(&q);
            }
            let padding = nbp - in_dim / BLOCK;
            scales.resize(scales.len() + padding, 0.0);
            quants.resize(quants.len() + padding * BLOCK, 0);
        }
        Ok(Some(Q8Matrix { out_dim, in_dim, scales, quants }))
    }

    /// `x Wᵀ` for `x` `(rows, in)` with `rows <= MAX_ROWS`: `(rows, out)`.
    pub fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        self.matmul_at(x, dot_level())
    }

    fn matmul_at(&self, x: &Tensor, level: DotLevel) -> Result<Tensor> {
        let xq = Q8Rows::new(x, self.in_dim, "q8")?;
        let mut yt = vec![0f32; self.out_dim * xq.rows];
        yt.par_chunks_mut(FEATURES_PER_TASK * xq.rows)
            .enumerate()
            .for_each(|(i, dst)| self.features(level, &xq, dst, i * FEATURES_PER_TASK));
        transposed_output(yt, self.out_dim, x)
    }

    fn features(&self, level: DotLevel, x: &Q8Rows, dst: &mut [f32], first: usize) {
        let nbp = padded_blocks(self.in_dim);
        for (jj, ys) in dst.chunks_exact_mut(x.rows).enumerate() {
            let j = first + jj;
            let w = Q8Row { quants: &self.quants[j * nbp * BLOCK..(j + 1) * nbp * BLOCK], scales: &self.scales[j * nbp..(j + 1) * nbp] };
            for (r, y) in ys.iter_mut().enumerate() {
                *y = q8_dot(level, &w, &x.row(r));
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
    /// `padded_blocks(in_dim)` scales and offsets per output feature.
    d: Vec<f32>,
    m: Vec<f32>,
    /// 32 bytes per pair of blocks: byte `i` holds input `i` of the first block in its low
    /// nibble and input `i` of the second in its high one (the file pairs inputs `i` and
    /// `i + 16` of one block instead), so that the two nibble planes are the two blocks.
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
        let nb = in_dim / BLOCK;
        if in_dim % BLOCK != 0 || data.len() != out_dim * nb * 20 {
            return Ok(None);
        }
        let nbp = padded_blocks(in_dim);
        let (mut d, mut m) = (Vec::with_capacity(out_dim * nbp), Vec::with_capacity(out_dim * nbp));
        let mut nibbles = Vec::with_capacity(out_dim * nbp * 16);
        let zero_block = [0u8; 20];
        for row in data.chunks_exact(nb * 20) {
            let mut blocks = row.chunks_exact(20).chain(std::iter::repeat_n(&zero_block[..], nbp - nb));
            while let (Some(a), Some(b)) = (blocks.next(), blocks.next()) {
                for blk in [a, b] {
                    d.push(half::f16::from_le_bytes([blk[0], blk[1]]).to_f32());
                    m.push(half::f16::from_le_bytes([blk[2], blk[3]]).to_f32());
                }
                let (qa, qb) = (unpack_q4_1(&a[4..]), unpack_q4_1(&b[4..]));
                nibbles.extend((0..BLOCK).map(|i| qa[i] | (qb[i] << 4)));
            }
        }
        Ok(Some(Q4Matrix { out_dim, in_dim, d, m, nibbles }))
    }

    /// `x Wᵀ` for `x` `(rows, in)` with `rows <= MAX_ROWS`: `(rows, out)`.
    pub fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        self.matmul_at(x, dot_level())
    }

    fn matmul_at(&self, x: &Tensor, level: DotLevel) -> Result<Tensor> {
        Ok(Self::matmul_many_at(&[self], x, level)?.remove(0))
    }

    /// `x Wᵢᵀ` for several weights sharing the input (a block's q/k/v, or gate/up), in one
    /// rayon dispatch. Decoding a single stream runs seven small products per block, and
    /// with few threads each dispatch's wake-up and join was a fifth of the step (perf).
    pub fn matmul_many(ms: &[&Q4Matrix], x: &Tensor) -> Result<Vec<Tensor>> {
        Self::matmul_many_at(ms, x, dot_level())
    }

    fn matmul_many_at(ms: &[&Q4Matrix], x: &Tensor, level: DotLevel) -> Result<Vec<Tensor>> {
        let Some(first) = ms.first() else { return Ok(Vec::new()) };
        if let Some(m) = ms.iter().find(|m| m.in_dim != first.in_dim) {
            candle_core::bail!("q4 matmul_many: inputs of {} and {} features", first.in_dim, m.in_dim);
        }
        let xq = Q8Rows::new(x, first.in_dim, "q4")?;
        let mut outs: Vec<Vec<f32>> = ms.iter().map(|m| vec![0f32; m.out_dim * xq.rows]).collect();
        let mut tasks: Vec<(usize, usize, &mut [f32])> = Vec::new();
        for (i, out) in outs.iter_mut().enumerate() {
            for (c, dst) in out.chunks_mut(FEATURES_PER_TASK * xq.rows).enumerate() {
                tasks.push((i, c * FEATURES_PER_TASK, dst));
            }
        }
        tasks.into_par_iter().for_each(|(i, first, dst)| ms[i].features(level, &xq, dst, first));
        outs.into_iter().zip(ms).map(|(yt, m)| transposed_output(yt, m.out_dim, x)).collect()
    }

    fn features(&self, level: DotLevel, x: &Q8Rows, dst: &mut [f32], first: usize) {
        let nbp = padded_blocks(self.in_dim);
        for (jj, ys) in dst.chunks_exact_mut(x.rows).enumerate() {
            let j = first + jj;
            let blocks = j * nbp..(j + 1) * nbp;
            let w = Q4Row { nibbles: &self.nibbles[j * nbp * 16..(j + 1) * nbp * 16], d: &self.d[blocks.clone()], m: &self.m[blocks] };
            for (r, y) in ys.iter_mut().enumerate() {
                *y = q4_dot(level, &w, &x.row(r));
            }
        }
    }
}

/// The 32 4-bit values of a Q4_1 block's 16 bytes, in input order (byte `i` holds input `i`
/// in its low nibble and input `i + 16` in its high one).
fn unpack_q4_1(bytes: &[u8]) -> [u8; BLOCK] {
    std::array::from_fn(|i| if i < 16 { bytes[i] & 0x0F } else { bytes[i - 16] >> 4 })
}

/// Absmax scale and the values rounded to `-127..=127`.
fn quantize_block(block: &[f32]) -> (f32, [i8; BLOCK]) {
    let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = amax / 127.0;
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    (scale, std::array::from_fn(|i| (block[i] * inv).round().clamp(-127.0, 127.0) as i8))
}

/// Input rows quantized per block of 32 like GGUF's Q8_1: 8-bit values with a scale, plus
/// what the kernels need besides (see [`InputRow`]).
struct Q8Rows {
    rows: usize,
    nbp: usize,
    q: Vec<i8>,
    d: Vec<f32>,
    sum: Vec<f32>,
    neg_bias: Vec<i32>,
}

impl Q8Rows {
    /// `x` `(rows, in)`, checked against the weight's input size.
    fn new(x: &Tensor, in_dim: usize, what: &str) -> Result<Self> {
        let (rows, got) = x.dims2()?;
        if got != in_dim {
            candle_core::bail!("{what} matmul: input has {got} features, weight expects {in_dim}");
        }
        let xs = x.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let nbp = padded_blocks(in_dim);
        let mut out = Q8Rows {
            rows,
            nbp,
            q: vec![0; rows * nbp * BLOCK],
            d: vec![0.0; rows * nbp],
            sum: vec![0.0; rows * nbp],
            neg_bias: vec![0; rows * nbp],
        };
        for (r, row) in xs.chunks_exact(in_dim).enumerate() {
            for (b, block) in row.chunks_exact(BLOCK).enumerate() {
                let i = r * nbp + b;
                let (d, q) = quantize_block(block);
                out.d[i] = d;
                let qsum = q.iter().map(|&v| v as i32).sum::<i32>();
                // The 8-bit values' sum rather than the exact one, as llama.cpp's Q8_1: every
                // term of the product is then that of the quantized operands.
                out.sum[i] = d * qsum as f32;
                out.neg_bias[i] = -128 * qsum;
                out.q[i * BLOCK..(i + 1) * BLOCK].copy_from_slice(&q);
            }
        }
        Ok(out)
    }

    fn row(&self, r: usize) -> InputRow<'_> {
        let blocks = r * self.nbp..(r + 1) * self.nbp;
        InputRow {
            q: &self.q[blocks.start * BLOCK..blocks.end * BLOCK],
            d: &self.d[blocks.clone()],
            sum: &self.sum[blocks.clone()],
            neg_bias: &self.neg_bias[blocks],
        }
    }
}

/// `(rows, out)` from the `(out, rows)` values the tasks wrote (each task owns a contiguous
/// slice that way).
fn transposed_output(yt: Vec<f32>, out_dim: usize, x: &Tensor) -> Result<Tensor> {
    let rows = yt.len() / out_dim;
    Tensor::from_vec(yt, (out_dim, rows), x.device())?.t()?.contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_dense_product_within_quantization_error() {
        use rand::{Rng, SeedableRng};
        let dev = Device::Cpu;
        // Fixed inputs: candle's randn draws from an unseeded generator.
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut normal =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0f32..1.0) + rng.random_range(-1.0f32..1.0)).collect() };
        let w = Tensor::from_vec(normal(130 * 96), (130, 96), &dev).unwrap();
        let x = Tensor::from_vec(normal(3 * 96), (3, 96), &dev).unwrap();
        let q = Q8Matrix::quantize(&w).unwrap().unwrap();
        let got = q.matmul(&x).unwrap();
        let want = x.matmul(&w.t().unwrap()).unwrap();
        assert_eq!(got.dims(), &[3, 130]);
        let err = (got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        // 8-bit weights and 8-bit input rows: each side rounds to 1/254 of its block's range, so
        // the worst of 390 outputs stays within 2% of the largest output (unseeded runs reached 1.02%).
        assert!(err < 0.02 * scale, "max error {err} vs output scale {scale}");
        assert!(err > 0.0, "quantization should perturb the product a little");
    }

    /// The product computed in f64 from the dequantized weights and the dequantized 8-bit
    /// input rows: what every kernel must reproduce up to f32 summation order.
    fn exact_product(w: &Tensor, x: &Tensor) -> Tensor {
        let in_dim = w.dim(1).unwrap();
        let xq = Q8Rows::new(x, in_dim, "test").unwrap();
        let xd: Vec<f32> = (0..xq.rows)
            .flat_map(|r| (0..in_dim).map(move |i| (r, i)))
            .map(|(r, i)| {
                let b = r * xq.nbp + i / BLOCK;
                xq.q[b * BLOCK + i % BLOCK] as f32 * xq.d[b]
            })
            .collect();
        let xd = Tensor::from_vec(xd, (xq.rows, in_dim), &Device::Cpu).unwrap().to_dtype(candle_core::DType::F64).unwrap();
        xd.matmul(&w.to_dtype(candle_core::DType::F64).unwrap().t().unwrap()).unwrap().to_dtype(candle_core::DType::F32).unwrap()
    }

    fn max_rel_err(got: &Tensor, want: &Tensor) -> f32 {
        let err = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        err / want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn q4_1_blocks_give_the_exact_product_of_their_quantized_operands() {
        use candle_core::quantized::{GgmlDType, QTensor};
        let dev = Device::Cpu;
        // 3 blocks per row: the padding block is exercised too.
        let w = Tensor::randn(0f32, 1.0, (70, 96), &dev).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let m = Q4Matrix::from_qtensor(&q).unwrap().expect("Q4_1 is supported");
        let x = Tensor::randn(0f32, 1.0, (2, 96), &dev).unwrap();
        let got = m.matmul(&x).unwrap();
        let wd = q.dequantize(&dev).unwrap();
        let exact = max_rel_err(&got, &exact_product(&wd, &x));
        assert!(exact < 1e-5, "relative error {exact} against the quantized operands' product");
        // 8-bit inputs cost well under 1% against the f32 input.
        let input = max_rel_err(&got, &x.matmul(&wd.t().unwrap()).unwrap());
        assert!(input < 0.01 && input > 0.0, "relative error {input} against the f32 input's product");
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
        let other = Q4Matrix::from_qtensor(
            &QTensor::quantize(&Tensor::zeros((8, 64), candle_core::DType::F32, &dev).unwrap(), GgmlDType::Q4_1).unwrap(),
        )
        .unwrap()
        .unwrap();
        assert!(Q4Matrix::matmul_many(&[&ms[0], &other], &Tensor::zeros((1, 96), candle_core::DType::F32, &dev).unwrap()).is_err());
    }

    #[test]
    fn every_instruction_level_of_this_cpu_gives_the_exact_product() {
        use candle_core::quantized::{GgmlDType, QTensor};
        let dev = Device::Cpu;
        // 5 blocks: an odd number of pairs after padding, as the unrolled kernels' tail needs.
        let w = Tensor::randn(0f32, 1.0, (200, 160), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (3, 160), &dev).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let q4 = Q4Matrix::from_qtensor(&q).unwrap().unwrap();
        let want4 = exact_product(&q.dequantize(&dev).unwrap(), &x);
        let q8 = Q8Matrix::quantize(&w).unwrap().unwrap();
        let w8 = Tensor::from_vec(
            q8.quants.chunks_exact(BLOCK).zip(&q8.scales).flat_map(|(b, s)| b.iter().map(move |&v| v as f32 * s)).collect::<Vec<_>>(),
            (200, 6 * BLOCK),
            &dev,
        )
        .unwrap()
        .narrow(1, 0, 160)
        .unwrap();
        let want8 = exact_product(&w8, &x);
        let levels = kernels::levels_of_this_cpu();
        assert_eq!(levels.last(), Some(&dot_level()), "the level in use is among those tested");
        for level in levels {
            for (got, want) in [(q4.matmul_at(&x, level).unwrap(), &want4), (q8.matmul_at(&x, level).unwrap(), &want8)] {
                let err = max_rel_err(&got, want);
                assert!(err < 1e-5, "{level:?}: relative error {err}");
            }
        }
    }

    #[test]
    fn refuses_ragged_blocks() {
        let w = Tensor::zeros((4, 33), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(Q8Matrix::quantize(&w).unwrap().is_none());
    }
}
