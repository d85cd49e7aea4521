//! The MLP's gate, `silu(gate) ⊙ up`, in one pass for inference. Through candle it is a
//! unary op (libm `expf` per element) and a binary op, two outputs and three passes over
//! `(tokens, intermediate)` data: ~4% of a prefill.

use std::mem::MaybeUninit;

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

use crate::kernels::cpu_f32::{matmul_add, with_f32_slices, MatMut, MatRef};
use crate::kernels::fast_exp;
use crate::kernels::simd::{multiversion, simd_level};

/// `silu(gate) * up` without gradients: fused on the CPU for f32, candle's ops elsewhere.
pub(crate) fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if !gate.device().is_cpu() || gate.dtype() != DType::F32 || up.dtype() != DType::F32 || gate.dims() != up.dims() {
        return candle_nn::ops::silu(gate)? * up;
    }
    let n = gate.elem_count();
    let mut out: Vec<f32> = Vec::with_capacity(n);
    with_f32_slices(&[gate, up], |s| {
        const CHUNK: usize = 1 << 14;
        let level = simd_level();
        let dst = &mut out.spare_capacity_mut()[..n];
        dst.par_chunks_mut(CHUNK).zip(s[0].par_chunks(CHUNK)).zip(s[1].par_chunks(CHUNK)).for_each(|((o, g), u)| {
            swiglu_dispatch(level, &Gated { gate: g, up: u }, o);
        });
        Ok(())
    })?;
    // SAFETY: the chunks above wrote all n elements (no zero-fill first: ~1% of a prefill).
    unsafe { out.set_len(n) };
    Tensor::from_vec(out, gate.dims(), gate.device())
}

/// A prefill's MLP with its residual: `x + swiglu(h gateᵀ, h upᵀ) downᵀ` for many rows, with
/// `fused = [gate; up]` `(2·f, in)` (see `Block::gate_up`) and `down` `(in, f)`. The wider
/// input product runs at a better rate than two. It goes in row blocks whose product output
/// stays under 16 MiB: glibc hands out anything over 32 MiB as a fresh `mmap`, and a whole
/// prefill chunk's `(rows, 2·f)` (59 MB for 4800 rows of the 135M model) then cost page faults
/// every layer. Each block's down product accumulates straight onto its rows of `x`, so the
/// residual add is no pass of its own.
pub(crate) fn mlp_residual(x: &Tensor, h: &Tensor, fused: &Tensor, down: &Tensor) -> Result<Tensor> {
    let (rows, d) = x.dims2()?;
    let (two_f, _) = fused.dims2()?;
    let f = two_f / 2;
    if !x.device().is_cpu() || x.dtype() != DType::F32 || down.dims() != [d, f] || h.dims() != x.dims() {
        let y = h.matmul(&fused.t()?)?;
        let act = swiglu(&y.narrow(1, 0, f)?, &y.narrow(1, f, f)?)?;
        return x + act.matmul(&down.t()?)?;
    }
    let block = ((4 << 20) / two_f.max(1)).max(1);
    let level = simd_level();
    let mut out = x.flatten_all()?.to_vec1::<f32>()?;
    let mut act: Vec<f32> = Vec::with_capacity(block * f);
    with_f32_slices(&[down], |w| {
        for (b, dst) in out.chunks_mut(block * d).enumerate() {
            let r = dst.len() / d;
            let y = crate::model::linear::dense_matmul(&h.narrow(0, b * block, r)?, fused)?;
            let act = &mut act.spare_capacity_mut()[..r * f];
            with_f32_slices(&[&y], |s| {
                let per_task = (1 << 14) / f.max(1) + 1;
                act.par_chunks_mut(per_task * f).zip(s[0].par_chunks(per_task * two_f)).for_each(|(o, y)| {
                    for (o, y) in o.chunks_exact_mut(f).zip(y.chunks_exact(two_f)) {
                        let (gate, up) = y.split_at(f);
                        swiglu_dispatch(level, &Gated { gate, up }, o);
                    }
                });
                Ok(())
            })?;
            // SAFETY: every row of the block's activations was written just above.
            let act: &[f32] = unsafe { std::slice::from_raw_parts(act.as_ptr() as *const f32, r * f) };
            // `down` (d, f) row-major read as its transpose (f, d); `dst` (r, d) holds the block's
            // residual rows, accumulated onto.
            matmul_add(MatMut::row_major(dst, r, d), MatRef::row_major(act, r, f), MatRef::transpose_of(w[0], f, d));
        }
        Ok(())
    })?;
    Tensor::from_vec(out, (rows, d), x.device())
}

struct Gated<'a> {
    gate: &'a [f32],
    up: &'a [f32],
}

impl Gated<'_> {
    #[inline(always)]
    fn write(&self, out: &mut [MaybeUninit<f32>]) {
        for ((o, &g), &u) in out.iter_mut().zip(self.gate).zip(self.up) {
            o.write(g / (1.0 + fast_exp::exp(-g)) * u);
        }
    }
}

// Compiled for the baseline only it ran four lanes at a time (~4% of a prefill).
multiversion!(Gated<'_>, write, swiglu_avx2, swiglu_avx512, swiglu_dispatch(out: &mut [MaybeUninit<f32>]));

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn equals_candles_silu_times_up() {
        let dev = Device::Cpu;
        let gate = (Tensor::randn(0f32, 1.0, (3, 40_000), &dev).unwrap() * 30.0).unwrap();
        let up = Tensor::randn(0f32, 1.0, (3, 40_000), &dev).unwrap();
        let want = (candle_nn::ops::silu(&gate).unwrap() * &up).unwrap();
        let got = swiglu(&gate, &up).unwrap();
        assert!(crate::kernels::cpu_f32::max_abs_diff(&got, &want) < 1e-4);
        // Strided inputs are read in logical order.
        let gt = gate.t().unwrap();
        let ut = up.t().unwrap();
        let want = (candle_nn::ops::silu(&gt).unwrap() * &ut).unwrap();
        assert!(crate::kernels::cpu_f32::max_abs_diff(&swiglu(&gt, &ut).unwrap(), &want) < 1e-4);
        // The whole MLP with its residual, through one input product (rows beyond one block).
        let h = Tensor::randn(0f32, 1.0, (3000, 8), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (3000, 8), &dev).unwrap();
        let (wg, wu) = (Tensor::randn(0f32, 1.0, (700, 8), &dev).unwrap(), Tensor::randn(0f32, 1.0, (700, 8), &dev).unwrap());
        let down = Tensor::randn(0f32, 0.1, (8, 700), &dev).unwrap();
        let fused = Tensor::cat(&[&wg, &wu], 0).unwrap();
        let act = swiglu(&h.matmul(&wg.t().unwrap()).unwrap(), &h.matmul(&wu.t().unwrap()).unwrap()).unwrap();
        let want = (&x + act.matmul(&down.t().unwrap()).unwrap()).unwrap();
        assert!(crate::kernels::cpu_f32::max_abs_diff(&mlp_residual(&x, &h, &fused, &down).unwrap(), &want) < 1e-3);
    }
}
