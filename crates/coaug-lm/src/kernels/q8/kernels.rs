//! Integer dot products of one quantized weight row with one quantized input row, at the
//! widest instructions this CPU has. Each returns the same value up to f32 summation order:
//! the per-block products are exact integers.
//!
//! Layouts (see `Q4Matrix`, `Q8Matrix`, `Q8Rows`): blocks of 32 inputs, an even number per
//! row; a Q4 row holds 32 bytes per pair of blocks, byte `i` carrying input `i` of the
//! first block in its low nibble and input `i` of the second in its high one.

use super::BLOCK;
use crate::kernels::simd::{simd_level, SimdLevel};

/// Instructions the dot products may use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum DotLevel {
    Scalar,
    /// `vpmaddubsw` on 256-bit vectors.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// `vpdpbusd` on 512-bit vectors: a pair of blocks per instruction.
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

/// The widest level of [`simd_level`]'s choice (which honours `COAUG_NO_SIMD_DISPATCH`) with
/// the integer instructions a kernel needs.
pub(crate) fn dot_level() -> DotLevel {
    match simd_level() {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx2") => DotLevel::Avx512Vnni,
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 | SimdLevel::Avx2 if is_x86_feature_detected!("avx2") => DotLevel::Avx2,
        _ => DotLevel::Scalar,
    }
}

/// Every level this CPU can run, for tests.
#[cfg(test)]
pub(crate) fn levels_of_this_cpu() -> Vec<DotLevel> {
    let mut levels = vec![DotLevel::Scalar];
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            levels.push(DotLevel::Avx2);
        }
        if dot_level() == DotLevel::Avx512Vnni {
            levels.push(DotLevel::Avx512Vnni);
        }
    }
    levels
}

/// One Q4_1 weight row and one input row.
pub(crate) struct Q4Row<'a> {
    pub nibbles: &'a [u8],
    pub d: &'a [f32],
    pub m: &'a [f32],
}

/// One Q8 weight row (signed, `-127..=127`) and its block scales.
pub(crate) struct Q8Row<'a> {
    pub quants: &'a [i8],
    pub scales: &'a [f32],
}

/// One quantized input row.
pub(crate) struct InputRow<'a> {
    pub q: &'a [i8],
    pub d: &'a [f32],
    /// Sum of each block's (quantized) inputs: what a Q4_1 offset multiplies.
    pub sum: &'a [f32],
    /// `-128 ×` the sum of each block's 8-bit values (what biasing the weights adds).
    pub neg_bias: &'a [i32],
}

pub(crate) fn q4_dot(level: DotLevel, w: &Q4Row, x: &InputRow) -> f32 {
    let blocks = x.d.len();
    assert!(
        blocks.is_multiple_of(2)
            && w.d.len() == blocks
            && w.m.len() == blocks
            && w.nibbles.len() == blocks * 16
            && x.q.len() == blocks * BLOCK
    );
    match level {
        // SAFETY: `dot_level` detected these instructions; the lengths were checked above.
        #[cfg(target_arch = "x86_64")]
        DotLevel::Avx512Vnni => unsafe { x86::q4_vnni(w, x) },
        #[cfg(target_arch = "x86_64")]
        DotLevel::Avx2 => unsafe { x86::q4_avx2(w, x) },
        DotLevel::Scalar => q4_scalar(w, x),
    }
}

pub(crate) fn q8_dot(level: DotLevel, w: &Q8Row, x: &InputRow) -> f32 {
    let blocks = x.d.len();
    assert!(blocks.is_multiple_of(2) && w.scales.len() == blocks && w.quants.len() == blocks * BLOCK && x.q.len() == blocks * BLOCK);
    match level {
        // SAFETY: as in `q4_dot`.
        #[cfg(target_arch = "x86_64")]
        DotLevel::Avx512Vnni => unsafe { x86::q8_vnni(w, x) },
        #[cfg(target_arch = "x86_64")]
        DotLevel::Avx2 => unsafe { x86::q8_avx2(w, x) },
        DotLevel::Scalar => q8_scalar(w, x),
    }
}

/// `Σ m_b · sum_b`: the offsets' share of a Q4_1 product.
#[inline(always)]
fn f32_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = a.chunks_exact(8).zip(b.chunks_exact(8));
    for (x, y) in &mut chunks {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail = a.len() / 8 * 8;
    acc.iter().sum::<f32>() + a[tail..].iter().zip(&b[tail..]).map(|(x, y)| x * y).sum::<f32>()
}

fn q4_scalar(w: &Q4Row, x: &InputRow) -> f32 {
    let mut acc = 0f32;
    for (p, n) in w.nibbles.chunks_exact(BLOCK).enumerate() {
        let (xa, xb) = x.q[p * 2 * BLOCK..(p + 1) * 2 * BLOCK].split_at(BLOCK);
        let (mut sa, mut sb) = (0i32, 0i32);
        for i in 0..BLOCK {
            sa += (n[i] & 0x0F) as i32 * xa[i] as i32;
            sb += (n[i] >> 4) as i32 * xb[i] as i32;
        }
        acc += w.d[2 * p] * x.d[2 * p] * sa as f32 + w.d[2 * p + 1] * x.d[2 * p + 1] * sb as f32;
    }
    acc + f32_dot(w.m, x.sum)
}

fn q8_scalar(w: &Q8Row, x: &InputRow) -> f32 {
    let mut acc = 0f32;
    for (b, (wb, xb)) in w.quants.chunks_exact(BLOCK).zip(x.q.chunks_exact(BLOCK)).enumerate() {
        let s: i32 = wb.iter().zip(xb).map(|(&a, &c)| a as i32 * c as i32).sum();
        acc += w.scales[b] * x.d[b] * s as f32;
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{f32_dot, InputRow, Q4Row, Q8Row, BLOCK};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Sums of 16 products `u8 × i8` into 8 `i32` lanes.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn madd_u8_i8(u: __m256i, s: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    }

    // SAFETY (all kernels): callers check that every slice holds `blocks` blocks.

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn q4_avx2(w: &Q4Row, x: &InputRow) -> f32 {
        let mask = _mm256_set1_epi8(0x0F);
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (nib, xq, wd, xd) = (w.nibbles.as_ptr(), x.q.as_ptr(), w.d.as_ptr(), x.d.as_ptr());
        for p in 0..x.d.len() / 2 {
            let n = _mm256_loadu_si256(nib.add(p * 32) as *const __m256i);
            let lo = _mm256_and_si256(n, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(n), mask);
            let xa = _mm256_loadu_si256(xq.add(p * 64) as *const __m256i);
            let xb = _mm256_loadu_si256(xq.add(p * 64 + 32) as *const __m256i);
            let (a, b) = (2 * p, 2 * p + 1);
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(madd_u8_i8(lo, xa)), _mm256_set1_ps(*wd.add(a) * *xd.add(a)), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(madd_u8_i8(hi, xb)), _mm256_set1_ps(*wd.add(b) * *xd.add(b)), acc1);
        }
        hsum256(_mm256_add_ps(acc0, acc1)) + f32_dot(w.m, x.sum)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn q8_avx2(w: &Q8Row, x: &InputRow) -> f32 {
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (wq, xq, ws, xd) = (w.quants.as_ptr(), x.q.as_ptr(), w.scales.as_ptr(), x.d.as_ptr());
        let block = |b: usize| {
            let wv = _mm256_loadu_si256(wq.add(b * BLOCK) as *const __m256i);
            let xv = _mm256_loadu_si256(xq.add(b * BLOCK) as *const __m256i);
            // |w| · (x with w's sign): `maddubs` wants its first operand unsigned.
            let s = madd_u8_i8(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
            (_mm256_cvtepi32_ps(s), _mm256_set1_ps(*ws.add(b) * *xd.add(b)))
        };
        for p in 0..x.d.len() / 2 {
            let (s, d) = block(2 * p);
            acc0 = _mm256_fmadd_ps(s, d, acc0);
            let (s, d) = block(2 * p + 1);
            acc1 = _mm256_fmadd_ps(s, d, acc1);
        }
        hsum256(_mm256_add_ps(acc0, acc1))
    }

    /// Lanes 0–7 from element 0, lanes 8–15 from element 1: one value per block of a pair.
    #[target_feature(enable = "avx512f")]
    unsafe fn pair_index() -> __m512i {
        _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)
    }

    /// `w.d · x.d` of blocks `2p`, `2p + 1`, each across its block's eight lanes.
    #[target_feature(enable = "avx512f")]
    unsafe fn pair_scales(wd: *const f32, xd: *const f32, p: usize, idx: __m512i) -> __m512 {
        let dd = _mm512_mul_ps(_mm512_maskz_loadu_ps(0b11, wd.add(2 * p)), _mm512_maskz_loadu_ps(0b11, xd.add(2 * p)));
        _mm512_permutexvar_ps(idx, dd)
    }

    /// `Σ_p products(p) · scales(p)` over `pairs` pairs of blocks, in two accumulators (the
    /// FMA latency would otherwise chain every pair).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn sum_pairs(pairs: usize, pair: impl Fn(usize) -> (__m512, __m512)) -> (__m512, __m512) {
        let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        for p in (0..pairs / 2).map(|i| 2 * i) {
            let (s, d) = pair(p);
            acc0 = _mm512_fmadd_ps(s, d, acc0);
            let (s, d) = pair(p + 1);
            acc1 = _mm512_fmadd_ps(s, d, acc1);
        }
        if pairs % 2 == 1 {
            let (s, d) = pair(pairs - 1);
            acc0 = _mm512_fmadd_ps(s, d, acc0);
        }
        (acc0, acc1)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    pub(super) unsafe fn q4_vnni(w: &Q4Row, x: &InputRow) -> f32 {
        let mask = _mm256_set1_epi8(0x0F);
        let idx = pair_index();
        let (nib, xq, wd, xd) = (w.nibbles.as_ptr(), x.q.as_ptr(), w.d.as_ptr(), x.d.as_ptr());
        let pair = |p: usize| {
            let n = _mm256_loadu_si256(nib.add(p * 32) as *const __m256i);
            let lo = _mm256_and_si256(n, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(n), mask);
            let wv = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
            let xv = _mm512_loadu_si512(xq.add(p * 64) as *const __m512i);
            let s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, xv);
            (_mm512_cvtepi32_ps(s), pair_scales(wd, xd, p, idx))
        };
        let (acc0, mut acc1) = sum_pairs(x.d.len() / 2, pair);
        // The offsets' share, sixteen blocks at a time.
        for c in (0..x.d.len()).step_by(16) {
            let lanes = (1u32 << (x.d.len() - c).min(16)) - 1;
            let m = _mm512_maskz_loadu_ps(lanes as __mmask16, w.m.as_ptr().add(c));
            acc1 = _mm512_fmadd_ps(m, _mm512_maskz_loadu_ps(lanes as __mmask16, x.sum.as_ptr().add(c)), acc1);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    pub(super) unsafe fn q8_vnni(w: &Q8Row, x: &InputRow) -> f32 {
        let idx = pair_index();
        // `vpdpbusd` multiplies unsigned by signed: the weights go in biased by 128 (the sign
        // bit flipped), and each block's first lane starts from `-128 Σ x` to take it out.
        let flip = _mm512_set1_epi8(-128);
        let (wq, xq, ws, xd, bias) = (w.quants.as_ptr(), x.q.as_ptr(), w.scales.as_ptr(), x.d.as_ptr(), x.neg_bias.as_ptr());
        let pair = |p: usize| {
            let wv = _mm512_xor_si512(_mm512_loadu_si512(wq.add(p * 64) as *const __m512i), flip);
            let xv = _mm512_loadu_si512(xq.add(p * 64) as *const __m512i);
            let start = _mm512_maskz_permutexvar_epi32(0x0101, idx, _mm512_maskz_loadu_epi32(0b11, bias.add(2 * p)));
            let s = _mm512_dpbusd_epi32(start, wv, xv);
            (_mm512_cvtepi32_ps(s), pair_scales(ws, xd, p, idx))
        };
        let (acc0, acc1) = sum_pairs(x.d.len() / 2, pair);
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }
}
