//! Checks on the default model (SmolLM2-135M-Instruct Q4_1). They skip, with a note, when the
//! model is not in the cache (`coaug model fetch` puts it there), and fail instead under
//! `COAUG_REQUIRE_MODELS=1` (CI).

use std::path::PathBuf;

use candle_core::Device;
use coaug_lm::Pass;
use coaug_lm::*;

fn model_path() -> Option<PathBuf> {
    let p = default_model_path(&cache_root());
    coaug_data::cache::cached_or_skip(&p, "coaug model fetch").then_some(p)
}

#[test]
fn gguf_tokenizer_round_trips_utf8_and_knows_chatml() {
    let Some(path) = model_path() else { return };
    let tok = LmTokenizer::from_gguf(&path).unwrap();
    for text in [
        "Café naïve résumé — déjà vu, Ærøskøbing, Straße",
        "中文分词测试：北京大学。日本語のテキスト、한국어 텍스트",
        "emoji 🧬🔬💊 and flags 🇫🇷 + ZWJ 👩‍🔬",
        "fn main() {\n\tlet x: Vec<u32> = (0..10).map(|i| i * 2).collect();\n}\n",
        "  leading spaces, trailing\ttabs\t\n\r\nand 12345678 digits 3.14159",
    ] {
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }
    // ChatML markers are single special tokens; the prompt decodes back verbatim.
    let im_start = tok.token_to_id("<|im_start|>").unwrap();
    let im_end = tok.token_to_id("<|im_end|>").unwrap();
    let prompt = tok.chat_template().render(&[(ChatRole::System, "Be brief."), (ChatRole::User, "Hi!")], true).unwrap();
    let ids = tok.encode(&prompt).unwrap();
    assert_eq!(ids[0], im_start);
    assert_eq!(ids.iter().filter(|&&i| i == im_start).count(), 3);
    assert_eq!(ids.iter().filter(|&&i| i == im_end).count(), 2);
    assert_eq!(tok.decode(&ids).unwrap(), prompt);
    assert!(tok.stop_ids().contains(&im_end));
}

#[test]
fn greedy_answers_are_on_topic_and_agree_across_precisions() {
    let Some(path) = model_path() else { return };
    let tok = LmTokenizer::from_gguf(&path).unwrap();
    let prompt = tok
        .chat_ids(
            &[(ChatRole::System, "You are a helpful assistant."), (ChatRole::User, "What are the health benefits of green tea?")],
            true,
        )
        .unwrap();
    let req = PromptBatch { prefix: &[], prompts: std::slice::from_ref(&prompt), stop_ids: tok.stop_ids(), pad_id: tok.pad_id() };
    let mut outs = Vec::new();
    for precision in [Precision::Quantized, Precision::F32] {
        let model = CausalLm::from_gguf(&path, precision, &Device::Cpu).unwrap();
        let s = generate(&model, &req, &SamplingParams::greedy(32)).unwrap().remove(0);
        let text = tok.decode_text(&s.tokens).unwrap();
        eprintln!("{precision:?}: {text}");
        let lower = text.to_lowercase();
        assert!(lower.contains("tea"), "{precision:?} off topic: {text}");
        assert!(lower.contains("antioxidant") || lower.contains("health"), "{precision:?} off topic: {text}");
        outs.push(s.tokens);
    }
    let agree = outs[0].iter().zip(&outs[1]).take_while(|(a, b)| a == b).count();
    assert!(agree * 2 >= outs[0].len().min(outs[1].len()), "quantized and f32 diverge after {agree} tokens");
}

#[test]
fn sampled_logprobs_match_scorer_on_the_real_model() {
    let Some(path) = model_path() else { return };
    let tok = LmTokenizer::from_gguf(&path).unwrap();
    let model = CausalLm::from_gguf(&path, Precision::F32, &Device::Cpu).unwrap();
    let chat = tok.chat_prompt("Give keywords for the query.").unwrap();
    let prefix = chat.prefix.clone();
    let users: Vec<Vec<u32>> =
        ["vitamin d deficiency", "statins and muscle pain"].iter().map(|q| chat.user_ids(&tok, q).unwrap()).collect();
    let params = SamplingParams { temperature: 1.2, repetition_penalty: 1.2, max_new_tokens: 12, n: 2, seed: 3, ..Default::default() };
    let req = PromptBatch { prefix: &prefix, prompts: &users, stop_ids: tok.stop_ids(), pad_id: tok.pad_id() };
    let samples = generate(&model, &req, &params).unwrap();
    let full: Vec<Vec<u32>> = samples.iter().map(|s| [&prefix[..], &users[s.prompt_index][..]].concat()).collect();
    let p: Vec<&[u32]> = full.iter().map(|x| x.as_slice()).collect();
    let c: Vec<&[u32]> = samples.iter().map(|s| s.tokens.as_slice()).collect();
    let sc = score(&model, &p, &c, tok.pad_id(), &params, Pass::Infer).unwrap().logprobs_per_sequence().unwrap();
    for (s, lp) in samples.iter().zip(&sc) {
        for (a, b) in s.logprobs.iter().zip(lp) {
            assert!((a - b).abs() < 1e-3, "sampler {a} vs scorer {b}");
        }
    }
}
