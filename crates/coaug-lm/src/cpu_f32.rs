//! Raw f32 slices of CPU tensors, for the hand-written ops' forward and backward passes.

use candle_core::{CpuStorage, Layout, Result, Storage, Tensor};

/// The contiguous f32 data a custom op's `cpu_fwd` receives.
pub(crate) fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("fused op needs a contiguous input");
    };
    Ok(&storage.as_slice::<f32>()?[start..end])
}

/// Runs `f` on `t`'s f32 data (made contiguous first), as a backward pass needs.
pub(crate) fn with_f32_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("fused op: tensor left the CPU");
    };
    f(contiguous_f32(cpu, layout)?)
}

/// Largest absolute difference between two tensors of one shape.
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Gradients of `sum(y ⊙ probe)`: a random linear read-out to compare backward passes by.
#[cfg(test)]
pub(crate) fn probe_grads(y: &Tensor, probe: &Tensor) -> candle_core::backprop::GradStore {
    (y * probe).unwrap().sum_all().unwrap().backward().unwrap()
}
