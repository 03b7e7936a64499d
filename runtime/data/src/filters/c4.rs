//! The C4 rules (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a
//! Unified Text-to-Text Transformer", Sec. 2.2), exactly as datatrove 0.10.1's
//! `C4QualityFilter` implements them, and its bad-words rule (`C4BadWordsFilter`) with a
//! word list supplied by the run plan.
//!
//! Per line (`str.splitlines`, or sentences with `split_paragraph: false`), stripped: drop
//! it if a word is longer than `max_word_chars` (1000, from TensorFlow Datasets' `c4_utils`),
//! remove Wikipedia citation marks, drop it if it does not end in terminal punctuation
//! (`.`, `?`, `!`, `"`, `'`) or ends in `...`, if it has fewer than `min_words_per_line`
//! whitespace-separated words, if it mentions "javascript", or if it holds a cookie or
//! terms-of-use phrase. The whole document is dropped if a kept line has "lorem ipsum" or a
//! curly bracket, or if the kept lines hold fewer than `min_sentences` sentences (counted by
//! spaCy's sentencizer, as datatrove does). A kept document's text becomes its kept lines
//! joined by newlines (spaces with `split_paragraph: false`).
//!
//! The two counts default to datatrove's `min_words_per_line=3` and `min_num_sentences=5`,
//! which datatrove's docstring gives as the paper's ("fewer than 5 sentences", "at least 3
//! words"); both are settable for a plan that reads the paper otherwise.
//!
//! Field names map to datatrove's arguments: `split_paragraph`, `remove_citations`,
//! `filter_no_terminal_punct`, `min_sentences` (`min_num_sentences`; `null` for -1),
//! `min_words_per_line` (`null` for -1), `max_word_chars` (`max_word_length`; `null` for
//! -1), `filter_lorem_ipsum`, `filter_javascript`, `filter_curly_bracket`, `filter_policy`;
//! `bad_words` is `C4BadWordsFilter`'s list (datatrove downloads LDNOOBW's; kiln takes it
//! from the plan, empty = off).

use serde::{Deserialize, Serialize};

use super::tables;
use super::words::{count_sentences, py_len, py_split_whitespace, py_splitlines, py_strip};
use super::ConfigError;

/// datatrove's `END_PUNCTUATION`.
pub const END_PUNCTUATION: [char; 5] = ['.', '?', '!', '"', '\''];

/// datatrove's `POLICY_SUBSTRINGS` (from TensorFlow Datasets' `c4_utils`).
pub const POLICY_SUBSTRINGS: [&str; 6] = [
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
];

/// The C4 rules; every default is datatrove's (which follow the paper and TFDS).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct C4Config {
    /// Judge lines (`true`, as the paper) or spaCy sentences (`false`).
    pub split_paragraph: bool,
    /// Remove `[1]`, `[edit]` and `[citation needed]` marks.
    pub remove_citations: bool,
    /// Drop lines that do not end in terminal punctuation.
    pub filter_no_terminal_punct: bool,
    /// Fewest sentences in the kept lines (datatrove: 5).
    pub min_sentences: Option<u64>,
    /// Fewest whitespace-separated words in a kept line (datatrove: 3).
    pub min_words_per_line: Option<u64>,
    /// Drop lines with a word longer than this many characters (1000).
    pub max_word_chars: Option<u64>,
    pub filter_lorem_ipsum: bool,
    pub filter_javascript: bool,
    pub filter_curly_bracket: bool,
    pub filter_policy: bool,
    /// Drop documents with any of these words (lowercase, between non-word characters).
    pub bad_words: Vec<String>,
}

impl Default for C4Config {
    fn default() -> Self {
        C4Config {
            split_paragraph: true,
            remove_citations: true,
            filter_no_terminal_punct: true,
            min_sentences: Some(5),
            min_words_per_line: Some(3),
            max_word_chars: Some(1000),
            filter_lorem_ipsum: true,
            filter_javascript: true,
            filter_curly_bracket: true,
            filter_policy: true,
            bad_words: Vec::new(),
        }
    }
}

/// The document-level rules, in the order a document can fail them.
pub const C4_RULES: [&str; 4] = [
    "lorem_ipsum",
    "curly_bracket",
    "too_few_sentences",
    "document_removed_with_badwords",
];

/// The line-level rules (datatrove's `line-filter-*` statistics).
pub const C4_LINE_RULES: [&str; 5] = [
    "too_long_word",
    "no_terminal_punc",
    "too_few_words",
    "javascript",
    "policy",
];

/// What the C4 rules make of one document.
#[derive(Clone, Debug, PartialEq)]
pub enum C4Outcome {
    /// Dropped by the rule at this index of [`C4_RULES`].
    Removed(usize),
    /// Kept, with its new text and the lines each line rule removed.
    Kept {
        text: String,
        lines_removed: [u64; 5],
    },
}

/// Removes `\[\d*]`, `\[edit]` and `[citation needed]` (datatrove's `CITATION_REGEX`).
fn remove_citations(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let digits = tail.len()
            - tail
                .trim_start_matches(|c| tables::RE_DIGIT.contains(c))
                .len();
        if tail[digits..].starts_with(']') {
            rest = &tail[digits + 1..];
        } else if let Some(after) = tail
            .strip_prefix("edit]")
            .or_else(|| tail.strip_prefix("citation needed]"))
        {
            rest = after;
        } else {
            out.push('[');
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// Whether `c` is a word character of Python's `re` (`\w`: alphanumeric or `_`).
fn is_re_word(c: char) -> bool {
    tables::RE_WORD.contains(c)
}

impl C4Config {
    /// Rejects settings no document could be judged by.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bad_words.iter().any(|w| w.is_empty()) {
            return Err(ConfigError::new(
                "c4.bad_words",
                "an empty bad word would match everywhere".to_string(),
            ));
        }
        Ok(())
    }

    /// Whether the lowercased text has a bad word flanked by non-word characters or the
    /// text's ends (`(?:\W|^)(words)(?:\W|$)` of `C4BadWordsFilter`).
    fn has_bad_word(&self, text: &str) -> bool {
        if self.bad_words.is_empty() {
            return false;
        }
        let lower = text.to_lowercase();
        for w in &self.bad_words {
            let mut from = 0;
            while let Some(i) = lower[from..].find(w.as_str()) {
                let at = from + i;
                let end = at + w.len();
                let before_ok = lower[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !is_re_word(c));
                let after_ok = lower[end..].chars().next().is_none_or(|c| !is_re_word(c));
                if before_ok && after_ok {
                    return true;
                }
                from = at + lower[at..].chars().next().map_or(1, char::len_utf8);
            }
        }
        false
    }

    /// Applies the rules to `text`.
    pub fn apply(&self, text: &str) -> C4Outcome {
        let lines: Vec<&str> = if self.split_paragraph {
            py_splitlines(text)
        } else {
            super::words::split_into_sentences(text)
        };
        let mut sentences = 0u64;
        let mut kept: Vec<String> = Vec::new();
        let mut lines_removed = [0u64; 5];
        for line in lines {
            let line = py_strip(line);
            let n_words = py_split_whitespace(line).count() as u64;
            if let Some(max) = self.max_word_chars {
                if py_split_whitespace(line).any(|w| py_len(w) as u64 > max) {
                    lines_removed[0] += 1;
                    continue;
                }
            }
            let line: String = if self.remove_citations {
                remove_citations(line)
            } else {
                line.to_string()
            };
            if self.filter_no_terminal_punct
                && (!line.ends_with(END_PUNCTUATION) || line.ends_with("..."))
            {
                lines_removed[1] += 1;
                continue;
            }
            if self.min_words_per_line.is_some_and(|m| n_words < m) {
                lines_removed[2] += 1;
                continue;
            }
            let lower = line.to_lowercase();
            if self.filter_lorem_ipsum && lower.contains("lorem ipsum") {
                return C4Outcome::Removed(0);
            }
            if self.filter_javascript && lower.contains("javascript") {
                lines_removed[3] += 1;
                continue;
            }
            if self.filter_curly_bracket && line.contains('{') {
                return C4Outcome::Removed(1);
            }
            if self.filter_policy && POLICY_SUBSTRINGS.iter().any(|p| lower.contains(p)) {
                lines_removed[4] += 1;
                continue;
            }
            if self.min_sentences.is_some() {
                sentences += if self.split_paragraph {
                    count_sentences(&line) as u64
                } else {
                    1
                };
            }
            kept.push(line);
        }
        if self.min_sentences.is_some_and(|m| sentences < m) {
            return C4Outcome::Removed(2);
        }
        let joined = kept.join(if self.split_paragraph { "\n" } else { " " });
        let text = py_strip(&joined).to_string();
        if self.has_bad_word(&text) {
            return C4Outcome::Removed(3);
        }
        C4Outcome::Kept {
            text,
            lines_removed,
        }
    }
}
