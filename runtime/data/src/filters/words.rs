//! datatrove's English word splitting, ported: spaCy's rule-based `en` tokenizer (what
//! datatrove 0.10.1's `split_into_words` calls for English), its sentencizer, and the Python
//! `str` built-ins the filters use, so that kiln's filters see the same words as datatrove's.
//!
//! # The tokenizer (spaCy 3.8 `tokenizer.pyx`)
//! 1. The text is cut into runs of whitespace and of non-whitespace (Python's `str.isspace`);
//!    a single `' '` after a word is its trailing space, any other whitespace run is a token.
//! 2. Each non-whitespace run is looked up in the exceptions (`tables::SPECIAL_CASES`); if
//!    not there, prefixes and suffixes are peeled off (`_split_affixes`: a prefix, then a
//!    suffix of the rest, stopping as soon as the remainder or the string less its prefix or
//!    suffix is an exception), and the remainder is an exception, a URL
//!    (`tables::URL_PATTERN`), or split at its infixes (`_attach_tokens`).
//! 3. The special-case matcher (`_apply_special_cases`) finds exceptions whose own affix
//!    tokenization (`tables::MATCHER_PATTERNS`) occurs as a run of tokens with no space
//!    between them, keeps the longest non-overlapping ones, and retokenizes them.
//!
//! datatrove then strips every token and drops the empty ones (`strip_strings`), i.e. drops
//! the whitespace tokens.
//!
//! The affix expressions are spaCy's (`lang/punctuation.py`, `lang/en/punctuation.py`),
//! evaluated here as Python's `re.search` would: the prefix is the first alternative that
//! matches at the start; the suffix is the match that starts leftmost (all alternatives end
//! at `$`); infixes are found left to right, each the first alternative that matches at a
//! position, with lookbehind and lookahead on the neighbouring characters. Their character
//! classes are computed from the expressions themselves (`generated/filter_tables.rs`), and
//! `tests/filters.rs` compares the words of every document of a real corpus with datatrove's.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use super::tables;

/// A set of characters: a bitmap for ASCII and sorted inclusive code-point ranges.
pub struct CharSet {
    pub ascii: u128,
    pub ranges: &'static [(u32, u32)],
}

impl CharSet {
    /// Whether `c` is in the set.
    #[inline]
    pub fn contains(&self, c: char) -> bool {
        let u = c as u32;
        if u < 128 {
            return (self.ascii >> u) & 1 == 1;
        }
        self.ranges
            .binary_search_by(|&(lo, hi)| {
                if hi < u {
                    std::cmp::Ordering::Less
                } else if lo > u {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }
}

/// FxHash (rustc's hasher): fast for the short string keys of the tables and n-gram sets;
/// no defence against adversarial keys is needed for a document's own words.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

/// FxHash's multiplier (rustc-hash).
const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf) ^ ((rest.len() as u64) << 59));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A `HashMap`/`HashSet` hasher builder for [`FxHasher`].
pub type FxBuild = BuildHasherDefault<FxHasher>;

// ---------------------------------------------------------------------------------------
// Python's `str` built-ins.

/// Python's `str.isspace` for one character.
#[inline]
pub fn py_is_space(c: char) -> bool {
    tables::PY_SPACE.contains(c)
}

/// Python's `str.isalpha` for one character (general category L*).
#[inline]
pub fn py_is_alpha(c: char) -> bool {
    tables::PY_ALPHA.contains(c)
}

/// Python's `str.strip()`.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_is_space)
}

/// Python's `str.lstrip()`.
pub fn py_lstrip(s: &str) -> &str {
    s.trim_start_matches(py_is_space)
}

/// Python's `str.rstrip()`.
pub fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(py_is_space)
}

/// Python's `str.split()` (runs of whitespace, no empty pieces).
pub fn py_split_whitespace(s: &str) -> impl Iterator<Item = &str> {
    s.split(py_is_space).filter(|w| !w.is_empty())
}

/// Python's `len(str)`: code points.
#[inline]
pub fn py_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

/// Python's `str.splitlines()`: pieces between line boundaries (`\r\n` is one), no trailing
/// empty piece.
pub fn py_splitlines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut iter = s.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if tables::PY_LINE_BREAK.contains(c) {
            out.push(&s[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r' && bytes.get(end) == Some(&b'\n') {
                iter.next();
                end += 1;
            }
            start = end;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

// ---------------------------------------------------------------------------------------
// The tokenizer.

/// One token: a byte range of the text and whether a single space followed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tok {
    pub start: usize,
    pub end: usize,
    pub space_after: bool,
}

/// A filter in front of a table of string keys: a bit per (length up to 15, first byte, last
/// byte, each byte's low 6 bits). A key is never filtered out, so a string the filter
/// refuses is not a key and needs no hash lookup; most words of a text are refused.
struct KeyFilter {
    bits: Vec<u64>,
}

impl KeyFilter {
    fn slot(s: &str) -> usize {
        let b = s.as_bytes();
        match (b.first(), b.last()) {
            (Some(&first), Some(&last)) => {
                (b.len().min(15) << 12) | ((first as usize & 63) << 6) | (last as usize & 63)
            }
            _ => 0,
        }
    }

    fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        let mut bits = vec![0u64; (16 << 12) / 64];
        for k in keys {
            let i = Self::slot(k);
            bits[i / 64] |= 1 << (i % 64);
        }
        KeyFilter { bits }
    }

    /// False only for a string that is no key.
    #[inline]
    fn may_contain(&self, s: &str) -> bool {
        let i = Self::slot(s);
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }
}

/// The compiled tables (built once per process).
struct Tokenizer {
    specials: HashMap<&'static str, &'static [&'static str], FxBuild>,
    /// In front of `specials`.
    specials_filter: KeyFilter,
    /// In front of `patterns`.
    patterns_filter: KeyFilter,
    /// Matcher patterns by their first token.
    patterns: HashMap<&'static str, Vec<&'static [&'static str]>, FxBuild>,
    currencies_and_units: HashMap<&'static str, (), FxBuild>,
    /// `None` only if the URL expression failed to compile (then no string is a URL; a test
    /// checks that it compiles).
    url: Option<fancy_regex::Regex>,
}

fn tokenizer() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let specials = tables::SPECIAL_CASES.iter().copied().collect();
        let mut patterns: HashMap<&'static str, Vec<&'static [&'static str]>, FxBuild> =
            HashMap::default();
        for &(_, toks) in tables::MATCHER_PATTERNS {
            if let Some(first) = toks.first() {
                patterns.entry(first).or_default().push(toks);
            }
        }
        let currencies_and_units = tables::CURRENCIES
            .iter()
            .chain(tables::UNITS)
            .map(|s| (*s, ()))
            .collect();
        Tokenizer {
            specials_filter: KeyFilter::new(tables::SPECIAL_CASES.iter().map(|(k, _)| *k)),
            patterns_filter: KeyFilter::new(patterns.keys().copied()),
            specials,
            patterns,
            currencies_and_units,
            url: fancy_regex::Regex::new(tables::URL_PATTERN).ok(),
        }
    })
}

/// Whether spaCy's URL expression compiled (it always should; tested).
pub fn url_pattern_compiles() -> bool {
    tokenizer().url.is_some()
}

#[inline]
fn is_ascii_digit(c: Option<char>) -> bool {
    matches!(c, Some('0'..='9'))
}

#[inline]
fn in_set(set: &CharSet, c: Option<char>) -> bool {
    c.is_some_and(|c| set.contains(c))
}

/// The prefix spaCy's prefix search finds at the start of `s`, in bytes (0: none).
fn find_prefix(s: &str) -> usize {
    let mut chars = s.chars();
    let Some(c0) = chars.next() else { return 0 };
    if c0 == '+' {
        // `\+(?![0-9])`
        return if is_ascii_digit(chars.next()) { 0 } else { 1 };
    }
    if tables::PREFIX_CHARS.contains(c0) {
        return c0.len_utf8();
    }
    if s.starts_with("..") {
        // `\.\.+`, greedy.
        return s.len() - s.trim_start_matches('.').len();
    }
    // The multi-character literals (`US$`, `C$`, `A$`; `……` is shadowed by `…`).
    for lit in tables::PREFIX_LITERALS {
        if s.starts_with(lit) {
            return lit.len();
        }
    }
    0
}

/// The suffix spaCy's suffix search finds at the end of `s`, in bytes (0: none): the match
/// that starts leftmost.
fn find_suffix(s: &str, t: &Tokenizer) -> usize {
    if s.ends_with("..") {
        // `\.\.+$` starts at the first dot of the final run, left of any other alternative.
        return s.len() - s.trim_end_matches('.').len();
    }
    // Candidate starts: the last MAX_SUFFIX_CHARS character boundaries, leftmost first.
    let mut starts = [0usize; tables::MAX_SUFFIX_CHARS];
    let mut n = 0;
    for (i, _) in s.char_indices().rev().take(tables::MAX_SUFFIX_CHARS) {
        starts[n] = i;
        n += 1;
    }
    for &p in starts[..n].iter().rev() {
        let rest = &s[p..];
        let mut before = s[..p].chars().rev();
        let prev = before.next();
        let prev2 = before.next();
        let mut rc = rest.chars();
        let first = rc.next();
        let single = rc.next().is_none();
        if single && first.is_some_and(|c| tables::SUFFIX_CHARS.contains(c)) {
            return rest.len();
        }
        if tables::SUFFIX_LITERALS.contains(&rest) {
            return rest.len();
        }
        if rest == "+" && is_ascii_digit(prev) {
            return 1;
        }
        if rest == "."
            && prev2 == Some('°')
            && matches!(prev, Some('F' | 'f' | 'C' | 'c' | 'K' | 'k'))
        {
            return 1;
        }
        if is_ascii_digit(prev) && t.currencies_and_units.contains_key(rest) {
            return rest.len();
        }
        if rest == "."
            && (in_set(&tables::SUFFIX_DOT_AFTER, prev)
                || (in_set(&tables::ALPHA_UPPER, prev) && in_set(&tables::ALPHA_UPPER, prev2)))
        {
            return 1;
        }
    }
    0
}

/// The hyphen alternatives of spaCy's infix `(?<=[{a}0-9])(?:{h})(?=[{a}])`, in order.
const HYPHENS: [&str; 7] = ["-", "–", "—", "--", "---", "——", "~"];

/// The infixes spaCy's infix `finditer` finds in `s`, as byte ranges.
fn find_infixes(s: &str, out: &mut Vec<(usize, usize)>) {
    out.clear();
    let mut prev: Option<char> = None;
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        let mut it = rest.chars();
        let Some(c) = it.next() else { break };
        let next = it.next();
        // The one-character infixes with lookarounds, in spaCy's order:
        // (?<=[0-9])[+\-\*^](?=[0-9-]), (?<=[{al}{q}])\.(?=[{au}{q}]), (?<=[{a}]),(?=[{a}]).
        let one_char = (matches!(c, '+' | '-' | '*' | '^')
            && is_ascii_digit(prev)
            && matches!(next, Some('0'..='9' | '-')))
            || (c == '.'
                && in_set(&tables::INFIX_DOT_BEFORE, prev)
                && in_set(&tables::INFIX_DOT_AFTER, next))
            || (c == ',' && in_set(&tables::ALPHA, prev) && in_set(&tables::ALPHA, next));
        let mut end = 0;
        if c == '.' && next == Some('.') {
            // \.\.+
            end = i + rest.len() - rest.trim_start_matches('.').len();
        } else if c == '…' || tables::ICONS.contains(c) {
            end = i + c.len_utf8();
        } else if one_char {
            end = i + 1;
        } else if in_set(&tables::ALPHA, prev) || is_ascii_digit(prev) {
            // Every hyphen alternative starts with one of these characters: the others
            // cannot start one (and skip seven string comparisons per character).
            let hyphens: &[&str] = if matches!(c, '-' | '–' | '—' | '~') {
                &HYPHENS
            } else {
                &[]
            };
            for &h in hyphens {
                if rest.starts_with(h) && in_set(&tables::ALPHA, rest[h.len()..].chars().next()) {
                    end = i + h.len();
                    break;
                }
            }
            if end == 0 && matches!(c, ':' | '<' | '>' | '=' | '/') && in_set(&tables::ALPHA, next)
            {
                end = i + 1;
            }
        }
        if end > i {
            out.push((i, end));
            prev = s[..end].chars().next_back();
            i = end;
        } else {
            prev = Some(c);
            i += c.len_utf8();
        }
    }
}

/// Whether spaCy's URL expression matches all of `s`.
fn is_url(s: &str, t: &Tokenizer) -> bool {
    // Its host is a dotted IP address (three dots) or a domain: a dot, then a top-level
    // domain of two or more of spaCy's ALPHA_LOWER (`a-z` or characters beyond ASCII; the
    // expression is case-sensitive). A string with neither cannot match, and the expression
    // (lookaheads, so a backtracking search) is not run on it.
    let tld = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || !c.is_ascii());
    let domain = s.match_indices('.').any(|(i, _)| {
        let mut after = s[i + 1..].chars();
        tld(after.next()) && tld(after.next())
    });
    (domain || s.bytes().filter(|&b| b == b'.').count() >= 3)
        && t.url
            .as_ref()
            .is_some_and(|rx| rx.is_match(s).unwrap_or(false))
}

/// Pushes the tokens of an exception starting at byte `at`.
fn push_special(at: usize, parts: &[&str], out: &mut Vec<Tok>) {
    let mut pos = at;
    for p in parts {
        out.push(Tok {
            start: pos,
            end: pos + p.len(),
            space_after: false,
        });
        pos += p.len();
    }
}

/// The special-case lookups of one run, remembering the last two ranges asked: the affix
/// loop asks again for a range it has just looked up (the remainder once a suffix is off,
/// then the same range at the top of the next pass and after the loop), and each answer is
/// a function of the range alone.
struct SpecialLookups<'t> {
    specials: &'t HashMap<&'static str, &'static [&'static str], FxBuild>,
    filter: &'t KeyFilter,
    last: [(usize, usize, Option<&'static [&'static str]>); 2],
    next: usize,
}

impl<'t> SpecialLookups<'t> {
    fn new(t: &'t Tokenizer) -> Self {
        SpecialLookups {
            specials: &t.specials,
            filter: &t.specials_filter,
            last: [(usize::MAX, usize::MAX, None); 2],
            next: 0,
        }
    }

    /// `specials.get(&text[a..b])`.
    fn get(&mut self, text: &str, a: usize, b: usize) -> Option<&'static [&'static str]> {
        if let Some(&(_, _, found)) = self.last.iter().find(|e| e.0 == a && e.1 == b) {
            return found;
        }
        let s = &text[a..b];
        let found = if self.filter.may_contain(s) {
            self.specials.get(s).copied()
        } else {
            None
        };
        self.last[self.next] = (a, b, found);
        self.next ^= 1;
        found
    }
}

/// `_tokenize` for the non-whitespace run `text[lo..hi]`.
fn tokenize_run(text: &str, lo: usize, hi: usize, t: &Tokenizer, out: &mut Vec<Tok>) {
    let run = &text[lo..hi];
    let mut specials = SpecialLookups::new(t);
    if let Some(parts) = specials.get(text, lo, hi) {
        push_special(lo, parts, out);
        return;
    }
    // A run of ASCII letters has no prefix, suffix (units need a digit before them), infix
    // or URL: one token.
    if run.bytes().all(|b| b.is_ascii_alphabetic()) {
        out.push(Tok {
            start: lo,
            end: hi,
            space_after: false,
        });
        return;
    }
    // _split_affixes: byte range [a, b) of the remainder; prefixes and suffixes as ranges.
    let (mut a, mut b) = (lo, hi);
    let mut prefixes: Vec<(usize, usize)> = Vec::new();
    let mut suffixes: Vec<(usize, usize)> = Vec::new();
    let mut last_size = 0usize;
    while a < b && b - a != last_size {
        if specials.get(text, a, b).is_some() {
            break;
        }
        let s = &text[a..b];
        last_size = b - a;
        let pre = find_prefix(s);
        if pre != 0 && a + pre < b && specials.get(text, a + pre, b).is_some() {
            prefixes.push((a, a + pre));
            a += pre;
            break;
        }
        let suf = find_suffix(&text[a + pre..b], t);
        if suf != 0 && a < b - suf && specials.get(text, a, b - suf).is_some() {
            suffixes.push((b - suf, b));
            b -= suf;
            break;
        }
        if pre != 0 && suf != 0 && pre + suf <= b - a {
            prefixes.push((a, a + pre));
            suffixes.push((b - suf, b));
            a += pre;
            b -= suf;
        } else if pre != 0 {
            prefixes.push((a, a + pre));
            a += pre;
        } else if suf != 0 {
            suffixes.push((b - suf, b));
            b -= suf;
        }
    }
    // _attach_tokens.
    for &(s, e) in &prefixes {
        out.push(Tok {
            start: s,
            end: e,
            space_after: false,
        });
    }
    if a < b {
        let s = &text[a..b];
        if let Some(parts) = specials.get(text, a, b) {
            push_special(a, parts, out);
        } else if is_url(s, t) {
            out.push(Tok {
                start: a,
                end: b,
                space_after: false,
            });
        } else {
            let mut infixes = Vec::new();
            find_infixes(s, &mut infixes);
            if infixes.is_empty() {
                out.push(Tok {
                    start: a,
                    end: b,
                    space_after: false,
                });
            } else {
                let mut start = 0;
                for &(is, ie) in &infixes {
                    if is == 0 {
                        continue;
                    }
                    if is != start {
                        out.push(Tok {
                            start: a + start,
                            end: a + is,
                            space_after: false,
                        });
                    }
                    out.push(Tok {
                        start: a + is,
                        end: a + ie,
                        space_after: false,
                    });
                    start = ie;
                }
                if start < s.len() {
                    out.push(Tok {
                        start: a + start,
                        end: b,
                        space_after: false,
                    });
                }
            }
        }
    }
    for &(s, e) in suffixes.iter().rev() {
        out.push(Tok {
            start: s,
            end: e,
            space_after: false,
        });
    }
}

/// Whether a token is whitespace (datatrove's `strip_strings` drops it).
#[inline]
pub fn is_space_token(text: &str, tok: &Tok) -> bool {
    text[tok.start..tok.end].chars().all(py_is_space)
}

/// spaCy's `Tokenizer.__call__` on `text`: every token, whitespace tokens included.
pub fn tokenize(text: &str) -> Vec<Tok> {
    let t = tokenizer();
    let mut out = Vec::with_capacity(text.len() / 5 + 1);
    let Some(first) = text.chars().next() else {
        return out;
    };
    let mut in_ws = py_is_space(first);
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if py_is_space(c) != in_ws {
            if start < i {
                if in_ws {
                    // A whitespace run is a whitespace token however spaCy splits it, and no
                    // matcher pattern but the no-op `" "` contains whitespace.
                    out.push(Tok {
                        start,
                        end: i,
                        space_after: false,
                    });
                } else {
                    tokenize_run(text, start, i, t, &mut out);
                }
            }
            if c == ' ' {
                if let Some(last) = out.last_mut() {
                    last.space_after = true;
                }
                start = i + 1;
            } else {
                start = i;
            }
            in_ws = !in_ws;
        }
    }
    if start < text.len() {
        if in_ws {
            out.push(Tok {
                start,
                end: text.len(),
                space_after: false,
            });
        } else {
            tokenize_run(text, start, text.len(), t, &mut out);
        }
    }
    apply_special_cases(text, &mut out, t);
    out
}

/// `_apply_special_cases`: retokenizes runs of tokens that spell an exception.
fn apply_special_cases(text: &str, toks: &mut Vec<Tok>, t: &Tokenizer) {
    let mut matches: Vec<(usize, usize)> = Vec::new();
    for i in 0..toks.len() {
        let first = &text[toks[i].start..toks[i].end];
        if !t.patterns_filter.may_contain(first) {
            continue;
        }
        let Some(pats) = t.patterns.get(first) else {
            continue;
        };
        for pat in pats {
            let end = i + pat.len();
            if end <= toks.len()
                && pat
                    .iter()
                    .zip(&toks[i..end])
                    .all(|(p, k)| *p == &text[k.start..k.end])
            {
                matches.push((i, end));
            }
        }
    }
    if matches.is_empty() {
        return;
    }
    // _filter_special_spans: longest first, then leftmost; a span is kept if neither its first
    // nor its last token was covered by a span considered before it (kept or not).
    matches.sort_by(|x, y| (y.1 - y.0).cmp(&(x.1 - x.0)).then(x.0.cmp(&y.0)));
    let mut seen = vec![false; toks.len()];
    let mut kept: Vec<(usize, usize)> = Vec::new();
    for &(s, e) in &matches {
        if !seen[s] && !seen[e - 1] {
            kept.push((s, e));
        }
        for v in &mut seen[s..e] {
            *v = true;
        }
    }
    kept.sort_by_key(|m| m.0);
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    let mut k = 0;
    while i < toks.len() {
        if k < kept.len() && kept[k].0 == i {
            let (s, e) = kept[k];
            k += 1;
            let span = &text[toks[s].start..toks[e - 1].end];
            if let Some(parts) = t.specials.get(span) {
                let before = out.len();
                push_special(toks[s].start, parts, &mut out);
                if let Some(last) = out[before..].last_mut() {
                    last.space_after = toks[e - 1].space_after;
                }
            } else {
                out.extend_from_slice(&toks[s..e]);
            }
            i = e;
        } else {
            out.push(toks[i]);
            i += 1;
        }
    }
    *toks = out;
}

/// datatrove's `split_into_words(text, "eng")`: the non-whitespace tokens.
pub fn split_into_words(text: &str) -> Vec<&str> {
    tokenize(text)
        .iter()
        .filter(|k| !is_space_token(text, k))
        .map(|k| &text[k.start..k.end])
        .collect()
}

/// spaCy's `is_punct`: every character is in a punctuation category (P*).
fn is_punct(s: &str) -> bool {
    s.chars().all(|c| tables::PUNCT_CATEGORY.contains(c))
}

/// The tokens at which spaCy's sentencizer starts a sentence: the first, and each token that
/// is neither punctuation nor a sentence-final character after a sentence-final character.
fn sentence_starts(text: &str, toks: &[Tok]) -> Vec<usize> {
    let mut starts = Vec::new();
    if toks.is_empty() {
        return starts;
    }
    starts.push(0);
    let mut seen_period = false;
    for (i, k) in toks.iter().enumerate() {
        let s = &text[k.start..k.end];
        let mut cs = s.chars();
        let in_punct_chars = matches!((cs.next(), cs.next()), (Some(c), None) if tables::SENTENCE_PUNCTUATION.contains(c));
        if seen_period && !is_punct(s) && !in_punct_chars {
            starts.push(i);
            seen_period = false;
        } else if in_punct_chars {
            seen_period = true;
        }
    }
    starts
}

/// The length of datatrove's `split_into_sentences(text, "eng")`: the sentences spaCy's
/// sentencizer finds, and one for a text without tokens.
pub fn count_sentences(text: &str) -> usize {
    let toks = tokenize(text);
    sentence_starts(text, &toks).len().max(1)
}

/// datatrove's `split_into_sentences(text, "eng")`: the text cut after the last token of each
/// sentence but the last (the last piece runs to the end of the text).
pub fn split_into_sentences(text: &str) -> Vec<&str> {
    let toks = tokenize(text);
    let starts = sentence_starts(text, &toks);
    let mut out = Vec::with_capacity(starts.len().max(1));
    let mut from = 0;
    for w in starts.windows(2) {
        // The sentence before `w[1]` ends where its last token ends.
        let end = toks[w[1] - 1].end;
        out.push(&text[from..end]);
        from = end;
    }
    out.push(&text[from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacy_examples() {
        let w = split_into_words(
            "Hello, world! Don't do it... e.g. U.S.A. http://example.com/a?b=c foo-bar 3.5% $100 (see: x) 'quoted' \n\n  #tag -- a--b  can't gonna  I'm  ...  ¿Qué?  10km  5pm  C++  a/b  don't.",
        );
        let expected = [
            "Hello",
            ",",
            "world",
            "!",
            "Do",
            "n't",
            "do",
            "it",
            "...",
            "e.g.",
            "U.S.A.",
            "http://example.com/a?b=c",
            "foo",
            "-",
            "bar",
            "3.5",
            "%",
            "$",
            "100",
            "(",
            "see",
            ":",
            "x",
            ")",
            "'",
            "quoted",
            "'",
            "#",
            "tag",
            "--",
            "a",
            "--",
            "b",
            "ca",
            "n't",
            "gon",
            "na",
            "I",
            "'m",
            "...",
            "¿",
            "Qué",
            "?",
            "10",
            "km",
            "5",
            "pm",
            "C++",
            "a",
            "/",
            "b",
            "do",
            "n't",
            ".",
        ];
        assert_eq!(w, expected);
    }

    #[test]
    fn the_url_prefilter_refuses_no_match() {
        let t = tokenizer();
        let rx = t.url.as_ref().expect("the URL expression compiles");
        for s in [
            "http://example.com",
            "www.example.org/a?b=c",
            "user@mail.example.net",
            "10.0.0.1",
            "192.168.1.1",
            "8.8.8.8",
            "1.2.3.4:8080/x",
            "a.b.c.d",
            "Example.COM",
            "example.Com",
            "d.h",
            "z.B",
            "6.03",
            "2.38.1",
            "systemd.exec(5",
            "пример.рф",
            "例子.中国",
            "bücher.de",
            "x.y",
            "a.bc",
            "ftp://a.b",
            "http://x.io:99",
            "..",
            "a..bc",
        ] {
            let full = rx.is_match(s).unwrap_or(false);
            assert_eq!(is_url(s, t), full, "{s}");
        }
    }

    #[test]
    fn python_builtins() {
        assert_eq!(py_splitlines("a\r\nb\n\nc\n"), ["a", "b", "", "c"]);
        assert_eq!(py_splitlines(""), Vec::<&str>::new());
        assert_eq!(py_splitlines("\u{2028}x"), ["", "x"]);
        assert_eq!(py_strip("\u{1c} a \u{a0}"), "a");
        assert!(url_pattern_compiles());
    }
}
