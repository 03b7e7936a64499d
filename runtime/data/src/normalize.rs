//! Text normalisation for deduplication (datatrove's `simplify_text`) and word n-gram shingles.
//!
//! # Normalisation
//! [`simplify_text`] reproduces datatrove's `simplify_text` with its default `TextNormConfig`
//! (datatrove 0.10, `datatrove/utils/text.py`), step for step and in the same order, because
//! the order changes the result (`1|2|3` becomes `0 0 0`, not `0`):
//!
//! 1. lowercase (Unicode full case mapping, final sigma included: Python's `str.lower`);
//! 2. numbers: every match of `\p{Nd}+([.,،٫⎖⎗⎘]\p{Nd}+)?` becomes `0` (`3.14` → `0`,
//!    `1,000,000` → `0,0`, then step 3 makes it `0 0`);
//! 3. punctuation: every character of datatrove's `PUNCTUATION` string (ASCII punctuation,
//!    the C0/C1 controls other than tab and newline, and a few CJK and typographic marks;
//!    copied below as [`PUNCTUATION`]) becomes a space;
//! 4. whitespace: leading and trailing whitespace removed, every run of whitespace (Python
//!    `re`'s `\s`, [`is_python_whitespace`]) becomes one space;
//! 5. diacritics: Unicode NFD, then every character of general category `Mn` (non-spacing
//!    mark) removed (`naïve` → `naive`, `İ` → `i`);
//! 6. leading and trailing whitespace removed again.
//!
//! Step 5 runs after step 4, as in datatrove, so a lone combining mark between two spaces
//! leaves two spaces; the shingler splits on runs of spaces and does not care.
//! ASCII text takes a byte-at-a-time path (ASCII lowercases to ASCII and has no marks);
//! a unit test checks it against the general path. `tests/dedup.rs` compares the output
//! with datatrove's own function on the license texts and on Unicode edge cases. Differences can only come from Unicode versions (Python 3.11
//! ships Unicode 14; the Rust tables are newer) for characters added since.
//!
//! # Shingles
//! A shingle is `n` consecutive words of the simplified text joined by single spaces, as in
//! datatrove's `MinhashDedupSignature.get_shingles` (`" ".join(ngram)` over `ngrams(words,
//! n)`), hashed to 64 bits with XXH3 (`xxh3_64` of the UTF-8 bytes). Words are the
//! space-separated pieces of the simplified text. datatrove tokenises English with NLTK's
//! word tokenizer, which also splits contractions (`cannot` → `can not`); kiln splits on
//! spaces, as datasketch-based pipelines do, which is language-neutral and needs no model.
//! A text with fewer than `n` words has no shingles (datatrove skips such documents too).

use std::borrow::Cow;

use unicode_general_category::{get_general_category, GeneralCategory};
use unicode_normalization::UnicodeNormalization;
use xxhash_rust::xxh3::xxh3_64;

/// Which normalisations [`simplify_text_with`] applies; the fields and their defaults are
/// datatrove's `TextNormConfig` (weekday and month-name folding, off by default there and
/// English-only, are not implemented).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextNormConfig {
    pub lowercase: bool,
    pub norm_whitespace: bool,
    pub remove_punctuation: bool,
    pub norm_unicode_diacritics: bool,
    pub norm_numbers: bool,
}

impl Default for TextNormConfig {
    /// datatrove's `DEF_TEXT_NORM_CONFIG`: everything on.
    fn default() -> Self {
        TextNormConfig {
            lowercase: true,
            norm_whitespace: true,
            remove_punctuation: true,
            norm_unicode_diacritics: true,
            norm_numbers: true,
        }
    }
}

/// datatrove's `PUNCTUATION` (datatrove/utils/text.py), as sorted code points: the string
/// literal `!/—”:％１〈&(、━\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_."}►»`
/// plus the control ranges 0–8, 11–31 and 127–159. datatrove translates exactly these to
/// spaces (its larger `TERMINAL_PUNCTUATION` set is not used by `simplify_text`).
pub const PUNCTUATION: &[u32] = &[
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11,
    0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x21, 0x22,
    0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x3a, 0x3b, 0x3c,
    0x3d, 0x3e, 0x3f, 0x40, 0x5b, 0x5c, 0x5d, 0x5e, 0x5f, 0x60, 0x7b, 0x7c, 0x7d, 0x7e, 0x7f, 0x80,
    0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f, 0x90,
    0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0xab,
    0xb4, 0xbb, 0x2013, 0x2014, 0x2019, 0x201c, 0x201d, 0x201e, 0x2026, 0x2236, 0x2501, 0x25ba,
    0x3001, 0x3002, 0x3008, 0x3009, 0x300a, 0x300b, 0x300c, 0x300d, 0x3010, 0x3011, 0xff01, 0xff05,
    0xff08, 0xff09, 0xff0c, 0xff0e, 0xff11, 0xff1a, 0xff1b, 0xff1f, 0xff5e,
];

/// The decimal separators datatrove's `NUMBERS_PATTERN` accepts between two digit runs
/// (`[.,،٫⎖⎗⎘]`).
const DECIMAL_SEPARATORS: &[char] = &[
    '.', ',', '\u{060C}', '\u{066B}', '\u{2396}', '\u{2397}', '\u{2398}',
];

/// Whether datatrove turns `c` into a space (it is in [`PUNCTUATION`]).
pub fn is_punctuation(c: char) -> bool {
    PUNCTUATION.binary_search(&(c as u32)).is_ok()
}

/// Python's `\s` in `re` on `str` (the same set as `str.isspace` and `str.strip`): Unicode
/// White_Space plus the information separators U+001C–U+001F. Listed from Python 3.11.
pub fn is_python_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\u{0B}'
            | '\u{0C}'
            | '\r'
            | '\u{1C}'..='\u{1F}'
            | ' '
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

/// Whether `c` is a decimal digit in any script (general category `Nd`, regex `\p{Nd}`).
fn is_decimal_digit(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_digit()
    } else {
        get_general_category(c) == GeneralCategory::DecimalNumber
    }
}

/// datatrove's `simplify_text(text)` with the default configuration (see the module doc).
pub fn simplify_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    simplify_text_into(text, &TextNormConfig::default(), &mut out);
    out
}

/// datatrove's `simplify_text(text, config)`.
pub fn simplify_text_with(text: &str, config: &TextNormConfig) -> String {
    let mut out = String::with_capacity(text.len());
    simplify_text_into(text, config, &mut out);
    out
}

/// [`simplify_text_with`] into a caller's buffer (cleared first), so a loop over documents
/// allocates once.
pub fn simplify_text_into(text: &str, config: &TextNormConfig, out: &mut String) {
    out.clear();
    if text.is_ascii() {
        simplify_ascii(text.as_bytes(), config, out);
        return;
    }
    // Step 1. Lowercasing is per character (`char::to_lowercase`, the full Unicode mapping,
    // like Python's `str.lower`) except for capital sigma, whose final form depends on the
    // letters around it: a text with one is lowercased whole by `str::to_lowercase`, which
    // applies the final-sigma rule as Python does.
    let mut stage = String::with_capacity(text.len());
    if !config.lowercase {
        numbers_punctuation_whitespace(text.chars(), config, &mut stage);
    } else if text.contains('\u{3A3}') {
        numbers_punctuation_whitespace(text.to_lowercase().chars(), config, &mut stage);
    } else {
        numbers_punctuation_whitespace(
            text.chars().flat_map(char::to_lowercase),
            config,
            &mut stage,
        );
    }

    // Step 5, and step 6's strip. NFD leaves ASCII unchanged and ASCII has no marks.
    if config.norm_unicode_diacritics && !stage.is_ascii() {
        out.extend(
            stage
                .nfd()
                .filter(|&c| get_general_category(c) != GeneralCategory::NonspacingMark),
        );
    } else {
        out.push_str(&stage);
    }
    let end = out.trim_end_matches(is_python_whitespace).len();
    out.truncate(end);
    let start = out.len() - out.trim_start_matches(is_python_whitespace).len();
    out.drain(..start);
}

/// Steps 2–4 in one pass over lowercased characters. Lowercasing creates no digits,
/// separators, punctuation or whitespace, so fusing the steps keeps datatrove's sequential
/// semantics: a number's separator is consumed by step 2 before step 3 could turn it into a
/// space.
fn numbers_punctuation_whitespace<I>(chars: I, config: &TextNormConfig, stage: &mut String)
where
    I: Iterator<Item = char> + Clone,
{
    let mut pending_space = false;
    let mut emit = |c: char, stage: &mut String| {
        let c = if config.remove_punctuation && is_punctuation(c) {
            ' '
        } else {
            c
        };
        if config.norm_whitespace {
            if is_python_whitespace(c) {
                // `text.strip()` first: whitespace before the first character is dropped.
                pending_space = !stage.is_empty();
            } else {
                if pending_space {
                    stage.push(' ');
                    pending_space = false;
                }
                stage.push(c);
            }
        } else {
            stage.push(c);
        }
    };
    let mut chars = chars.peekable();
    while let Some(c) = chars.next() {
        if config.norm_numbers && is_decimal_digit(c) {
            while chars.peek().is_some_and(|&d| is_decimal_digit(d)) {
                chars.next();
            }
            // `([.,…]\p{Nd}+)?`: one separator, only when a digit follows it.
            if chars
                .peek()
                .is_some_and(|sep| DECIMAL_SEPARATORS.contains(sep))
            {
                let mut ahead = chars.clone();
                ahead.next();
                if ahead.peek().is_some_and(|&d| is_decimal_digit(d)) {
                    chars = ahead;
                    while chars.peek().is_some_and(|&d| is_decimal_digit(d)) {
                        chars.next();
                    }
                }
            }
            emit('0', stage);
        } else {
            emit(c, stage);
        }
    }
}

/// The byte classes of the ASCII fast path.
const ASCII_PUNCTUATION: u8 = 1;
const ASCII_WHITESPACE: u8 = 2;
const ASCII_DIGIT: u8 = 4;

/// [`PUNCTUATION`] and [`is_python_whitespace`] restricted to ASCII, as a table.
const ASCII_CLASS: [u8; 128] = {
    let mut table = [0u8; 128];
    let mut i = 0;
    while i < PUNCTUATION.len() {
        if PUNCTUATION[i] < 128 {
            table[PUNCTUATION[i] as usize] |= ASCII_PUNCTUATION;
        }
        i += 1;
    }
    let whitespace: [u8; 10] = [9, 10, 11, 12, 13, 28, 29, 30, 31, 32];
    let mut j = 0;
    while j < whitespace.len() {
        table[whitespace[j] as usize] |= ASCII_WHITESPACE;
        j += 1;
    }
    let mut d = b'0';
    while d <= b'9' {
        table[d as usize] |= ASCII_DIGIT;
        d += 1;
    }
    table
};

/// The same steps on ASCII text, byte by byte (ASCII lowercases to ASCII, has no marks and
/// no non-ASCII separators, so steps 1–6 reduce to one pass).
fn simplify_ascii(text: &[u8], config: &TextNormConfig, out: &mut String) {
    let class = |b: u8| ASCII_CLASS[(b & 0x7f) as usize];
    let mut buf = std::mem::take(out).into_bytes();
    buf.clear();
    buf.reserve(text.len());
    let mut pending_space = false;
    let mut i = 0;
    while i < text.len() {
        let mut b = text[i];
        i += 1;
        if config.norm_numbers && class(b) & ASCII_DIGIT != 0 {
            while i < text.len() && class(text[i]) & ASCII_DIGIT != 0 {
                i += 1;
            }
            if i + 1 < text.len()
                && (text[i] == b'.' || text[i] == b',')
                && class(text[i + 1]) & ASCII_DIGIT != 0
            {
                i += 1;
                while i < text.len() && class(text[i]) & ASCII_DIGIT != 0 {
                    i += 1;
                }
            }
            b = b'0';
        } else if config.lowercase {
            b = b.to_ascii_lowercase();
        }
        if config.remove_punctuation && class(b) & ASCII_PUNCTUATION != 0 {
            b = b' ';
        }
        if config.norm_whitespace {
            if class(b) & ASCII_WHITESPACE != 0 {
                pending_space = !buf.is_empty();
                continue;
            }
            if pending_space {
                buf.push(b' ');
                pending_space = false;
            }
        }
        buf.push(b);
    }
    let end = buf.len()
        - buf
            .iter()
            .rev()
            .take_while(|&&b| class(b) & ASCII_WHITESPACE != 0)
            .count();
    buf.truncate(end);
    let start = buf
        .iter()
        .take_while(|&&b| class(b) & ASCII_WHITESPACE != 0)
        .count();
    buf.drain(..start);
    // ASCII in, ASCII out: the conversion cannot fail, and would be lossless if it did.
    *out = String::from_utf8(buf)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
}

/// The words of a simplified text: its pieces between runs of spaces.
pub fn words(simplified: &str) -> impl Iterator<Item = &str> {
    simplified.split(' ').filter(|w| !w.is_empty())
}

/// The `n`-word shingles of a simplified text as strings (words joined by one space), in
/// order, repeats included; none when the text has fewer than `n` words or `n` is 0.
pub fn shingles(simplified: &str, n: usize) -> Vec<String> {
    let words: Vec<&str> = words(simplified).collect();
    if n == 0 || words.len() < n {
        return Vec::new();
    }
    words.windows(n).map(|w| w.join(" ")).collect()
}

/// Appends the XXH3-64 hash of every `n`-word shingle of a simplified text to `out`:
/// `xxh3_64` of exactly the bytes [`shingles`] would return, hashed in place as slices of
/// the text when its words are separated by single spaces (the rare text that is not is
/// rejoined first).
pub fn shingle_hashes_into(simplified: &str, n: usize, out: &mut Vec<u64>) {
    if n == 0 {
        return;
    }
    let canonical: Cow<str> =
        if simplified.contains("  ") || simplified.starts_with(' ') || simplified.ends_with(' ') {
            Cow::Owned(words(simplified).collect::<Vec<_>>().join(" "))
        } else {
            Cow::Borrowed(simplified)
        };
    let text = canonical.as_bytes();
    if text.is_empty() {
        return;
    }
    // Word `i` starts at `starts[i]`; a window of words `i..i+n` ends one byte before word
    // `i+n` starts, or at the end of the text.
    let mut starts: Vec<usize> = Vec::with_capacity(text.len() / 4 + 1);
    starts.push(0);
    starts.extend(
        text.iter()
            .enumerate()
            .filter(|&(_, &b)| b == b' ')
            .map(|(i, _)| i + 1),
    );
    if starts.len() < n {
        return;
    }
    out.reserve(starts.len() + 1 - n);
    for first in 0..=starts.len() - n {
        let end = starts.get(first + n).map_or(text.len(), |&s| s - 1);
        out.push(xxh3_64(&text[starts[first]..end]));
    }
}

/// The shingle hashes of a simplified text ([`shingle_hashes_into`] into a new vector).
pub fn shingle_hashes(simplified: &str, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    shingle_hashes_into(simplified, n, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_datatrove_order_and_rules() {
        assert_eq!(simplify_text("Héllo, WORLD!"), "hello world");
        assert_eq!(simplify_text("pi is 3.14, e is 2,71"), "pi is 0 e is 0");
        assert_eq!(simplify_text("1,000,000"), "0 0");
        assert_eq!(simplify_text("1|2|3"), "0 0 0");
        assert_eq!(simplify_text("  a\t\n b  "), "a b");
        assert_eq!(simplify_text("ΣΊΣΥΦΟΣ"), "σισυφος");
        assert_eq!(simplify_text("x \u{301} y"), "x  y");
        assert_eq!(simplify_text("٣٤ apples"), "0 apples");
        assert_eq!(simplify_text(""), "");
    }

    #[test]
    fn ascii_fast_path_equals_the_general_path() {
        let config = TextNormConfig::default();
        for text in [
            "1.2.3 a1,b 1, ,1 12.34.56 x.5 5. Hello-World_again (A) [b] {c}",
            "\u{1c}x\u{b}y\u{c}z\r\n\t  end \u{7f}\u{0}",
            "  3.14  ",
            "MiXeD CaSe 007 and 1,000,000.5",
            "",
        ] {
            let mut fast = String::new();
            simplify_ascii(text.as_bytes(), &config, &mut fast);
            let mut stage = String::new();
            numbers_punctuation_whitespace(
                text.chars().flat_map(char::to_lowercase),
                &config,
                &mut stage,
            );
            assert_eq!(fast, stage.trim_matches(is_python_whitespace), "{text:?}");
        }
    }

    #[test]
    fn punctuation_table_is_sorted_for_binary_search() {
        assert!(PUNCTUATION.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(PUNCTUATION.len(), 129);
    }

    #[test]
    fn shingle_hashes_equal_hashes_of_joined_words() {
        let text = "a  b c d e f";
        let expected: Vec<u64> = shingles(text, 3)
            .iter()
            .map(|s| xxh3_64(s.as_bytes()))
            .collect();
        assert_eq!(shingle_hashes(text, 3), expected);
        assert_eq!(shingles(text, 3)[0], "a b c");
        assert!(shingle_hashes("a b", 3).is_empty());
        assert!(shingle_hashes("a b", 0).is_empty());
    }
}
