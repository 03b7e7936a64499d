//! The Gopher quality and repetition rules (Rae et al. 2021, "Scaling Language Models:
//! Methods, Analysis & Insights from Training Gopher", Appendix A.1.1 and A.1.2 / Table A1),
//! exactly as datatrove 0.10.1 implements them (`GopherQualityFilter`,
//! `GopherRepetitionFilter`): the same words (`words::split_into_words`), lines, paragraphs,
//! order of checks and reason names.
//!
//! Field names map to datatrove's arguments as follows (datatrove's in brackets where they
//! differ): `min_doc_words`, `max_doc_words`, `min_mean_word_chars` (`min_avg_word_length`),
//! `max_mean_word_chars` (`max_avg_word_length`), `max_symbol_word_ratio`,
//! `max_bullet_lines_ratio`, `max_ellipsis_lines_ratio`, `min_alpha_words_ratio`
//! (`max_non_alpha_words_ratio`, whose own comment says it is a minimum), `min_stop_words`,
//! `stop_words`; `max_duplicate_line_fraction` (`dup_line_frac`),
//! `max_duplicate_paragraph_fraction` (`dup_para_frac`), `max_duplicate_line_char_fraction`
//! (`dup_line_char_frac`), `max_duplicate_paragraph_char_fraction` (`dup_para_char_frac`),
//! `top_ngrams` (`top_n_grams`), `duplicate_ngrams` (`dup_n_grams`).
//!
//! A threshold set to `null` (`None`) turns its check off. datatrove also skips a check whose
//! threshold is 0 (Python truthiness); here 0 is a threshold like any other. Where datatrove
//! would divide by zero (no words or no lines, reachable only with the word-count checks off),
//! the ratio check is skipped.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::tables;
use super::words::{
    py_is_alpha, py_is_space, py_len, py_lstrip, py_rstrip, py_splitlines, FxBuild,
};
use super::ConfigError;

/// Gopher's stop words (Appendix A.1.1: "the, be, to, of, and, that, have, with"), matched
/// case-sensitively against the words, as datatrove does.
pub const GOPHER_STOP_WORDS: [&str; 8] = ["the", "be", "to", "of", "and", "that", "have", "with"];

/// The Gopher quality rules (Appendix A.1.1); every default is the paper's value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GopherQualityConfig {
    /// Fewest words that are not only punctuation ("50").
    pub min_doc_words: Option<u64>,
    /// Most such words ("100,000").
    pub max_doc_words: Option<u64>,
    /// Lowest mean length of those words, in characters ("3").
    pub min_mean_word_chars: Option<f64>,
    /// Highest mean word length, in characters ("10").
    pub max_mean_word_chars: Option<f64>,
    /// Highest ratio of `#` to words, and of ellipses (`...`, `…`) to words ("0.1").
    pub max_symbol_word_ratio: Option<f64>,
    /// Highest fraction of lines starting with a bullet (`•` or `-`) ("90%").
    pub max_bullet_lines_ratio: Option<f64>,
    /// Highest fraction of lines ending with an ellipsis ("30%").
    pub max_ellipsis_lines_ratio: Option<f64>,
    /// Lowest fraction of words with an alphabetic character ("80%").
    pub min_alpha_words_ratio: Option<f64>,
    /// Fewest distinct stop words present ("at least two").
    pub min_stop_words: Option<u64>,
    /// The stop words.
    pub stop_words: Vec<String>,
}

impl Default for GopherQualityConfig {
    fn default() -> Self {
        GopherQualityConfig {
            min_doc_words: Some(50),
            max_doc_words: Some(100_000),
            min_mean_word_chars: Some(3.0),
            max_mean_word_chars: Some(10.0),
            max_symbol_word_ratio: Some(0.1),
            max_bullet_lines_ratio: Some(0.9),
            max_ellipsis_lines_ratio: Some(0.3),
            min_alpha_words_ratio: Some(0.8),
            min_stop_words: Some(2),
            stop_words: GOPHER_STOP_WORDS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// datatrove's reason names of the quality rules, in the order they are checked.
pub const QUALITY_RULES: [&str; 10] = [
    "gopher_short_doc",
    "gopher_long_doc",
    "gopher_below_avg_threshold",
    "gopher_above_avg_threshold",
    "gopher_too_many_hashes",
    "gopher_too_many_ellipsis",
    "gopher_too_many_bullets",
    "gopher_too_many_end_ellipsis",
    "gopher_below_alpha_threshold",
    "gopher_enough_stop_words",
];

fn check_ratio(field: &'static str, v: Option<f64>) -> Result<(), ConfigError> {
    match v {
        Some(x) if !(x.is_finite() && x >= 0.0) => Err(ConfigError::new(
            field,
            format!("{x} is not a finite number ≥ 0"),
        )),
        _ => Ok(()),
    }
}

impl GopherQualityConfig {
    /// Rejects thresholds no document could be judged by.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_ratio(
            "gopher_quality.min_mean_word_chars",
            self.min_mean_word_chars,
        )?;
        check_ratio(
            "gopher_quality.max_mean_word_chars",
            self.max_mean_word_chars,
        )?;
        check_ratio(
            "gopher_quality.max_symbol_word_ratio",
            self.max_symbol_word_ratio,
        )?;
        check_ratio(
            "gopher_quality.max_bullet_lines_ratio",
            self.max_bullet_lines_ratio,
        )?;
        check_ratio(
            "gopher_quality.max_ellipsis_lines_ratio",
            self.max_ellipsis_lines_ratio,
        )?;
        check_ratio(
            "gopher_quality.min_alpha_words_ratio",
            self.min_alpha_words_ratio,
        )?;
        if let (Some(lo), Some(hi)) = (self.min_doc_words, self.max_doc_words) {
            if lo > hi {
                return Err(ConfigError::new(
                    "gopher_quality.min_doc_words",
                    format!("{lo} is above max_doc_words ({hi})"),
                ));
            }
        }
        Ok(())
    }

    /// The first quality rule `text` (with datatrove's `words`) fails, as an index into
    /// [`QUALITY_RULES`]; `None` if it passes them all.
    pub fn check(&self, text: &str, words: &[&str]) -> Option<usize> {
        let n_words = words.len();
        let mut n_non_symbol = 0usize;
        let mut non_symbol_chars = 0usize;
        for w in words {
            if w.chars()
                .any(|c| !tables::DATATROVE_PUNCTUATION.contains(c))
            {
                n_non_symbol += 1;
                non_symbol_chars += py_len(w);
            }
        }
        if self
            .min_doc_words
            .is_some_and(|m| (n_non_symbol as u64) < m)
        {
            return Some(0);
        }
        if self
            .max_doc_words
            .is_some_and(|m| (n_non_symbol as u64) > m)
        {
            return Some(1);
        }
        if n_non_symbol > 0 {
            // numpy's mean of integers: the integer sum (exact in f64) over the count.
            let mean = non_symbol_chars as f64 / n_non_symbol as f64;
            if self.min_mean_word_chars.is_some_and(|m| mean < m) {
                return Some(2);
            }
            if self.max_mean_word_chars.is_some_and(|m| mean > m) {
                return Some(3);
            }
        }
        if n_words > 0 {
            if let Some(max) = self.max_symbol_word_ratio {
                let hashes = text.matches('#').count();
                if hashes as f64 / n_words as f64 > max {
                    return Some(4);
                }
                let ellipses = text.matches("...").count() + text.matches('…').count();
                if ellipses as f64 / n_words as f64 > max {
                    return Some(5);
                }
            }
        }
        let lines = py_splitlines(text);
        if !lines.is_empty() {
            let n = lines.len() as f64;
            if let Some(max) = self.max_bullet_lines_ratio {
                let bullets = lines
                    .iter()
                    .filter(|l| {
                        let l = py_lstrip(l);
                        l.starts_with('•') || l.starts_with('-')
                    })
                    .count();
                if bullets as f64 / n > max {
                    return Some(6);
                }
            }
            if let Some(max) = self.max_ellipsis_lines_ratio {
                let ends = lines
                    .iter()
                    .filter(|l| {
                        let l = py_rstrip(l);
                        l.ends_with("...") || l.ends_with('…')
                    })
                    .count();
                if ends as f64 / n > max {
                    return Some(7);
                }
            }
        }
        if n_words > 0 {
            if let Some(min) = self.min_alpha_words_ratio {
                let alpha = words.iter().filter(|w| w.chars().any(py_is_alpha)).count();
                if (alpha as f64 / n_words as f64) < min {
                    return Some(8);
                }
            }
        }
        if let Some(min) = self.min_stop_words {
            // datatrove intersects a set of stop words with the set of words.
            let mut stops: Vec<&str> = self.stop_words.iter().map(String::as_str).collect();
            stops.sort_unstable();
            stops.dedup();
            let mut found = vec![false; stops.len()];
            for w in words {
                if let Some(i) = stops.iter().position(|s| s == w) {
                    found[i] = true;
                }
            }
            if (found.iter().filter(|f| **f).count() as u64) < min {
                return Some(9);
            }
        }
        None
    }
}

/// One n-gram threshold: n words, and the highest fraction of the text's characters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NGramLimit {
    pub n: usize,
    pub max_char_fraction: f64,
}

/// The Gopher repetition rules (Appendix A.1.2, Table A1); every default is the paper's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GopherRepetitionConfig {
    /// Highest fraction of lines that repeat an earlier line (0.30).
    pub max_duplicate_line_fraction: Option<f64>,
    /// Highest fraction of paragraphs that repeat an earlier paragraph (0.30).
    pub max_duplicate_paragraph_fraction: Option<f64>,
    /// Highest fraction of characters in repeated lines (0.20).
    pub max_duplicate_line_char_fraction: Option<f64>,
    /// Highest fraction of characters in repeated paragraphs (0.20).
    pub max_duplicate_paragraph_char_fraction: Option<f64>,
    /// Highest character fraction of the most frequent n-gram: 2, 3, 4 → 0.20, 0.18, 0.16.
    pub top_ngrams: Vec<NGramLimit>,
    /// Highest character fraction of repeated n-grams: 5..10 → 0.15, 0.14, …, 0.10.
    pub duplicate_ngrams: Vec<NGramLimit>,
}

impl Default for GopherRepetitionConfig {
    fn default() -> Self {
        let lim = |n, f| NGramLimit {
            n,
            max_char_fraction: f,
        };
        GopherRepetitionConfig {
            max_duplicate_line_fraction: Some(0.3),
            max_duplicate_paragraph_fraction: Some(0.3),
            max_duplicate_line_char_fraction: Some(0.2),
            max_duplicate_paragraph_char_fraction: Some(0.2),
            top_ngrams: vec![lim(2, 0.2), lim(3, 0.18), lim(4, 0.16)],
            duplicate_ngrams: vec![
                lim(5, 0.15),
                lim(6, 0.14),
                lim(7, 0.13),
                lim(8, 0.12),
                lim(9, 0.11),
                lim(10, 0.10),
            ],
        }
    }
}

/// The repetition rules' first five reason names (datatrove's), in check order; the n-gram
/// rules follow as `top_{n}_gram` and `duplicated_{n}_n_grams`.
const REPETITION_FIXED_RULES: [&str; 5] = [
    "empty",
    "dup_para_frac",
    "dup_para_char_frac",
    "dup_line_frac",
    "dup_line_char_frac",
];

/// `find_duplicates`: how many elements repeat an earlier one, and their characters.
pub fn find_duplicates<'a>(items: impl IntoIterator<Item = &'a str>) -> (usize, usize) {
    let mut seen: HashSet<&str, FxBuild> = HashSet::default();
    let (mut dup, mut dup_chars) = (0, 0);
    for x in items {
        if !seen.insert(x) {
            dup += 1;
            dup_chars += py_len(x);
        }
    }
    (dup, dup_chars)
}

/// `re.split(r"\n{2,}", s)`.
fn split_paragraphs(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        if b[i] == b'\n' && b.get(i + 1) == Some(&b'\n') {
            let mut j = i;
            while j < b.len() && b[j] == b'\n' {
                j += 1;
            }
            out.push(&s[start..i]);
            start = j;
            i = j;
        } else {
            i += 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// `re.split("\n+", s)`.
fn split_lines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        if b[i] == b'\n' {
            let mut j = i;
            while j < b.len() && b[j] == b'\n' {
                j += 1;
            }
            out.push(&s[start..i]);
            start = j;
            i = j;
        } else {
            i += 1;
        }
    }
    out.push(&s[start..]);
    out
}

impl GopherRepetitionConfig {
    /// Rejects thresholds no document could be judged by.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_ratio(
            "gopher_repetition.max_duplicate_line_fraction",
            self.max_duplicate_line_fraction,
        )?;
        check_ratio(
            "gopher_repetition.max_duplicate_paragraph_fraction",
            self.max_duplicate_paragraph_fraction,
        )?;
        check_ratio(
            "gopher_repetition.max_duplicate_line_char_fraction",
            self.max_duplicate_line_char_fraction,
        )?;
        check_ratio(
            "gopher_repetition.max_duplicate_paragraph_char_fraction",
            self.max_duplicate_paragraph_char_fraction,
        )?;
        for (field, list) in [
            ("gopher_repetition.top_ngrams", &self.top_ngrams),
            ("gopher_repetition.duplicate_ngrams", &self.duplicate_ngrams),
        ] {
            for l in list {
                if l.n == 0 {
                    return Err(ConfigError::new(field, "n must be at least 1".to_string()));
                }
                check_ratio(field, Some(l.max_char_fraction))?;
            }
        }
        Ok(())
    }

    /// The rules' names in check order (datatrove's reasons).
    pub fn rule_names(&self) -> Vec<String> {
        let mut names: Vec<String> = REPETITION_FIXED_RULES
            .iter()
            .map(|s| s.to_string())
            .collect();
        names.extend(self.top_ngrams.iter().map(|l| format!("top_{}_gram", l.n)));
        names.extend(
            self.duplicate_ngrams
                .iter()
                .map(|l| format!("duplicated_{}_n_grams", l.n)),
        );
        names
    }

    /// The first repetition rule `text` fails, as an index into [`Self::rule_names`].
    pub fn check(&self, text: &str, words: &[&str]) -> Option<usize> {
        if text.is_empty() {
            return Some(0);
        }
        let text_chars = py_len(text) as f64;
        let paragraphs = split_paragraphs(text.trim_matches(py_is_space));
        let (para_dup, para_dup_chars) = find_duplicates(paragraphs.iter().copied());
        if self
            .max_duplicate_paragraph_fraction
            .is_some_and(|m| para_dup as f64 / paragraphs.len() as f64 > m)
        {
            return Some(1);
        }
        if self
            .max_duplicate_paragraph_char_fraction
            .is_some_and(|m| para_dup_chars as f64 / text_chars > m)
        {
            return Some(2);
        }
        let lines = split_lines(text);
        let (line_dup, line_dup_chars) = find_duplicates(lines.iter().copied());
        if self
            .max_duplicate_line_fraction
            .is_some_and(|m| line_dup as f64 / lines.len() as f64 > m)
        {
            return Some(3);
        }
        if self
            .max_duplicate_line_char_fraction
            .is_some_and(|m| line_dup_chars as f64 / text_chars > m)
        {
            return Some(4);
        }
        if self.top_ngrams.is_empty() && self.duplicate_ngrams.is_empty() {
            return None;
        }
        let word_chars: Vec<usize> = words.iter().map(|w| py_len(w)).collect();
        let first = REPETITION_FIXED_RULES.len();
        if !self.top_ngrams.is_empty() {
            // Word ids: " ".join of n words is the same string exactly when the words are
            // (no word holds a space).
            let mut ids_of: HashMap<&str, u32, FxBuild> = HashMap::default();
            let ids: Vec<u32> = words
                .iter()
                .map(|w| {
                    let next = ids_of.len() as u32;
                    *ids_of.entry(w).or_insert(next)
                })
                .collect();
            for (k, lim) in self.top_ngrams.iter().enumerate() {
                if let Some(top_chars) = top_ngram_chars(&ids, &word_chars, lim.n) {
                    if top_chars as f64 / text_chars > lim.max_char_fraction {
                        return Some(first + k);
                    }
                }
            }
        }
        if !self.duplicate_ngrams.is_empty() {
            // "".join of n words: n-grams are compared as concatenated strings, as datatrove
            // does (so ["ab", "c"] repeats ["a", "bc"]).
            let mut concat = String::with_capacity(text.len());
            let mut offsets = Vec::with_capacity(words.len() + 1);
            offsets.push(0);
            for w in words {
                concat.push_str(w);
                offsets.push(concat.len());
            }
            let hashes = ConcatHashes::new(words);
            let first_dup = first + self.top_ngrams.len();
            for (k, lim) in self.duplicate_ngrams.iter().enumerate() {
                let dup_chars = all_duplicate_chars(&concat, &offsets, &hashes, &word_chars, lim.n);
                if dup_chars as f64 / text_chars > lim.max_char_fraction {
                    return Some(first_dup + k);
                }
            }
        }
        None
    }
}

/// `find_top_duplicate(get_n_grams(words, n))`: characters of the most frequent n-gram times
/// its count (ties to the one seen first, as `Counter.most_common(1)`); `None` without n-grams.
fn top_ngram_chars(ids: &[u32], word_chars: &[usize], n: usize) -> Option<usize> {
    if n == 0 || ids.len() < n {
        return None;
    }
    // (count, first position) of the most frequent n-gram, earliest on ties.
    let best = if n <= 4 {
        // Up to four 32-bit ids pack exactly into one u128 key.
        let mut counts: HashMap<u128, (usize, usize), FxBuild> = HashMap::default();
        counts.reserve(ids.len());
        for i in 0..=ids.len() - n {
            let key = ids[i..i + n]
                .iter()
                .fold(0u128, |k, &id| (k << 32) | id as u128);
            counts.entry(key).or_insert((0, i)).0 += 1;
        }
        counts
            .into_values()
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
    } else {
        let mut counts: HashMap<&[u32], (usize, usize), FxBuild> = HashMap::default();
        counts.reserve(ids.len());
        for i in 0..=ids.len() - n {
            counts.entry(&ids[i..i + n]).or_insert((0, i)).0 += 1;
        }
        counts
            .into_values()
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
    };
    let (count, first) = best?;
    let chars: usize = word_chars[first..first + n].iter().sum::<usize>() + (n - 1);
    Some(chars * count)
}

/// The base of the polynomial hash of concatenated words (odd, so invertible mod 2^64; the
/// 64-bit golden-ratio constant).
const HASH_BASE: u64 = 0x9E37_79B9_7F4A_7C15;

/// The inverse of an odd number mod 2^64 (Newton's iteration doubles the correct bits).
fn inverse_mod_2_64(b: u64) -> u64 {
    let mut inv = b;
    for _ in 0..6 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(b.wrapping_mul(inv)));
    }
    inv
}

/// Polynomial hashes of the concatenated words, `Σ byte_k · B^k` mod 2^64 over a range of
/// bytes: the hash of words `i..j` is a function of their concatenation alone, in O(1).
struct ConcatHashes {
    /// `Σ` over the bytes before word i, each times `B^(its offset)`.
    prefix: Vec<u64>,
    /// `B^-(offset of word i)`.
    inv_pow: Vec<u64>,
}

impl ConcatHashes {
    fn new(words: &[&str]) -> Self {
        let inv_base = inverse_mod_2_64(HASH_BASE);
        let mut prefix = Vec::with_capacity(words.len() + 1);
        let mut inv_pow = Vec::with_capacity(words.len() + 1);
        let (mut sum, mut pow, mut inv) = (0u64, 1u64, 1u64);
        prefix.push(sum);
        inv_pow.push(inv);
        for w in words {
            for &b in w.as_bytes() {
                sum = sum.wrapping_add((b as u64 + 1).wrapping_mul(pow));
                pow = pow.wrapping_mul(HASH_BASE);
                inv = inv.wrapping_mul(inv_base);
            }
            prefix.push(sum);
            inv_pow.push(inv);
        }
        ConcatHashes { prefix, inv_pow }
    }

    /// The hash of the concatenation of words `i..j`.
    fn range(&self, i: usize, j: usize) -> u64 {
        self.prefix[j]
            .wrapping_sub(self.prefix[i])
            .wrapping_mul(self.inv_pow[i])
    }
}

/// `find_all_duplicate(words, n)`: characters of n-grams that repeat an earlier one, skipping
/// past each repeat. n-grams are compared by a hash of their concatenation and, on a hash
/// match, by the strings themselves; a collision of different strings (never seen) falls back
/// to comparing strings only.
fn all_duplicate_chars(
    concat: &str,
    offsets: &[usize],
    hashes: &ConcatHashes,
    word_chars: &[usize],
    n: usize,
) -> usize {
    let n_words = offsets.len() - 1;
    if n == 0 || n_words < n {
        return 0;
    }
    let gram = |i: usize| &concat[offsets[i]..offsets[i + n]];
    let mut seen: HashMap<u64, usize, FxBuild> = HashMap::default();
    seen.reserve(n_words);
    let (mut repeated, mut idx) = (0usize, 0usize);
    while idx + n <= n_words {
        let h = hashes.range(idx, idx + n);
        match seen.get(&h) {
            Some(&earlier) if gram(earlier) == gram(idx) => {
                repeated += word_chars[idx..idx + n].iter().sum::<usize>();
                idx += n;
            }
            Some(_) => return all_duplicate_chars_by_string(concat, offsets, word_chars, n),
            None => {
                seen.insert(h, idx);
                idx += 1;
            }
        }
    }
    repeated
}

/// [`all_duplicate_chars`] with a set of strings, as datatrove writes it.
fn all_duplicate_chars_by_string(
    concat: &str,
    offsets: &[usize],
    word_chars: &[usize],
    n: usize,
) -> usize {
    let n_words = offsets.len() - 1;
    let mut seen: HashSet<&str, FxBuild> = HashSet::default();
    let (mut repeated, mut idx) = (0usize, 0usize);
    while idx + n <= n_words {
        let gram = &concat[offsets[idx]..offsets[idx + n]];
        if seen.contains(gram) {
            repeated += word_chars[idx..idx + n].iter().sum::<usize>();
            idx += n;
        } else {
            seen.insert(gram);
            idx += 1;
        }
    }
    repeated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_hash_depends_on_the_concatenation_only() {
        let words = ["ab", "c", "a", "bc", "abc", "x"];
        let h = ConcatHashes::new(&words);
        assert_eq!(h.range(0, 2), h.range(2, 4));
        assert_eq!(h.range(0, 2), h.range(4, 5));
        assert_ne!(h.range(0, 2), h.range(1, 3));
        assert_eq!(inverse_mod_2_64(HASH_BASE).wrapping_mul(HASH_BASE), 1);
        // The hashed path and the string path agree.
        let concat: String = words.concat();
        let mut offsets = vec![0];
        for w in &words {
            offsets.push(offsets.last().copied().unwrap_or(0) + w.len());
        }
        let chars: Vec<usize> = words.iter().map(|w| w.len()).collect();
        for n in 1..=4 {
            assert_eq!(
                all_duplicate_chars(&concat, &offsets, &h, &chars, n),
                all_duplicate_chars_by_string(&concat, &offsets, &chars, n)
            );
        }
    }
}
