//! Measurements behind `coaug bench dense`: this machine's f32 matrix-product rate on the
//! encoder's shapes (the ceiling for encoding), encoding throughput, search rates.

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};

/// GFLOP/s of a `(m × k) · (k × n)` f32 product via candle (gemm, all threads), best of
/// repeats over at least `min_secs`.
pub fn matmul_gflops(m: usize, k: usize, n: usize, min_secs: f64) -> Result<f64> {
    let a = Tensor::randn(0f32, 1f32, (m, k), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1f32, (k, n), &Device::Cpu)?;
    let _ = a.matmul(&b)?; // warm-up: thread pool, page faults
    let flops = 2.0 * (m * k * n) as f64;
    let started = Instant::now();
    let mut best = f64::INFINITY;
    while started.elapsed().as_secs_f64() < min_secs || best.is_infinite() {
        let t = Instant::now();
        let c = a.matmul(&b)?;
        std::hint::black_box(&c);
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(flops / best / 1e9)
}

/// The shapes one BERT layer multiplies for `tokens` padded positions: attention
/// projections, feed-forward up and down.
pub fn layer_shapes(tokens: usize, hidden: usize, intermediate: usize) -> [(usize, usize, usize); 3] {
    [(tokens, hidden, hidden), (tokens, hidden, intermediate), (tokens, intermediate, hidden)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_rate_is_positive_and_finite() {
        let g = matmul_gflops(64, 64, 64, 0.01).unwrap();
        assert!(g.is_finite() && g > 0.0);
        assert_eq!(layer_shapes(10, 4, 16)[1], (10, 4, 16));
    }
}
