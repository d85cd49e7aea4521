//! Tokenizer from `tokenizer.json` or from GGUF metadata, with the model's chat template.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use crate::text::chat::{ChatRole, ChatTemplate};

/// ChatML turn markers used by SmolLM2 and Qwen2.
pub const IM_START: &str = "<|im_start|>";
pub const IM_END: &str = "<|im_end|>";

/// Qwen2's pre-tokenization regex (from its `tokenizer.json`).
const QWEN2_PATTERN: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A tokenizer together with the ids generation needs and the model's chat template.
#[derive(Clone)]
pub struct LmTokenizer {
    inner: Tokenizer,
    stop_ids: Vec<u32>,
    pad_id: u32,
    chat: ChatTemplate,
}

/// A system prompt in the model's chat template, tokenized: the shared prefix (the system turn
/// and the opening of the user turn), and what closes any user text (the end of its turn and the
/// opening of the assistant's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatPrompt {
    pub prefix: Vec<u32>,
    suffix: String,
}

impl ChatPrompt {
    /// What closes a user text: the end of its turn and the opening of the assistant's.
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// The tokens after the prefix for one user text.
    pub fn user_ids(&self, tokenizer: &LmTokenizer, user: &str) -> Result<Vec<u32>> {
        tokenizer.encode(&format!("{user}{}", self.suffix))
    }
}

impl LmTokenizer {
    /// Wraps a HF tokenizer; stop ids are `eos_id` plus `<|im_end|>` / `<|endoftext|>` when present.
    pub fn new(inner: Tokenizer, eos_id: Option<u32>) -> Self {
        let mut stop_ids: Vec<u32> = eos_id.into_iter().collect();
        for t in [IM_END, "<|endoftext|>"] {
            if let Some(id) = inner.token_to_id(t) {
                if !stop_ids.contains(&id) {
                    stop_ids.push(id);
                }
            }
        }
        let pad_id = stop_ids.first().copied().unwrap_or(0);
        LmTokenizer { inner, stop_ids, pad_id, chat: ChatTemplate::chatml() }
    }

    /// The words every tiny test vocabulary starts with: ChatML's markers, the unknown word and
    /// the answer tags the prompts ask for.
    pub const TINY_MARKERS: [&'static str; 5] = ["<|im_end|>", "<|im_start|>", "[UNK]", "<answer>", "</answer>"];

    /// A word-level tokenizer for tiny random models in tests: token i is `words[i]`, text splits
    /// on whitespace, unknown words become `[UNK]` (which `words` must hold), ChatML's markers are
    /// special tokens and `<|im_end|>` ends a reply.
    pub fn word_level(words: &[String]) -> Result<Self> {
        use tokenizers::models::wordlevel::WordLevel;
        use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
        let vocab: HashMap<String, u32> = words.iter().enumerate().map(|(i, w)| (w.clone(), i as u32)).collect();
        let model = WordLevel::builder()
            .vocab(vocab.into_iter().collect())
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| anyhow!("word-level vocabulary: {e}"))?;
        let mut tk = Tokenizer::new(model);
        tk.with_pre_tokenizer(Some(WhitespaceSplit));
        tk.add_special_tokens([AddedToken::from("<|im_start|>", true), AddedToken::from(IM_END, true)])
            .map_err(|e| anyhow!("adding ChatML's markers: {e}"))?;
        let eos = tk.token_to_id(IM_END);
        Ok(Self::new(tk, eos))
    }

    /// The same tokenizer with another chat template.
    pub fn with_chat_template(mut self, chat: ChatTemplate) -> Self {
        self.chat = chat;
        self
    }

    pub fn chat_template(&self) -> &ChatTemplate {
        &self.chat
    }

    /// The token ids of a conversation in the model's chat template.
    pub fn chat_ids(&self, turns: &[(ChatRole, &str)], add_generation_prompt: bool) -> Result<Vec<u32>> {
        self.encode(&self.chat.render(turns, add_generation_prompt)?)
    }

    /// `system` in the chat template, ready for many user texts (see [`ChatPrompt`]).
    pub fn chat_prompt(&self, system: &str) -> Result<ChatPrompt> {
        let (prefix, suffix) = self.chat.split_user_turn(system)?;
        Ok(ChatPrompt { prefix: self.encode(&prefix)?, suffix })
    }

    /// Reads a HF `tokenizer.json`, and the chat template of `tokenizer_config.json` beside it
    /// (ChatML when there is none).
    pub fn from_file(path: &Path, eos_id: Option<u32>) -> Result<Self> {
        let inner = Tokenizer::from_file(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let tokenizer = Self::new(inner, eos_id);
        let config = path.with_file_name("tokenizer_config.json");
        Ok(match ChatTemplate::from_tokenizer_config(&config)? {
            Some(chat) => tokenizer.with_chat_template(chat),
            None => tokenizer,
        })
    }

    /// Builds the byte-level BPE tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(path: &Path) -> Result<Self> {
        let mut reader = BufReader::new(File::open(path).with_context(|| format!("opening {}", path.display()))?);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| anyhow!("{}: not a GGUF file: {e}", path.display()))?;
        Self::from_gguf_metadata(&content.metadata).with_context(|| format!("{}: building tokenizer", path.display()))
    }

    pub(crate) fn from_gguf_metadata(md: &HashMap<String, gguf_file::Value>) -> Result<Self> {
        let get = |k: &str| md.get(k).ok_or_else(|| anyhow!("missing metadata `{k}`"));
        let model = get("tokenizer.ggml.model")?.to_string()?;
        if model != "gpt2" {
            bail!("tokenizer model `{model}` is not byte-level BPE (gpt2)");
        }
        let tokens: Vec<String> =
            get("tokenizer.ggml.tokens")?.to_vec()?.iter().map(|v| v.to_string().cloned()).collect::<candle_core::Result<_>>()?;
        let merges: Vec<(String, String)> = get("tokenizer.ggml.merges")?
            .to_vec()?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let s = v.to_string()?;
                s.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| candle_core::Error::Msg(format!("merge {i} `{s}` has no space")))
            })
            .collect::<candle_core::Result<_>>()?;
        let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
            Some(v) => v.to_vec()?.iter().map(|x| x.to_i32()).collect::<candle_core::Result<_>>()?,
            None => vec![1; tokens.len()],
        };
        let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| anyhow!("building BPE: {e}"))?;
        let mut tk = Tokenizer::new(bpe);
        let pre = md.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).map(String::as_str).unwrap_or("");
        let byte_level = ByteLevel::new(false, true, true);
        let pre_tok: PreTokenizerWrapper = match pre {
            "qwen2" => {
                let split = Split::new(SplitPattern::Regex(QWEN2_PATTERN.into()), SplitDelimiterBehavior::Isolated, false)
                    .map_err(|e| anyhow!("qwen2 pattern: {e}"))?;
                Sequence::new(vec![split.into(), ByteLevel::new(false, false, false).into()]).into()
            }
            "smollm" | "starcoder" | "refact" => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
            _ => byte_level.into(),
        };
        tk.with_pre_tokenizer(Some(pre_tok));
        tk.with_decoder(Some(ByteLevelDecoder::default()));
        // Control (3) and user-defined (4) tokens must never be split by BPE.
        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(types.iter())
            .filter(|(_, &t)| t == 3 || t == 4)
            .map(|(tok, &t)| AddedToken::from(tok.clone(), t == 3))
            .collect();
        tk.add_special_tokens(added).map_err(|e| anyhow!("adding the GGUF's special tokens to the tokenizer: {e}"))?;
        let eos = md.get("tokenizer.ggml.eos_token_id").and_then(|v| v.to_u32().ok());
        let tokenizer = Self::new(tk, eos);
        Ok(match ChatTemplate::from_gguf_metadata(md, &tokens, "the GGUF's tokenizer.chat_template")? {
            Some(chat) => tokenizer.with_chat_template(chat),
            None => tokenizer,
        })
    }

    /// Token ids of `text`; special tokens written in the text (e.g. ChatML markers) are recognised.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| anyhow!("encoding: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| anyhow!("decoding: {e}"))
    }

    /// Text of `ids` without special tokens.
    pub fn decode_text(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| anyhow!("decoding: {e}"))
    }

    /// Ids that end a generation (EOS, `<|im_end|>`, `<|endoftext|>`).
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// Filler id for padding (never attended to).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Writes `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner.save(path, false).map_err(|e| anyhow!("{}: {e}", path.display()))
    }

    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}
