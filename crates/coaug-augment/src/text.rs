//! Forming augmented texts (method.md §2) and fitting model inputs into a token budget.

use serde::{Deserialize, Serialize};

use crate::prompts::{Retriever, Role};

/// Whether the original text is kept next to its augmentation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Composition {
    /// `q + "\n" + a`; documents: appended (sparse) or prepended (dense).
    #[default]
    Full,
    /// The `--augment-only` ablation: the augmentation alone.
    AugmentOnly,
}

/// The text a retriever indexes or searches with.
///
/// `original` is the query text, or the document's full `"title. text"` (never the truncated
/// model input: truncation only bounds what the LM reads). An empty augmentation leaves the
/// original untouched under [`Composition::Full`]; under [`Composition::AugmentOnly`] it yields an
/// empty text, because the ablation measures the augmentations alone.
pub fn augmented_text(
    original: &str,
    augmentation: &str,
    role: Role,
    retriever: Retriever,
    composition: Composition,
) -> String {
    let augmentation = augmentation.trim();
    match composition {
        Composition::AugmentOnly => augmentation.to_string(),
        Composition::Full if augmentation.is_empty() => original.to_string(),
        Composition::Full if original.is_empty() => augmentation.to_string(),
        Composition::Full => match (role, retriever) {
            // The dense document prompt asks for an abstract that will stand in front of the text.
            (Role::Document, Retriever::Dense) => format!("{augmentation}\n{original}"),
            _ => format!("{original}\n{augmentation}"),
        },
    }
}

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
        if lo == 0 { "" } else { &text[..ends[lo - 1]] }
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
    fn sparse_appends_for_both_roles() {
        let q = augmented_text("statins", "LDL, cholesterol", Role::Query, Retriever::Sparse, Composition::Full);
        assert_eq!(q, "statins\nLDL, cholesterol");
        let d = augmented_text("Title. Body", "kw", Role::Document, Retriever::Sparse, Composition::Full);
        assert_eq!(d, "Title. Body\nkw");
    }

    #[test]
    fn dense_prepends_documents_and_appends_queries() {
        let d = augmented_text("Title. Body", "An abstract.", Role::Document, Retriever::Dense, Composition::Full);
        assert_eq!(d, "An abstract.\nTitle. Body");
        let q = augmented_text("q", "more", Role::Query, Retriever::Dense, Composition::Full);
        assert_eq!(q, "q\nmore");
    }

    #[test]
    fn augment_only_drops_the_original() {
        for (role, retriever) in [(Role::Query, Retriever::Sparse), (Role::Document, Retriever::Dense)] {
            assert_eq!(augmented_text("orig", " aug ", role, retriever, Composition::AugmentOnly), "aug");
            assert_eq!(augmented_text("orig", "", role, retriever, Composition::AugmentOnly), "");
        }
    }

    #[test]
    fn empty_parts_add_no_separator() {
        assert_eq!(augmented_text("orig", "  ", Role::Query, Retriever::Sparse, Composition::Full), "orig");
        assert_eq!(augmented_text("", "aug", Role::Document, Retriever::Dense, Composition::Full), "aug");
    }

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
