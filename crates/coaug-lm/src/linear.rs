//! Projection layers: a quantized or dense weight, an optional bias and an optional
//! LoRA adapter.

use std::sync::Arc;

use candle_core::quantized::QMatMul;
use candle_core::{Module, Result, Tensor};

/// Weight of a projection `y = x Wᵀ`, stored as `(out, in)`.
#[derive(Clone)]
pub(crate) enum Weight {
    /// GGUF blocks multiplied directly (inference only, no gradients).
    Quantized(Arc<QMatMul>),
    /// Full precision; may be a `Var` when trainable.
    Dense(Tensor),
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
}

/// Gradient-free view: `detach` shares storage (sees optimizer updates) but drops
/// the variable flag so no graph is recorded.
pub(crate) fn view(t: &Tensor, grad: bool) -> Tensor {
    if grad {
        t.clone()
    } else {
        t.detach()
    }
}

impl Linear {
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight: Weight::Dense(weight), bias, lora: None }
    }

    /// `x` is `(..., in)`; the result is `(..., out)`.
    pub fn forward(&self, x: &Tensor, grad: bool) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = *dims.last().expect("linear input has a feature dim");
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((rows, in_dim))?;
        let mut y = match &self.weight {
            Weight::Quantized(q) => q.forward(&x2)?,
            Weight::Dense(w) => x2.matmul(&view(w, grad).t()?)?,
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&view(b, grad))?;
        }
        if let Some(l) = &self.lora {
            let low = x2.matmul(&view(&l.a, grad).t()?)?;
            let up = low.matmul(&view(&l.b, grad).t()?)?;
            y = (y + (up * l.scale)?)?;
        }
        let out_dim = y.dim(1)?;
        let mut out_shape = dims;
        *out_shape.last_mut().expect("non-empty") = out_dim;
        y.reshape(out_shape)
    }

    /// Full-precision weight with any adapter folded in (`W + scale · B A`).
    pub fn merged_weight(&self) -> Result<Tensor> {
        let w = match &self.weight {
            Weight::Quantized(q) => match q.as_ref() {
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
            Weight::Quantized(q) => match q.as_ref() {
                QMatMul::QTensor(t) => t.shape().dims2(),
                QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.dims2(),
            },
            Weight::Dense(w) => w.dims2(),
        }
    }
}
