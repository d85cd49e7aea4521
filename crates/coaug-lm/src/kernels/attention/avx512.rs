//! The AVX-512 inner loops for head sizes that are multiples of 16: a query (or output)
//! row lives in at most eight registers while the cached rows (f32 or f16, `hd` apart) stream
//! past.

use std::arch::x86_64::*;
use std::ops::Range;

use super::kv::KvElem;

/// `out[s] = q · kₛ · scale + bias[s]` for `s` in `slots`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn scores<E: KvElem>(q: &[f32], k: &[E], hd: usize, slots: Range<usize>, scale: f32, bias: &[f32], out: &mut [f32]) {
    match q.len() / 16 {
        1 => scores_n::<E, 1>(q, k, hd, slots, scale, bias, out),
        2 => scores_n::<E, 2>(q, k, hd, slots, scale, bias, out),
        4 => scores_n::<E, 4>(q, k, hd, slots, scale, bias, out),
        8 => scores_n::<E, 8>(q, k, hd, slots, scale, bias, out),
        c => scores_n_dyn(c, q, k, hd, slots, scale, bias, out),
    }
}

#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn scores_n<E: KvElem, const CH: usize>(
    q: &[f32],
    k: &[E],
    hd: usize,
    slots: Range<usize>,
    scale: f32,
    bias: &[f32],
    out: &mut [f32],
) {
    let sl = E::slot_len(hd);
    assert!(slots.end * sl <= k.len() && slots.end <= bias.len() && slots.end <= out.len());
    let qr: [__m512; CH] = std::array::from_fn(|c| _mm512_loadu_ps(q[c * 16..].as_ptr()));
    let dot = |s: usize| {
        let kv = k.as_ptr().add(s * sl);
        let mut acc = _mm512_mul_ps(qr[0], E::load16(kv));
        for (c, r) in qr.iter().enumerate().skip(1) {
            acc = _mm512_fmadd_ps(*r, E::load16(kv.add(c * 16)), acc);
        }
        acc
    };
    // Four slots at a time share one horizontal reduction (a full one per slot cost
    // about as much as the products).
    let (scale4, mut s) = (_mm_set1_ps(scale), slots.start);
    while s + 4 <= slots.end {
        let sums = scaled4::<E>(reduce4(dot(s), dot(s + 1), dot(s + 2), dot(s + 3)), k, s, sl, hd);
        let v = _mm_fmadd_ps(sums, scale4, _mm_loadu_ps(bias.as_ptr().add(s)));
        _mm_storeu_ps(out.as_mut_ptr().add(s), v);
        s += 4;
    }
    for s in s..slots.end {
        out[s] = _mm512_reduce_add_ps(dot(s)) * E::scale(k.as_ptr().add(s * sl), hd) * scale + bias[s];
    }
}

/// Four adjacent slots' dot products `sums` (from slot `s`) times their slots' scales.
#[inline(always)]
unsafe fn scaled4<E: KvElem>(sums: __m128, k: &[E], s: usize, sl: usize, hd: usize) -> __m128 {
    if !E::SCALED {
        return sums;
    }
    let at = |i: usize| E::scale(k.as_ptr().add((s + i) * sl), hd);
    _mm_mul_ps(sums, _mm_setr_ps(at(0), at(1), at(2), at(3)))
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
unsafe fn scores_n_dyn<E: KvElem>(
    ch: usize,
    q: &[f32],
    k: &[E],
    hd: usize,
    slots: Range<usize>,
    scale: f32,
    bias: &[f32],
    out: &mut [f32],
) {
    let sl = E::slot_len(hd);
    assert!(slots.end * sl <= k.len() && ch * 16 <= hd);
    for s in slots {
        let kv = k.as_ptr().add(s * sl);
        let mut acc = _mm512_setzero_ps();
        for c in 0..ch {
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(q[c * 16..].as_ptr()), E::load16(kv.add(c * 16)), acc);
        }
        out[s] = _mm512_reduce_add_ps(acc) * E::scale(kv, hd) * scale + bias[s];
    }
}

/// (head size, query heads per kv head) with a grouped kernel: 64-wide heads in groups of
/// 2–4 (SmolLM2, Llama 3.2, Qwen2.5 small models).
pub(super) const GROUPED: [(usize, usize); 3] = [(64, 2), (64, 3), (64, 4)];

/// [`scores`] for the `rep` heads of a group at once: `q` holds their queries side by side,
/// `out` their score rows (`len` apart, `len = bias.len()`).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn scores_grouped<E: KvElem>(
    q: &[f32],
    k: &[E],
    hd: usize,
    rep: usize,
    slots: Range<usize>,
    scale: f32,
    bias: &[f32],
    out: &mut [f32],
) {
    match (hd, rep) {
        (64, 2) => scores_group_n::<E, 4, 2>(q, k, slots, scale, bias, out),
        (64, 3) => scores_group_n::<E, 4, 3>(q, k, slots, scale, bias, out),
        (64, 4) => scores_group_n::<E, 4, 4>(q, k, slots, scale, bias, out),
        _ => unreachable!("callers check GROUPED"),
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn scores_group_n<E: KvElem, const CH: usize, const R: usize>(
    q: &[f32],
    k: &[E],
    slots: Range<usize>,
    scale: f32,
    bias: &[f32],
    out: &mut [f32],
) {
    let (hd, len) = (CH * 16, bias.len());
    let sl = E::slot_len(hd);
    assert!(q.len() == R * hd && slots.end * sl <= k.len() && slots.end <= len && out.len() >= R * len);
    let qr: [[__m512; CH]; R] = std::array::from_fn(|r| std::array::from_fn(|c| _mm512_loadu_ps(q[r * hd + c * 16..].as_ptr())));
    // One slot's key, loaded once, against every head's query.
    let dots = |s: usize| -> [__m512; R] {
        let kp = k.as_ptr().add(s * sl);
        let kv: [__m512; CH] = std::array::from_fn(|c| E::load16(kp.add(c * 16)));
        std::array::from_fn(|r| {
            let mut acc = _mm512_mul_ps(qr[r][0], kv[0]);
            for c in 1..CH {
                acc = _mm512_fmadd_ps(qr[r][c], kv[c], acc);
            }
            acc
        })
    };
    let (scale4, mut s) = (_mm_set1_ps(scale), slots.start);
    while s + 4 <= slots.end {
        let (d0, d1, d2, d3) = (dots(s), dots(s + 1), dots(s + 2), dots(s + 3));
        let b = _mm_loadu_ps(bias.as_ptr().add(s));
        // The slots' own scales folded into the query scale once for all heads.
        let f = scaled4::<E>(scale4, k, s, sl, hd);
        for r in 0..R {
            let sums = reduce4(d0[r], d1[r], d2[r], d3[r]);
            _mm_storeu_ps(out.as_mut_ptr().add(r * len + s), _mm_fmadd_ps(sums, f, b));
        }
        s += 4;
    }
    for s in s..slots.end {
        let d = dots(s);
        let f = E::scale(k.as_ptr().add(s * sl), hd) * scale;
        for r in 0..R {
            out[r * len + s] = _mm512_reduce_add_ps(d[r]) * f + bias[s];
        }
    }
}

/// [`mix_values`] for the `rep` heads of a group at once: `p` holds their weight rows (`len`
/// apart), `out` their outputs side by side, `inv` their normalisers.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn mix_grouped<E: KvElem>(p: &[f32], v: &[E], hd: usize, rep: usize, slots: Range<usize>, inv: &[f32], out: &mut [f32]) {
    match (hd, rep) {
        (64, 2) => mix_group_n::<E, 4, 2>(p, v, slots, inv, out),
        (64, 3) => mix_group_n::<E, 4, 3>(p, v, slots, inv, out),
        (64, 4) => mix_group_n::<E, 4, 4>(p, v, slots, inv, out),
        _ => unreachable!("callers check GROUPED"),
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn mix_group_n<E: KvElem, const CH: usize, const R: usize>(p: &[f32], v: &[E], slots: Range<usize>, inv: &[f32], out: &mut [f32]) {
    let hd = CH * 16;
    let sl = E::slot_len(hd);
    let len = p.len() / R;
    assert!(slots.end * sl <= v.len() && slots.end <= len && out.len() == R * hd && inv.len() == R);
    let mut acc = [[_mm512_setzero_ps(); CH]; R];
    for s in slots {
        let vp = v.as_ptr().add(s * sl);
        let vv: [__m512; CH] = std::array::from_fn(|c| E::load16(vp.add(c * 16)));
        let vs = E::scale(vp, hd);
        for (r, a) in acc.iter_mut().enumerate() {
            let w = _mm512_set1_ps(*p.get_unchecked(r * len + s) * vs);
            for (a, v) in a.iter_mut().zip(&vv) {
                *a = _mm512_fmadd_ps(w, *v, *a);
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let f = _mm512_set1_ps(inv[r]);
        for (c, a) in a.iter().enumerate() {
            _mm512_storeu_ps(out[r * hd + c * 16..].as_mut_ptr(), _mm512_mul_ps(*a, f));
        }
    }
}

/// `out = inv · Σₛ p[s] · vₛ` over `slots`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn mix_values<E: KvElem>(p: &[f32], v: &[E], hd: usize, slots: Range<usize>, inv: f32, out: &mut [f32]) {
    match out.len() / 16 {
        1 => mix_n::<E, 1>(p, v, hd, slots, inv, out),
        2 => mix_n::<E, 2>(p, v, hd, slots, inv, out),
        4 => mix_n::<E, 4>(p, v, hd, slots, inv, out),
        8 => mix_n::<E, 8>(p, v, hd, slots, inv, out),
        ch => {
            let sl = E::slot_len(hd);
            assert!(slots.end * sl <= v.len() && ch * 16 == hd);
            out.fill(0.0);
            for s in slots {
                let vv = v.as_ptr().add(s * sl);
                let w = _mm512_set1_ps(p[s] * E::scale(vv, hd));
                for c in 0..ch {
                    let o = out[c * 16..].as_mut_ptr();
                    _mm512_storeu_ps(o, _mm512_fmadd_ps(w, E::load16(vv.add(c * 16)), _mm512_loadu_ps(o)));
                }
            }
            out.iter_mut().for_each(|x| *x *= inv);
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn mix_n<E: KvElem, const CH: usize>(p: &[f32], v: &[E], hd: usize, slots: Range<usize>, inv: f32, out: &mut [f32]) {
    let sl = E::slot_len(hd);
    assert!(slots.end * sl <= v.len() && slots.end <= p.len() && CH * 16 <= out.len());
    let mut acc = [_mm512_setzero_ps(); CH];
    for s in slots {
        let vv = v.as_ptr().add(s * sl);
        let w = _mm512_set1_ps(p[s] * E::scale(vv, hd));
        for (c, a) in acc.iter_mut().enumerate() {
            *a = _mm512_fmadd_ps(w, E::load16(vv.add(c * 16)), *a);
        }
    }
    let inv = _mm512_set1_ps(inv);
    for (c, a) in acc.iter().enumerate() {
        _mm512_storeu_ps(out[c * 16..].as_mut_ptr(), _mm512_mul_ps(*a, inv));
    }
}
