//! A deterministic stand-in for the LM, for tests and dry runs of the pipeline.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::generator::{DecodeSettings, Generation, GenerationRequest, Generator};

/// Echoes words of its input as keywords, in the `<think>`/`<answer>` format.
///
/// Greedy decoding picks the first distinct long words; sampled decoding picks them with an RNG
/// seeded by the request's seed alone, and sometimes (one reply in six) forgets to close the
/// answer, so parsing and validity counting get exercised. Replies are cut at `max_new_tokens`
/// whitespace-separated words, like a real model hitting its limit.
#[derive(Debug, Clone, Default)]
pub struct KeywordEcho {
    /// Sleep per batch, to make a run slow enough to be interrupted.
    pub delay_per_batch: Duration,
    /// Requests answered so far (to check that nothing is generated twice).
    pub requests_answered: usize,
}

const KEYWORDS: usize = 5;

impl KeywordEcho {
    pub fn new() -> Self {
        Self::default()
    }

    fn reply(request: &GenerationRequest, decoding: &DecodeSettings) -> Generation {
        let mut words: Vec<String> = Vec::new();
        for word in request.user_text.split(|c: char| !c.is_alphanumeric()) {
            let word = word.to_lowercase();
            if word.chars().count() >= 4 && !words.contains(&word) {
                words.push(word);
            }
        }
        let mut rng = StdRng::seed_from_u64(request.seed);
        let (chosen, close_answer): (Vec<&str>, bool) = if decoding.is_greedy() {
            (words.iter().take(KEYWORDS).map(String::as_str).collect(), true)
        } else {
            let picks = (0..KEYWORDS.min(words.len())).map(|_| words[rng.random_range(0..words.len())].as_str());
            (picks.collect(), rng.random_range(0..6) != 0)
        };
        let mut text = format!("<think>The text has {} distinct long words.</think>\n<answer>Keywords: {}", words.len(), chosen.join(", "));
        if close_answer {
            text.push_str("</answer>");
        }
        let mut tokens: Vec<&str> = text.split_inclusive(char::is_whitespace).collect();
        tokens.truncate(decoding.max_new_tokens);
        let generated_tokens = tokens.len();
        let mut text = tokens.concat();
        if generated_tokens < decoding.max_new_tokens {
            text.push_str("<|im_end|>");
        }
        Generation { text, generated_tokens }
    }
}

impl Generator for KeywordEcho {
    fn fingerprint(&self) -> String {
        "fake-keyword-echo-v1".into()
    }

    fn generate(&mut self, requests: &[GenerationRequest], decoding: &DecodeSettings) -> anyhow::Result<Vec<Generation>> {
        std::thread::sleep(self.delay_per_batch);
        self.requests_answered += requests.len();
        Ok(requests.iter().map(|r| Self::reply(r, decoding)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_answer;

    fn request(text: &str, seed: u64) -> GenerationRequest {
        GenerationRequest { system_prompt: "s".into(), user_text: text.into(), seed }
    }

    #[test]
    fn greedy_echo_is_parseable_and_seed_free() {
        let mut g = KeywordEcho::new();
        let d = DecodeSettings::greedy(64);
        let out = g.generate(&[request("Vitamin D and bone density in adults", 1)], &d).unwrap();
        let again = g.generate(&[request("Vitamin D and bone density in adults", 2)], &d).unwrap();
        assert_eq!(out, again);
        let parsed = parse_answer(&out[0].text);
        assert!(parsed.format_valid);
        assert_eq!(parsed.text, "vitamin, bone, density, adults");
        assert_eq!(g.requests_answered, 2);
    }

    #[test]
    fn sampled_echo_depends_only_on_the_request_seed() {
        let mut g = KeywordEcho::new();
        let d = DecodeSettings::sampled(64, 0);
        let text = "alpha beta gamma delta epsilon zeta theta iota kappa lambda";
        let alone = g.generate(&[request(text, 5)], &d).unwrap();
        let batched = g.generate(&[request("other words here", 9), request(text, 5)], &d).unwrap();
        assert_eq!(alone[0], batched[1]);
        let replies: Vec<_> = (0..20).map(|s| g.generate(&[request(text, s)], &d).unwrap()).collect();
        assert!(replies.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn replies_stop_at_max_new_tokens() {
        let mut g = KeywordEcho::new();
        let out = g.generate(&[request("alpha beta gamma delta epsilon", 0)], &DecodeSettings::greedy(4)).unwrap();
        assert_eq!(out[0].generated_tokens, 4);
        assert!(!parse_answer(&out[0].text).format_valid);
    }
}
