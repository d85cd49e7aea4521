//! Attention without gradients on raw CPU slices: decoding against a KV cache and prefill.
//!
//! During decoding each step brings one query per sequence. Through candle this is a
//! batched matmul of `rows × kv_heads` tiny matrices, one gemm call (with its thread
//! hand-off) per matrix, plus a bias broadcast and a softmax op: at batch 64 that
//! overhead cost more than the model's projections. Here every (row, kv head) pair is
//! one rayon task that scores its grouped queries against the cached keys, skips
//! masked slots, and mixes the values — no repeated KV heads, no temporaries. A prefill's
//! long query runs go through two small products per head and chunk of queries instead,
//! still inside one task per (row, kv head): the slots no query of a chunk can see are
//! never computed, and the `(rows, heads, t, t)` score, bias and softmax tensors candle's
//! path writes never exist (one 400-token prompt: 716–771 tokens/s against 481–578).

use candle_core::{DType, Device, Result, Storage, Tensor};
use rayon::prelude::*;

use crate::cpu_f32::{gemm_f32, Threads};
use crate::fast_exp;
use crate::simd::{multiversion, simd_level, SimdLevel};

/// A strided 4-d f32 view `(b, heads, slots, head_dim)` with a contiguous last dim.
struct View<'a> {
    data: &'a [f32],
    offset: usize,
    stride: [usize; 3],
}

impl View<'_> {
    #[inline]
    fn vec(&self, b: usize, h: usize, s: usize, d: usize) -> &[f32] {
        let at = self.offset + b * self.stride[0] + h * self.stride[1] + s * self.stride[2];
        &self.data[at..at + d]
    }
}

/// Grouped-query attention of `q` `(b, heads, t, hd)` over `k`, `v`
/// `(b, kv_heads, len, hd)` with additive `bias` `(b, 1, t, len)` (0 or -inf).
/// Returns `(b, heads, t, hd)`, or `None` when the inputs are not f32 on the CPU
/// (the caller then uses the generic path).
pub(crate) fn cached_attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor, scale: f32) -> Result<Option<Tensor>> {
    if !matches!(q.device(), Device::Cpu) || q.dtype() != DType::F32 || k.dtype() != DType::F32 {
        return Ok(None);
    }
    let (b, h, t, hd) = q.dims4()?;
    let (_, kvh, len, _) = k.dims4()?;
    let few_tasks = b * kvh < 4 * rayon::current_num_threads();
    if h % kvh != 0 {
        return Ok(None);
    }
    let rep = h / kvh;
    let q = q.contiguous()?;
    let bias = bias.contiguous()?;
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (bs, bl) = bias.storage_and_layout();
    let (Storage::Cpu(qs), Storage::Cpu(ks), Storage::Cpu(vs), Storage::Cpu(bs)) = (&*qs, &*ks, &*vs, &*bs) else {
        return Ok(None);
    };
    if kl.stride()[3] != 1 || vl.stride()[3] != 1 {
        return Ok(None);
    }
    let kview = View { data: ks.as_slice::<f32>()?, offset: kl.start_offset(), stride: [kl.stride()[0], kl.stride()[1], kl.stride()[2]] };
    let vview = View { data: vs.as_slice::<f32>()?, offset: vl.start_offset(), stride: [vl.stride()[0], vl.stride()[1], vl.stride()[2]] };
    let qdata = &qs.as_slice::<f32>()?[ql.start_offset()..];
    let bdata = &bs.as_slice::<f32>()?[bl.start_offset()..];

    let mut out = vec![0f32; b * h * t * hd];
    let level = simd_level();
    let job = Attention { h, rep, t, hd, len, qdata, bdata, k: kview, v: vview, scale, level };
    // One task per (row, kv head): its `rep * t` query vectors are adjacent in `out`, and its
    // keys and values are read once for the group. Too few such tasks for the threads (one
    // sequence has 3) and each query head is a task of its own instead.
    let heads_per_task = if few_tasks || rep > MAX_GROUP { 1 } else { rep };
    let scratch = if t > BY_PRODUCTS_ABOVE { QUERY_CHUNK * len } else { heads_per_task * len };
    out.par_chunks_mut(heads_per_task * t * hd).enumerate().for_each_init(
        || vec![0f32; scratch],
        |scores, (task, dst)| {
            let first_head = task * heads_per_task;
            let (row, head) = (first_head / h, first_head % h);
            let task = Task { row, group: head / rep, heads: head % rep..head % rep + heads_per_task };
            attend_dispatch(level, &job, &task, dst, scores)
        },
    );
    Ok(Some(Tensor::from_vec(out, (b, h, t, hd), q.device())?))
}

/// Query heads `heads` (within the group) of kv head `group` of sequence `row`.
struct Task {
    row: usize,
    group: usize,
    heads: std::ops::Range<usize>,
}

/// One call's inputs: queries `(b, h, t, hd)` and bias `(b, 1, t, len)` contiguous, keys and
/// values as strided views, `rep` query heads per kv head.
struct Attention<'a> {
    h: usize,
    rep: usize,
    t: usize,
    hd: usize,
    len: usize,
    qdata: &'a [f32],
    bdata: &'a [f32],
    k: View<'a>,
    v: View<'a>,
    scale: f32,
    level: SimdLevel,
}

impl Attention<'_> {
    /// The queries of one task against its keys and values; `dst` holds the task's heads'
    /// outputs, `scores` one row of `len` per head. Every cached key and value row is loaded
    /// once for all the task's heads, and only the slots between the first and last unmasked
    /// one are visited (left padding and a prefill's causal future are skipped).
    #[inline(always)]
    fn attend(&self, task: &Task, dst: &mut [f32], scores: &mut [f32]) {
        let Attention { h, rep, t, hd, len, qdata, bdata, scale, .. } = *self;
        let (row, g) = (task.row, task.group);
        let nh = task.heads.len();
        let first_head = g * rep + task.heads.start;
        // `dst` comes zeroed: fully masked queries keep that, the portable loops add into it.
        if t > BY_PRODUCTS_ABOVE {
            return self.attend_by_products(task, dst, scores);
        }
        for i in 0..t {
            let brow = &bdata[(row * t + i) * len..][..len];
            let Some(lo) = brow.iter().position(|&b| b != f32::NEG_INFINITY) else {
                continue; // fully masked query: its output is never read
            };
            let hi = len - brow.iter().rev().position(|&b| b != f32::NEG_INFINITY).expect("one slot is unmasked");
            let query = |r: usize| &qdata[((row * h + first_head + r) * t + i) * hd..][..hd];
            #[cfg(target_arch = "x86_64")]
            if self.level == SimdLevel::Avx512 && hd % 16 == 0 && hd <= 128 {
                for r in 0..nh {
                    let sc = &mut scores[r * len..][..len];
                    // SAFETY: AVX-512 was detected (`level`); `hd` is a multiple of 16.
                    unsafe { avx512::scores(query(r), &self.k, row, g, lo..hi, scale, brow, sc) };
                    let sc = &mut sc[lo..hi];
                    let max = sc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let inv = 1.0 / softmax_numerators(sc, max);
                    let o = &mut dst[(r * t + i) * hd..][..hd];
                    // SAFETY: as above.
                    unsafe { avx512::mix_values(&scores[r * len..][..len], &self.v, row, g, lo..hi, inv, o) };
                }
                continue;
            }
            for s in lo..hi {
                let k = self.k.vec(row, g, s, hd);
                for r in 0..nh {
                    scores[r * len + s] = dot(query(r), k) * scale + brow[s];
                }
            }
            let mut inv = [0f32; MAX_GROUP];
            for r in 0..nh {
                let sc = &mut scores[r * len + lo..r * len + hi];
                let max = sc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                inv[r] = 1.0 / softmax_numerators(sc, max);
            }
            for s in lo..hi {
                let v = self.v.vec(row, g, s, hd);
                for r in 0..nh {
                    axpy(scores[r * len + s], v, &mut dst[(r * t + i) * hd..][..hd]);
                }
            }
            for r in 0..nh {
                dst[(r * t + i) * hd..][..hd].iter_mut().for_each(|x| *x *= inv[r]);
            }
        }
    }

    /// A prefill's long query runs as matrix products: per head and chunk of queries, the
    /// scores against the slots the chunk can see in one product, the softmax in place, and
    /// the weighted values in a second product. Per (query, slot) pair that is an FMA lane
    /// where the one-query kernel above needs a horizontal sum: 4× its speed on 300-token
    /// prompts, while the chunking keeps the causal waste near 1/(2·chunks).
    #[inline(always)]
    fn attend_by_products(&self, task: &Task, dst: &mut [f32], scores: &mut [f32]) {
        let Attention { h, rep, t, hd, len, qdata, bdata, scale, .. } = *self;
        let (row, g) = (task.row, task.group);
        let (kd, vd) = (self.k.stride[2], self.v.stride[2]);
        let kbase = &self.k.data[self.k.offset + row * self.k.stride[0] + g * self.k.stride[1]..];
        let vbase = &self.v.data[self.v.offset + row * self.v.stride[0] + g * self.v.stride[1]..];
        for (ri, r) in task.heads.clone().enumerate() {
            let head = g * rep + r;
            for i0 in (0..t).step_by(QUERY_CHUNK) {
                let m = QUERY_CHUNK.min(t - i0);
                let bias = &bdata[(row * t + i0) * len..][..m * len];
                let unmasked = |b: &[f32]| b.iter().position(|&x| x != f32::NEG_INFINITY);
                let lo = bias.chunks_exact(len).filter_map(unmasked).min();
                let hi = bias.chunks_exact(len).filter_map(|b| b.iter().rposition(|&x| x != f32::NEG_INFINITY)).max();
                let (Some(lo), Some(hi)) = (lo, hi) else { continue };
                let n = hi + 1 - lo;
                let q = &qdata[((row * h + head) * t + i0) * hd..][..m * hd];
                let sc = &mut scores[..m * n];
                // SAFETY: q is (m, hd) row-major; key s of the group starts at s·kd in `kbase`
                // (slots lo..=hi exist); `sc` holds (m, n).
                unsafe { gemm_f32(Threads::Caller, m, n, hd, sc.as_mut_ptr(), n, 1, q, hd, 1, &kbase[lo * kd..], 1, kd) };
                let mut inv = [0f32; QUERY_CHUNK];
                for (i, srow) in sc.chunks_exact_mut(n).enumerate() {
                    let max = scale_bias_max(srow, &bias[i * len + lo..][..n], scale);
                    // A fully masked query keeps zeros: its output is never read.
                    inv[i] = if max == f32::NEG_INFINITY { 0.0 } else { 1.0 / softmax_numerators(srow, max) };
                }
                let o = &mut dst[(ri * t + i0) * hd..][..m * hd];
                // SAFETY: the weights are (m, n), value s of the group starts at s·vd in
                // `vbase`, and `o` holds (m, hd).
                unsafe { gemm_f32(Threads::Caller, m, hd, n, o.as_mut_ptr(), hd, 1, sc, n, 1, &vbase[lo * vd..], vd, 1) };
                for (orow, &f) in o.chunks_exact_mut(hd).zip(&inv) {
                    orow.iter_mut().for_each(|x| *x *= f);
                }
            }
        }
    }
}

/// Query runs longer than this (prefills) go through [`Attention::attend_by_products`].
const BY_PRODUCTS_ABOVE: usize = 8;
/// Queries per product in a prefill.
const QUERY_CHUNK: usize = 64;

/// Query heads one task may hold; a model whose kv heads serve more is split by head.
const MAX_GROUP: usize = 16;

// For a prefill's long query runs the dot products are compute-bound: AVX-512 pays.
multiversion!(Attention<'_>, attend, attend_avx2, attend_avx512, attend_dispatch(task: &Task, dst: &mut [f32], scores: &mut [f32]));

/// `x = x · scale + bias` for a row of scores; returns its maximum (16 lanes: `f32::max` in
/// one running value would be a serial chain).
#[inline(always)]
fn scale_bias_max(xs: &mut [f32], bias: &[f32], scale: f32) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let mut chunks = xs.chunks_exact_mut(16);
    let mut bchunks = bias.chunks_exact(16);
    for (c, b) in (&mut chunks).zip(&mut bchunks) {
        for j in 0..16 {
            c[j] = c[j] * scale + b[j];
            acc[j] = if c[j] > acc[j] { c[j] } else { acc[j] };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for (x, &b) in chunks.into_remainder().iter_mut().zip(bchunks.remainder()) {
        *x = *x * scale + b;
        max = max.max(*x);
    }
    acc.into_iter().fold(max, f32::max)
}

/// Replaces each score by `exp(score - max)` (0 where masked) and returns their sum.
#[inline(always)]
fn softmax_numerators(sc: &mut [f32], max: f32) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = sc.chunks_exact_mut(16);
    for c in &mut chunks {
        for j in 0..16 {
            let p = if c[j] == f32::NEG_INFINITY { 0.0 } else { fast_exp::exp(c[j] - max) };
            c[j] = p;
            acc[j] += p;
        }
    }
    let mut sum = 0f32;
    for x in chunks.into_remainder() {
        *x = if *x == f32::NEG_INFINITY { 0.0 } else { fast_exp::exp(*x - max) };
        sum += *x;
    }
    sum + fast_exp::tree_sum(acc)
}

/// Dot product in 16 independent lanes, summed as a tree, so it stays in vector registers.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ac, ar) = a.split_at(a.len() / 16 * 16);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(16).zip(bc.chunks_exact(16)) {
        for j in 0..16 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut s = fast_exp::tree_sum(acc);
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

/// The AVX-512 inner loops for head sizes that are multiples of 16: a query (or output)
/// row lives in at most eight registers while the cached rows stream past.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::View;

    /// `out[s] = q · kₛ · scale + bias[s]` for `s` in `slots`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn scores(q: &[f32], k: &View, row: usize, g: usize, slots: Range<usize>, scale: f32, bias: &[f32], out: &mut [f32]) {
        match q.len() / 16 {
            1 => scores_n::<1>(q, k, row, g, slots, scale, bias, out),
            2 => scores_n::<2>(q, k, row, g, slots, scale, bias, out),
            4 => scores_n::<4>(q, k, row, g, slots, scale, bias, out),
            8 => scores_n::<8>(q, k, row, g, slots, scale, bias, out),
            c => scores_n_dyn(c, q, k, row, g, slots, scale, bias, out),
        }
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn scores_n<const CH: usize>(q: &[f32], k: &View, row: usize, g: usize, slots: Range<usize>, scale: f32, bias: &[f32], out: &mut [f32]) {
        let qr: [__m512; CH] = std::array::from_fn(|c| _mm512_loadu_ps(q[c * 16..].as_ptr()));
        let dot = |s: usize| {
            let kv = k.vec(row, g, s, CH * 16).as_ptr();
            let mut acc = _mm512_mul_ps(qr[0], _mm512_loadu_ps(kv));
            for (c, r) in qr.iter().enumerate().skip(1) {
                acc = _mm512_fmadd_ps(*r, _mm512_loadu_ps(kv.add(c * 16)), acc);
            }
            acc
        };
        // Four slots at a time share one horizontal reduction (a full one per slot cost
        // about as much as the products).
        let (scale4, mut s) = (_mm_set1_ps(scale), slots.start);
        while s + 4 <= slots.end {
            let sums = reduce4(dot(s), dot(s + 1), dot(s + 2), dot(s + 3));
            let v = _mm_fmadd_ps(sums, scale4, _mm_loadu_ps(bias[s..s + 4].as_ptr()));
            _mm_storeu_ps(out[s..s + 4].as_mut_ptr(), v);
            s += 4;
        }
        for s in s..slots.end {
            let kv = k.vec(row, g, s, CH * 16).as_ptr();
            let mut acc = _mm512_mul_ps(qr[0], _mm512_loadu_ps(kv));
            for (c, r) in qr.iter().enumerate().skip(1) {
                acc = _mm512_fmadd_ps(*r, _mm512_loadu_ps(kv.add(c * 16)), acc);
            }
            out[s] = _mm512_reduce_add_ps(acc) * scale + bias[s];
        }
    }

    /// `[Σa, Σb, Σc, Σd]` of four 16-lane vectors.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn reduce4(a: __m512, b: __m512, c: __m512, d: __m512) -> __m128 {
        // Per 128-bit lane: pairs of a, b (and c, d) interleaved and added, then the four
        // vectors' partial sums side by side; finally the four lanes added.
        let ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
        let cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
        let lo = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd)));
        let hi = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd)));
        let x = _mm512_add_ps(lo, hi); // lane j of each 128-bit part: [a, b, c, d] partials
        let y = _mm512_add_ps(x, _mm512_shuffle_f32x4::<0b01_00_11_10>(x, x));
        let z = _mm512_add_ps(y, _mm512_shuffle_f32x4::<0b10_11_00_01>(y, y));
        _mm512_castps512_ps128(z)
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn scores_n_dyn(ch: usize, q: &[f32], k: &View, row: usize, g: usize, slots: Range<usize>, scale: f32, bias: &[f32], out: &mut [f32]) {
        for s in slots {
            let kv = k.vec(row, g, s, ch * 16).as_ptr();
            let mut acc = _mm512_setzero_ps();
            for c in 0..ch {
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(q[c * 16..].as_ptr()), _mm512_loadu_ps(kv.add(c * 16)), acc);
            }
            out[s] = _mm512_reduce_add_ps(acc) * scale + bias[s];
        }
    }

    /// `out = inv · Σₛ p[s] · vₛ` over `slots`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn mix_values(p: &[f32], v: &View, row: usize, g: usize, slots: Range<usize>, inv: f32, out: &mut [f32]) {
        match out.len() / 16 {
            1 => mix_n::<1>(p, v, row, g, slots, inv, out),
            2 => mix_n::<2>(p, v, row, g, slots, inv, out),
            4 => mix_n::<4>(p, v, row, g, slots, inv, out),
            8 => mix_n::<8>(p, v, row, g, slots, inv, out),
            _ => {
                let hd = out.len();
                out.fill(0.0);
                for s in slots {
                    super::axpy(p[s], v.vec(row, g, s, hd), out);
                }
                out.iter_mut().for_each(|x| *x *= inv);
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn mix_n<const CH: usize>(p: &[f32], v: &View, row: usize, g: usize, slots: Range<usize>, inv: f32, out: &mut [f32]) {
        let mut acc = [_mm512_setzero_ps(); CH];
        for s in slots {
            let vv = v.vec(row, g, s, CH * 16).as_ptr();
            let w = _mm512_set1_ps(p[s]);
            for (c, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(w, _mm512_loadu_ps(vv.add(c * 16)), *a);
            }
        }
        let inv = _mm512_set1_ps(inv);
        for (c, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(out[c * 16..].as_mut_ptr(), _mm512_mul_ps(*a, inv));
        }
    }
}

#[inline(always)]
fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::ops;

    #[test]
    fn equals_candles_masked_softmax_attention_for_long_query_runs() {
        // One sequence decoding (a task per query head), eight prefilling (a task per kv head).
        // Head sizes with a register-resident AVX-512 path (16, 64), one without (48), and one
        // that is not a multiple of 16 (the portable loops everywhere).
        for hd in [16, 64, 48, 20] {
            // Decoding, a short run, and prefills of one and of two query chunks (many tasks, and one
            // sequence's: a task per query head).
            for (b, t) in [(1, 1), (1, 3), (8, 9), (4, QUERY_CHUNK + 7), (1, QUERY_CHUNK + 7)] {
                case(b, t, hd);
            }
        }
    }

    fn case(b: usize, t: usize, hd: usize) {
        let dev = Device::Cpu;
        let (h, kvh, len) = (6, 2, t + 6);
        let q = Tensor::randn(0f32, 1.0, (b, h, t, hd), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (b, kvh, len, hd), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (b, kvh, len, hd), &dev).unwrap();
        // Causal over the last `t` slots, the first slot of odd rows padded out.
        let bias: Vec<f32> = (0..b * t * len)
            .map(|i| {
                let (row, qi, s) = (i / (t * len), (i / len) % t, i % len);
                if s > len - t + qi || (row % 2 == 1 && s == 0) { f32::NEG_INFINITY } else { 0.0 }
            })
            .collect();
        let bias = Tensor::from_vec(bias, (b, 1, t, len), &dev).unwrap();
        let scale = 0.25f32;
        let got = cached_attention(&q, &k, &v, &bias, scale).unwrap().expect("f32 on the CPU");
        let rep = h / kvh;
        let kr = k.unsqueeze(2).unwrap().expand((b, kvh, rep, len, hd)).unwrap().reshape((b, h, len, hd)).unwrap();
        let vr = v.unsqueeze(2).unwrap().expand((b, kvh, rep, len, hd)).unwrap().reshape((b, h, len, hd)).unwrap();
        let scores = ((q.matmul(&kr.t().unwrap()).unwrap() * scale as f64).unwrap().broadcast_add(&bias)).unwrap();
        let want = ops::softmax_last_dim(&scores).unwrap().matmul(&vr).unwrap();
        let d = crate::cpu_f32::max_abs_diff(&got, &want);
        assert!(d < 1e-5, "max difference {d}");
    }
}
