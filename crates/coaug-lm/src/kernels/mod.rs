//! The CPU kernels under the model: f32 gemm and slice access (`cpu_f32`), the SIMD level
//! (`simd`), fused ops with their own backward passes (`rms_norm`, `rope`, `softmax`, `swiglu`),
//! quantized matrix-vector products (`q8`) and grouped-query attention over the KV cache
//! (`attention`). Each hand-written kernel says in its module comment what it measured faster
//! than candle's generic path.

pub(crate) mod attention;
pub(crate) mod cpu_f32;
pub(crate) mod fast_exp;
pub(crate) mod q8;
pub(crate) mod rms_norm;
pub(crate) mod rope;
pub(crate) mod simd;
pub(crate) mod softmax;
pub(crate) mod swiglu;
