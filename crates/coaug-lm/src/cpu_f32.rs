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
    with_f32_slices(&[t], |s| f(s[0]))
}

/// [`with_f32_slice`] for several tensors at once.
pub(crate) fn with_f32_slices<R>(ts: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
    let ts: Vec<Tensor> = ts.iter().map(|t| t.contiguous()).collect::<Result<_>>()?;
    let held: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let slices = held
        .iter()
        .map(|(storage, layout)| match &**storage {
            Storage::Cpu(cpu) => contiguous_f32(cpu, layout),
            _ => candle_core::bail!("fused op: tensor left the CPU"),
        })
        .collect::<Result<Vec<_>>>()?;
    f(&slices)
}

/// Where a product runs: split over all of rayon's threads, or on the calling thread only
/// (a product inside a parallel task).
#[derive(Clone, Copy)]
pub(crate) enum Threads {
    All,
    Caller,
}

/// `dst (m, n) = lhs (m, k) · rhs (k, n)`, each matrix given by its (row, column) strides.
///
/// # Safety
/// `dst` and the slices must hold every element the strides reach.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_f32(
    threads: Threads,
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
    // SAFETY: the caller's contract.
    unsafe { gemm_into(threads, false, m, n, k, dst, dst_rs, dst_cs, lhs, lhs_rs, lhs_cs, rhs, rhs_rs, rhs_cs) }
}

/// `dst (m, n) += lhs (m, k) · rhs_stored (n, k)ᵀ` on all threads, every matrix row-major:
/// an output projection added straight onto the residual rows in `dst`.
///
/// # Safety
/// `dst` holds `m · n` elements; `lhs` `m · k`, `rhs_stored` `n · k`.
pub(crate) unsafe fn gemm_f32_acc(m: usize, n: usize, k: usize, dst: *mut f32, lhs: &[f32], rhs_stored: &[f32]) {
    // SAFETY: the caller's contract; the transpose of `rhs_stored` (n, k) is (k, n) with
    // row stride 1 and column stride k.
    unsafe { gemm_into(Threads::All, true, m, n, k, dst, n, 1, lhs, k, 1, rhs_stored, 1, k) }
}

/// [`gemm_f32`], adding the product onto what `dst` holds when `accumulate`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into(
    threads: Threads,
    accumulate: bool,
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
    let parallelism = match threads {
        Threads::All if rayon::current_num_threads() > 1 => gemm::Parallelism::Rayon(rayon::current_num_threads()),
        _ => gemm::Parallelism::None,
    };
    gemm::gemm(
        m,
        n,
        k,
        dst,
        dst_cs as isize,
        dst_rs as isize,
        accumulate,
        lhs.as_ptr(),
        lhs_cs as isize,
        lhs_rs as isize,
        rhs.as_ptr(),
        rhs_cs as isize,
        rhs_rs as isize,
        // dst = alpha·dst + beta·lhs·rhs (alpha only applies when dst is read).
        if accumulate { 1.0 } else { 0.0 },
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
