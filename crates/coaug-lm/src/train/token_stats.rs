//! Log-prob of the target token and entropy of each row of logits, fused.
//!
//! Through candle's generic ops, `log_softmax` + `gather` + entropy over a 49k vocabulary
//! runs a dozen passes, each allocating a `(tokens, vocab)` tensor, forward and backward.
//! Here each row is read twice forward (max, then one sum) and twice backward, and the
//! backward writes the gradient once. When the vocabulary projection is frozen (tied to the
//! embeddings, as in SmolLM2), it joins the op: candle's matmul backward would also compute
//! the `(vocab, hidden)` gradient of the frozen weight, as costly as the projection itself.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, D};
use candle_nn::ops;
use rayon::prelude::*;

use crate::kernels::cpu_f32::{contiguous_f32, matmul, with_f32_slice, MatMut, MatRef, Threads};
use crate::model::Pass;

/// `(log_softmax(logits / T)[target], entropy of softmax(logits / T))` per row of `logits`
/// `(n, vocab)`, both `(n,)` and differentiable with respect to `logits`.
pub(crate) fn logprob_and_entropy(logits: &Tensor, targets: &[u32], temperature: f32) -> Result<(Tensor, Tensor)> {
    let (n, vocab) = logits.dims2()?;
    check_targets(targets, n, vocab)?;
    if !logits.device().is_cpu() || logits.dtype() != DType::F32 {
        return generic(logits, targets, temperature);
    }
    let op = TargetLogprobEntropy { targets: Arc::new(targets.to_vec()), inv_temp: 1.0 / temperature };
    let both = logits.contiguous()?.apply_op1(op)?;
    Ok((both.narrow(1, 0, 1)?.squeeze(1)?, both.narrow(1, 1, 1)?.squeeze(1)?))
}

/// One target per row, each inside the vocabulary.
fn check_targets(targets: &[u32], rows: usize, vocab: usize) -> Result<()> {
    if targets.len() != rows {
        candle_core::bail!("{} targets for {rows} rows", targets.len());
    }
    if let Some(&t) = targets.iter().find(|&&t| t as usize >= vocab) {
        candle_core::bail!("target token {t} outside the vocabulary of {vocab}");
    }
    Ok(())
}

/// The same with candle's ops (any device).
fn generic(logits: &Tensor, targets: &[u32], temperature: f32) -> Result<(Tensor, Tensor)> {
    let n = targets.len();
    let logits = if temperature != 1.0 { (logits / temperature as f64)? } else { logits.clone() };
    let logp = ops::log_softmax(&logits, D::Minus1)?;
    let idx = Tensor::from_slice(targets, (n, 1), logits.device())?;
    let picked = logp.gather(&idx, 1)?.squeeze(1)?;
    let entropy = (logp.exp()? * &logp)?.sum(D::Minus1)?.neg()?;
    Ok((picked, entropy))
}

struct TargetLogprobEntropy {
    targets: Arc<Vec<u32>>,
    inv_temp: f32,
}

/// Per-row softmax statistics of `z = x / T`: the max, the log-sum-exp and the entropy.
#[inline]
fn row_stats(x: &[f32], inv_temp: f32) -> (f32, f64, f64) {
    let m = x.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)) * inv_temp;
    let (mut s, mut sz) = (0f64, 0f64);
    for &v in x {
        let z = v * inv_temp;
        let e = f64::from((z - m).exp());
        s += e;
        sz += e * f64::from(z);
    }
    let lse = f64::from(m) + s.ln();
    (m, lse, lse - sz / s)
}

/// `[log p_target, entropy]` of each row of `logits` `(n, vocab)`.
fn forward_rows(x: &[f32], vocab: usize, targets: &[u32], inv_temp: f32) -> Vec<f32> {
    let mut out = vec![0f32; targets.len() * 2];
    out.par_chunks_mut(2).enumerate().for_each(|(r, o)| {
        let row = &x[r * vocab..(r + 1) * vocab];
        let (_, lse, entropy) = row_stats(row, inv_temp);
        o[0] = (f64::from(row[targets[r] as usize] * inv_temp) - lse) as f32;
        o[1] = entropy as f32;
    });
    out
}

/// Gradient with respect to the logits, given the gradients `g[r] = [d/d log p_t, d/dH]`.
/// With `p = softmax(z)`, `log p_t` has gradient `δ_jt − p_j` and the entropy `H` has
/// `−p_j (log p_j + H)`; both are scaled by `1/T` on the way back to the logits.
/// `res` is the forward's output: the log-sum-exp comes back as `z_t − log p_t`, so the
/// backward reads each row once more instead of three times.
fn backward_rows(x: &[f32], vocab: usize, targets: &[u32], inv_temp: f32, res: &[Vec<f32>], g: &[Vec<f32>]) -> Vec<f32> {
    let mut grad = x.to_vec();
    backward_rows_in_place(&mut grad, vocab, targets, inv_temp, res, g);
    grad
}

/// [`backward_rows`], overwriting the logits with their gradient.
fn backward_rows_in_place(x: &mut [f32], vocab: usize, targets: &[u32], inv_temp: f32, res: &[Vec<f32>], g: &[Vec<f32>]) {
    x.par_chunks_mut(vocab).enumerate().for_each(|(r, row)| {
        let (g_lp, g_h) = (g[r][0], g[r][1]);
        if g_lp == 0.0 && g_h == 0.0 {
            row.fill(0.0);
            return;
        }
        let t = targets[r] as usize;
        let (lse, entropy) = (row[t] * inv_temp - res[r][0], res[r][1]);
        for v in row.iter_mut() {
            let log_p = *v * inv_temp - lse;
            let p = log_p.exp();
            *v = (-g_lp * p - g_h * p * (log_p + entropy)) * inv_temp;
        }
        row[t] += g_lp * inv_temp;
    });
}

impl CustomOp1 for TargetLogprobEntropy {
    fn name(&self) -> &'static str {
        "target-logprob-entropy"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, vocab) = layout.shape().dims2()?;
        let out = forward_rows(contiguous_f32(storage, layout)?, vocab, &self.targets, self.inv_temp);
        Ok((CpuStorage::F32(out), Shape::from((n, 2))))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (n, vocab) = arg.dims2()?;
        let g = grad_res.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let res = res.to_vec2::<f32>()?;
        let grad = with_f32_slice(arg, |x| Ok(backward_rows(x, vocab, &self.targets, self.inv_temp, &res, &g)))?;
        Ok(Some(Tensor::from_vec(grad, (n, vocab), arg.device())?))
    }
}

/// [`logprob_and_entropy`] of `hidden @ weightᵀ` for a frozen `weight` `(vocab, hidden)`:
/// the gradient flows to `hidden` only.
pub(crate) fn projected_logprob_and_entropy(
    hidden: &Tensor,
    weight: &Tensor,
    targets: &[u32],
    temperature: f32,
    pass: Pass,
) -> Result<(Tensor, Tensor)> {
    check_targets(targets, hidden.dim(0)?, weight.dim(0)?)?;
    if !hidden.device().is_cpu() || hidden.dtype() != DType::F32 || weight.dtype() != DType::F32 {
        return generic(&hidden.matmul(&weight.detach().t()?)?, targets, temperature);
    }
    let op = ProjectedLogprobEntropy {
        weight: weight.detach(),
        targets: Arc::new(targets.to_vec()),
        inv_temp: 1.0 / temperature,
        keep_logits: pass.tracks_grad(),
        logits: Mutex::new(None),
    };
    let hidden = hidden.contiguous()?;
    let both = if pass.tracks_grad() { hidden.apply_op1(op)? } else { hidden.apply_op1_no_bwd(&op)? };
    Ok((both.narrow(1, 0, 1)?.squeeze(1)?, both.narrow(1, 1, 1)?.squeeze(1)?))
}

struct ProjectedLogprobEntropy {
    weight: Tensor,
    targets: Arc<Vec<u32>>,
    inv_temp: f32,
    /// Whether the forward keeps its logits for the backward (else they are recomputed).
    keep_logits: bool,
    logits: Mutex<Option<Vec<f32>>>,
}

impl ProjectedLogprobEntropy {
    /// `hidden · weightᵀ` `(n, vocab)` in a pooled buffer.
    fn logits(&self, hidden: &[f32], n: usize) -> Result<Vec<f32>> {
        let (vocab, d) = self.weight.dims2()?;
        let mut out = pool::take(n * vocab);
        with_f32_slice(&self.weight, |w| {
            // `w` (vocab, d) row-major, read through its rows as the columns of the right operand.
            matmul(Threads::All, MatMut::row_major(&mut out, n, vocab), MatRef::row_major(hidden, n, d), MatRef::transpose_of(w, d, vocab));
            Ok(())
        })?;
        Ok(out)
    }
}

impl Drop for ProjectedLogprobEntropy {
    fn drop(&mut self) {
        if let Some(buf) = self.logits.get_mut().ok().and_then(Option::take) {
            pool::give(buf);
        }
    }
}

impl CustomOp1 for ProjectedLogprobEntropy {
    fn name(&self) -> &'static str {
        "projected-logprob-entropy"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, _) = layout.shape().dims2()?;
        let logits = self.logits(contiguous_f32(storage, layout)?, n)?;
        let out = forward_rows(&logits, self.weight.dim(0)?, &self.targets, self.inv_temp);
        if self.keep_logits {
            *self.logits.lock().expect("not poisoned") = Some(logits);
        } else {
            pool::give(logits);
        }
        Ok((CpuStorage::F32(out), Shape::from((n, 2))))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (vocab, d) = self.weight.dims2()?;
        let n = arg.dim(0)?;
        let mut logits = match self.logits.lock().expect("not poisoned").take() {
            Some(l) => l,
            None => with_f32_slice(&arg.detach(), |h| self.logits(h, n))?,
        };
        let g = grad_res.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let res = res.to_vec2::<f32>()?;
        backward_rows_in_place(&mut logits, vocab, &self.targets, self.inv_temp, &res, &g);
        let mut grad = vec![0f32; n * d];
        with_f32_slice(&self.weight, |w| {
            // `logits` now holds the (n, vocab) gradient; `w` is (vocab, d).
            matmul(Threads::All, MatMut::row_major(&mut grad, n, d), MatRef::row_major(&logits, n, vocab), MatRef::row_major(w, vocab, d));
            Ok(())
        })?;
        pool::give(logits);
        Ok(Some(Tensor::from_vec(grad, (n, d), arg.device())?))
    }
}

/// Reused `(tokens, vocab)` buffers for the projected op. A fresh one (264 MB for 1,344
/// tokens of a 49k vocabulary) is above glibc's largest mmap threshold, so every forward and
/// backward paid page faults and kernel zeroing for it: 7% of an RL update (perf).
mod pool {
    use std::sync::Mutex;

    static FREE: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());
    /// Buffers kept: the policy's logits wait for the backward while the reference runs.
    const KEEP: usize = 2;

    /// A zeroed buffer of `len`, reusing a kept one when there is one.
    pub fn take(len: usize) -> Vec<f32> {
        let mut free = FREE.lock().expect("not poisoned");
        let pick = free.iter().position(|b| b.capacity() >= len).or(if free.is_empty() { None } else { Some(0) });
        let mut buf = pick.map(|i| free.swap_remove(i)).unwrap_or_default();
        drop(free);
        buf.clear();
        buf.resize(len, 0.0);
        buf
    }

    pub fn give(buf: Vec<f32>) {
        let mut free = FREE.lock().expect("not poisoned");
        if free.len() < KEEP {
            free.push(buf);
        } else if let Some(smallest) = free.iter_mut().min_by_key(|b| b.capacity()) {
            if smallest.capacity() < buf.capacity() {
                *smallest = buf;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::cpu_f32::max_abs_diff;
    use candle_core::{Device, Var};

    #[test]
    fn fused_values_and_gradients_equal_candles_ops() {
        let (n, vocab) = (5, 300);
        let x = Var::from_tensor(&(Tensor::randn(0f32, 3.0, (n, vocab), &Device::Cpu).unwrap())).unwrap();
        let targets = [0u32, 17, 299, 150, 17];
        for temperature in [1.0f32, 1.3, 0.7] {
            let (lp_a, h_a) = logprob_and_entropy(x.as_tensor(), &targets, temperature).unwrap();
            let (lp_b, h_b) = generic(x.as_tensor(), &targets, temperature).unwrap();
            assert!(max_abs_diff(&lp_a, &lp_b) < 1e-5, "log-probs at T={temperature}");
            assert!(max_abs_diff(&h_a, &h_b) < 1e-5, "entropies at T={temperature}");
            // Weights on both outputs, as in the loss (advantage-weighted log-probs + entropy bonus).
            let w = Tensor::new(&[1.0f32, -2.0, 0.5, 0.0, 3.0], &Device::Cpu).unwrap();
            let objective =
                |lp: &Tensor, h: &Tensor| ((lp * &w).unwrap().sum_all().unwrap() + (h * 0.3).unwrap().sum_all().unwrap()).unwrap();
            let ga = objective(&lp_a, &h_a).backward().unwrap();
            let gb = objective(&lp_b, &h_b).backward().unwrap();
            let d = max_abs_diff(ga.get(x.as_tensor()).unwrap(), gb.get(x.as_tensor()).unwrap());
            assert!(d < 1e-5, "gradients at T={temperature}: {d}");
        }
    }

    #[test]
    fn projected_op_equals_projection_then_candles_ops() {
        // Tiny, then large enough for gemm's blocking and threads (and a second pooled buffer).
        for (n, d, vocab) in [(4, 8, 50), (37, 64, 1000)] {
            projected_case(n, d, vocab);
        }
    }

    fn projected_case(n: usize, d: usize, vocab: usize) {
        let h = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, d), &Device::Cpu).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1.0, (vocab, d), &Device::Cpu).unwrap();
        let targets: Vec<u32> = (0..n).map(|i| ((i * 7919 + 3) % vocab) as u32).collect();
        let weights: Vec<f32> = (0..n).map(|i| [0.5f32, -1.0, 2.0, 1.0][i % 4]).collect();
        let weights = Tensor::new(weights.as_slice(), &Device::Cpu).unwrap();
        let objective =
            |lp: &Tensor, e: &Tensor| ((lp * &weights).unwrap().sum_all().unwrap() - (e * 0.2).unwrap().sum_all().unwrap()).unwrap();
        let (lp_a, e_a) = projected_logprob_and_entropy(h.as_tensor(), &w, &targets, 1.2, Pass::Train).unwrap();
        let (lp_b, e_b) = generic(&h.as_tensor().matmul(&w.t().unwrap()).unwrap(), &targets, 1.2).unwrap();
        assert!(max_abs_diff(&lp_a, &lp_b) < 1e-4 && max_abs_diff(&e_a, &e_b) < 1e-4, "values at {n}×{d}×{vocab}");
        let ga = objective(&lp_a, &e_a).backward().unwrap();
        let gb = objective(&lp_b, &e_b).backward().unwrap();
        assert!(max_abs_diff(ga.get(h.as_tensor()).unwrap(), gb.get(h.as_tensor()).unwrap()) < 1e-4, "gradients at {n}×{d}×{vocab}");
        // Without a graph nothing is kept and the values are the same.
        let (lp_c, _) = projected_logprob_and_entropy(h.as_tensor(), &w, &targets, 1.2, Pass::Infer).unwrap();
        assert!(max_abs_diff(&lp_a, &lp_c) == 0.0);
    }

    #[test]
    fn rejects_targets_outside_the_vocabulary() {
        let x = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(logprob_and_entropy(&x, &[1, 4], 1.0).is_err());
        assert!(logprob_and_entropy(&x, &[1], 1.0).is_err());
    }
}
