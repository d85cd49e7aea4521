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

/// A matrix read from a slice: element (i, j) at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatRef<'a> {
    pub(crate) fn strided(data: &'a [f32], (rows, cols): (usize, usize), (rs, cs): (usize, usize)) -> Self {
        check_reach(data.len(), rows, cols, rs, cs);
        Self { data, rows, cols, rs, cs }
    }

    pub(crate) fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, (rows, cols), (cols, 1))
    }

    /// The transpose of the row-major `(cols, rows)` matrix in `data`, read in place.
    pub(crate) fn transpose_of(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, (rows, cols), (1, rows))
    }
}

/// A matrix written into a slice, element (i, j) at `data[i·rs + j·cs]`; distinct elements
/// never share a place, so the product's threads never write the same one.
pub(crate) struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatMut<'a> {
    pub(crate) fn strided(data: &'a mut [f32], (rows, cols): (usize, usize), (rs, cs): (usize, usize)) -> Self {
        check_reach(data.len(), rows, cols, rs, cs);
        let apart = (cs >= 1 && rs >= cols * cs)
            || (rs >= 1 && cs >= rows * rs)
            || rows.min(cols) == 0
            || (rows == 1 && cs >= 1)
            || (cols == 1 && rs >= 1);
        assert!(apart, "strides ({rs}, {cs}) of a ({rows}, {cols}) output overlap");
        Self { data, rows, cols, rs, cs }
    }

    pub(crate) fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, (rows, cols), (cols, 1))
    }
}

/// Panics unless a `(rows, cols)` matrix with strides `(rs, cs)` fits in `len` elements: a bug at
/// the call site, not a data error.
fn check_reach(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) {
    let reach = if rows == 0 || cols == 0 { 0 } else { (rows - 1) * rs + (cols - 1) * cs + 1 };
    assert!(reach <= len, "a ({rows}, {cols}) matrix with strides ({rs}, {cs}) overruns {len} elements");
}

/// `dst = lhs · rhs`, the safe face of [`gemm_f32`]: every extent was checked against its slice
/// when the views were made, and the shapes are checked here.
pub(crate) fn matmul(threads: Threads, dst: MatMut<'_>, lhs: MatRef<'_>, rhs: MatRef<'_>) {
    product(threads, false, dst, lhs, rhs)
}

/// `dst += lhs · rhs` on all threads: an output projection added straight onto the residual rows.
pub(crate) fn matmul_add(dst: MatMut<'_>, lhs: MatRef<'_>, rhs: MatRef<'_>) {
    product(Threads::All, true, dst, lhs, rhs)
}

fn product(threads: Threads, accumulate: bool, dst: MatMut<'_>, lhs: MatRef<'_>, rhs: MatRef<'_>) {
    assert!(
        lhs.rows == dst.rows && rhs.cols == dst.cols && lhs.cols == rhs.rows,
        "({}, {}) · ({}, {}) into ({}, {})",
        lhs.rows,
        lhs.cols,
        rhs.rows,
        rhs.cols,
        dst.rows,
        dst.cols
    );
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    // SAFETY: the views hold every element their strides reach, `dst`'s elements are distinct
    // places, and `dst` borrows its slice exclusively, so no operand aliases it.
    unsafe {
        gemm_into(threads, accumulate, m, n, k, dst.data.as_mut_ptr(), dst.rs, dst.cs, lhs.data, lhs.rs, lhs.cs, rhs.data, rhs.rs, rhs.cs)
    }
}

/// `dst (m, n) = lhs (m, k) · rhs (k, n)`, each matrix given by its (row, column) strides.
///
/// Call sites with slices use [`matmul`]; the raw pointer is for the two that cannot hold one:
/// an uninitialised output ([`filled_by`]) and the columns of one output written by several
/// tasks at once (`few_rows_matmul_many`).
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

#[cfg(test)]
mod matmul_tests {
    use super::*;

    fn naive(a: &[f32], (m, k): (usize, usize), b_rows_n_k: &[f32], n: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|l| a[i * k + l] * b_rows_n_k[j * k + l]).sum();
            }
        }
        out
    }

    #[test]
    fn strided_views_multiply_like_the_naive_product() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let want = naive(&a, (m, k), &b, n);
        for threads in [Threads::All, Threads::Caller] {
            let mut got = vec![0f32; m * n];
            matmul(threads, MatMut::row_major(&mut got, m, n), MatRef::row_major(&a, m, k), MatRef::transpose_of(&b, k, n));
            assert!(got.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-5), "{got:?} {want:?}");
            // The same product written column-major.
            let mut cols = vec![0f32; m * n];
            matmul(threads, MatMut::strided(&mut cols, (m, n), (1, m)), MatRef::row_major(&a, m, k), MatRef::transpose_of(&b, k, n));
            assert!((0..m).all(|i| (0..n).all(|j| (cols[j * m + i] - want[i * n + j]).abs() < 1e-5)));
        }
    }

    #[test]
    #[should_panic(expected = "overruns")]
    fn a_view_past_its_slice_is_refused() {
        let data = vec![0f32; 11];
        MatRef::row_major(&data, 3, 4);
    }

    #[test]
    #[should_panic(expected = "overlap")]
    fn an_output_whose_elements_share_places_is_refused() {
        let mut data = vec![0f32; 16];
        MatMut::strided(&mut data, (3, 4), (2, 1));
    }

    #[test]
    #[should_panic(expected = "into")]
    fn mismatched_shapes_are_refused() {
        let (a, b) = (vec![0f32; 6], vec![0f32; 6]);
        let mut out = vec![0f32; 4];
        matmul(Threads::Caller, MatMut::row_major(&mut out, 2, 2), MatRef::row_major(&a, 2, 3), MatRef::row_major(&b, 2, 3));
    }
}
