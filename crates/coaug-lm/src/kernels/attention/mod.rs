//! Attention without gradients on raw CPU slices: decoding against a KV cache and prefill.
//!
//! During decoding each step brings one query per sequence. Through candle this is a
//! batched matmul of `rows × kv_heads` tiny matrices, one gemm call (with its thread
//! hand-off) per matrix, plus a bias broadcast and a softmax op: at batch 64 that
//! overhead cost more than the model's projections. Here every (row, kv head) pair is
//! one rayon task that scores its grouped queries against the cached keys, skips
//! masked slots, and mixes the values — no repeated KV heads, no temporaries. A prefill's
//! long query runs go through two small products per chunk of queries instead, still inside
//! one task per (row, kv head): the slots no query of a chunk can see are never computed,
//! and the `(rows, heads, t, t)` score, bias and softmax tensors candle's path writes never
//! exist (one 400-token prompt: 716–771 tokens/s against 481–578).
//!
//! Around it, the layout changes candle's path needs are folded into passes that happen
//! anyway: the rotary embedding writes the queries straight into the grouped layout
//! [`GroupedQueries`], and the new keys (rotated) and values straight into the cache
//! ([`store_rows`]), in the cache's dtype; the attention writes its output in the
//! `(rows, t, heads·hd)` order the output projection reads. Each of those was a strided copy
//! of its own (~5% of a prefill).

use candle_core::{CpuStorage, DType, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

use crate::kernels::cpu_f32::{gemm_f32, matmul, MatMut, MatRef, Threads};
use crate::kernels::fast_exp;
use crate::kernels::simd::{simd_level, SimdLevel};
/// The AVX-512 inner loops for head sizes that are multiples of 16.
#[cfg(target_arch = "x86_64")]
mod avx512;
mod kv;
mod layout;

pub(crate) use kv::{head_dim, slot_len, KvElem, Q8};
pub(crate) use layout::{group_queries, store_rows, GroupedQueries};

/// Grouped-query attention of `q` over keys and values `(b, kv_heads, len, slot)` (f32, or a
/// cache's f16 or 8-bit slots, see [`KvElem`]) with additive `bias` `(b, 1, t, len)` (0 or -inf). Returns `(b, t, heads·hd)`,
/// or `None` when the inputs are not on this path (the caller then uses the generic one).
pub(crate) fn attend(q: &GroupedQueries, k: &Tensor, v: &Tensor, bias: &Tensor, scale: f32) -> Result<Option<Tensor>> {
    if !k.device().is_cpu() || k.dtype() != v.dtype() || bias.dtype() != DType::F32 {
        return Ok(None);
    }
    let (b, kvh, len, slot) = k.dims4()?;
    let hd = head_dim(k.dtype(), slot);
    if (b, kvh, hd) != (q.b, q.kvh, q.hd) || v.dims() != k.dims() || bias.dims() != [b, 1, q.t, len] {
        return Ok(None);
    }
    // Slots of a (row, kv head) must be adjacent.
    let packed = |x: &Tensor| -> Result<Tensor> {
        let s = x.stride();
        if s[3] == 1 && s[2] == slot {
            Ok(x.clone())
        } else {
            x.contiguous()
        }
    };
    let (k, v, bias) = (packed(k)?, packed(v)?, bias.contiguous()?);
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (bs, bl) = bias.storage_and_layout();
    let (Storage::Cpu(ks), Storage::Cpu(vs), Storage::Cpu(bs)) = (&*ks, &*vs, &*bs) else {
        return Ok(None);
    };
    let bias = &bs.as_slice::<f32>()?[bl.start_offset()..][..b * q.t * len];
    let shape = Shape { b, kvh, len, hd, t: q.t, rep: q.rep };
    let out = match (ks, vs) {
        (CpuStorage::F32(kd), CpuStorage::F32(vd)) => run(q, Slots::new(kd, kl), Slots::new(vd, vl), bias, &shape, scale),
        (CpuStorage::F16(kd), CpuStorage::F16(vd)) => run(q, Slots::new(kd, kl), Slots::new(vd, vl), bias, &shape, scale),
        (CpuStorage::U8(kd), CpuStorage::U8(vd)) => run::<Q8>(q, Slots::new(kd, kl), Slots::new(vd, vl), bias, &shape, scale),
        _ => return Ok(None),
    };
    Ok(Some(Tensor::from_vec(out, (b, q.t, q.kvh * q.rep * hd), k.device())?))
}

#[derive(Clone, Copy)]
struct Shape {
    b: usize,
    kvh: usize,
    len: usize,
    hd: usize,
    t: usize,
    rep: usize,
}

/// Keys or values `(b, kv_heads, len, slot)` whose slots are adjacent.
#[derive(Clone, Copy)]
struct Slots<'a, E> {
    data: &'a [E],
    offset: usize,
    row_stride: usize,
    group_stride: usize,
}

impl<'a, E: KvElem> Slots<'a, E> {
    fn new(data: &'a [E], layout: &Layout) -> Self {
        let s = layout.stride();
        Slots { data, offset: layout.start_offset(), row_stride: s[0], group_stride: s[1] }
    }

    /// Slots `0..len` of kv head `g` of sequence `row`.
    #[inline]
    fn group(&self, row: usize, g: usize, len: usize, hd: usize) -> &'a [E] {
        &self.data[self.offset + row * self.row_stride + g * self.group_stride..][..len * E::slot_len(hd)]
    }
}

/// The attention output, shared by tasks that write disjoint head columns of it.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: every task writes only its own (row, head) vectors.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The `hd` outputs of query `i` of sequence `row`, head `head`.
    ///
    /// # Safety
    /// No other live reference covers that vector.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    unsafe fn vec(&self, s: &Shape, row: usize, i: usize, head: usize) -> &mut [f32] {
        let heads = s.kvh * s.rep;
        // SAFETY: in bounds of the `(b, t, heads, hd)` output; exclusive by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(((row * s.t + i) * heads + head) * s.hd), s.hd) }
    }
}

fn run<E: KvElem>(q: &GroupedQueries, k: Slots<E>, v: Slots<E>, bias: &[f32], s: &Shape, scale: f32) -> Vec<f32> {
    let Shape { b, kvh, len, t, rep, hd } = *s;
    // First and one-past-last visible slot of every query (None: fully masked), found once per
    // call for all its heads rather than per head.
    let spans: Vec<Option<(usize, usize)>> = bias
        .chunks_exact(len)
        .map(|r| {
            let lo = r.iter().position(|&x| x != f32::NEG_INFINITY)?;
            Some((lo, len - r.iter().rev().position(|&x| x != f32::NEG_INFINITY).expect("one slot is visible")))
        })
        .collect();
    let mut out = vec![0f32; b * t * kvh * rep * hd];
    let dst = Out(out.as_mut_ptr());
    // One task per (row, kv head); too few of them for the threads (one sequence has 3) and
    // each query head is a task of its own instead.
    let heads_per_task = if b * kvh < 4 * rayon::current_num_threads() || rep > MAX_GROUP { 1 } else { rep };
    let job = Job { q, k, v, bias, spans: &spans, shape: *s, scale, level: simd_level(), dst };
    let tasks = b * kvh * (rep / heads_per_task);
    (0..tasks).into_par_iter().for_each_init(Scratch::default, |scratch, task| {
        let per_group = rep / heads_per_task;
        let (row, g) = (task / per_group / kvh, task / per_group % kvh);
        let first = task % per_group * heads_per_task;
        let task = Task { row, group: g, heads: first..first + heads_per_task };
        attend_dispatch(&job, &task, scratch);
    });
    out
}

/// Query heads `heads` (within the group) of kv head `group` of sequence `row`.
struct Task {
    row: usize,
    group: usize,
    heads: std::ops::Range<usize>,
}

/// A worker's buffers: scores, and keys and values widened to f32 where a path needs them.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    keys: Vec<f32>,
    values: Vec<f32>,
}

/// One call's inputs.
struct Job<'a, E> {
    q: &'a GroupedQueries,
    k: Slots<'a, E>,
    v: Slots<'a, E>,
    bias: &'a [f32],
    spans: &'a [Option<(usize, usize)>],
    shape: Shape,
    scale: f32,
    level: SimdLevel,
    dst: Out,
}

impl<E: KvElem> Job<'_, E> {
    /// Query `i`, head `j` of the group, of sequence `row`.
    #[inline(always)]
    fn query(&self, row: usize, g: usize, i: usize, j: usize) -> &[f32] {
        let Shape { kvh, t, rep, hd, .. } = self.shape;
        &self.q.data[(((row * kvh + g) * t + i) * rep + j) * hd..][..hd]
    }

    /// The queries of one task against its keys and values. Every query only visits the slots
    /// between its first and last visible one (left padding and a prefill's causal future are
    /// skipped).
    #[inline(always)]
    fn attend(&self, task: &Task, scratch: &mut Scratch) {
        let Shape { len, t, rep, hd, .. } = self.shape;
        let (row, g) = (task.row, task.group);
        if t > BY_PRODUCTS_ABOVE {
            return self.attend_by_products(task, scratch);
        }
        let keys = self.k.group(row, g, len, hd);
        let values = self.v.group(row, g, len, hd);
        #[cfg(target_arch = "x86_64")]
        if self.level == SimdLevel::Avx512 && hd % 16 == 0 && hd <= 128 {
            let nh = task.heads.len();
            scratch.scores.resize(nh * len, 0.0);
            for i in 0..t {
                let Some((lo, hi)) = self.spans[row * t + i] else { continue };
                let brow = &self.bias[(row * t + i) * len..][..len];
                // A whole group in one pass over its keys and one over its values: each cached
                // row is loaded (and widened) once for all its query heads.
                if nh == rep && avx512::GROUPED.contains(&(hd, rep)) {
                    let sc = &mut scratch.scores[..rep * len];
                    let q = &self.q.data[(((row * self.shape.kvh + g) * t + i) * rep) * hd..][..rep * hd];
                    // SAFETY: AVX-512 was detected (`level`); (hd, rep) is a grouped kernel's;
                    // the group holds `len` slots of `hd`.
                    unsafe { avx512::scores_grouped(q, keys, hd, rep, lo..hi, self.scale, brow, sc) };
                    let mut inv = [0f32; MAX_GROUP];
                    for (r, srow) in sc.chunks_exact_mut(len).enumerate() {
                        let max = srow[lo..hi].iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        inv[r] = 1.0 / softmax_numerators(&mut srow[lo..hi], max);
                    }
                    // SAFETY: this task owns the group's heads of every query of `row`, whose
                    // outputs are adjacent (heads g·rep..(g + 1)·rep).
                    let o = unsafe { std::slice::from_raw_parts_mut(self.dst.vec(&self.shape, row, i, g * rep).as_mut_ptr(), rep * hd) };
                    // SAFETY: as above.
                    unsafe { avx512::mix_grouped(sc, values, hd, rep, lo..hi, &inv[..rep], o) };
                    continue;
                }
                for j in task.heads.clone() {
                    let sc = &mut scratch.scores[..];
                    // SAFETY: AVX-512 was detected (`level`); `hd` is a multiple of 16 and the
                    // group holds `len` slots of `hd`.
                    unsafe { avx512::scores(self.query(row, g, i, j), keys, hd, lo..hi, self.scale, brow, sc) };
                    let max = sc[lo..hi].iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let inv = 1.0 / softmax_numerators(&mut sc[lo..hi], max);
                    // SAFETY: this task owns head `g·rep + j` of every query of `row`.
                    let o = unsafe { self.dst.vec(&self.shape, row, i, g * rep + j) };
                    // SAFETY: as above.
                    unsafe { avx512::mix_values(sc, values, hd, lo..hi, inv, o) };
                }
            }
            return;
        }
        let Scratch { scores, keys: kbuf, values: vbuf } = scratch;
        let keys = E::as_f32(keys, hd, kbuf);
        let values = E::as_f32(values, hd, vbuf);
        scores.resize(len, 0.0);
        for i in 0..t {
            let Some((lo, hi)) = self.spans[row * t + i] else { continue };
            let brow = &self.bias[(row * t + i) * len..][..len];
            for j in task.heads.clone() {
                let q = self.query(row, g, i, j);
                for s in lo..hi {
                    scores[s] = dot(q, &keys[s * hd..][..hd]) * self.scale + brow[s];
                }
                let max = scores[lo..hi].iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let inv = 1.0 / softmax_numerators(&mut scores[lo..hi], max);
                // SAFETY: this task owns head `g·rep + j` of every query of `row`.
                let o = unsafe { self.dst.vec(&self.shape, row, i, g * rep + j) };
                for s in lo..hi {
                    axpy(scores[s], &values[s * hd..][..hd], o);
                }
                o.iter_mut().for_each(|x| *x *= inv);
            }
        }
    }

    /// A prefill's long query runs as matrix products: per chunk of queries, the scores of all
    /// the task's heads against the slots the chunk can see in one product (the grouped layout
    /// makes the heads' queries one matrix), the softmax in place, and the weighted values in a
    /// second product per head, written straight into the output. Per (query, slot) pair that
    /// is an FMA lane where the one-query kernel above needs a horizontal sum: 4× its speed on
    /// 300-token prompts, while the chunking keeps the causal waste near 1/(2·chunks).
    #[inline(always)]
    fn attend_by_products(&self, task: &Task, scratch: &mut Scratch) {
        let Shape { len, t, rep, hd, .. } = self.shape;
        let (row, g) = (task.row, task.group);
        let nh = task.heads.len();
        let Scratch { scores, keys: kbuf, values: vbuf } = scratch;
        let keys = E::as_f32(self.k.group(row, g, len, hd), hd, kbuf);
        let values = E::as_f32(self.v.group(row, g, len, hd), hd, vbuf);
        // Rows of the query matrix are (position, head): adjacent when the task has the whole
        // group, `rep` apart when it has one head.
        let q_rs = if nh == rep { hd } else { rep * hd };
        for i0 in (0..t).step_by(QUERY_CHUNK) {
            let m = QUERY_CHUNK.min(t - i0);
            let spans = &self.spans[row * t + i0..][..m];
            let (Some(lo), Some(hi)) = (spans.iter().flatten().map(|s| s.0).min(), spans.iter().flatten().map(|s| s.1).max()) else {
                continue;
            };
            let n = hi - lo;
            let rows = m * nh;
            scores.resize(rows * n, 0.0);
            let sc = &mut scores[..rows * n];
            let q = &self.q.data[(((row * self.shape.kvh + g) * t + i0) * rep + task.heads.start) * hd..];
            // Query row r = (position, head) starts at r·q_rs in `q`; slot s of the group at
            // s·hd in `keys`, read as the columns of (hd, n).
            let (qm, km) = (MatRef::strided(q, (rows, hd), (q_rs, 1)), MatRef::transpose_of(&keys[lo * hd..], hd, n));
            matmul(Threads::Caller, MatMut::row_major(sc, rows, n), qm, km);
            let mut inv = [0f32; QUERY_CHUNK * MAX_GROUP];
            for (r, srow) in sc.chunks_exact_mut(n).enumerate() {
                let i = i0 + r / nh;
                let max = scale_bias_max(srow, &self.bias[(row * t + i) * len + lo..][..n], self.scale);
                // A fully masked query keeps zeros: its output is never read.
                inv[r] = if max == f32::NEG_INFINITY { 0.0 } else { 1.0 / softmax_numerators(srow, max) };
            }
            for (jj, j) in task.heads.clone().enumerate() {
                let head = g * rep + j;
                // SAFETY: this task owns head `head` of every query of `row`; the chunk's m
                // output vectors are `heads · hd` apart.
                let o = unsafe { self.dst.vec(&self.shape, row, i0, head) }.as_mut_ptr();
                let o_rs = self.shape.kvh * rep * hd;
                // SAFETY: the weights of head jj are rows jj, jj + nh, … of `sc` (m of them, n
                // wide); value s at s·hd in `values`; output row i at o + i·o_rs, hd wide.
                unsafe { gemm_f32(Threads::Caller, m, hd, n, o, o_rs, 1, &sc[jj * n..], nh * n, 1, &values[lo * hd..], hd, 1) };
                for i in 0..m {
                    let f = inv[i * nh + jj];
                    // SAFETY: as above.
                    let orow = unsafe { std::slice::from_raw_parts_mut(o.add(i * o_rs), hd) };
                    orow.iter_mut().for_each(|x| *x *= f);
                }
            }
        }
    }
}

/// Query runs longer than this (prefills) go through [`Job::attend_by_products`].
const BY_PRODUCTS_ABOVE: usize = 8;
/// Queries per product in a prefill.
const QUERY_CHUNK: usize = 64;

/// Query heads one task may hold; a model whose kv heads serve more is split by head.
const MAX_GROUP: usize = 16;

// The loops above compiled again with wider vector instructions, picked at run time (see
// `simd`; written out because the job is generic over the cache's element type).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend_avx2<E: KvElem>(job: &Job<'_, E>, task: &Task, scratch: &mut Scratch) {
    job.attend(task, scratch)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
unsafe fn attend_avx512<E: KvElem>(job: &Job<'_, E>, task: &Task, scratch: &mut Scratch) {
    job.attend(task, scratch)
}

fn attend_dispatch<E: KvElem>(job: &Job<'_, E>, task: &Task, scratch: &mut Scratch) {
    match job.level {
        // SAFETY: `simd_level` detected these instructions on this CPU (F16C comes with both).
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => unsafe { attend_avx512(job, task, scratch) },
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => unsafe { attend_avx2(job, task, scratch) },
        SimdLevel::Baseline => job.attend(task, scratch),
    }
}

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

#[inline(always)]
fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::{ops, rotary_emb};

    #[test]
    fn equals_candles_masked_softmax_attention_for_long_query_runs() {
        // One sequence decoding (a task per query head), eight prefilling (a task per kv head).
        // Head sizes with a register-resident AVX-512 path (16, 64), one without (48), and one
        // that is not a multiple of 16 (the portable loops everywhere); f32, f16 and 8-bit keys.
        // One thread, so which tasks run does not depend on the machine.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        pool.install(|| {
            for hd in [16, 64, 48, 20] {
                // Decoding one sequence (a task per query head) and eight (a task per kv head),
                // a short run, and prefills of one and of two query chunks (many tasks, and one
                // sequence's).
                for (b, t) in [(1, 1), (8, 1), (1, 3), (8, 3), (8, 9), (4, QUERY_CHUNK + 7), (1, QUERY_CHUNK + 7)] {
                    for dtype in [DType::F32, DType::F16, DType::U8] {
                        // Groups of 3, and of 2 and 4 (the grouped decoding kernels' sizes).
                        for (h, kvh) in [(6, 2), (4, 2), (8, 2)] {
                            case(b, t, hd, h, kvh, dtype);
                        }
                    }
                }
            }
        });
    }

    /// `(b, t, heads·hd)` projections from `(b, heads, t, hd)` vectors.
    fn projections(x: &Tensor) -> Tensor {
        let (b, h, t, hd) = x.dims4().unwrap();
        x.transpose(1, 2).unwrap().contiguous().unwrap().reshape((b, t, h * hd)).unwrap()
    }

    fn case(b: usize, t: usize, hd: usize, h: usize, kvh: usize, dtype: DType) {
        let dev = Device::Cpu;
        let len = t + 6;
        let q = Tensor::randn(0f32, 1.0, (b, h, t, hd), &dev).unwrap();
        // Keys and values stored as a cache of `dtype` holds them.
        let cached = || {
            let x = Tensor::randn(0f32, 1.0, (b, kvh, len, hd), &dev).unwrap();
            let cache = Tensor::zeros((b, kvh, len, slot_len(dtype, hd)), dtype, &dev).unwrap();
            assert!(store_rows(&cache, &projections(&x), None, 0).unwrap());
            cache
        };
        let (k, v) = (cached(), cached());
        // Causal over the last `t` slots, the first slot of odd rows padded out.
        let bias: Vec<f32> = (0..b * t * len)
            .map(|i| {
                let (row, qi, s) = (i / (t * len), (i / len) % t, i % len);
                if s > len - t + qi || (row % 2 == 1 && s == 0) {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let bias = Tensor::from_vec(bias, (b, 1, t, len), &dev).unwrap();
        let scale = 0.25f32;
        // No rotation: cos 1, sin 0.
        let cos = Tensor::ones((b, t, hd / 2), DType::F32, &dev).unwrap();
        let sin = Tensor::zeros((b, t, hd / 2), DType::F32, &dev).unwrap();
        let grouped = group_queries(&projections(&q), &cos, &sin, h, kvh).unwrap().expect("f32 on the CPU");
        let got = attend(&grouped, &k, &v, &bias, scale).unwrap().expect("f32 on the CPU");
        // The reference computes on the values the cache holds.
        let (k, v) = (widened(&k), widened(&v));
        let rep = h / kvh;
        let kr = k.unsqueeze(2).unwrap().expand((b, kvh, rep, len, hd)).unwrap().reshape((b, h, len, hd)).unwrap();
        let vr = v.unsqueeze(2).unwrap().expand((b, kvh, rep, len, hd)).unwrap().reshape((b, h, len, hd)).unwrap();
        let scores = ((q.matmul(&kr.t().unwrap()).unwrap() * scale as f64).unwrap().broadcast_add(&bias)).unwrap();
        let want = projections(&ops::softmax_last_dim(&scores).unwrap().matmul(&vr).unwrap());
        let d = crate::kernels::cpu_f32::max_abs_diff(&got, &want);
        assert!(d < 1e-5, "b {b} t {t} hd {hd} heads {h}/{kvh} {dtype:?}: max difference {d}");
    }

    /// A cache's slots as f32 `(b, kv_heads, len, hd)`.
    fn widened(cache: &Tensor) -> Tensor {
        if cache.dtype() != DType::U8 {
            return cache.to_dtype(DType::F32).unwrap();
        }
        let (b, kvh, len, slot) = cache.dims4().unwrap();
        let hd = head_dim(DType::U8, slot);
        let bytes = cache.flatten_all().unwrap().to_vec1::<u8>().unwrap();
        let mut scratch = Vec::new();
        let values = Q8::as_f32(&bytes, hd, &mut scratch).to_vec();
        Tensor::from_vec(values, (b, kvh, len, hd), &Device::Cpu).unwrap()
    }

    #[test]
    fn eight_bit_slots_round_to_within_half_a_step_of_their_scale() {
        let hd = 64;
        let x: Vec<f32> = (0..hd).map(|i| ((i * 37 % 19) as f32 - 9.0) * 0.173 + if i == 5 { 4.0 } else { 0.0 }).collect();
        let mut slot = vec![0u8; Q8::slot_len(hd)];
        Q8::store(&x, &mut slot);
        let scale = f32::from_le_bytes(slot[hd..].try_into().unwrap());
        let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!((scale - max / 127.0).abs() < 1e-7);
        // SAFETY: `slot` is one whole slot.
        assert_eq!(unsafe { Q8::scale(slot.as_ptr(), hd) }, scale);
        let mut scratch = Vec::new();
        let back = Q8::as_f32(&slot, hd, &mut scratch);
        for (a, b) in x.iter().zip(back) {
            assert!((a - b).abs() <= scale * 0.5 + 1e-6, "{a} came back as {b}");
        }
        // The largest value is exact in its scale (±127 steps), and a zero vector stays zero.
        assert_eq!(back[5], 127.0 * scale);
        Q8::store(&[0.0; 64], &mut slot);
        assert!(Q8::as_f32(&slot, hd, &mut scratch).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn rotated_queries_and_stored_keys_equal_candles_rope() {
        let dev = Device::Cpu;
        let (b, t, h, kvh, hd, past, capacity) = (3, 5, 6, 2, 16, 2, 9);
        let cos = Tensor::randn(0f32, 1.0, (b, t, hd / 2), &dev).unwrap();
        let sin = Tensor::randn(0f32, 1.0, (b, t, hd / 2), &dev).unwrap();
        let q = Tensor::randn(0f32, 1.0, (b, h, t, hd), &dev).unwrap();
        let grouped = group_queries(&projections(&q), &cos, &sin, h, kvh).unwrap().expect("f32 on the CPU");
        // The grouped layout (b, kvh, t, rep, hd) back to (b, h, t, hd).
        let got = Tensor::from_vec(grouped.data, (b, kvh, t, h / kvh, hd), &dev).unwrap();
        let got = got.transpose(2, 3).unwrap().contiguous().unwrap().reshape((b, h, t, hd)).unwrap();
        let want = rotary_emb::rope(&q, &cos, &sin).unwrap();
        assert!(crate::kernels::cpu_f32::max_abs_diff(&got, &want) < 1e-6);

        let k = Tensor::randn(0f32, 1.0, (b, kvh, t, hd), &dev).unwrap();
        let rotated = rotary_emb::rope(&k, &cos, &sin).unwrap();
        for dtype in [DType::F32, DType::F16, DType::U8] {
            let cache = Tensor::zeros((b, kvh, capacity, slot_len(dtype, hd)), dtype, &dev).unwrap();
            assert!(store_rows(&cache, &projections(&k), Some((&cos, &sin)), past).unwrap());
            let cache = widened(&cache);
            let written = cache.narrow(2, past, t).unwrap();
            // 8 bits round to half a step of the largest value over 127.
            let largest = rotated.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            let tol = match dtype {
                DType::F16 => 1e-2,
                DType::U8 => largest / 254.0 + 1e-6,
                _ => 1e-6,
            };
            assert!(crate::kernels::cpu_f32::max_abs_diff(&written, &rotated) < tol, "{dtype:?}");
            let untouched = (
                cache.narrow(2, 0, past).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap(),
                cache.narrow(2, past + t, capacity - past - t).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap(),
            );
            assert_eq!(untouched, (0.0, 0.0), "{dtype:?}: slots outside past..past + t stay as they were");
        }
        // Values: stored as they are.
        let cache = Tensor::zeros((b, kvh, capacity, hd), DType::F32, &dev).unwrap();
        assert!(store_rows(&cache, &projections(&k), None, past).unwrap());
        assert!(crate::kernels::cpu_f32::max_abs_diff(&cache.narrow(2, past, t).unwrap(), &k) == 0.0);
    }
}
