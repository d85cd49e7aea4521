//! Rotate-half rotary embedding that backpropagates, in one pass each way.
//!
//! candle-nn's fused `rope` has no backward; built from generic ops (two concatenations, a
//! negation, two broadcast products and a sum) it cost a dozen passes over the queries and
//! keys of every trained block. The rotation is orthogonal, so its gradient is the same
//! rotation by the opposite angle.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::kernels::cpu_f32::{contiguous_f32, with_f32_slice};

/// `x` `(b, heads, t, head_dim)` rotated by `cos`/`sin` `(b, t, head_dim/2)`; differentiable
/// in `x` (the tables are constants). `None` when the inputs are not f32 on the CPU.
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Option<Tensor>> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 || cos.dtype() != DType::F32 {
        return Ok(None);
    }
    let (b, _, t, hd) = x.dims4()?;
    if hd % 2 != 0 || cos.dims3()? != (b, t, hd / 2) || sin.dims3()? != (b, t, hd / 2) {
        candle_core::bail!("rope: tables {:?} do not fit input {:?}", cos.shape(), x.shape());
    }
    let op = Rope { cos: cos.flatten_all()?.to_vec1()?, sin: sin.flatten_all()?.to_vec1()? };
    Ok(Some(x.contiguous()?.apply_op1(op)?))
}

struct Rope {
    /// `(b, t, half)`, row-major.
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rope {
    /// Rotates every `head_dim` row of `x` `(b, heads, t, head_dim)`; `sign` -1 undoes it.
    fn apply(&self, x: &[f32], dims: (usize, usize, usize, usize), sign: f32) -> Vec<f32> {
        let (_, heads, t, hd) = dims;
        let half = hd / 2;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(hd).zip(x.par_chunks(hd)).enumerate().for_each(|(row, (o, xr))| {
            let (bi, ti) = (row / (heads * t), row % t);
            let at = (bi * t + ti) * half;
            let (c, s) = (&self.cos[at..at + half], &self.sin[at..at + half]);
            let (x1, x2) = xr.split_at(half);
            let (o1, o2) = o.split_at_mut(half);
            for i in 0..half {
                let si = sign * s[i];
                o1[i] = x1[i] * c[i] - x2[i] * si;
                o2[i] = x2[i] * c[i] + x1[i] * si;
            }
        });
        out
    }
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "rope-with-backward"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout)?;
        Ok((CpuStorage::F32(self.apply(x, layout.shape().dims4()?, 1.0)), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dx = with_f32_slice(grad, |g| Ok(self.apply(g, arg.dims4()?, -1.0)))?;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::cpu_f32::{max_abs_diff, probe_grads};
    use candle_core::{Device, Var, D};

    /// The generic-op formulation this replaces.
    fn reference(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        let half = x.dim(D::Minus1).unwrap() / 2;
        let cos = Tensor::cat(&[cos, cos], D::Minus1).unwrap().unsqueeze(1).unwrap();
        let sin = Tensor::cat(&[sin, sin], D::Minus1).unwrap().unsqueeze(1).unwrap();
        let x1 = x.narrow(D::Minus1, 0, half).unwrap();
        let x2 = x.narrow(D::Minus1, half, half).unwrap();
        let rotated = Tensor::cat(&[&x2.neg().unwrap(), &x1], D::Minus1).unwrap();
        (x.broadcast_mul(&cos).unwrap() + rotated.broadcast_mul(&sin).unwrap()).unwrap()
    }

    #[test]
    fn values_and_gradients_equal_the_generic_ops() {
        let dev = Device::Cpu;
        let (b, h, t, hd) = (2, 3, 5, 8);
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, h, t, hd), &dev).unwrap()).unwrap();
        let angle = Tensor::randn(0f32, 2.0, (b, t, hd / 2), &dev).unwrap();
        let (cos, sin) = (angle.cos().unwrap(), angle.sin().unwrap());
        let probe = Tensor::randn(0f32, 1.0, (b, h, t, hd), &dev).unwrap();
        let a = rope(x.as_tensor(), &cos, &sin).unwrap().unwrap();
        let r = reference(x.as_tensor(), &cos, &sin);
        assert!(max_abs_diff(&a, &r) < 1e-5);
        let (ga, gr) = (probe_grads(&a, &probe), probe_grads(&r, &probe));
        assert!(max_abs_diff(ga.get(x.as_tensor()).unwrap(), gr.get(x.as_tensor()).unwrap()) < 1e-5);
        // A strided input (queries transposed from (b, t, h, hd)) is rotated the same way.
        let xt = x.as_tensor().transpose(1, 2).unwrap().contiguous().unwrap().transpose(1, 2).unwrap();
        assert!(max_abs_diff(&rope(&xt, &cos, &sin).unwrap().unwrap(), &r) < 1e-5);
        assert!(rope(x.as_tensor(), &cos.narrow(1, 0, 4).unwrap(), &sin).is_err());
    }
}
