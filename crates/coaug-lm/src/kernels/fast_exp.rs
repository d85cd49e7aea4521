//! `exp` as straight-line arithmetic the compiler vectorizes. libm's `expf` is a call per
//! element: in batched decoding it was ~5% of a step (softmax over cached keys, and the
//! 49k-way log-sum-exp behind every sampled token's log-prob).

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split so that `n * LN2_HI` is exact for the |n| ≤ 128 used here (Cody–Waite).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
// 1.5 · 2²³: adding it rounds to an integer, and that integer sits in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;

/// `eˣ` to within ~2 ulp for x in [-87, 88]; inputs below -87 (and -∞) give ~1e-38 rather
/// than 0, so callers that mask with -∞ select 0 themselves. Branch-free (Cephes' `expf`
/// polynomial), so a loop of it becomes vector code.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2ⁿ built from n's bits in `t` (exponent field n + 127).
    let pow2 = f32::from_bits((t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127)) << 23);
    y * pow2
}

/// `Σ exp((xᵢ - max) · scale)` in 16 independent lanes (a single running sum would keep the
/// loop scalar).
#[inline(always)]
pub(crate) fn sum_exp(xs: &[f32], max: f32, scale: f32) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = xs.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..16 {
            acc[j] += exp((c[j] - max) * scale);
        }
    }
    let mut s = 0f32;
    for &x in rest {
        s += exp((x - max) * scale);
    }
    s + tree_sum(acc)
}

/// Sum of 16 lanes in halving steps (vector shuffles, not a serial chain).
#[inline(always)]
pub(crate) fn tree_sum(mut acc: [f32; 16]) -> f32 {
    for w in [8, 4, 2, 1] {
        for j in 0..w {
            acc[j] += acc[j + w];
        }
    }
    acc[0]
}

/// The largest element (-∞ for none), in 16 independent lanes: a single running `f32::max`
/// is a serial chain, ~65 µs over a 49k vocabulary against a few for this.
#[inline(always)]
pub(crate) fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = xs.chunks_exact(16);
    let rest = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for j in 0..16 {
            acc[j] = if c[j] > acc[j] { c[j] } else { acc[j] };
        }
    }
    acc.into_iter().fold(rest, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_libm_to_a_few_ulp() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_37;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn lane_max_equals_a_running_max() {
        for n in [0, 1, 15, 16, 17, 49_152 + 5] {
            let xs: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1009) as f32 - 500.0 + (i % 3) as f32 * 0.25).collect();
            assert_eq!(max(&xs), xs.iter().copied().fold(f32::NEG_INFINITY, f32::max), "n {n}");
        }
    }

    #[test]
    fn underflows_to_tiny_and_saturates() {
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
        assert!(exp(-1000.0) < 1e-37);
        assert!(exp(100.0).is_finite() && exp(100.0) > 1e38);
    }

    #[test]
    fn sum_exp_equals_the_plain_sum() {
        let xs: Vec<f32> = (0..1003).map(|i| ((i * 37) % 101) as f32 * 0.1 - 5.0).collect();
        let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let want: f64 = xs.iter().map(|&x| (((x - max) * 0.5) as f64).exp()).sum();
        let got = sum_exp(&xs, max, 0.5) as f64;
        assert!((got - want).abs() / want < 1e-5, "{got} vs {want}");
    }
}
