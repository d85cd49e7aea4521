//! Token choice from one row of logits: HF-style repetition penalty, temperature, top-k and
//! top-p. The log-prob reported with each sampled token is the one of the distribution it was
//! drawn from, every processing step included: the scorer (`scoring.rs`) applies the same
//! processing, so training's importance ratios start at exactly 1 (on-policy).

use rand::Rng;

use crate::model::cache::KvPrecision;

/// Decoding settings. `temperature == 0` is greedy.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    /// Nucleus mass kept (1 = off).
    pub top_p: f32,
    /// Most likely tokens kept (0 = off).
    pub top_k: usize,
    /// HF `repetition_penalty` (1 = off): a seen token's positive logit is divided by it, a
    /// negative one multiplied.
    pub repetition_penalty: f32,
    /// Which tokens count as seen for the penalty.
    pub penalty_scope: PenaltyScope,
    /// Token ids the penalty never touches (stop tokens, the answer tags' tokens): a reply must
    /// stay free to close its tags and end.
    pub unpenalized: Vec<u32>,
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
            penalty_scope: PenaltyScope::Context,
            unpenalized: Vec::new(),
            max_new_tokens: 128,
            n: 1,
            seed: 0,
            prompt_seeds: Vec::new(),
            kv_cache: KvPrecision::F32,
        }
    }
}

/// The tokens a repetition penalty applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PenaltyScope {
    /// Prompt and generated tokens (Hugging Face's rule; the evaluation's greedy decoding).
    #[default]
    Context,
    /// Generated tokens only: the prompt's words stay available to the reply (training).
    Generated,
}

impl SamplingParams {
    /// Sampling at temperature `t` with no other processing (what the scorer applies then).
    pub fn at_temperature(t: f32) -> Self {
        SamplingParams { temperature: t, ..Default::default() }
    }

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
    let max = crate::kernels::fast_exp::max(logits);
    let sum = crate::kernels::fast_exp::sum_exp(logits, max, 1.0 / t);
    (logits[token as usize] - max) / t - sum.ln()
}

/// The HF repetition penalty applied in place to the logits of `seen` tokens (those not in
/// `unpenalized`): a positive logit divided by `penalty`, a negative one multiplied.
pub fn apply_penalty(logits: &mut [f32], seen: impl IntoIterator<Item = u32>, penalty: f32, unpenalized: &[u32]) {
    if penalty == 1.0 {
        return;
    }
    for id in seen {
        if unpenalized.contains(&id) {
            continue;
        }
        if let Some(x) = logits.get_mut(id as usize) {
            *x = if *x < 0.0 { *x * penalty } else { *x / penalty };
        }
    }
}

/// The ids top-k and top-p keep of a row of penalized logits at temperature `t` (most likely
/// first), or `None` when neither truncates.
pub fn kept_tokens(logits: &[f32], t: f32, top_k: usize, top_p: f32) -> Option<Vec<u32>> {
    if !((top_k > 0 && top_k < logits.len()) || top_p < 1.0) {
        return None;
    }
    let max = crate::kernels::fast_exp::max(logits);
    let inv_t = 1.0 / t;
    let probs: Vec<f32> = logits.iter().map(|&x| crate::kernels::fast_exp::exp((x - max) * inv_t)).collect();
    let mut cand = candidates(&probs, top_k);
    if top_p < 1.0 {
        let total: f32 = if top_k > 0 { cand.iter().map(|&i| probs[i as usize]).sum() } else { probs.iter().sum() };
        let mut acc = 0.0;
        let mut keep = cand.len();
        for (j, &i) in cand.iter().enumerate() {
            acc += probs[i as usize] / total;
            if acc >= top_p {
                keep = j + 1;
                break;
            }
        }
        cand.truncate(keep.max(1));
    }
    Some(cand)
}

/// Picks the next token and its log-prob. `seen` lists the ids the penalty applies to (per
/// [`PenaltyScope`]). Sampled: the log-prob under the distribution drawn from (penalty,
/// temperature, top-k/top-p renormalised). Greedy: `log_softmax` of the raw logits.
pub fn choose_token<R: Rng>(logits: &[f32], seen: &[u32], p: &SamplingParams, rng: &mut R) -> (u32, f32) {
    // A copy only when the penalty changes something.
    let z: std::borrow::Cow<[f32]> = if p.repetition_penalty != 1.0 && !seen.is_empty() {
        let mut z = logits.to_vec();
        apply_penalty(&mut z, seen.iter().copied(), p.repetition_penalty, &p.unpenalized);
        std::borrow::Cow::Owned(z)
    } else {
        std::borrow::Cow::Borrowed(logits)
    };
    if p.temperature <= 0.0 {
        let token = argmax(&z);
        return (token, token_logprob(logits, token, 1.0));
    }
    let max = crate::kernels::fast_exp::max(&z);
    let inv_t = 1.0 / p.temperature;
    let probs: Vec<f32> = z.iter().map(|&x| crate::kernels::fast_exp::exp((x - max) * inv_t)).collect();
    let token = match kept_tokens(&z, p.temperature, p.top_k, p.top_p) {
        None => draw(&probs, (0..probs.len() as u32).collect::<Vec<_>>().as_slice(), rng),
        Some(cand) => draw(&probs, &cand, rng),
    };
    (token, processed_logprob(&z, token, p))
}

/// `log p(token)` under the processed distribution of a row of *penalized* logits: temperature,
/// then top-k / top-p renormalised over the kept tokens.
pub fn processed_logprob(penalized: &[f32], token: u32, p: &SamplingParams) -> f32 {
    let t = p.logprob_temperature();
    match kept_tokens(penalized, t, p.top_k, p.top_p) {
        None => token_logprob(penalized, token, t),
        Some(kept) => {
            let max = kept.iter().map(|&i| penalized[i as usize]).fold(f32::NEG_INFINITY, f32::max);
            let sum: f64 = kept.iter().map(|&i| f64::from(((penalized[i as usize] - max) / t).exp())).sum();
            ((penalized[token as usize] - max) / t) - sum.ln() as f32
        }
    }
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
    let max = crate::kernels::fast_exp::max(xs);
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
        assert_eq!(choose_token(&[3.0, -1.0, 2.0], &[0], &p, &mut rng).0, 2);
        assert_eq!(choose_token(&[3.0, -1.0, 2.0], &[], &p, &mut rng).0, 0);
        assert_eq!(choose_token(&[-1.0, -1.5, -3.0], &[0], &p, &mut rng).0, 1);
        // An unpenalized id (a stop token) keeps its logit.
        let keep_stop = SamplingParams { unpenalized: vec![0], ..p };
        assert_eq!(choose_token(&[3.0, -1.0, 2.0], &[0], &keep_stop, &mut rng).0, 0);
    }

    #[test]
    fn top_k_and_top_p_restrict_support() {
        let logits = [0.0f32, 1.0, 2.0, 3.0];
        let mut rng = StdRng::seed_from_u64(1);
        let k2 = SamplingParams { top_k: 2, ..Default::default() };
        let p_small = SamplingParams { top_p: 0.1, ..Default::default() };
        for _ in 0..200 {
            assert!(choose_token(&logits, &[], &k2, &mut rng).0 >= 2);
            assert_eq!(choose_token(&logits, &[], &p_small, &mut rng).0, 3);
        }
    }

    #[test]
    fn sampling_frequencies_match_softmax() {
        let logits = [0.0f32, (2.0f32).ln()];
        let p = SamplingParams::default();
        let mut rng = StdRng::seed_from_u64(2);
        let ones = (0..6000).filter(|_| choose_token(&logits, &[], &p, &mut rng).0 == 1).count();
        let freq = ones as f64 / 6000.0;
        assert!((freq - 2.0 / 3.0).abs() < 0.03, "{freq}");
    }

    #[test]
    fn reported_logprobs_are_those_of_the_distribution_drawn_from() {
        // Penalty on token 2, temperature 0.5, top-k 3: the frequencies of the draws match the
        // reported probabilities.
        let logits = [1.0f32, 0.5, 2.0, 0.2, -1.0];
        let p = SamplingParams { temperature: 0.5, top_k: 3, repetition_penalty: 1.5, ..Default::default() };
        let mut rng = StdRng::seed_from_u64(3);
        let mut counts = [0usize; 5];
        let mut reported = [f32::NAN; 5];
        let n = 20_000;
        for _ in 0..n {
            let (t, lp) = choose_token(&logits, &[2], &p, &mut rng);
            counts[t as usize] += 1;
            reported[t as usize] = lp;
        }
        assert_eq!(counts[4], 0, "outside the top 3");
        let total: f32 = reported.iter().filter(|x| !x.is_nan()).map(|lp| lp.exp()).sum();
        assert!((total - 1.0).abs() < 1e-5, "the kept probabilities sum to 1: {total}");
        for t in 0..4 {
            if counts[t] > 0 {
                let freq = counts[t] as f32 / n as f32;
                assert!((freq - reported[t].exp()).abs() < 0.015, "token {t}: {freq} vs {}", reported[t].exp());
            }
        }
    }

    #[test]
    fn logprob_is_tempered_log_softmax() {
        let lp = token_logprob(&[1.0, 2.0, 3.0], 2, 2.0);
        let z: f32 = [0.5f32, 1.0, 1.5].iter().map(|x| x.exp()).sum();
        assert!((lp - (1.5 - z.ln())).abs() < 1e-6);
    }
}
