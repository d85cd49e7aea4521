//! Extracting the augmentation from a model's reply (docs/method.md §2).
//!
//! The contract asks for reasoning in `<think>…</think>` and the augmentation in a single
//! `<answer>…</answer>` block. Small models break it in every possible way, so the rules are:
//!
//! * Chat special tokens (`<|im_end|>`, `<|endoftext|>`, any `<|…|>`, `</s>`) are removed wherever
//!   they appear; they never end or invalidate a reply.
//! * `<think>` text is never used. An unclosed `<think>` runs to the next `<answer>` (or to the end),
//!   and a `</think>` without an opening tag means everything before it was thinking.
//! * Several answer blocks: the **first well-formed** block is taken (the model's first commitment;
//!   later blocks are usually repetitions or drift), and the reply is marked format-invalid.
//!   An `<answer>` reopened before it closed counts as unclosed; the block starts at the last opening.
//! * Leading labels ("Keywords:", "Explanation:", "Summary:", "Abstract:", "Title:", …), matched
//!   case-insensitively, optionally in markdown bold or after a bullet, are removed at the start of
//!   every line and after every sentence end, so "Explanation: x. Keywords: a, b" becomes "x. a, b".
//! * `format_valid` holds only for exactly one non-empty answer block, no unmatched answer tag and
//!   no unclosed `<think>`.
//! * With no well-formed block, [`ParsePolicy::Strict`] (the method's rule, the default) yields an
//!   empty augmentation; [`ParsePolicy::Lenient`] recovers the text of an unclosed `<answer>` (a reply
//!   cut by the token limit) or, with no answer tag at all, the text outside `<think>`.

use serde::{Deserialize, Serialize};

/// The augmentation found in a reply, and whether the reply kept the output contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAnswer {
    pub text: String,
    pub format_valid: bool,
}

/// What to do with a reply that has no well-formed answer block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParsePolicy {
    /// Empty augmentation (docs/method.md §2).
    #[default]
    Strict,
    /// Salvage an unclosed answer or an untagged reply; still format-invalid.
    Lenient,
}

const ANSWER_OPEN: &str = "<answer>";
const ANSWER_CLOSE: &str = "</answer>";
const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";

/// Longest label first, so "key words" wins over "key".
const LABELS: &[&str] = &[
    "expanded query",
    "query expansion",
    "explanation",
    "key words",
    "key terms",
    "keywords",
    "expansion",
    "abstract",
    "keyword",
    "summary",
    "answer",
    "title",
];

/// Parses with the method's strict rule.
pub fn parse_answer(response: &str) -> ParsedAnswer {
    parse_answer_with(response, ParsePolicy::Strict)
}

pub fn parse_answer_with(response: &str, policy: ParsePolicy) -> ParsedAnswer {
    let response = strip_special_tokens(response);
    let (visible, think_balanced) = remove_thinking(&response);
    let blocks = find_answer_blocks(&visible);

    if let Some(first) = blocks.complete.first() {
        let text = clean_answer(first);
        let format_valid = blocks.complete.len() == 1 && blocks.tags_balanced && think_balanced && !text.is_empty();
        return ParsedAnswer { text, format_valid };
    }
    let text = match policy {
        ParsePolicy::Strict => String::new(),
        ParsePolicy::Lenient => match blocks.unclosed_tail {
            Some(tail) => clean_answer(tail),
            None => clean_answer(&visible),
        },
    };
    ParsedAnswer { text, format_valid: false }
}

/// Removes `<|…|>` tokens (no whitespace inside) and `</s>`.
fn strip_special_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<|") {
        let after = &rest[start + 2..];
        let end = after.char_indices().take_while(|(_, c)| !c.is_whitespace()).find(|(i, _)| after[*i..].starts_with("|>")).map(|(i, _)| i);
        match end {
            Some(end) => {
                out.push_str(&rest[..start]);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[..start + 2]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace("</s>", "")
}

/// ASCII case-insensitive search; lowercasing ASCII keeps byte offsets, so they index `haystack`.
fn find_ci(haystack: &str, needle: &str, from: usize) -> Option<usize> {
    let lower = haystack[from..].to_ascii_lowercase();
    lower.find(needle).map(|i| i + from)
}

/// The reply without its thinking, and whether every `<think>` was closed.
fn remove_thinking(text: &str) -> (String, bool) {
    let mut text = text;
    let mut balanced = true;
    // A closing tag before any opening one: the template opened the thought for the model.
    if let Some(close) = find_ci(text, THINK_CLOSE, 0) {
        if find_ci(text, THINK_OPEN, 0).is_none_or(|open| open > close) {
            text = &text[close + THINK_CLOSE.len()..];
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(open) = find_ci(text, THINK_OPEN, pos) {
        out.push_str(&text[pos..open]);
        let body = open + THINK_OPEN.len();
        match find_ci(text, THINK_CLOSE, body) {
            Some(close) => pos = close + THINK_CLOSE.len(),
            None => {
                balanced = false;
                pos = find_ci(text, ANSWER_OPEN, body).unwrap_or(text.len());
            }
        }
    }
    out.push_str(&text[pos..]);
    (out, balanced)
}

struct AnswerBlocks<'a> {
    complete: Vec<&'a str>,
    /// Text after an `<answer>` that never closed.
    unclosed_tail: Option<&'a str>,
    /// No unclosed, reopened or stray closing tag.
    tags_balanced: bool,
}

fn find_answer_blocks(text: &str) -> AnswerBlocks<'_> {
    let mut blocks = AnswerBlocks { complete: Vec::new(), unclosed_tail: None, tags_balanced: true };
    let mut pos = 0;
    loop {
        let next_open = find_ci(text, ANSWER_OPEN, pos);
        let next_close = find_ci(text, ANSWER_CLOSE, pos);
        match (next_open, next_close) {
            (None, None) => break,
            (_, Some(close)) if next_open.is_none_or(|o| close < o) => {
                // A closing tag with no opening one.
                blocks.tags_balanced = false;
                pos = close + ANSWER_CLOSE.len();
            }
            (Some(mut open), close) => {
                // Reopened before closing: the earlier opening was never closed.
                while let Some(again) = find_ci(text, ANSWER_OPEN, open + ANSWER_OPEN.len()).filter(|a| close.is_none_or(|c| *a < c)) {
                    blocks.tags_balanced = false;
                    open = again;
                }
                let body = open + ANSWER_OPEN.len();
                match close {
                    Some(close) => {
                        blocks.complete.push(&text[body..close]);
                        pos = close + ANSWER_CLOSE.len();
                    }
                    None => {
                        blocks.tags_balanced = false;
                        blocks.unclosed_tail = Some(&text[body..]);
                        break;
                    }
                }
            }
            (None, Some(_)) => unreachable!("handled by the stray-close arm"),
        }
    }
    blocks
}

/// Drops leftover tags and labels, trims every line and removes blank lines.
fn clean_answer(text: &str) -> String {
    let mut without_tags = text.to_string();
    for tag in [ANSWER_OPEN, ANSWER_CLOSE, THINK_OPEN, THINK_CLOSE] {
        without_tags = remove_ci(&without_tags, tag);
    }
    without_tags
        .lines()
        .map(strip_labels)
        .map(|line| line.trim().to_string())
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn remove_ci(text: &str, needle: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(at) = find_ci(text, needle, pos) {
        out.push_str(&text[pos..at]);
        pos = at + needle.len();
    }
    out.push_str(&text[pos..]);
    out
}

/// Removes labels at the start of the line and after every sentence end inside it.
fn strip_labels(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = skip_label(line);
    loop {
        let boundary = rest
            .char_indices()
            .find(|(i, c)| matches!(c, '.' | ';' | '!' | '?') && rest[i + c.len_utf8()..].starts_with(char::is_whitespace))
            .map(|(i, c)| i + c.len_utf8());
        match boundary {
            Some(end) => {
                out.push_str(&rest[..end]);
                let after = &rest[end..];
                let trimmed = after.trim_start();
                let stripped = skip_label(trimmed);
                if stripped.len() != trimmed.len() {
                    out.push(' ');
                    rest = stripped;
                } else {
                    out.push_str(&after[..after.len() - trimmed.len()]);
                    rest = trimmed;
                }
            }
            None => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// If `text` starts with a label (after bullets or markdown emphasis), the text after it.
fn skip_label(text: &str) -> &str {
    let body = text.trim_start_matches(|c: char| matches!(c, '-' | '*' | '#' | '•' | '>' | '_') || c.is_whitespace());
    let lower = body.to_ascii_lowercase();
    for label in LABELS {
        if !lower.starts_with(label) {
            continue;
        }
        let after = body[label.len()..].trim_start_matches(['*', '_']);
        let after = after.trim_start_matches([' ', '\t']);
        if let Some(value) = after.strip_prefix(':') {
            return value.trim_start_matches(['*', '_']).trim_start();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(r: &str) -> ParsedAnswer {
        parse_answer(r)
    }

    fn lenient(r: &str) -> ParsedAnswer {
        parse_answer_with(r, ParsePolicy::Lenient)
    }

    fn valid(text: &str) -> ParsedAnswer {
        ParsedAnswer { text: text.into(), format_valid: true }
    }

    fn invalid(text: &str) -> ParsedAnswer {
        ParsedAnswer { text: text.into(), format_valid: false }
    }

    #[test]
    fn well_formed_reply() {
        let r = "<think>carcinogens cause cancer</think>\n<answer>radiation, DNA damage, mutation</answer>";
        assert_eq!(strict(r), valid("radiation, DNA damage, mutation"));
    }

    #[test]
    fn answer_without_think_is_valid() {
        assert_eq!(strict("<answer> vitamin D, bone density </answer>"), valid("vitamin D, bone density"));
    }

    #[test]
    fn think_text_is_never_used() {
        let r = "<think>I could say <answer>wrong</answer> here</think><answer>right</answer>";
        assert_eq!(strict(r), valid("right"));
    }

    #[test]
    fn missing_tags_strict_is_empty_lenient_keeps_the_text() {
        let r = "Keywords: statins, cholesterol";
        assert_eq!(strict(r), invalid(""));
        assert_eq!(lenient(r), invalid("statins, cholesterol"));
    }

    #[test]
    fn missing_answer_after_think_lenient_keeps_only_text_after_think() {
        let r = "<think>reasoning words</think> statins, cholesterol";
        assert_eq!(strict(r), invalid(""));
        assert_eq!(lenient(r), invalid("statins, cholesterol"));
    }

    #[test]
    fn unclosed_answer_cut_by_token_limit() {
        let r = "<think>x</think><answer>Keywords: omega-3, fish oil, card";
        assert_eq!(strict(r), invalid(""));
        assert_eq!(lenient(r), invalid("omega-3, fish oil, card"));
    }

    #[test]
    fn unclosed_think_runs_to_the_answer() {
        let r = "<think>long reasoning that never closes <answer>soy, isoflavones</answer>";
        assert_eq!(strict(r), invalid("soy, isoflavones"));
    }

    #[test]
    fn unclosed_think_without_answer_is_all_thinking() {
        let r = "<think>reasoning only, cut off";
        assert_eq!(strict(r), invalid(""));
        assert_eq!(lenient(r), invalid(""));
    }

    #[test]
    fn stray_think_close_means_template_opened_the_thought() {
        let r = "the template opened the thought</think><answer>green tea</answer>";
        assert_eq!(strict(r), valid("green tea"));
    }

    #[test]
    fn several_blocks_take_the_first_and_are_invalid() {
        let r = "<answer>first</answer> and again <answer>second</answer>";
        assert_eq!(strict(r), invalid("first"));
    }

    #[test]
    fn reopened_answer_starts_at_the_last_opening() {
        let r = "<answer>draft <answer>final</answer>";
        assert_eq!(strict(r), invalid("final"));
    }

    #[test]
    fn stray_closing_tag_is_invalid_but_block_is_kept() {
        let r = "oops</answer><answer>kept</answer>";
        assert_eq!(strict(r), invalid("kept"));
    }

    #[test]
    fn empty_answer_is_invalid() {
        assert_eq!(strict("<answer>   </answer>"), invalid(""));
        assert_eq!(strict("<answer>Keywords:</answer>"), invalid(""));
    }

    #[test]
    fn tags_are_case_insensitive() {
        assert_eq!(strict("<THINK>x</Think><Answer>Zinc</ANSWER>"), valid("Zinc"));
    }

    #[test]
    fn special_tokens_are_removed_anywhere() {
        let r = "<answer>red meat,<|im_end|> colon cancer</answer><|im_end|><|endoftext|>";
        assert_eq!(strict(r), valid("red meat, colon cancer"));
        assert_eq!(strict("<answer>a</s></answer></s>"), valid("a"));
        // Not a special token: has whitespace inside, so left alone.
        assert_eq!(strict("<answer>x <| y |> z</answer>"), valid("x <| y |> z"));
    }

    #[test]
    fn special_token_between_tags_does_not_break_them() {
        assert_eq!(strict("<ans<|im_end|>wer>ok</answer>"), valid("ok"));
    }

    #[test]
    fn labels_are_stripped_case_insensitively_on_every_line() {
        let r = "<answer>\nExplanation: Statins lower LDL.\nKEYWORDS: statin, LDL\nsummary : heart\n</answer>";
        assert_eq!(strict(r), valid("Statins lower LDL.\nstatin, LDL\nheart"));
    }

    #[test]
    fn labels_after_sentence_ends_and_in_markdown() {
        let r = "<answer>**Explanation:** Milk has calcium. Keywords: dairy, calcium</answer>";
        assert_eq!(strict(r), valid("Milk has calcium. dairy, calcium"));
        let r = "<answer>- **Keywords**: a, b\n## Title: Dairy</answer>";
        assert_eq!(strict(r), valid("a, b\nDairy"));
        let r = "<answer>Abstract: x\nSummary:\n- y</answer>";
        assert_eq!(strict(r), valid("x\n- y"));
    }

    #[test]
    fn words_that_only_start_like_labels_are_kept() {
        let r = "<answer>Titles matter. Summarized: no. keywordsearch: yes</answer>";
        assert_eq!(strict(r), valid("Titles matter. Summarized: no. keywordsearch: yes"));
        // A label word not followed by a colon is ordinary text.
        assert_eq!(strict("<answer>Abstract art</answer>"), valid("Abstract art"));
    }

    #[test]
    fn blank_lines_and_indentation_are_removed() {
        assert_eq!(strict("<answer>\n\n  a  \n\n\tb\n</answer>"), valid("a\nb"));
    }

    #[test]
    fn unicode_text_survives() {
        let r = "<answer>Schlüsselwörter: β-Carotin, Vitamin A. Keywords: 維生素</answer>";
        assert_eq!(strict(r), valid("Schlüsselwörter: β-Carotin, Vitamin A. 維生素"));
    }

    #[test]
    fn empty_and_garbage_replies_never_panic() {
        for r in ["", "<", "<answer", "</answer>", "<|", "<|im_end", "|>", "<think></think>", "\u{FFFD}<answer>"] {
            let p = lenient(r);
            assert!(!p.format_valid, "{r:?}");
            let _ = strict(r);
        }
    }
}
