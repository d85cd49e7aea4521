//! Batched generation with a shared KV cache: left-padded prefill of distinct prompts,
//! fan-out to `n` samples, and decoding that drops finished rows as it goes.

use anyhow::{bail, Result};
use candle_core::{Device, IndexOp, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;

use crate::infer::sampler::{choose_token, PenaltyScope, SamplingParams};
use crate::model::cache::{KvCache, KvPrecision};
use crate::model::Pass;
use crate::model::{AttentionInput, CausalLm, Keys};

/// One generated continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Index of the prompt it continues.
    pub prompt_index: usize,
    /// Generated ids, the stop token included when one ended the sample.
    pub tokens: Vec<u32>,
    /// The log-prob of each generated token under the distribution it was drawn from (penalty,
    /// temperature, top-k/top-p; the behaviour policy's log-probs). Greedy: `log_softmax` of the
    /// raw logits.
    pub logprobs: Vec<f32>,
    /// True when a stop token ended the sample (false: hit `max_new_tokens`).
    pub stopped: bool,
}

/// What to generate from: an optional prefix shared by every prompt (e.g. the system
/// turn), computed once, and the per-prompt continuations of that prefix.
pub struct PromptBatch<'a> {
    pub prefix: &'a [u32],
    pub prompts: &'a [Vec<u32>],
    pub stop_ids: &'a [u32],
    pub pad_id: u32,
}

/// Prompts prefilled together at most; bounds the attention-score memory.
const PREFILL_ROWS: usize = 16;

/// Generates `params.n` samples per prompt; result `i * n + j` is sample `j` of prompt `i`.
/// Deterministic for a given seed: each sample draws from its own RNG.
pub fn generate(model: &CausalLm, req: &PromptBatch, params: &SamplingParams) -> Result<Vec<Sample>> {
    Ok(generate_timed(model, req, params)?.0)
}

/// Wall-clock split of one [`generate`] call.
#[derive(Debug, Clone, Copy, Default)]
pub struct GenerationTiming {
    /// Prefix and prompt prefill, up to the first sampled token's logits.
    pub prefill_s: f64,
    /// Everything after: sampling and the incremental decode steps.
    pub decode_s: f64,
}

/// [`generate`], also reporting how long prefill and decoding took (for benchmarks).
pub fn generate_timed(model: &CausalLm, req: &PromptBatch, params: &SamplingParams) -> Result<(Vec<Sample>, GenerationTiming)> {
    let (samples, timing, _) = in_pool(|| generate_inner(model, req, params, None))?;
    Ok((samples, timing))
}

/// [`generate`], also keeping each sample's hidden states entering block `layer`: a
/// `(prefix + prompt + tokens - 1, hidden)` tensor per sample, every position whose output the
/// teacher-forced scoring of the sample needs. A trainer that updates only blocks `layer..`
/// resumes from these instead of running the frozen trunk again.
pub fn generate_with_trunk(
    model: &CausalLm,
    req: &PromptBatch,
    params: &SamplingParams,
    layer: usize,
) -> Result<(Vec<Sample>, Vec<Tensor>)> {
    if layer > model.num_layers() {
        bail!("layer {layer} is past the model's {} blocks", model.num_layers());
    }
    let (samples, _, trunks) = in_pool(|| generate_inner(model, req, params, Some(layer)))?;
    Ok((samples, trunks.expect("captured when a layer is given")))
}

/// Runs `f` on a rayon worker thread. A decode step dispatches a few parallel products per
/// block; from a thread outside the pool each one is injected, wakes the workers and puts the
/// caller to sleep until they finish, three threads taking turns on what may be two cores.
/// From a worker the products' tasks go on its own queue and it works on them itself.
fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// Hidden states entering the capture layer, gathered as generation runs.
struct TrunkCapture {
    layer: usize,
    hidden: usize,
    prefix: Vec<f32>,
    prompts: Vec<Vec<f32>>,
    /// Per sample row: one hidden row per fed generated token.
    generated: Vec<Vec<f32>>,
}

/// The final-normed hidden state at the last position `(rows, 1, hidden)` (all the next
/// token needs: the last block skips its queries, attention and MLP everywhere else, ~3% of
/// a prefill), and the states entering `capture` at every position when asked for.
fn forward_capturing(
    model: &CausalLm,
    ids: &Tensor,
    attn: &AttentionInput,
    cache: &mut KvCache,
    capture: Option<usize>,
) -> Result<(Tensor, Option<Tensor>)> {
    let h = model.embed(ids, Pass::Infer)?;
    let trunk = match capture {
        Some(layer) => Some(model.forward_layers(&h, 0..layer, attn, Some(cache), Pass::Infer)?),
        None => None,
    };
    let top = model.forward_prompt_last(
        trunk.as_ref().unwrap_or(&h),
        capture.unwrap_or(0)..model.num_layers(),
        attn,
        Keys::Cache(cache),
        Pass::Infer,
    )?;
    Ok((model.final_norm(&top, Pass::Infer)?, trunk))
}

fn generate_inner(
    model: &CausalLm,
    req: &PromptBatch,
    params: &SamplingParams,
    capture: Option<usize>,
) -> Result<(Vec<Sample>, GenerationTiming, Option<Vec<Tensor>>)> {
    let started = std::time::Instant::now();
    if req.prompts.is_empty() || params.n == 0 {
        return Ok((Vec::new(), GenerationTiming::default(), capture.map(|_| Vec::new())));
    }
    if req.prefix.is_empty() && req.prompts.iter().any(|p| p.is_empty()) {
        bail!("a prompt is empty and there is no shared prefix to continue");
    }
    if !params.prompt_seeds.is_empty() && params.prompt_seeds.len() != req.prompts.len() {
        bail!("{} prompt seeds for {} prompts", params.prompt_seeds.len(), req.prompts.len());
    }
    let device = model.device().clone();
    let vocab = model.config().vocab_size;
    let plen = req.prefix.len();
    let slen = req.prompts.iter().map(|p| p.len()).max().unwrap_or(0);
    let capacity = plen + slen + params.max_new_tokens;
    if capacity > model.config().max_position_embeddings {
        bail!("prompt + generation ({capacity} tokens) exceeds the model's {} positions", model.config().max_position_embeddings);
    }

    let hidden = model.config().hidden_size;
    let mut trunks = capture.map(|layer| TrunkCapture { layer, hidden, prefix: Vec::new(), prompts: Vec::new(), generated: Vec::new() });
    let prefix_cache = if plen > 0 { Some(prefill_prefix(model, req.prefix, params.kv_cache, &device, trunks.as_mut())?) } else { None };

    // Prefill distinct prompts in row chunks, then stitch the caches together.
    let mut caches = Vec::new();
    let mut last_logits = Vec::new();
    for chunk in req.prompts.chunks(PREFILL_ROWS) {
        let rows = chunk.len();
        let mut cache = match &prefix_cache {
            Some(p) => KvCache::broadcast_prefix(p, rows, capacity)?,
            None => KvCache::new(model.config(), rows, capacity, params.kv_cache, &device)?,
        };
        let mut ids = Vec::with_capacity(rows * slen);
        let mut valid = Vec::with_capacity(rows);
        for p in chunk {
            let pad = slen - p.len();
            ids.extend(std::iter::repeat_n(req.pad_id, pad).chain(p.iter().copied()));
            let mut v = vec![true; plen];
            v.extend(std::iter::repeat_n(false, pad).chain(std::iter::repeat_n(true, p.len())));
            valid.push(v);
        }
        let logits = if slen > 0 {
            let ids = Tensor::from_vec(ids, (rows, slen), &device)?;
            let attn = AttentionInput::from_valid(&valid, slen, &device)?;
            let (h, trunk) = forward_capturing(model, &ids, &attn, &mut cache, trunks.as_ref().map(|c| c.layer))?;
            if let (Some(c), Some(trunk)) = (trunks.as_mut(), trunk) {
                for (row, p) in chunk.iter().enumerate() {
                    let own = trunk.i((row, slen - p.len()..slen, ..))?;
                    c.prompts.push(own.flatten_all()?.to_vec1::<f32>()?);
                }
            }
            model.logits(&h.squeeze(1)?, Pass::Infer)?
        } else {
            if let Some(c) = trunks.as_mut() {
                c.prompts.extend(chunk.iter().map(|_| Vec::new()));
            }
            let p = prefix_cache.as_ref().expect("checked above");
            p.last_logits.broadcast_as((rows, vocab))?.contiguous()?
        };
        caches.push(cache);
        last_logits.push(logits);
    }
    let mut cache = KvCache::concat_rows(caches)?;
    let first_logits = Tensor::cat(&last_logits, 0)?.to_vec2::<f32>()?;
    let prefill_s = started.elapsed().as_secs_f64();

    // Fan out: row r is sample (r % n) of prompt (r / n).
    let n = params.n;
    let total = req.prompts.len() * n;
    if n > 1 {
        let fan: Vec<usize> = (0..total).map(|r| r / n).collect();
        cache.select_rows(&fan)?;
    }
    let mut rows: Vec<Row> = (0..total)
        .map(|r| {
            let pi = r / n;
            let mut seen = Seen::new(vocab);
            if params.penalty_scope == PenaltyScope::Context {
                for &t in req.prefix.iter().chain(req.prompts[pi].iter()) {
                    seen.insert(t);
                }
            }
            let mut valid = vec![true; plen];
            let pad = slen - req.prompts[pi].len();
            valid.extend(std::iter::repeat_n(false, pad).chain(std::iter::repeat_n(true, req.prompts[pi].len())));
            Row {
                sample: Sample { prompt_index: pi, tokens: Vec::new(), logprobs: Vec::new(), stopped: false },
                rng: StdRng::seed_from_u64(match params.prompt_seeds.get(pi) {
                    Some(&seed) => mix_seed(seed, (r % n) as u64),
                    None => mix_seed(params.seed, r as u64),
                }),
                seen,
                valid,
                done: false,
            }
        })
        .collect();

    // `active[i]` is the index into `rows` of cache row i; `logits[i]` belongs to it.
    let mut active: Vec<usize> = (0..total).collect();
    let mut logits: Vec<Vec<f32>> = (0..total).map(|r| first_logits[r / n].clone()).collect();
    if let Some(c) = trunks.as_mut() {
        c.generated = vec![Vec::new(); total];
    }
    loop {
        pick_tokens(&mut rows, &active, &logits, params, req.stop_ids);
        if active.iter().all(|&ri| rows[ri].done) {
            break;
        }
        // Drop finished rows once enough accumulate: compaction copies the whole cache,
        // so doing it for every single finish would cost more than it saves.
        let n_done = active.iter().filter(|&&ri| rows[ri].done).count();
        if n_done > 0 && (n_done * 4 >= active.len() || active.len() - n_done <= 2) {
            let keep: Vec<usize> = (0..active.len()).filter(|&i| !rows[active[i]].done).collect();
            cache.select_rows(&keep)?;
            active = keep.iter().map(|&i| active[i]).collect();
        }
        // Finished rows still in the cache take a masked dummy step.
        let mut ids = Vec::with_capacity(active.len());
        let mut valid = Vec::with_capacity(active.len());
        for &ri in &active {
            let r = &mut rows[ri];
            ids.push(*r.sample.tokens.last().expect("one token per step"));
            r.valid.push(!r.done);
            valid.push(r.valid.clone());
        }
        let ids = Tensor::from_vec(ids, (active.len(), 1), &device)?;
        let attn = AttentionInput::from_valid(&valid, 1, &device)?;
        let (h, trunk) = forward_capturing(model, &ids, &attn, &mut cache, trunks.as_ref().map(|c| c.layer))?;
        if let (Some(c), Some(trunk)) = (trunks.as_mut(), trunk) {
            let trunk = trunk.squeeze(1)?.to_vec2::<f32>()?;
            for (i, &ri) in active.iter().enumerate() {
                // A finished row's dummy step feeds nothing of the sample.
                if !rows[ri].done {
                    c.generated[ri].extend_from_slice(&trunk[i]);
                }
            }
        }
        logits = model.logits(&h.squeeze(1)?, Pass::Infer)?.to_vec2::<f32>()?;
    }
    let total_s = started.elapsed().as_secs_f64();
    let timing = GenerationTiming { prefill_s, decode_s: total_s - prefill_s };
    let trunks = match trunks {
        None => None,
        Some(c) => Some(
            rows.iter()
                .enumerate()
                .map(|(ri, row)| {
                    let data = [c.prefix.as_slice(), &c.prompts[row.sample.prompt_index], &c.generated[ri]].concat();
                    let len = data.len() / c.hidden;
                    Tensor::from_vec(data, (len, c.hidden), &device)
                })
                .collect::<candle_core::Result<Vec<_>>>()?,
        ),
    };
    Ok((rows.into_iter().map(|r| r.sample).collect(), timing, trunks))
}

/// Draws one token for every unfinished active row (rows in parallel: penalties and
/// sorting are per row) and records it.
fn pick_tokens(rows: &mut [Row], active: &[usize], logits: &[Vec<f32>], params: &SamplingParams, stop_ids: &[u32]) {
    let mut slots: Vec<Option<&mut Row>> = rows.iter_mut().map(Some).collect();
    let work: Vec<(&mut Row, &Vec<f32>)> =
        active.iter().zip(logits).filter_map(|(&ri, l)| slots[ri].take().filter(|r| !r.done).map(|r| (r, l))).collect();
    work.into_par_iter().for_each(|(row, l)| {
        let (tok, logprob) = choose_token(l, &row.seen.ids, params, &mut row.rng);
        row.sample.tokens.push(tok);
        row.sample.logprobs.push(logprob);
        row.seen.insert(tok);
        if stop_ids.contains(&tok) {
            row.sample.stopped = true;
            row.done = true;
        } else if row.sample.tokens.len() >= params.max_new_tokens {
            row.done = true;
        }
    });
}

/// The distinct token ids a row's repetition penalty applies to.
struct Seen {
    marked: Vec<bool>,
    ids: Vec<u32>,
}

impl Seen {
    fn new(vocab: usize) -> Self {
        Self { marked: vec![false; vocab], ids: Vec::new() }
    }

    fn insert(&mut self, id: u32) {
        if let Some(m) = self.marked.get_mut(id as usize).filter(|m| !**m) {
            *m = true;
            self.ids.push(id);
        }
    }
}

struct Row {
    sample: Sample,
    rng: StdRng,
    seen: Seen,
    valid: Vec<bool>,
    done: bool,
}

fn mix_seed(seed: u64, row: u64) -> u64 {
    // SplitMix64 finaliser: independent streams per sample from one user seed.
    let mut z = seed ^ row.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct PrefixCache {
    cache: KvCache,
    last_logits: Tensor,
}

impl std::ops::Deref for PrefixCache {
    type Target = KvCache;
    fn deref(&self) -> &KvCache {
        &self.cache
    }
}

fn prefill_prefix(
    model: &CausalLm,
    prefix: &[u32],
    precision: KvPrecision,
    device: &Device,
    capture: Option<&mut TrunkCapture>,
) -> Result<PrefixCache> {
    let t = prefix.len();
    let mut cache = KvCache::new(model.config(), 1, t, precision, device)?;
    let ids = Tensor::from_vec(prefix.to_vec(), (1, t), device)?;
    let attn = AttentionInput::causal(1, t, device)?;
    let (h, trunk) = forward_capturing(model, &ids, &attn, &mut cache, capture.as_ref().map(|c| c.layer))?;
    if let (Some(c), Some(trunk)) = (capture, trunk) {
        c.prefix = trunk.flatten_all()?.to_vec1::<f32>()?;
    }
    let last_logits = model.logits(&h.squeeze(1)?, Pass::Infer)?;
    Ok(PrefixCache { cache, last_logits })
}
