//! The real LM behind the [`Generator`] trait: coaug-lm's batched generation on ChatML prompts.
//!
//! Every request of a batch shares its system turn, so that turn is tokenized and prefilled once
//! (coaug-lm's shared-prefix KV cache) and only each user turn is prefilled per row.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context};
use candle_core::Device;
use coaug_lm::{generate, CausalLm, KvPrecision, LmTokenizer, Precision, SamplingParams};
use sha2::{Digest, Sha256};

use crate::generator::{DecodeSettings, Generation, GenerationRequest, Generator};
use crate::text::TokenBudget;

/// A causal LM and its tokenizer, completing augmentation prompts.
pub struct LmGenerator {
    /// Loaded on first use when opened with [`LmGenerator::open`].
    model: Option<CausalLm>,
    /// What loads the weights when `model` is still empty.
    deferred: Option<(PathBuf, Precision)>,
    tokenizer: LmTokenizer,
    fingerprint: String,
    kv_cache: KvPrecision,
    /// Where the weights came from, for reports.
    pub source: String,
}

impl LmGenerator {
    /// Loads a GGUF file or a HF directory (`config.json`, `*.safetensors`, `tokenizer.json`).
    pub fn load(path: &Path, precision: Precision) -> anyhow::Result<Self> {
        let (model, tokenizer) = load_for_decoding(path, precision, None)?;
        let weights = weights_fingerprint(path)?;
        // The precision changes the arithmetic, hence (rarely) a greedy token: it is part of the key.
        let fingerprint = format!("{weights}:{}{}", precision_name(precision, &model), template_tag(&tokenizer));
        Ok(Self::loaded_with(model, tokenizer, fingerprint, path.display().to_string()))
    }

    /// A generator whose weights are in memory.
    fn loaded_with(model: CausalLm, tokenizer: LmTokenizer, fingerprint: String, source: String) -> Self {
        Self { model: Some(model), deferred: None, tokenizer, fingerprint, kv_cache: KvPrecision::F32, source }
    }

    /// Like [`LmGenerator::load`], but f32 weights are read only when something must be
    /// generated: the tokenizer and the fingerprint (all a store lookup needs) are ready at once.
    /// Dequantizing a 1.5B GGUF to f32 takes about a minute here, which `coaug eval` on a filled
    /// store should not pay. Quantized weights load at once (they load fast, and whether a GGUF's
    /// weights are quantized is only known once they are read).
    pub fn open(path: &Path, precision: Precision) -> anyhow::Result<Self> {
        if precision != Precision::F32 {
            return Self::load(path, precision);
        }
        let tokenizer = coaug_lm::load_tokenizer(path).with_context(|| format!("cannot load the tokenizer of {}", path.display()))?;
        let fingerprint = format!("{}:f32{}", weights_fingerprint(path)?, template_tag(&tokenizer));
        Ok(Self {
            model: None,
            deferred: Some((path.to_path_buf(), precision)),
            tokenizer,
            fingerprint,
            kv_cache: KvPrecision::F32,
            source: path.display().to_string(),
        })
    }

    /// The model, loading deferred weights now.
    fn loaded(&mut self) -> anyhow::Result<&CausalLm> {
        if self.model.is_none() {
            let (path, precision) = self.deferred.take().expect("a generator has a model or a deferred load");
            let started = std::time::Instant::now();
            let (model, _) = load_for_decoding(&path, precision, None)?;
            tracing::info!(model = %path.display(), secs = started.elapsed().as_secs_f64(), "loaded the LM");
            self.model = Some(model);
        }
        Ok(self.model.as_ref().expect("just loaded"))
    }

    /// The base model in f32 with a training checkpoint's tensors loaded: the RL-trained policy.
    /// Training updates f32 weights, so a GGUF base is dequantized, exactly as the trainer did.
    pub fn load_with_checkpoint(path: &Path, checkpoint: &Path) -> anyhow::Result<Self> {
        let (model, tokenizer) = load_for_decoding(path, Precision::F32, Some(checkpoint))?;
        let fingerprint = format!("{}:f32+{}{}", weights_fingerprint(path)?, weights_fingerprint(checkpoint)?, template_tag(&tokenizer));
        Ok(Self::loaded_with(model, tokenizer, fingerprint, format!("{} + {}", path.display(), checkpoint.display())))
    }

    /// A tiny randomly initialised Llama with a byte-level tokenizer, for tests and dry runs of the
    /// whole pipeline: its replies are noise, but it runs the real generation code in milliseconds.
    pub fn tiny_random(seed: u64) -> anyhow::Result<Self> {
        let tokenizer = byte_tokenizer()?;
        let mut cfg = coaug_lm::ModelConfig::tiny(coaug_lm::Architecture::Llama, tokenizer.vocab_size());
        cfg.max_position_embeddings = 4096;
        cfg.eos_token_id = tokenizer.token_to_id("<|im_end|>");
        let mut model = CausalLm::random(&cfg, seed, &Device::Cpu)?;
        model.prepare_for_decoding()?;
        Ok(Self::loaded_with(model, tokenizer, format!("tiny-random-llama:{seed}"), "tiny random".into()))
    }

    /// Generates with the KV cache in this precision (f32 unless set). f16 and 8 bits are faster
    /// and change the arithmetic, hence (rarely) a greedy token: the precision becomes part of
    /// the fingerprint (`…:kv-f16`, `…:kv-q8`; f32 adds nothing, as before there was a choice).
    pub fn with_kv_cache(mut self, kv_cache: KvPrecision) -> Self {
        if kv_cache != self.kv_cache {
            let base = self.fingerprint.strip_suffix(&format!(":kv-{}", self.kv_cache.name())).unwrap_or(&self.fingerprint).to_string();
            self.fingerprint = match kv_cache {
                KvPrecision::F32 => base,
                other => format!("{base}:kv-{}", other.name()),
            };
            self.kv_cache = kv_cache;
        }
        self
    }

    pub fn tokenizer(&self) -> &LmTokenizer {
        &self.tokenizer
    }

    /// The model, loading deferred weights first.
    pub fn model(&mut self) -> anyhow::Result<&CausalLm> {
        self.loaded()
    }

    /// Counts and cuts model inputs with this model's tokenizer.
    /// (A clone of the tokenizer, so the budget can be held while the generator is borrowed mutably.)
    pub fn token_budget(&self) -> LmTokenBudget {
        LmTokenBudget { tokenizer: self.tokenizer.clone() }
    }
}

impl Generator for LmGenerator {
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn generate(&mut self, requests: &[GenerationRequest], decoding: &DecodeSettings) -> anyhow::Result<Vec<Generation>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        self.loaded()?;
        let model = self.model.as_ref().expect("just loaded");
        ModelGenerator { model, tokenizer: &self.tokenizer, kv_cache: self.kv_cache, fingerprint: &self.fingerprint }
            .generate(requests, decoding)
    }

    fn token_budget(&self) -> Box<dyn TokenBudget> {
        Box::new(LmGenerator::token_budget(self))
    }
}

/// A [`Generator`] over a model held elsewhere (the RL trainer's policy): the same prompt
/// assembly and batching as [`LmGenerator`], so validation augments exactly as evaluation does.
pub struct ModelGenerator<'a> {
    pub model: &'a CausalLm,
    pub tokenizer: &'a LmTokenizer,
    pub kv_cache: KvPrecision,
    /// Identifies the weights (e.g. the training step), for store keys.
    pub fingerprint: &'a str,
}

impl ModelGenerator<'_> {
    fn run_group(&self, system_prompt: &str, requests: &[&GenerationRequest], params: &SamplingParams) -> anyhow::Result<Vec<Generation>> {
        // The system turn (and the opening of the user turn) is the same for every request of the
        // group: prefilled once.
        let chat = self.tokenizer.chat_prompt(system_prompt)?;
        let prompts = requests.iter().map(|r| chat.user_ids(self.tokenizer, &r.user_text)).collect::<anyhow::Result<Vec<_>>>()?;
        let request = coaug_lm::PromptBatch {
            prefix: &chat.prefix,
            prompts: &prompts,
            stop_ids: self.tokenizer.stop_ids(),
            pad_id: self.tokenizer.pad_id(),
        };
        let samples = generate(self.model, &request, params)?;
        ensure!(samples.len() == requests.len(), "{} samples for {} prompts", samples.len(), requests.len());
        samples.into_iter().map(|s| Ok(Generation { text: self.tokenizer.decode(&s.tokens)?, generated_tokens: s.tokens.len() })).collect()
    }
}

impl Generator for ModelGenerator<'_> {
    fn fingerprint(&self) -> String {
        self.fingerprint.to_string()
    }

    /// Requests are generated together (grouped by system prompt); their outputs do not depend on
    /// the batch beyond float rounding of padded rows (coaug-lm's padding test: 1e-5). A sampled
    /// request draws from its own seed (coaug-lm's per-prompt seeds), whatever shares its batch.
    fn generate(&mut self, requests: &[GenerationRequest], decoding: &DecodeSettings) -> anyhow::Result<Vec<Generation>> {
        let base = SamplingParams {
            temperature: decoding.temperature,
            top_p: decoding.top_p,
            top_k: decoding.top_k,
            repetition_penalty: decoding.repetition_penalty,
            // Hugging Face's rule over the whole context, as the stored augmentations were made.
            penalty_scope: coaug_lm::PenaltyScope::Context,
            unpenalized: Vec::new(),
            max_new_tokens: decoding.max_new_tokens,
            n: 1,
            seed: 0,
            prompt_seeds: Vec::new(),
            kv_cache: self.kv_cache,
        };
        let mut out: Vec<Option<Generation>> = vec![None; requests.len()];
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, r) in requests.iter().enumerate() {
            groups.entry(r.system_prompt.as_str()).or_default().push(i);
        }
        for (system, indices) in groups {
            let group: Vec<&GenerationRequest> = indices.iter().map(|&i| &requests[i]).collect();
            let params = if decoding.is_greedy() {
                base.clone()
            } else {
                SamplingParams { prompt_seeds: group.iter().map(|r| r.seed).collect(), ..base.clone() }
            };
            for (i, g) in indices.into_iter().zip(self.run_group(system, &group, &params)?) {
                out[i] = Some(g);
            }
        }
        Ok(out.into_iter().map(|g| g.expect("every request answered")).collect())
    }
}

/// [`TokenBudget`] with the model's own tokenizer, so a document is cut where the model would
/// count its budget, not by a words-to-tokens guess.
pub struct LmTokenBudget {
    tokenizer: LmTokenizer,
}

impl LmTokenBudget {
    pub fn new(tokenizer: LmTokenizer) -> Self {
        Self { tokenizer }
    }
}

impl TokenBudget for LmTokenBudget {
    fn count_tokens(&self, text: &str) -> usize {
        // Encoding plain text cannot fail with a byte-level tokenizer; count generously if it does.
        self.tokenizer.encode(text).map(|ids| ids.len()).unwrap_or(usize::MAX)
    }

    /// One encoding with offsets finds where token `max_tokens` starts; the cut then moves back to
    /// the word boundary before it (the default binary search would encode O(log n) times).
    fn truncate<'t>(&self, text: &'t str, max_tokens: usize) -> &'t str {
        let Ok(enc) = self.tokenizer.inner().encode(text, false) else {
            return crate::text::WhitespaceTokens::default().truncate(text, max_tokens);
        };
        let offsets = enc.get_offsets();
        if offsets.len() <= max_tokens {
            return text;
        }
        // Byte offset where the first token past the budget starts (clamped to a char boundary).
        let mut cut = offsets[max_tokens].0.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let head = &text[..cut];
        // Back to the end of the last whole word: never hand the model half a word.
        let word_end = if text[cut..].starts_with(char::is_whitespace) {
            head.trim_end().len()
        } else {
            head.rfind(char::is_whitespace).map(|i| head[..i].trim_end().len()).unwrap_or(0)
        };
        &text[..word_end]
    }
}

/// The chat template changes the prompt the model reads, so it is part of the fingerprint, except
/// for templates that render as ChatML (what every store held before templates were read).
fn template_tag(tokenizer: &LmTokenizer) -> String {
    let chat = tokenizer.chat_template();
    if chat.renders_as_chatml() {
        String::new()
    } else {
        format!(":chat-{}", &hex::encode(Sha256::digest(chat.source().as_bytes()))[..16])
    }
}

fn precision_name(precision: Precision, model: &CausalLm) -> &'static str {
    match precision {
        Precision::Quantized if model.is_quantized() => "quantized",
        _ => "f32",
    }
}

/// Loads a model (with a training checkpoint's tensors, if given) and prepares it for decoding.
fn load_for_decoding(path: &Path, precision: Precision, checkpoint: Option<&Path>) -> anyhow::Result<(CausalLm, LmTokenizer)> {
    let (mut model, tokenizer) =
        coaug_lm::load_model(path, precision, &Device::Cpu).with_context(|| format!("cannot load the model {}", path.display()))?;
    if let Some(checkpoint) = checkpoint {
        coaug_lm::load_checkpoint(&mut model, checkpoint)
            .with_context(|| format!("cannot apply the checkpoint {} to {}", checkpoint.display(), path.display()))?;
    }
    model.prepare_for_decoding()?;
    Ok((model, tokenizer))
}

/// sha256 over the weight files (a GGUF file, or a HF directory's config and safetensors),
/// cached beside the cache root keyed by path, size and modification time: hashing a large
/// model on every run would cost seconds for nothing.
pub fn weights_fingerprint(path: &Path) -> anyhow::Result<String> {
    let files = weight_files(path)?;
    let mut stamp = Sha256::new();
    for f in &files {
        let meta = std::fs::metadata(f).with_context(|| format!("cannot stat {}", f.display()))?;
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        stamp.update(format!("{}|{}|{:?}\n", f.canonicalize()?.display(), meta.len(), mtime).as_bytes());
    }
    let memo = coaug_lm::cache_root().join("fingerprints").join(hex::encode(stamp.finalize()));
    if let Ok(cached) = std::fs::read_to_string(&memo) {
        if cached.trim().len() == 64 + "sha256:".len() {
            return Ok(cached.trim().to_string());
        }
    }
    let mut digest = Sha256::new();
    for f in &files {
        coaug_data::cache::hash_file(f, &mut digest)?;
    }
    let fingerprint = format!("sha256:{}", hex::encode(digest.finalize()));
    // Best effort: an unwritable cache only costs a re-hash next time.
    if let Some(dir) = memo.parent() {
        let _ = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&memo, &fingerprint));
    }
    Ok(fingerprint)
}

fn weight_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        ensure!(path.is_file(), "model {} does not exist", path.display());
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot list {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors") || p.file_name().is_some_and(|n| n == "config.json"))
        .collect();
    files.sort();
    ensure!(!files.is_empty(), "{} holds no config.json or *.safetensors", path.display());
    Ok(files)
}

/// 256 byte tokens plus the ChatML markers: enough to run any text through a tiny model.
fn byte_tokenizer() -> anyhow::Result<LmTokenizer> {
    use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{AddedToken, Tokenizer};

    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort_unstable();
    let vocab: tokenizers::models::bpe::Vocab = alphabet.iter().enumerate().map(|(i, c)| (c.to_string(), i as u32)).collect();
    let bpe = BPE::builder().vocab_and_merges(vocab, Vec::new()).build().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut tk = Tokenizer::new(bpe);
    tk.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tk.with_decoder(Some(ByteLevelDecoder::default()));
    tk.add_special_tokens(["<|im_start|>", "<|im_end|>", "<|endoftext|>"].map(|t| AddedToken::from(t, true)))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let eos = tk.token_to_id("<|im_end|>");
    Ok(LmTokenizer::new(tk, eos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(system: &str, text: &str, seed: u64) -> GenerationRequest {
        GenerationRequest { system_prompt: system.into(), user_text: text.into(), seed }
    }

    #[test]
    fn the_kv_cache_precision_is_part_of_the_fingerprint() {
        let f32_print = LmGenerator::tiny_random(4).unwrap().fingerprint();
        let g = LmGenerator::tiny_random(4).unwrap().with_kv_cache(KvPrecision::F16);
        assert_eq!(g.fingerprint(), format!("{f32_print}:kv-f16"));
        let g = g.with_kv_cache(KvPrecision::Q8);
        assert_eq!(g.fingerprint(), format!("{f32_print}:kv-q8"));
        // Back to f32: the fingerprint stores made before the choice existed.
        assert_eq!(g.with_kv_cache(KvPrecision::F32).fingerprint(), f32_print);
    }

    #[test]
    fn prefix_and_suffix_tokenize_like_the_whole_prompt() {
        let g = LmGenerator::tiny_random(1).unwrap();
        let whole = g
            .tokenizer
            .chat_template()
            .render(&[(coaug_lm::ChatRole::System, "sys <answer>"), (coaug_lm::ChatRole::User, "Vitamin D, bones.")], true)
            .unwrap();
        let chat = g.tokenizer.chat_prompt("sys <answer>").unwrap();
        let mut split = chat.prefix.clone();
        split.extend(chat.user_ids(&g.tokenizer, "Vitamin D, bones.").unwrap());
        assert_eq!(split, g.tokenizer.encode(&whole).unwrap());
    }

    #[test]
    fn sampled_replies_depend_only_on_their_own_seed() {
        let mut g = LmGenerator::tiny_random(2).unwrap();
        let d = DecodeSettings::sampled(12, 0);
        let a = request("s", "statins and muscle pain", 7);
        let alone = g.generate(std::slice::from_ref(&a), &d).unwrap();
        let batch = g.generate(&[request("t", "other text", 3), a.clone(), request("s", "more", 9)], &d).unwrap();
        assert_eq!(alone[0], batch[1]);
        assert!(alone[0].generated_tokens > 0 && alone[0].generated_tokens <= 12);
        let other_seed = g.generate(&[request("s", "statins and muscle pain", 8)], &d).unwrap();
        assert_ne!(alone[0].text, other_seed[0].text, "a different seed should (almost surely) differ");
    }

    #[test]
    fn greedy_batches_mix_system_prompts_and_keep_order() {
        let mut g = LmGenerator::tiny_random(3).unwrap();
        let d = DecodeSettings::greedy(10);
        let reqs = [request("a", "first text", 1), request("b", "second", 2), request("a", "third one", 3)];
        let batch = g.generate(&reqs, &d).unwrap();
        for (r, got) in reqs.iter().zip(&batch) {
            assert_eq!(&g.generate(std::slice::from_ref(r), &d).unwrap()[0], got);
        }
    }

    #[test]
    fn tokenizer_budget_cuts_at_word_ends_within_budget() {
        let g = LmGenerator::tiny_random(4).unwrap();
        let budget = g.token_budget();
        // Byte-level, no merges: one token per byte.
        assert_eq!(budget.count_tokens("ab cd"), 5);
        assert_eq!(budget.truncate("ab cd ef", 5), "ab cd");
        assert_eq!(budget.truncate("ab cd ef", 4), "ab");
        assert_eq!(budget.truncate("ab cd ef", 1), "");
        assert_eq!(budget.truncate("ab cd ef", 100), "ab cd ef");
        assert_eq!(budget.truncate("é é é", 4), "é");
        let long = "word ".repeat(20_000);
        let cut = budget.truncate(&long, 512);
        assert!(budget.count_tokens(cut) <= 512 && cut.len() > 500, "{}", cut.len());
    }

    #[test]
    fn fingerprint_hashes_file_content() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
        std::fs::write(&a, b"weights one").unwrap();
        std::fs::write(&b, b"weights two").unwrap();
        let fa = weights_fingerprint(&a).unwrap();
        assert_eq!(fa, format!("sha256:{}", hex::encode(Sha256::digest(b"weights one"))));
        assert_eq!(fa, weights_fingerprint(&a).unwrap(), "cached value is the same");
        assert_ne!(fa, weights_fingerprint(&b).unwrap());
        assert!(weights_fingerprint(&dir.path().join("absent.gguf")).is_err());
    }
}
