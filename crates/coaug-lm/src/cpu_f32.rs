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

/// `dst (m, n) = lhs (m, k) · rhs (k, n)`, each matrix given by its (row, column) strides,
/// on all of rayon's threads.
///
/// # Safety
/// `dst` and the slices must hold every element the strides reach.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    dst_cs: usize,
    lhs: &[f32],
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: &[f32],
    rhs_rs: usize,
    rhs_cs: usize,
) {
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    unsafe { gemm_with(parallelism, m, n, k, dst, dst_rs, dst_cs, lhs, lhs_rs, lhs_cs, rhs, rhs_rs, rhs_cs) }
}

/// [`gemm_f32`] on the calling thread only, for products inside a parallel task.
///
/// # Safety
/// As for [`gemm_f32`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_f32_serial(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    dst_cs: usize,
    lhs: &[f32],
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: &[f32],
    rhs_rs: usize,
    rhs_cs: usize,
) {
    unsafe { gemm_with(gemm::Parallelism::None, m, n, k, dst, dst_rs, dst_cs, lhs, lhs_rs, lhs_cs, rhs, rhs_rs, rhs_cs) }
}

#[allow(clippy::too_many_arguments)]
unsafe fn gemm_with(
    parallelism: gemm::Parallelism,
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    dst_cs: usize,
    lhs: &[f32],
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: &[f32],
    rhs_rs: usize,
    rhs_cs: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    debug_assert!(lhs.len() > (m - 1) * lhs_rs + (k.max(1) - 1) * lhs_cs);
    debug_assert!(rhs.len() > (k.max(1) - 1) * rhs_rs + (n - 1) * rhs_cs);
    gemm::gemm(
        m,
        n,
        k,
        dst,
        dst_cs as isize,
        dst_rs as isize,
        false,
        lhs.as_ptr(),
        lhs_cs as isize,
        lhs_rs as isize,
        rhs.as_ptr(),
        rhs_cs as isize,
        rhs_rs as isize,
        0.0,
        1.0,
        false,
        false,
        false,
        parallelism,
    );
}

/// A `(rows, cols)` f32 tensor on the CPU whose data `fill` writes through a raw pointer;
/// it must write every element (gemm without `read_dst` does). Skipping the zero-fill of
/// `vec![0.0; n]` saved a pass over every projection's output (~5% of a prefill).
///
/// # Safety
/// `fill` writes all `rows * cols` elements and reads none before writing it.
pub(crate) unsafe fn filled_by(rows: usize, cols: usize, fill: impl FnOnce(*mut f32)) -> Result<Tensor> {
    let n = rows * cols;
    let mut data: Vec<f32> = Vec::with_capacity(n);
    fill(data.as_mut_ptr());
    // SAFETY: the caller's `fill` initialised all n elements of the capacity.
    unsafe { data.set_len(n) };
    Tensor::from_vec(data, (rows, cols), &candle_core::Device::Cpu)
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
