//! Rollouts: n sampled replies per prompt of a composite batch, each kept with its tokens, the
//! sampler's log-probs (the "old" policy of the single PPO epoch) and its parsed augmentation.
//!
//! All prompts of one role share their system turn, so it is prefilled once (`coaug-lm`'s
//! shared prefix) and every slot only adds its user turn. Documents enter the prompt as
//! `"title. text"` cut to the token budget; the retriever still sees the full text.
//!
//! The retriever a run trains for picks the system prompt (sparse: keywords; dense: query
//! expansion / document abstract). How a reply joins its original text is the reward's business:
//! it composes (original, augmentation) as `coaug eval` does (`coaug_retrieval::Composition`).

use std::sync::Arc;

use anyhow::Result;
use candle_core::Tensor;
use coaug_augment::{parse_answer_with, ParsePolicy, PromptSet, Retriever, Role, TokenBudget};
use coaug_lm::{generate, generate_with_trunk, LmTokenizer, PromptBatch, SamplingParams};

use crate::layout::RolloutLayout;
use crate::policy::Policy;

/// One sampled reply (or, for a role that is not augmented, the original text alone).
#[derive(Debug, Clone)]
pub struct Rollout {
    /// Prompt ids (system turn + user turn + open assistant turn); empty when not generated.
    pub prompt: Arc<[u32]>,
    /// Generated ids (the stop token included when one ended the reply).
    pub tokens: Vec<u32>,
    /// `log π_old` of each generated token, at the sampling temperature.
    pub old_logprobs: Vec<f32>,
    /// The parsed augmentation (empty: none).
    pub augmentation: String,
    pub format_valid: bool,
    /// The original text: the query, or the document's full `"title. text"` (never the truncated
    /// model input).
    pub original: String,
    /// Hidden states entering the first trainable block at every position the update scores
    /// from (prompt + tokens - 1), kept from generation so the update skips the frozen trunk.
    pub trunk: Option<Tensor>,
}

impl Rollout {
    /// Whether the update learns from it (a fixed original text has no tokens).
    pub fn is_generated(&self) -> bool {
        !self.tokens.is_empty()
    }

    fn original(text: String) -> Self {
        Self {
            prompt: Arc::from(Vec::new()),
            tokens: Vec::new(),
            old_logprobs: Vec::new(),
            augmentation: String::new(),
            format_valid: false,
            original: text,
            trunk: None,
        }
    }
}

/// How one role's prompts are sampled.
#[derive(Debug, Clone)]
pub struct RoleSampling {
    /// The retriever the replies are written for: system prompt and composition.
    pub retriever: Retriever,
    pub params: SamplingParams,
    pub parse_policy: ParsePolicy,
    /// Token budget of a document's text inside its prompt.
    pub max_input_tokens: Option<usize>,
    /// Keep each rollout's hidden states entering this block (the first trainable one).
    pub keep_trunk_at: Option<usize>,
}

/// Every rollout of a step in the layout's order: query rows, then document columns.
#[derive(Debug, Clone)]
pub struct StepRollouts {
    pub layout: RolloutLayout,
    pub queries: Vec<Rollout>,
    pub documents: Vec<Rollout>,
}

/// Samples `params.n` replies for every text (`None` = keep the originals, one rollout each:
/// the role is not augmented in this ablation). Result `i * n + j` is reply `j` of text `i`.
pub fn sample_role(
    policy: &Policy,
    prompts: &PromptSet,
    role: Role,
    originals: &[String],
    sampling: Option<&RoleSampling>,
) -> Result<Vec<Rollout>> {
    let Some(sampling) = sampling else {
        return Ok(originals.iter().cloned().map(Rollout::original).collect());
    };
    let tok = &policy.tokenizer;
    let system = prompts.get(role, sampling.retriever);
    // The model's chat template, split as augmentation splits it (coaug-augment's LmGenerator).
    let chat = tok.chat_prompt(system)?;
    let user_turns = originals
        .iter()
        .map(|text| {
            let input = match sampling.max_input_tokens {
                Some(budget) => truncate_to_tokens(tok, text, budget),
                None => text.as_str(),
            };
            chat.user_ids(tok, input)
        })
        .collect::<Result<Vec<_>>>()?;
    let request = PromptBatch { prefix: &chat.prefix, prompts: &user_turns, stop_ids: tok.stop_ids(), pad_id: tok.pad_id() };
    let (samples, trunks) = match sampling.keep_trunk_at {
        Some(layer) => {
            let (samples, trunks) = generate_with_trunk(&policy.model, &request, &sampling.params, layer)?;
            (samples, trunks.into_iter().map(Some).collect())
        }
        None => {
            let samples = generate(&policy.model, &request, &sampling.params)?;
            let none = vec![None; samples.len()];
            (samples, none)
        }
    };
    let full_prompts: Vec<Arc<[u32]>> =
        user_turns.iter().map(|turn| Arc::from([chat.prefix.as_slice(), turn.as_slice()].concat())).collect();
    samples
        .into_iter()
        .zip(trunks)
        .map(|(sample, trunk)| {
            let i = sample.prompt_index;
            let reply = tok.decode(&sample.tokens)?;
            let parsed = parse_answer_with(&reply, sampling.parse_policy);
            Ok(Rollout {
                prompt: full_prompts[i].clone(),
                tokens: sample.tokens,
                old_logprobs: sample.logprobs,
                augmentation: parsed.text,
                format_valid: parsed.format_valid,
                original: originals[i].clone(),
                trunk,
            })
        })
        .collect()
}

/// The longest word-boundary prefix of `text` within `budget` model tokens.
pub fn truncate_to_tokens<'a>(tok: &LmTokenizer, text: &'a str, budget: usize) -> &'a str {
    let count = |t: &str| tok.encode(t).map(|ids| ids.len()).unwrap_or(usize::MAX);
    count.truncate(text, budget)
}
