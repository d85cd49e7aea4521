//! The element formats of cached keys and values: f32, f16 and 8-bit slots with a scale.

use candle_core::DType;
use half::f16;

/// An element type of cached keys and values. A cached slot (one position of one kv head) is
/// [`KvElem::slot_len`] elements: `hd` values for f32 and f16, or for [`Q8`] `hd` signed bytes
/// followed by the slot's f32 scale. Decoding streams the whole cache from memory at every step,
/// which is what bounds its attention: f16 halves those bytes, 8 bits nearly halves them again.
pub(crate) trait KvElem: Copy + Send + Sync + 'static {
    /// Whether slots carry a scale that their dot products must be multiplied by.
    const SCALED: bool;
    /// Elements per slot of `hd` values.
    fn slot_len(hd: usize) -> usize;
    /// Writes the `hd` values `src` as one slot `dst` (`slot_len(hd)` elements).
    fn store(src: &[f32], dst: &mut [Self]);
    /// Slots of `hd` values as f32 (`hd` apart): itself, or widened into `scratch`.
    fn as_f32<'a>(src: &'a [Self], hd: usize, scratch: &'a mut Vec<f32>) -> &'a [f32];
    /// The scale of the slot at `p` (1 where slots have none).
    ///
    /// # Safety
    /// `p` points at a whole slot of `hd` values.
    unsafe fn scale(p: *const Self, hd: usize) -> f32;
    /// Sixteen values from `p` (within one slot), widened to f32, unscaled.
    ///
    /// # Safety
    /// AVX-512F is available and `p` points at sixteen readable values.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512;
}

impl KvElem for f32 {
    const SCALED: bool = false;

    #[inline(always)]
    fn slot_len(hd: usize) -> usize {
        hd
    }

    #[inline(always)]
    fn store(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }

    #[inline(always)]
    fn as_f32<'a>(src: &'a [f32], _: usize, _: &'a mut Vec<f32>) -> &'a [f32] {
        src
    }

    #[inline(always)]
    unsafe fn scale(_: *const f32, _: usize) -> f32 {
        1.0
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const f32) -> std::arch::x86_64::__m512 {
        // SAFETY: the caller's contract.
        unsafe { std::arch::x86_64::_mm512_loadu_ps(p) }
    }
}

impl KvElem for f16 {
    const SCALED: bool = false;

    #[inline(always)]
    fn slot_len(hd: usize) -> usize {
        hd
    }

    #[inline(always)]
    fn store(src: &[f32], dst: &mut [f16]) {
        use half::slice::HalfFloatSliceExt;
        dst.convert_from_f32_slice(src);
    }

    #[inline(always)]
    fn as_f32<'a>(src: &'a [f16], _: usize, scratch: &'a mut Vec<f32>) -> &'a [f32] {
        use half::slice::HalfFloatSliceExt;
        scratch.resize(src.len(), 0.0);
        src.convert_to_f32_slice(scratch);
        scratch
    }

    #[inline(always)]
    unsafe fn scale(_: *const f16, _: usize) -> f32 {
        1.0
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const f16) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: the caller's contract; sixteen f16 are 256 bits.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
    }
}

/// A byte of an 8-bit cache slot: `hd` values `round(x / scale)` in `-127..=127`, then the
/// slot's `scale = max|x| / 127` as four little-endian bytes. One scale per head vector keeps
/// the rounding error under 0.4% of the vector's largest value (llama.cpp's `q8_0` cache uses
/// one per 32 values).
pub(crate) type Q8 = u8;

/// Bytes of a slot's scale in an 8-bit cache.
const Q8_SCALE_BYTES: usize = 4;

impl KvElem for Q8 {
    const SCALED: bool = true;

    #[inline(always)]
    fn slot_len(hd: usize) -> usize {
        hd + Q8_SCALE_BYTES
    }

    #[inline(always)]
    fn store(src: &[f32], dst: &mut [u8]) {
        // Adding and removing 1.5·2²³ rounds to the nearest integer (ties to even) in plain f32
        // arithmetic, which vectorizes; `f32::round` is a libm call per value on baseline x86-64.
        const ROUND: f32 = 12_582_912.0;
        let hd = src.len();
        let max = src.iter().fold(0f32, |m, x| m.max(x.abs()));
        let scale = max / 127.0;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        for (d, x) in dst[..hd].iter_mut().zip(src) {
            *d = (((x * inv + ROUND) - ROUND) as i32 as i8) as u8;
        }
        dst[hd..hd + Q8_SCALE_BYTES].copy_from_slice(&scale.to_le_bytes());
    }

    fn as_f32<'a>(src: &'a [u8], hd: usize, scratch: &'a mut Vec<f32>) -> &'a [f32] {
        let sl = Self::slot_len(hd);
        scratch.resize(src.len() / sl * hd, 0.0);
        for (slot, out) in src.chunks_exact(sl).zip(scratch.chunks_exact_mut(hd)) {
            let scale = f32::from_le_bytes(slot[hd..sl].try_into().expect("four bytes"));
            for (o, &q) in out.iter_mut().zip(&slot[..hd]) {
                *o = q as i8 as f32 * scale;
            }
        }
        scratch
    }

    #[inline(always)]
    unsafe fn scale(p: *const u8, hd: usize) -> f32 {
        // SAFETY: the slot at `p` holds its scale after its `hd` values.
        f32::from_le_bytes(unsafe { std::ptr::read_unaligned(p.add(hd) as *const [u8; 4]) })
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const u8) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: the caller's contract; sixteen values are 128 bits.
        unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i))) }
    }
}

/// Elements per slot of `hd` values in a cache of `dtype` (U8: 8-bit slots, see [`KvElem`]).
pub(crate) fn slot_len(dtype: DType, hd: usize) -> usize {
    match dtype {
        DType::U8 => Q8::slot_len(hd),
        _ => hd,
    }
}

/// Values per slot of a cache of `dtype` whose slots are `slot` elements: the inverse of
/// [`slot_len`].
pub(crate) fn head_dim(dtype: DType, slot: usize) -> usize {
    match dtype {
        DType::U8 => slot.saturating_sub(Q8_SCALE_BYTES),
        _ => slot,
    }
}
