//! Deterministic test corpora built from real text: the license texts Debian's base-files
//! installs in /usr/share/common-licenses, cut into documents, and synthetic edits of them
//! (words deleted, replaced or inserted at a controlled fraction). Shared by
//! `tests/dedup.rs` and `benches/dedup.rs` (included with `#[path]`).

#![allow(dead_code)]

use std::fs;
use std::path::Path;

/// Where Debian's base-files puts the common license texts.
pub const LICENSE_DIR: &str = "/usr/share/common-licenses";

/// SplitMix64 (Steele, Lea & Flood 2014): a small deterministic generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [0, n); n ≥ 1.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// Every license text by file name (symlinks such as GPL → GPL-3 included), sorted.
pub fn license_texts() -> Vec<(String, String)> {
    let dir = Path::new(LICENSE_DIR);
    let mut entries: Vec<(String, String)> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{LICENSE_DIR} ({e}): the tests need Debian's base-files"))
        .filter_map(|e| {
            let path = e.ok()?.path();
            let text = fs::read_to_string(&path).ok()?;
            Some((path.file_name()?.to_str()?.to_string(), text))
        })
        .collect();
    entries.sort();
    assert!(
        entries.len() >= 10,
        "{LICENSE_DIR} holds too few license texts"
    );
    entries
}

/// Cuts every license into documents of `min_words..=max_words` whitespace-separated
/// words (the raw words, case and punctuation kept); the last piece of a license is
/// dropped when shorter than `min_words`.
pub fn license_chunks(rng: &mut Rng, min_words: usize, max_words: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (name, text) in license_texts() {
        // The symlinks repeat their targets; cutting them again would add exact copies.
        if ["GPL", "LGPL", "GFDL"].contains(&name.as_str()) {
            continue;
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut i = 0;
        while i < words.len() {
            let len = min_words + rng.below(max_words - min_words + 1);
            let end = (i + len).min(words.len());
            if end - i >= min_words {
                out.push(words[i..end].join(" "));
            }
            i = end;
        }
    }
    out
}

/// How a synthetic near-duplicate is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    Delete,
    Replace,
    Insert,
    /// Each edited position gets one of the three at random.
    Mixed,
}

pub const EDITS: [Edit; 4] = [Edit::Delete, Edit::Replace, Edit::Insert, Edit::Mixed];

/// `text` with `round(fraction × words)` word edits of the given kind; inserted and
/// replacing words are drawn from `vocabulary`.
pub fn edit(text: &str, fraction: f64, kind: Edit, vocabulary: &[&str], rng: &mut Rng) -> String {
    let mut words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    let edits = (fraction * words.len() as f64).round() as usize;
    for _ in 0..edits {
        let kind = match kind {
            Edit::Mixed => [Edit::Delete, Edit::Replace, Edit::Insert][rng.below(3)],
            k => k,
        };
        let word = vocabulary[rng.below(vocabulary.len())].to_string();
        match kind {
            Edit::Delete if words.len() > 1 => {
                let at = rng.below(words.len());
                words.remove(at);
            }
            Edit::Replace => {
                let at = rng.below(words.len());
                words[at] = word;
            }
            _ => {
                let at = rng.below(words.len() + 1);
                words.insert(at, word);
            }
        }
    }
    words.join(" ")
}

/// The distinct whitespace-separated words of the license texts, sorted.
pub fn vocabulary(texts: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = texts.iter().flat_map(|t| t.split_whitespace()).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// A benchmark corpus of `docs` documents: license chunks and, for each, edited copies
/// (fraction uniform in [0, 0.12), kinds in turn), in a shuffled but fixed order — about
/// one document in `variants + 1` is original.
pub fn bench_corpus(docs: usize, variants: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    let bases = license_chunks(&mut rng, 300, 700);
    let vocab_owned = bases.clone();
    let vocab = vocabulary(&vocab_owned);
    let mut out = Vec::with_capacity(docs);
    let mut b = 0;
    while out.len() < docs {
        let base = &bases[b % bases.len()];
        if b < bases.len() {
            out.push(base.clone());
        } else {
            let kind = EDITS[b % EDITS.len()];
            out.push(edit(base, 0.12 * rng.unit(), kind, &vocab, &mut rng));
        }
        for v in 0..variants {
            if out.len() >= docs {
                break;
            }
            let kind = EDITS[v % EDITS.len()];
            out.push(edit(base, 0.12 * rng.unit(), kind, &vocab, &mut rng));
        }
        b += 1;
    }
    out.truncate(docs);
    // Fisher–Yates.
    for i in (1..out.len()).rev() {
        let j = rng.below(i + 1);
        out.swap(i, j);
    }
    out
}
