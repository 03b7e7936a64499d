//! The FineWeb quality rules (Penedo et al. 2024, "The FineWeb Datasets: Decanting the Web
//! for the Finest Text Data at Scale", Sec. 3.5 and Appendix; datatrove 0.10.1's
//! `FineWebQualityFilter`), exactly as datatrove implements them.
//!
//! On the non-blank lines (`text.split("\n")`, lines whose strip is empty left out): the
//! fraction ending in terminal punctuation must be at least `min_line_punct_ratio` (0.12),
//! the fraction of lines of at most `short_line_max_chars` (30) characters at most
//! `max_short_line_ratio` (0.67), the characters of lines repeating an earlier line over the
//! characters of the text less its newlines at most `max_char_duplicates_ratio` (0.01), and
//! newlines per word at most `max_newline_word_ratio` (0.3).
//!
//! Field names map to datatrove's arguments: `min_line_punct_ratio` (`line_punct_thr`),
//! `line_punct_exclude_zero`, `stop_chars` (`null`: datatrove's `TERMINAL_PUNCTUATION`),
//! `max_short_line_ratio` (`short_line_thr`), `short_line_max_chars` (`short_line_length`),
//! `max_char_duplicates_ratio` (`char_duplicates_ratio`), `max_newline_word_ratio`
//! (`new_line_ratio`).

use serde::{Deserialize, Serialize};

use super::gopher::find_duplicates;
use super::tables;
use super::words::{py_len, py_strip};
use super::ConfigError;

/// The FineWeb rules; every default is datatrove's (the FineWeb paper's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FineWebConfig {
    /// Lowest fraction of lines ending in a stop character (0.12).
    pub min_line_punct_ratio: f64,
    /// Do not apply the rule above to a document with no such line at all.
    pub line_punct_exclude_zero: bool,
    /// Line endings that count as terminal punctuation (`None`: datatrove's
    /// `TERMINAL_PUNCTUATION`).
    pub stop_chars: Option<Vec<String>>,
    /// Highest fraction of short lines (0.67).
    pub max_short_line_ratio: f64,
    /// A line of at most this many characters is short (30).
    pub short_line_max_chars: u64,
    /// Highest fraction of characters in repeated lines (0.01).
    pub max_char_duplicates_ratio: f64,
    /// Highest ratio of newlines to words (0.3).
    pub max_newline_word_ratio: f64,
}

impl Default for FineWebConfig {
    fn default() -> Self {
        FineWebConfig {
            min_line_punct_ratio: 0.12,
            line_punct_exclude_zero: false,
            stop_chars: None,
            max_short_line_ratio: 0.67,
            short_line_max_chars: 30,
            max_char_duplicates_ratio: 0.01,
            max_newline_word_ratio: 0.3,
        }
    }
}

/// datatrove's reason names, in check order.
pub const FINEWEB_RULES: [&str; 5] = [
    "empty",
    "line_punct_ratio",
    "short_line_ratio",
    "char_dup_ratio",
    "list_ratio",
];

impl FineWebConfig {
    /// Rejects thresholds no document could be judged by.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, v) in [
            ("fineweb.min_line_punct_ratio", self.min_line_punct_ratio),
            ("fineweb.max_short_line_ratio", self.max_short_line_ratio),
            (
                "fineweb.max_char_duplicates_ratio",
                self.max_char_duplicates_ratio,
            ),
            (
                "fineweb.max_newline_word_ratio",
                self.max_newline_word_ratio,
            ),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(ConfigError::new(
                    field,
                    format!("{v} is not a finite number ≥ 0"),
                ));
            }
        }
        if let Some(stops) = &self.stop_chars {
            if stops.iter().any(String::is_empty) {
                return Err(ConfigError::new(
                    "fineweb.stop_chars",
                    "an empty stop string would match every line".to_string(),
                ));
            }
        }
        Ok(())
    }

    fn ends_with_stop(&self, line: &str) -> bool {
        match &self.stop_chars {
            None => line
                .chars()
                .next_back()
                .is_some_and(|c| tables::TERMINAL_PUNCTUATION.contains(c)),
            Some(stops) => stops.iter().any(|s| line.ends_with(s.as_str())),
        }
    }

    /// The first rule `text` (with datatrove's `words`) fails, as an index into
    /// [`FINEWEB_RULES`]; `None` if it passes.
    pub fn check(&self, text: &str, words: &[&str]) -> Option<usize> {
        let lines: Vec<&str> = text
            .split('\n')
            .filter(|l| !py_strip(l).is_empty())
            .collect();
        if lines.is_empty() {
            return Some(0);
        }
        let n = lines.len() as f64;
        let punct = lines.iter().filter(|l| self.ends_with_stop(l)).count() as f64 / n;
        if punct < self.min_line_punct_ratio && !(punct == 0.0 && self.line_punct_exclude_zero) {
            return Some(1);
        }
        let short = lines
            .iter()
            .filter(|l| py_len(l) as u64 <= self.short_line_max_chars)
            .count() as f64
            / n;
        if short > self.max_short_line_ratio {
            return Some(2);
        }
        let (_, dup_chars) = find_duplicates(lines.iter().copied());
        let chars_less_newlines = py_len(text) - text.matches('\n').count();
        // A non-blank line has a character that is not a newline, so this is not zero.
        if dup_chars as f64 / chars_less_newlines as f64 > self.max_char_duplicates_ratio {
            return Some(3);
        }
        let newlines = text.matches('\n').count();
        // A non-blank line has a word, so there is at least one.
        if !words.is_empty() && newlines as f64 / words.len() as f64 > self.max_newline_word_ratio {
            return Some(4);
        }
        None
    }
}
