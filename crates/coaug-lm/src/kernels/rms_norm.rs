//! RMS norm that backpropagates, in one pass forward and one backward.
//!
//! candle-nn's fused `rms_norm` has no backward (the graph would silently detach), and
//! `rms_norm_slow` builds it from seven generic ops, each a pass over the activations, with
//! more than twice that many on the way back. In an RL update with the top blocks trained
//! those passes were a visible share of the step.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use candle_nn::ops;
use rayon::prelude::*;

use crate::kernels::cpu_f32::{contiguous_f32, with_f32_slice, with_f32_slices};
use crate::kernels::simd::{multiversion, simd_level};

/// `x / sqrt(mean(x²) + eps) * w` over the last dimension, differentiable in `x` and `w`.
pub(crate) fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return ops::rms_norm_slow(x, w, eps);
    }
    if w.dims1()? != x.dim(candle_core::D::Minus1)? {
        candle_core::bail!("rms-norm: weight {:?} does not match input {:?}", w.shape(), x.shape());
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, RmsNorm { eps })
}

struct RmsNorm {
    eps: f32,
}

/// Rows per parallel task of the backward pass.
const DW_CHUNK_ROWS: usize = 64;

#[inline]
fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let ss: f32 = row.iter().map(|v| v * v).sum();
    1.0 / (ss / row.len() as f32 + eps).sqrt()
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm-with-backward"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let d = w.len();
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(o, row)| {
            let r = inv_rms(row, self.eps);
            for ((o, &v), &wi) in o.iter_mut().zip(row).zip(w) {
                *o = v * r * wi;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    /// With `r = 1/rms(x)` and `g = dy ⊙ w`: `dx = r·g − (r³/d)·x·Σ(g ⊙ x)`, `dw = Σ_rows dy ⊙ x·r`.
    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = w.dims1()?;
        let ws = w.to_vec1::<f32>()?;
        let (dx, dw) = with_f32_slice(x, |xs| {
            with_f32_slice(grad, |gs| {
                let mut dx = vec![0f32; xs.len()];
                // `dw` sums over rows: partial sums over fixed row chunks, added in chunk order,
                // so the result does not depend on how rayon schedules them (exact resume needs
                // bit-identical steps).
                let partial: Vec<Vec<f32>> = dx
                    .par_chunks_mut(DW_CHUNK_ROWS * d)
                    .zip(xs.par_chunks(DW_CHUNK_ROWS * d).zip(gs.par_chunks(DW_CHUNK_ROWS * d)))
                    .map(|(dxc, (xc, gc))| {
                        let mut dw = vec![0f32; d];
                        for (dxr, (row, g)) in dxc.chunks_mut(d).zip(xc.chunks(d).zip(gc.chunks(d))) {
                            let r = inv_rms(row, self.eps);
                            let s: f32 = g.iter().zip(&ws).zip(row).map(|((g, w), x)| g * w * x).sum();
                            let c = r * r * r * s / d as f32;
                            for i in 0..d {
                                dxr[i] = r * g[i] * ws[i] - c * row[i];
                                dw[i] += g[i] * row[i] * r;
                            }
                        }
                        dw
                    })
                    .collect();
                let mut dw = vec![0f32; d];
                for p in &partial {
                    dw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
                }
                Ok((dx, dw))
            })
        })?;
        Ok((Some(Tensor::from_vec(dx, x.shape(), x.device())?), Some(Tensor::from_vec(dw, d, w.device())?)))
    }
}

/// Without gradients: `(x + a, rms_norm(x + a) · w)` in one pass over the rows, or `(x,
/// rms_norm(x) · w)` without `a`; neither output is zero-filled first. A block's residual add
/// and the norm after it were two candle ops, four passes over the activations and two
/// zero-fills (~3% of a prefill).
pub(crate) fn add_rms_norm(x: &Tensor, a: Option<&Tensor>, w: &Tensor, eps: f32) -> Result<(Tensor, Tensor)> {
    let d = w.dims1()?;
    let fits = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && t.dims() == x.dims();
    if !fits(x) || !a.is_none_or(fits) || w.dtype() != DType::F32 || x.dim(candle_core::D::Minus1)? != d {
        let sum = match a {
            Some(a) => (x + a)?,
            None => x.clone(),
        };
        let normed = ops::rms_norm(&sum.contiguous()?, w, eps)?;
        return Ok((sum, normed));
    }
    let n = x.elem_count();
    let mut inputs = vec![x, w];
    inputs.extend(a);
    let mut sum: Vec<f32> = Vec::with_capacity(if a.is_some() { n } else { 0 });
    let mut out: Vec<f32> = Vec::with_capacity(n);
    with_f32_slices(&inputs, |s| {
        let job = NormRows { x: s[0], w: s[1], a: s.get(2).copied(), eps, d };
        let level = simd_level();
        const ROWS: usize = 16;
        let sums = sum.spare_capacity_mut();
        let outs = &mut out.spare_capacity_mut()[..n];
        let task = |(i, (o, sm)): (usize, (&mut [Uninit], Option<&mut [Uninit]>))| norm_rows_dispatch(level, &job, i * ROWS, o, sm);
        if a.is_some() {
            let chunks = outs.par_chunks_mut(ROWS * d).zip(sums[..n].par_chunks_mut(ROWS * d).map(Some));
            chunks.enumerate().for_each(task);
        } else {
            outs.par_chunks_mut(ROWS * d).map(|o| (o, None)).enumerate().for_each(task);
        }
        Ok(())
    })?;
    // SAFETY: the tasks wrote every row of both outputs.
    unsafe {
        out.set_len(n);
        if a.is_some() {
            sum.set_len(n);
        }
    }
    let normed = Tensor::from_vec(out, x.dims(), x.device())?;
    let sum = if a.is_some() { Tensor::from_vec(sum, x.dims(), x.device())? } else { x.clone() };
    Ok((sum, normed))
}

type Uninit = MaybeUninit<f32>;

struct NormRows<'a> {
    x: &'a [f32],
    w: &'a [f32],
    a: Option<&'a [f32]>,
    eps: f32,
    d: usize,
}

impl NormRows<'_> {
    /// Rows `first..` of both outputs, as many as `out` holds.
    #[inline(always)]
    fn rows(&self, first: usize, out: &mut [MaybeUninit<f32>], mut sum: Option<&mut [MaybeUninit<f32>]>) {
        let d = self.d;
        let mut added = vec![0f32; if self.a.is_some() { d } else { 0 }];
        for (r, o) in out.chunks_exact_mut(d).enumerate() {
            let at = (first + r) * d;
            let x = &self.x[at..at + d];
            let row: &[f32] = match self.a {
                Some(a) => {
                    for ((s, &x), &a) in added.iter_mut().zip(x).zip(&a[at..at + d]) {
                        *s = x + a;
                    }
                    if let Some(sm) = sum.as_deref_mut() {
                        for (dst, &v) in sm[r * d..(r + 1) * d].iter_mut().zip(&added) {
                            dst.write(v);
                        }
                    }
                    &added
                }
                None => x,
            };
            // Sixteen lanes, so the squares vectorize.
            let mut acc = [0f32; 16];
            let chunks = row.chunks_exact(16);
            let mut ss: f32 = chunks.remainder().iter().map(|v| v * v).sum();
            for c in chunks {
                for j in 0..16 {
                    acc[j] += c[j] * c[j];
                }
            }
            ss += crate::kernels::fast_exp::tree_sum(acc);
            let inv = 1.0 / (ss / d as f32 + self.eps).sqrt();
            for ((o, &v), &w) in o.iter_mut().zip(row).zip(self.w) {
                o.write(v * inv * w);
            }
        }
    }
}

multiversion!(NormRows<'_>, rows, norm_rows_avx2, norm_rows_avx512, norm_rows_dispatch(first: usize, out: &mut [MaybeUninit<f32>], sum: Option<&mut [MaybeUninit<f32>]>));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::cpu_f32::{max_abs_diff, probe_grads};
    use candle_core::{Device, Var};

    #[test]
    fn values_and_gradients_equal_candles_slow_rms_norm() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (3, 5, 16), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.3, 16, &dev).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (3, 5, 16), &dev).unwrap();
        let a = rms_norm(x.as_tensor(), w.as_tensor(), 1e-5).unwrap();
        let b = ops::rms_norm_slow(x.as_tensor(), w.as_tensor(), 1e-5).unwrap();
        assert!(max_abs_diff(&a, &b) < 1e-5);
        let (ga, gb) = (probe_grads(&a, &probe), probe_grads(&b, &probe));
        assert!(max_abs_diff(ga.get(x.as_tensor()).unwrap(), gb.get(x.as_tensor()).unwrap()) < 1e-4, "dx");
        assert!(max_abs_diff(ga.get(w.as_tensor()).unwrap(), gb.get(w.as_tensor()).unwrap()) < 1e-4, "dw");
    }

    #[test]
    fn the_weight_gradient_does_not_depend_on_the_thread_count() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (300, 32), &dev).unwrap();
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.3, 32, &dev).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (300, 32), &dev).unwrap();
        let dw = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let y = rms_norm(&x, w.as_tensor(), 1e-5).unwrap();
                probe_grads(&y, &probe).get(w.as_tensor()).unwrap().to_vec1::<f32>().unwrap()
            })
        };
        let one = dw(1);
        for threads in [2, 3, 7] {
            assert_eq!(dw(threads), one, "{threads} threads");
        }
    }

    #[test]
    fn residual_add_and_norm_equal_candles_ops() {
        let dev = Device::Cpu;
        // Row counts off the 16-row task, widths off the 16 lanes.
        for (rows, d) in [(3, 16), (37, 40), (16, 576)] {
            let x = Tensor::randn(0f32, 2.0, (1, rows, d), &dev).unwrap();
            let a = Tensor::randn(0f32, 1.0, (1, rows, d), &dev).unwrap();
            let w = Tensor::randn(1f32, 0.3, d, &dev).unwrap();
            let (sum, normed) = add_rms_norm(&x, Some(&a), &w, 1e-5).unwrap();
            let want_sum = (&x + &a).unwrap();
            assert_eq!(max_abs_diff(&sum, &want_sum), 0.0);
            assert!(max_abs_diff(&normed, &ops::rms_norm_slow(&want_sum, &w, 1e-5).unwrap()) < 1e-5);
            let (same, normed) = add_rms_norm(&x, None, &w, 1e-5).unwrap();
            assert_eq!(max_abs_diff(&same, &x), 0.0);
            assert!(max_abs_diff(&normed, &ops::rms_norm_slow(&x, &w, 1e-5).unwrap()) < 1e-5);
        }
    }

    #[test]
    fn a_transposed_input_is_normalised_over_its_logical_last_dim() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (8, 6), &dev).unwrap().t().unwrap();
        let w = Tensor::ones(8, DType::F32, &dev).unwrap();
        let a = rms_norm(&x, &w, 1e-6).unwrap();
        let b = ops::rms_norm_slow(&x, &w, 1e-6).unwrap();
        assert!(max_abs_diff(&a, &b) < 1e-5);
        assert!(rms_norm(&x, &Tensor::ones(6, DType::F32, &dev).unwrap(), 1e-6).is_err());
    }
}
