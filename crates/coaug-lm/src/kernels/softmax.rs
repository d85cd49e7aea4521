//! Softmax over the last dimension that backpropagates, in one pass each way.
//!
//! candle-nn's `softmax_last_dim` has no backward, and the generic `softmax` (max, subtract,
//! exp, sum, divide) runs five passes over the attention scores forward and more backward.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::kernels::cpu_f32::{contiguous_f32, with_f32_slice};

/// Softmax of each last-dimension row of `x`; a row of only `-inf` gives zeros (a query
/// with nothing to attend to) instead of NaN. `None` when `x` is not f32 on the CPU.
pub(crate) fn softmax_last_dim(x: &Tensor) -> Result<Option<Tensor>> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 || x.rank() == 0 {
        return Ok(None);
    }
    Ok(Some(x.contiguous()?.apply_op1(Softmax)?))
}

struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax-with-backward"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout)?;
        let d = layout.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(o, row)| {
            let max = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            if max == f32::NEG_INFINITY {
                return;
            }
            let mut sum = 0f32;
            for (o, &v) in o.iter_mut().zip(row) {
                *o = (v - max).exp();
                sum += *o;
            }
            let inv = 1.0 / sum;
            o.iter_mut().for_each(|v| *v *= inv);
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    /// `dx = y ⊙ (dy − Σ dy ⊙ y)` per row.
    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let d = arg.dims().last().copied().unwrap_or(1).max(1);
        let mut dx = grad.flatten_all()?.to_vec1::<f32>()?;
        with_f32_slice(res, |y| {
            dx.par_chunks_mut(d).zip(y.par_chunks(d)).for_each(|(g, y)| {
                let dot: f32 = g.iter().zip(y).map(|(g, y)| g * y).sum();
                for (g, &y) in g.iter_mut().zip(y) {
                    *g = y * (*g - dot);
                }
            });
            Ok(())
        })?;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::cpu_f32::{max_abs_diff, probe_grads};
    use candle_core::{Device, Var, D};
    use candle_nn::ops;

    #[test]
    fn values_and_gradients_equal_candles_generic_softmax() {
        let dev = Device::Cpu;
        let mask = Tensor::new(&[0f32, f32::NEG_INFINITY, 0.0, 0.0, f32::NEG_INFINITY, 0.0, 0.0], &dev).unwrap();
        let x = Var::from_tensor(&Tensor::randn(0f32, 3.0, (2, 3, 7), &dev).unwrap()).unwrap();
        let masked = x.as_tensor().broadcast_add(&mask).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (2, 3, 7), &dev).unwrap();
        let a = softmax_last_dim(&masked).unwrap().unwrap();
        let b = ops::softmax(&masked, D::Minus1).unwrap();
        assert!(max_abs_diff(&a, &b) < 1e-6);
        let (ga, gb) = (probe_grads(&a, &probe), probe_grads(&b, &probe));
        assert!(max_abs_diff(ga.get(x.as_tensor()).unwrap(), gb.get(x.as_tensor()).unwrap()) < 1e-5);
    }

    #[test]
    fn a_fully_masked_row_gives_zeros_not_nan() {
        let x = Tensor::new(&[[f32::NEG_INFINITY, f32::NEG_INFINITY], [0.0, 0.0]], &Device::Cpu).unwrap();
        let y = softmax_last_dim(&x).unwrap().unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(y, vec![vec![0.0, 0.0], vec![0.5, 0.5]]);
    }
}
