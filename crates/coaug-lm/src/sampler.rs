//! Token choice from one row of logits: HF-style repetition penalty, temperature,
//! top-k and top-p; the returned log-prob ignores penalty and truncation.

use rand::Rng;

use crate::cache::KvPrecision;

/// Decoding settings. `temperature == 0` is greedy.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    /// Nucleus mass kept (1 = off).
    pub top_p: f32,
    /// Most likely tokens kept (0 = off).
    pub top_k: usize,
    /// HF `repetition_penalty` over prompt and generated tokens (1 = off).
    pub repetition_penalty: f32,
    pub max_new_tokens: usize,
    /// Samples per prompt; they share the prompt's prefill.
    pub n: usize,
    pub seed: u64,
    /// When non-empty, one seed per prompt: prompt `i`'s samples draw from `prompt_seeds[i]`
    /// instead of `seed`, so a sample does not depend on which prompts share its batch.
    pub prompt_seeds: Vec<u64>,
    /// How the KV cache holds keys and values: `F16` decodes faster, `F32` keeps the reported
    /// log-probs equal to the scorer's (what training needs).
    pub kv_cache: KvPrecision,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            repetition_penalty: 1.0,
            max_new_tokens: 128,
            n: 1,
            seed: 0,
            prompt_seeds: Vec::new(),
            kv_cache: KvPrecision::F32,
        }
    }
}

impl SamplingParams {
    pub fn greedy(max_new_tokens: usize) -> Self {
        SamplingParams { temperature: 0.0, max_new_tokens, ..Default::default() }
    }

    /// Temperature of the distribution whose log-probs are reported (1 for greedy).
    pub fn logprob_temperature(&self) -> f32 {
        if self.temperature > 0.0 {
            self.temperature
        } else {
            1.0
        }
    }
}

/// `log_softmax(logits / t)[token]`.
pub fn token_logprob(logits: &[f32], token: u32, t: f32) -> f32 {
    let max = crate::fast_exp::max(logits);
    let sum = crate::fast_exp::sum_exp(logits, max, 1.0 / t);
    (logits[token as usize] - max) / t - sum.ln()
}

/// Picks the next token. `seen[id]` marks ids in the context (for the penalty).
pub fn choose_token<R: Rng>(logits: &[f32], seen: &[bool], p: &SamplingParams, rng: &mut R) -> u32 {
    let penalized: Vec<f32>;
    let logits = if p.repetition_penalty != 1.0 {
        penalized = logits
            .iter()
            .zip(seen)
            .map(|(&x, &s)| match (s, x < 0.0) {
                (false, _) => x,
                (true, true) => x * p.repetition_penalty,
                (true, false) => x / p.repetition_penalty,
            })
            .collect();
        &penalized[..]
    } else {
        logits
    };
    if p.temperature <= 0.0 {
        return argmax(logits);
    }
    let max = crate::fast_exp::max(logits);
    let inv_t = 1.0 / p.temperature;
    let probs: Vec<f32> = logits.iter().map(|&x| crate::fast_exp::exp((x - max) * inv_t)).collect();
    let truncate = (p.top_k > 0 && p.top_k < probs.len()) || p.top_p < 1.0;
    if !truncate {
        return draw(&probs, (0..probs.len() as u32).collect::<Vec<_>>().as_slice(), rng);
    }
    let mut cand = candidates(&probs, p.top_k);
    if p.top_p < 1.0 {
        let total: f32 = if p.top_k > 0 { cand.iter().map(|&i| probs[i as usize]).sum() } else { probs.iter().sum() };
        let mut acc = 0.0;
        let mut keep = cand.len();
        for (j, &i) in cand.iter().enumerate() {
            acc += probs[i as usize] / total;
            if acc >= p.top_p {
                keep = j + 1;
                break;
            }
        }
        cand.truncate(keep.max(1));
    }
    draw(&probs, &cand, rng)
}

/// Token ids sorted by probability, at most `top_k` (all when 0). A partial selection
/// keeps the sort cheap over large vocabularies.
fn candidates(probs: &[f32], top_k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..probs.len() as u32).collect();
    let by_prob = |a: &u32, b: &u32| probs[*b as usize].total_cmp(&probs[*a as usize]).then(a.cmp(b));
    let k = if top_k > 0 { top_k.min(idx.len()) } else { idx.len() };
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, by_prob);
        idx.truncate(k);
    }
    idx.sort_unstable_by(by_prob);
    idx
}

fn draw<R: Rng>(probs: &[f32], cand: &[u32], rng: &mut R) -> u32 {
    let total: f64 = cand.iter().map(|&i| probs[i as usize] as f64).sum();
    let mut u = rng.random::<f64>() * total;
    for &i in cand {
        u -= probs[i as usize] as f64;
        if u < 0.0 {
            return i;
        }
    }
    *cand.last().expect("at least one candidate")
}

/// The first index of the largest logit (a NaN never wins).
fn argmax(xs: &[f32]) -> u32 {
    let max = crate::fast_exp::max(xs);
    xs.iter().position(|&x| x == max).unwrap_or(0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn repetition_penalty_follows_hf_sign_rule() {
        // Token 0 (positive, seen) is divided, token 1 (negative, seen) multiplied.
        let p = SamplingParams { temperature: 0.0, repetition_penalty: 2.0, ..Default::default() };
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(choose_token(&[3.0, -1.0, 2.0], &[true, false, false], &p, &mut rng), 2);
        assert_eq!(choose_token(&[3.0, -1.0, 2.0], &[false, false, false], &p, &mut rng), 0);
        assert_eq!(choose_token(&[-1.0, -1.5, -3.0], &[true, false, false], &p, &mut rng), 1);
    }

    #[test]
    fn top_k_and_top_p_restrict_support() {
        let logits = [0.0f32, 1.0, 2.0, 3.0];
        let mut rng = StdRng::seed_from_u64(1);
        let k2 = SamplingParams { top_k: 2, ..Default::default() };
        let p_small = SamplingParams { top_p: 0.1, ..Default::default() };
        for _ in 0..200 {
            assert!(choose_token(&logits, &[false; 4], &k2, &mut rng) >= 2);
            assert_eq!(choose_token(&logits, &[false; 4], &p_small, &mut rng), 3);
        }
    }

    #[test]
    fn sampling_frequencies_match_softmax() {
        let logits = [0.0f32, (2.0f32).ln()];
        let p = SamplingParams::default();
        let mut rng = StdRng::seed_from_u64(2);
        let ones = (0..6000).filter(|_| choose_token(&logits, &[false; 2], &p, &mut rng) == 1).count();
        let freq = ones as f64 / 6000.0;
        assert!((freq - 2.0 / 3.0).abs() < 0.03, "{freq}");
    }

    #[test]
    fn logprob_is_tempered_log_softmax() {
        let lp = token_logprob(&[1.0, 2.0, 3.0], 2, 2.0);
        let z: f32 = [0.5f32, 1.0, 1.5].iter().map(|x| x.exp()).sum();
        assert!((lp - (1.5 - z.ln())).abs() < 1e-6);
    }
}
