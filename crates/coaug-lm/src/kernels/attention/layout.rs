//! The passes that fold candle's layout changes into work that happens anyway: the rotary
//! embedding writes queries straight into the grouped layout attention reads, and new keys
//! (rotated) and values straight into the cache in its element format.

use candle_core::{CpuStorage, DType, Layout, Result, Tensor};
use rayon::prelude::*;

use super::kv::{head_dim, KvElem, Q8};
use crate::kernels::cpu_f32::with_f32_slices;

/// Rotate-half rotary embedding of one head vector (as candle's `rope`), into `out`.
#[inline(always)]
fn rotate_half(x: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32]) {
    let half = x.len() / 2;
    let (x1, x2) = x.split_at(half);
    let (o1, o2) = out.split_at_mut(half);
    for j in 0..half {
        o1[j] = x1[j] * cos[j] - x2[j] * sin[j];
        o2[j] = x2[j] * cos[j] + x1[j] * sin[j];
    }
}

/// Runs `f` on every `per_row` chunk of `dst` with its index: across the threads when there are
/// several and `work` elements are enough to pay for waking them (a decode step's few are not).
fn each_row<T: Send>(dst: &mut [T], per_row: usize, work: usize, f: impl Fn((usize, &mut [T])) + Send + Sync) {
    if dst.len() > per_row && work >= 1 << 16 {
        dst.par_chunks_mut(per_row).enumerate().for_each(f);
    } else {
        dst.chunks_mut(per_row).enumerate().for_each(f);
    }
}

/// Largest head size the fused passes take (a head vector lives on the stack).
const MAX_HEAD_DIM: usize = 256;

/// Queries rotated and laid out `(b, kv_heads, t, rep, hd)`: the `rep` query heads that share a
/// kv head sit side by side for each position, so a chunk of positions of a whole group is one
/// matrix with rows `(position, head)`.
pub(crate) struct GroupedQueries {
    pub(super) data: Vec<f32>,
    pub(super) b: usize,
    pub(super) kvh: usize,
    pub(super) t: usize,
    pub(super) rep: usize,
    pub(super) hd: usize,
}

/// Rotates the projected queries `(b, t, heads·hd)` by `cos`, `sin` `(b, t, hd/2)` into the
/// grouped layout. `None` when the inputs are not f32 on the CPU (the caller's generic path).
pub(crate) fn group_queries(q: &Tensor, cos: &Tensor, sin: &Tensor, heads: usize, kv_heads: usize) -> Result<Option<GroupedQueries>> {
    if !q.device().is_cpu() || q.dtype() != DType::F32 || cos.dtype() != DType::F32 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Ok(None);
    }
    let (b, t, width) = q.dims3()?;
    let hd = width / heads;
    if !hd.is_multiple_of(2) || hd > MAX_HEAD_DIM || cos.dims() != [b, t, hd / 2] {
        return Ok(None);
    }
    let rep = heads / kv_heads;
    let mut data = vec![0f32; b * t * width];
    with_f32_slices(&[q, cos, sin], |s| {
        let (qs, cs, ss) = (s[0], s[1], s[2]);
        let half = hd / 2;
        let row = |(r, dst): (usize, &mut [f32])| {
            for i in 0..t {
                let at = r * t + i;
                let (c, s) = (&cs[at * half..][..half], &ss[at * half..][..half]);
                for head in 0..heads {
                    let (g, j) = (head / rep, head % rep);
                    let out = &mut dst[((g * t + i) * rep + j) * hd..][..hd];
                    rotate_half(&qs[(at * heads + head) * hd..][..hd], c, s, out);
                }
            }
        };
        each_row(&mut data, t * width, b * t * width, row);
        Ok(())
    })?;
    Ok(Some(GroupedQueries { data, b, kvh: kv_heads, t, rep, hd }))
}

/// The new tokens' keys (rotated when `rope` is given) or values, `(b, t, kv_heads·hd)`, written
/// at slots `past..past + t` of `cache` `(b, kv_heads, capacity, slot)` in its dtype (f32, f16,
/// or 8-bit slots as U8, see [`KvElem`]). Returns false, writing nothing, when that is not such
/// a write from f32 on the CPU.
pub(crate) fn store_rows(cache: &Tensor, new: &Tensor, rope: Option<(&Tensor, &Tensor)>, past: usize) -> Result<bool> {
    if !cache.device().is_cpu() || new.dtype() != DType::F32 || !matches!(cache.dtype(), DType::F32 | DType::F16 | DType::U8) {
        return Ok(false);
    }
    let (b, kvh, capacity, slot) = cache.dims4()?;
    let hd = head_dim(cache.dtype(), slot);
    let (nb, t, width) = new.dims3()?;
    if nb != b || width != kvh * hd || past + t > capacity || hd > MAX_HEAD_DIM || !cache.is_contiguous() {
        return Ok(false);
    }
    let mut inputs = vec![new];
    if let Some((cos, sin)) = rope {
        if cos.dims() != [b, t, hd / 2] || cos.dtype() != DType::F32 {
            return Ok(false);
        }
        inputs.extend([cos, sin]);
    }
    with_f32_slices(&inputs, |s| {
        let op = StoreRows { src: s[0], rope: rope.map(|_| (s[1], s[2])), b, t, kvh, hd, past };
        cache.inplace_op1(&op)
    })?;
    Ok(true)
}

struct StoreRows<'a> {
    src: &'a [f32],
    rope: Option<(&'a [f32], &'a [f32])>,
    b: usize,
    t: usize,
    kvh: usize,
    hd: usize,
    past: usize,
}

impl StoreRows<'_> {
    fn write<E: KvElem>(&self, dst: &mut [E], capacity: usize) {
        let StoreRows { src, rope, t, kvh, hd, past, .. } = *self;
        let (half, sl) = (hd / 2, E::slot_len(hd));
        let row = |(r, dst): (usize, &mut [E])| {
            let mut rotated = [0f32; MAX_HEAD_DIM];
            for i in 0..t {
                let at = r * t + i;
                for g in 0..kvh {
                    let x = &src[(at * kvh + g) * hd..][..hd];
                    let x = match rope {
                        Some((cos, sin)) => {
                            rotate_half(x, &cos[at * half..][..half], &sin[at * half..][..half], &mut rotated[..hd]);
                            &rotated[..hd]
                        }
                        None => x,
                    };
                    E::store(x, &mut dst[(g * capacity + past + i) * sl..][..sl]);
                }
            }
        };
        let per_row = kvh * capacity * sl;
        each_row(&mut dst[..self.b * per_row], per_row, self.b * t * kvh * hd, row);
    }
}

impl candle_core::InplaceOp1 for StoreRows<'_> {
    fn name(&self) -> &'static str {
        "kv-store"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let capacity = layout.dims()[2];
        let at = layout.start_offset();
        match storage {
            CpuStorage::F32(d) => self.write(&mut d[at..], capacity),
            CpuStorage::F16(d) => self.write(&mut d[at..], capacity),
            CpuStorage::U8(d) => self.write::<Q8>(&mut d[at..], capacity),
            _ => candle_core::bail!("kv cache of an unsupported dtype"),
        }
        Ok(())
    }
}
