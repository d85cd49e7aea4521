//! Projection layers: a quantized or dense weight, an optional bias and an optional
//! LoRA adapter.

use std::sync::Arc;

use candle_core::quantized::QMatMul;
use candle_core::{DType, Module, Result, Tensor};

use rayon::prelude::*;

use crate::kernels::cpu_f32::{filled_by, gemm_f32, with_f32_slices, Threads};
use crate::kernels::q8::{self, Q4Matrix, Q8Matrix};
use crate::model::Pass;

/// Weight of a projection `y = x Wᵀ`, stored as `(out, in)`.
#[derive(Clone)]
pub(crate) enum Weight {
    /// GGUF blocks multiplied directly (inference only, no gradients).
    Quantized(Arc<QuantWeight>),
    /// Full precision; may be a `Var` when trainable.
    Dense(Tensor),
}

/// A quantized weight: candle's blocks for many-row products (prefill) and, on the CPU,
/// a 4- or 8-bit copy for the few-row products of decoding (see `q8`).
pub(crate) struct QuantWeight {
    pub mm: QMatMul,
    pub few_rows: Option<FewRows>,
}

/// The decode-path copy of a quantized weight.
pub(crate) enum FewRows {
    /// The file's own Q4_1 blocks (exact, half the bytes of 8-bit).
    Q4(Q4Matrix),
    /// Any other block type, re-quantized to 8 bits.
    Q8(Q8Matrix),
}

impl QuantWeight {
    /// `q4`: the file's Q4_1 blocks, when it had them (taken before `mm` re-quantized them).
    pub fn new(mm: QMatMul, q4: Option<Q4Matrix>, device: &candle_core::Device) -> Result<Self> {
        if !device.is_cpu() {
            return Ok(QuantWeight { mm, few_rows: None });
        }
        let few_rows = match q4 {
            Some(m) => Some(FewRows::Q4(m)),
            None => match &mm {
                QMatMul::QTensor(t) => Q8Matrix::quantize(&t.dequantize(device)?)?.map(FewRows::Q8),
                _ => None,
            },
        };
        Ok(QuantWeight { mm, few_rows })
    }
}

/// Low-rank adapter: `y += scale · (x Aᵀ) Bᵀ` with `A: (r, in)`, `B: (out, r)`.
#[derive(Clone)]
pub(crate) struct Lora {
    pub a: Tensor,
    pub b: Tensor,
    pub scale: f64,
}

#[derive(Clone)]
pub(crate) struct Linear {
    pub weight: Weight,
    pub bias: Option<Tensor>,
    pub lora: Option<Lora>,
    /// A dense weight's transpose `(in, out)`, kept for decoding by a model that only
    /// generates (see `CausalLm::prepare_for_decoding`).
    pub decode: Option<Tensor>,
}

/// A dense f32 weight as the few-rows products read it: stored `(out, in)`, perhaps also
/// transposed `(in, out)`. gemm reads a transposed block in place, where it repacks a stored
/// one on every call: batch-64 decode products at ~1.14× the rate (weights streamed from
/// memory, as in decoding).
#[derive(Clone, Copy)]
pub(crate) struct Dense<'a> {
    pub w: &'a Tensor,
    pub t: Option<&'a Tensor>,
}

impl<'a> Dense<'a> {
    pub fn plain(w: &'a Tensor) -> Self {
        Dense { w, t: None }
    }
}

/// Gradient-free view: `detach` shares storage (sees optimizer updates) but drops
/// the variable flag so no graph is recorded.
pub(crate) fn view(t: &Tensor, pass: Pass) -> Tensor {
    if pass.tracks_grad() {
        t.clone()
    } else {
        t.detach()
    }
}

/// Rows up to which [`few_rows_matmul`] beats the plain product. Measured on the 135M model's
/// shapes (2 cores, AVX2 gemm): at 16 rows it takes 0.6–0.85× the plain product's time, at 64
/// it is even, at 384 it takes 1.1–1.7× (2.4× for the vocabulary projection), the final
/// transpose costing more than the packing it saves. With gemm's AVX-512 kernels the plain
/// product at 64 rows got slower (batch-64 decoding 206 → 170 tokens/s) and this path faster
/// (218 tokens/s), hence 64.
pub(crate) const FEW_ROWS: usize = 64;

/// `x Wᵀ` for few rows of `x`, computed as `(W xᵀ)ᵀ`. With the weight stored `(out, in)`,
/// candle's `x.matmul(W.t())` makes gemm repack the whole weight on every call (its
/// microkernel wants the output-feature dimension contiguous), which at decode batch
/// sizes cost more than the multiply itself. Computing `W xᵀ` instead lets gemm read
/// the weight in place and pack only the small activation block (see
/// [`few_rows_matmul_many`] for how the output lands in `(rows, out)` order).
pub(crate) fn few_rows_matmul(x: &Tensor, w: Dense) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 || w.w.dtype() != DType::F32 {
        return w.w.detach().matmul(&x.t()?)?.t()?.contiguous();
    }
    Ok(few_rows_matmul_many(x, &[w])?.pop().expect("one product per weight"))
}

/// `x Wᵀ` without gradients on the CPU: candle's matmul, minus the zero-fill of its output.
pub(crate) fn dense_matmul(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (rows, k) = x.dims2()?;
    let out = w.dim(0)?;
    with_f32_slices(&[x, w], |s| {
        let (xs, ws) = (s[0], s[1]);
        // SAFETY: `xs` is (rows, k) and `ws` (out, k) row-major; gemm writes every element
        // of the (rows, out) output.
        unsafe { filled_by(rows, out, |dst| gemm_f32(Threads::All, rows, out, k, dst, out, 1, xs, k, 1, ws, 1, k)) }
    })
}

/// [`few_rows_matmul`] of one input by several f32 CPU weights in a single parallel region:
/// each weight's output rows are cut into blocks, every block is one serial gemm task. At
/// decode sizes a block's q/k/v (or gate/up) products are ~0.1 ms each, so handing each to
/// the threads separately cost a wake-up and a join apiece, and the narrow k/v products ran
/// at half the rate of the q product. Each task writes its block of `W xᵀ` straight into the
/// columns of the `(rows, out)` result: seen from gemm that is a column-major output, the
/// order its kernel produces anyway (a row-major one went through a transpose pass, ~4% of a
/// batch-64 decode step).
pub(crate) fn few_rows_matmul_many(x: &Tensor, ws: &[Dense]) -> Result<Vec<Tensor>> {
    const BLOCK: usize = 128;
    let (rows, k) = x.dims2()?;
    let outs: Vec<usize> = ws.iter().map(|w| w.w.dim(0)).collect::<Result<_>>()?;
    let mut results: Vec<Vec<f32>> = outs.iter().map(|&out| Vec::with_capacity(rows * out)).collect();
    let inputs: Vec<&Tensor> = std::iter::once(x).chain(ws.iter().map(|w| w.t.unwrap_or(w.w))).collect();
    with_f32_slices(&inputs, |s| {
        let (xs, weights) = (s[0], &s[1..]);
        let mut tasks: Vec<(&[f32], usize, Columns)> = Vec::new();
        for (((w, d), &out), dst) in weights.iter().zip(ws).zip(&outs).zip(results.iter_mut()) {
            for r0 in (0..out).step_by(BLOCK) {
                let n = BLOCK.min(out - r0);
                // Block rows r0..r0 + n of W: its (n, k) rows, or columns of the transpose
                // (`out` apart, read in place).
                let (block, rs) = match d.t {
                    None => (&w[r0 * k..(r0 + n) * k], k),
                    Some(_) => (&w[r0..], 1),
                };
                // SAFETY: within the capacity of `dst`, which holds (rows, out).
                tasks.push((block, rs, Columns { first: unsafe { dst.as_mut_ptr().add(r0) }, stride: out, n }));
            }
        }
        tasks.into_par_iter().for_each(|(w, rs, dst)| {
            // Stored: element (i, kk) of the block at i·k + kk; transposed: at i + kk·out.
            let cs = if rs == 1 { dst.stride } else { 1 };
            // SAFETY: `w` holds the block as just described and `xs` (rows, k) row-major; the
            // task's output element (feature i, row r) is column i of row r of its (rows, out)
            // result, written by this task alone.
            unsafe { gemm_f32(Threads::Caller, dst.n, rows, k, dst.first, 1, dst.stride, w, rs, cs, xs, 1, k) };
        });
        Ok(())
    })?;
    outs.iter()
        .zip(results)
        .map(|(&out, mut data)| {
            // SAFETY: the tasks' blocks cover every column of every row.
            unsafe { data.set_len(rows * out) };
            Tensor::from_vec(data, (rows, out), x.device())
        })
        .collect()
}

/// Where a task of [`few_rows_matmul_many`] writes: its first output column of a row-major
/// result with `stride` columns. Tasks write disjoint columns.
struct Columns {
    first: *mut f32,
    stride: usize,
    /// Columns of the task.
    n: usize,
}

// SAFETY: see `Columns`: no two tasks write the same element.
unsafe impl Send for Columns {}

impl Linear {
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight: Weight::Dense(weight), bias, lora: None, decode: None }
    }

    /// `x` is `(..., in)`; the result is `(..., out)`.
    pub fn forward(&self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = *dims.last().expect("linear input has a feature dim");
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((rows, in_dim))?;
        let mut y = match &self.weight {
            Weight::Quantized(q) => match &q.few_rows {
                Some(FewRows::Q4(m)) if rows <= q8::MAX_ROWS => m.matmul(&x2)?,
                Some(FewRows::Q8(m)) if rows <= q8::MAX_ROWS => m.matmul(&x2)?,
                _ => q.mm.forward(&x2)?,
            },
            Weight::Dense(w) if pass == Pass::Infer && rows <= FEW_ROWS && w.device().is_cpu() => {
                few_rows_matmul(&x2, Dense { w, t: self.decode.as_ref() })?
            }
            Weight::Dense(w) if pass == Pass::Infer && w.device().is_cpu() && w.dtype() == DType::F32 && x2.dtype() == DType::F32 => {
                dense_matmul(&x2, w)?
            }
            Weight::Dense(w) => x2.matmul(&view(w, pass).t()?)?,
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&view(b, pass))?;
        }
        if let Some(l) = &self.lora {
            let low = x2.matmul(&view(&l.a, pass).t()?)?;
            let up = low.matmul(&view(&l.b, pass).t()?)?;
            y = (y + (up * l.scale)?)?;
        }
        let out_dim = y.dim(1)?;
        let mut out_shape = dims;
        *out_shape.last_mut().expect("non-empty") = out_dim;
        y.reshape(out_shape)
    }

    /// `forward` of several projections of the same input. Quantized 4-bit weights without
    /// adapters share one dispatch at decode sizes (see [`Q4Matrix::matmul_many`]); anything
    /// else runs them one by one.
    pub fn forward_many(lins: &[&Linear], x: &Tensor, pass: Pass) -> Result<Vec<Tensor>> {
        let dims = x.dims().to_vec();
        let in_dim = *dims.last().expect("linear input has a feature dim");
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let q4: Option<Vec<&Q4Matrix>> = lins
            .iter()
            .map(|l| match (&l.weight, &l.lora) {
                (Weight::Quantized(q), None) => match &q.few_rows {
                    Some(FewRows::Q4(m)) => Some(m),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        let dense: Option<Vec<Dense>> = lins
            .iter()
            .map(|l| match (&l.weight, &l.lora) {
                (Weight::Dense(w), None) if w.device().is_cpu() && w.dtype() == DType::F32 => Some(Dense { w, t: l.decode.as_ref() }),
                _ => None,
            })
            .collect();
        let x2 = x.reshape((rows, in_dim))?;
        let ys = match (q4, dense) {
            (Some(ms), _) if rows <= q8::MAX_ROWS && lins.len() > 1 => Q4Matrix::matmul_many(&ms, &x2)?,
            (_, Some(ws)) if pass == Pass::Infer && rows <= FEW_ROWS && lins.len() > 1 && x.dtype() == DType::F32 => {
                few_rows_matmul_many(&x2, &ws)?
            }
            _ => return lins.iter().map(|l| l.forward(x, pass)).collect(),
        };
        ys.into_iter()
            .zip(lins)
            .map(|(y, l)| {
                let y = match &l.bias {
                    Some(b) => y.broadcast_add(b)?,
                    None => y,
                };
                let mut shape = dims.clone();
                *shape.last_mut().expect("non-empty") = y.dim(1)?;
                y.reshape(shape)
            })
            .collect()
    }

    /// Full-precision weight with any adapter folded in (`W + scale · B A`).
    pub fn merged_weight(&self) -> Result<Tensor> {
        let w = match &self.weight {
            Weight::Quantized(q) => match &q.mm {
                QMatMul::QTensor(t) => t.dequantize(&t.device())?,
                QMatMul::Tensor(t) => t.clone(),
                QMatMul::TensorF16(t) => t.to_dtype(candle_core::DType::F32)?,
            },
            Weight::Dense(w) => w.detach(),
        };
        match &self.lora {
            None => Ok(w),
            Some(l) => w + (l.b.detach().matmul(&l.a.detach())? * l.scale)?,
        }
    }

    pub fn out_in(&self) -> Result<(usize, usize)> {
        match &self.weight {
            Weight::Quantized(q) => match &q.mm {
                QMatMul::QTensor(t) => t.shape().dims2(),
                QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.dims2(),
            },
            Weight::Dense(w) => w.dims2(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn gemm_products_equal_the_plain_one() {
        let dev = Device::Cpu;
        // Row and output counts off the transpose's 32-tile, and one strided input.
        for (rows, out, k) in [(1, 70, 33), (5, 64, 16), (37, 100, 48), (64, 33, 9)] {
            let x = Tensor::randn(0f32, 1.0, (rows, k), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (out, k), &dev).unwrap();
            let want = x.matmul(&w.t().unwrap()).unwrap();
            let wt = w.t().unwrap().contiguous().unwrap();
            let transposed = few_rows_matmul(&x, Dense { w: &w, t: Some(&wt) }).unwrap();
            for got in [few_rows_matmul(&x, Dense::plain(&w)).unwrap(), transposed, dense_matmul(&x, &w).unwrap()] {
                assert_eq!(got.dims(), &[rows, out]);
                assert!(crate::kernels::cpu_f32::max_abs_diff(&got, &want) < 1e-4);
            }
        }
        // Several weights at once: outputs off the 128-row block, one block, several blocks.
        let x = Tensor::randn(0f32, 1.0, (9, 24), &dev).unwrap();
        let ws: Vec<Tensor> = [200, 128, 5, 300].iter().map(|&o| Tensor::randn(0f32, 1.0, (o, 24), &dev).unwrap()).collect();
        let wts: Vec<Tensor> = ws.iter().map(|w| w.t().unwrap().contiguous().unwrap()).collect();
        // Stored and transposed weights mixed in one call.
        let dense: Vec<Dense> = ws.iter().zip(&wts).enumerate().map(|(i, (w, t))| Dense { w, t: (i % 2 == 1).then_some(t) }).collect();
        let got = few_rows_matmul_many(&x, &dense).unwrap();
        for (g, w) in got.iter().zip(&ws) {
            let want = x.matmul(&w.t().unwrap()).unwrap();
            assert_eq!(g.dims(), want.dims());
            assert!(crate::kernels::cpu_f32::max_abs_diff(g, &want) < 1e-4);
        }
        let xt = Tensor::randn(0f32, 1.0, (12, 7), &dev).unwrap().t().unwrap();
        let w = Tensor::randn(0f32, 1.0, (20, 12), &dev).unwrap();
        let want = xt.contiguous().unwrap().matmul(&w.t().unwrap()).unwrap();
        assert!(crate::kernels::cpu_f32::max_abs_diff(&few_rows_matmul(&xt, Dense::plain(&w)).unwrap(), &want) < 1e-4);
    }
}
