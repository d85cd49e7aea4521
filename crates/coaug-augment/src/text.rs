//! Fitting model inputs into a token budget. (How augmented texts are composed for retrieval
//! is `coaug_retrieval::Composition`.)

/// Counts tokens the way the model will, so documents can be cut to a budget before prompting.
/// `coaug-lm` implements it with the model's tokenizer; [`WhitespaceTokens`] approximates it.
pub trait TokenBudget {
    fn count_tokens(&self, text: &str) -> usize;

    /// The longest prefix of `text`, ending at a word boundary, that has at most `max_tokens`
    /// tokens. The default searches word boundaries with `count_tokens` (O(log n) calls); a
    /// tokenizer that knows its offsets can do better.
    fn truncate<'a>(&self, text: &'a str, max_tokens: usize) -> &'a str {
        if self.count_tokens(text) <= max_tokens {
            return text;
        }
        let ends = word_ends(text);
        // Largest k such that the first k words fit: counts grow with the prefix.
        let (mut lo, mut hi) = (0usize, ends.len());
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if self.count_tokens(&text[..ends[mid - 1]]) <= max_tokens {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        if lo == 0 {
            ""
        } else {
            &text[..ends[lo - 1]]
        }
    }
}

/// Any `Fn(&str) -> usize` counts tokens.
impl<F: Fn(&str) -> usize> TokenBudget for F {
    fn count_tokens(&self, text: &str) -> usize {
        self(text)
    }
}

/// Approximate count when no tokenizer is at hand: whitespace-separated words times a ratio.
/// Subword tokenizers split English prose into roughly 1.3 tokens a word, and biomedical text
/// into more; the default errs on the generous side so the budget is not overrun.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WhitespaceTokens {
    pub tokens_per_word: f32,
}

impl Default for WhitespaceTokens {
    fn default() -> Self {
        Self { tokens_per_word: 1.5 }
    }
}

impl TokenBudget for WhitespaceTokens {
    fn count_tokens(&self, text: &str) -> usize {
        (text.split_whitespace().count() as f32 * self.tokens_per_word).ceil() as usize
    }

    fn truncate<'a>(&self, text: &'a str, max_tokens: usize) -> &'a str {
        if self.count_tokens(text) <= max_tokens {
            return text;
        }
        let max_words = (max_tokens as f32 / self.tokens_per_word).floor() as usize;
        if max_words == 0 {
            return "";
        }
        let end = word_ends(text).get(max_words - 1).copied().unwrap_or(text.len());
        &text[..end]
    }
}

/// Byte offsets just past each whitespace-separated word.
fn word_ends(text: &str) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                ends.push(i);
            }
            in_word = false;
        } else {
            in_word = true;
        }
    }
    if in_word {
        ends.push(text.len());
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_budget_counts_and_cuts_at_word_ends() {
        let t = WhitespaceTokens { tokens_per_word: 1.0 };
        assert_eq!(t.count_tokens("  a bb\tccc \n d "), 4);
        assert_eq!(t.truncate("  a bb\tccc \n d ", 2), "  a bb");
        assert_eq!(t.truncate("a bb", 2), "a bb");
        assert_eq!(t.truncate("a bb", 0), "");
        let generous = WhitespaceTokens::default();
        assert_eq!(generous.count_tokens("one two three"), 5);
        assert_eq!(generous.truncate("one two three four", 4), "one two");
    }

    #[test]
    fn closure_budget_uses_default_binary_search() {
        // One token per character, spaces included.
        let chars = |s: &str| s.chars().count();
        assert_eq!(chars.truncate("ab cd ef", 5), "ab cd");
        assert_eq!(chars.truncate("ab cd ef", 4), "ab");
        assert_eq!(chars.truncate("ab cd ef", 1), "");
        assert_eq!(chars.truncate("ab cd ef", 100), "ab cd ef");
    }

    #[test]
    fn default_and_fast_truncation_agree() {
        let fast = WhitespaceTokens { tokens_per_word: 1.5 };
        let slow = |s: &str| fast.count_tokens(s);
        let text = "alpha beta  gamma\ndelta épsilon ζeta eta theta iota kappa";
        for budget in 0..20 {
            assert_eq!(fast.truncate(text, budget), slow.truncate(text, budget), "budget {budget}");
            assert!(fast.count_tokens(fast.truncate(text, budget)) <= budget);
        }
    }

    #[test]
    fn hundred_thousand_characters_are_cut_quickly() {
        let text = "word ".repeat(20_000);
        let cut = WhitespaceTokens::default().truncate(&text, 512);
        assert_eq!(cut.split_whitespace().count(), 341);
        let by_closure = (|s: &str| s.split_whitespace().count()).truncate(&text, 512);
        assert_eq!(by_closure.split_whitespace().count(), 512);
    }
}
