//! Deterministic test corpora, the same on every machine: real text committed with the tests
//! (`tests/fixtures/common-licenses`, the license texts of Debian's base-files; see
//! `tests/fixtures/README.md`), cut into documents, synthetic edits of them (words deleted,
//! replaced or inserted at a controlled fraction), and text generated from a seed: English
//! prose and Python-like source. Nothing is read from the machine outside this crate.
//! Shared by the tests and benches (included with `#[path]`).

#![allow(dead_code)]

use std::fs;
use std::path::Path;

/// The committed license texts (Debian base-files 12.4's /usr/share/common-licenses).
pub const LICENSE_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/common-licenses"
);

/// The names Debian installs as symlinks to other texts: they are read again under these
/// names, as the machine's directory listed them (real exact duplicates for the dedup tests).
pub const LICENSE_ALIASES: [(&str, &str); 3] =
    [("GFDL", "GFDL-1.3"), ("GPL", "GPL-3"), ("LGPL", "LGPL-3")];

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

/// Every license text by file name (the aliases such as GPL → GPL-3 included), sorted.
pub fn license_texts() -> Vec<(String, String)> {
    let dir = Path::new(LICENSE_DIR);
    let mut entries: Vec<(String, String)> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{LICENSE_DIR}: {e}"))
        .map(|e| {
            let path = e.expect("a directory entry").path();
            let text = fs::read_to_string(&path).expect("a license text");
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, text)
        })
        .collect();
    for (alias, target) in LICENSE_ALIASES {
        let text = entries
            .iter()
            .find(|(name, _)| name == target)
            .map(|(_, text)| text.clone())
            .expect("the alias's target");
        entries.push((alias.to_string(), text));
    }
    entries.sort();
    assert_eq!(entries.len(), 17, "{LICENSE_DIR}: 14 texts and 3 aliases");
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

// ---------------------------------------------------------------------------------------
// Generated text: English prose and Python-like source, from a seed.

/// Nouns of the generated prose and identifiers.
pub const NOUNS: [&str; 48] = [
    "file",
    "buffer",
    "record",
    "value",
    "program",
    "library",
    "system",
    "user",
    "license",
    "document",
    "function",
    "module",
    "stream",
    "table",
    "network",
    "request",
    "server",
    "client",
    "model",
    "dataset",
    "token",
    "sentence",
    "paragraph",
    "archive",
    "package",
    "version",
    "option",
    "argument",
    "process",
    "thread",
    "memory",
    "disk",
    "index",
    "cache",
    "queue",
    "error",
    "message",
    "result",
    "report",
    "source",
    "copy",
    "work",
    "author",
    "notice",
    "permission",
    "condition",
    "garden",
    "river",
];
/// Verbs: the base form and the third person.
pub const VERBS: [(&str, &str); 24] = [
    ("read", "reads"),
    ("write", "writes"),
    ("return", "returns"),
    ("keep", "keeps"),
    ("remove", "removes"),
    ("check", "checks"),
    ("describe", "describes"),
    ("contain", "contains"),
    ("change", "changes"),
    ("copy", "copies"),
    ("send", "sends"),
    ("build", "builds"),
    ("open", "opens"),
    ("close", "closes"),
    ("count", "counts"),
    ("sort", "sorts"),
    ("print", "prints"),
    ("hold", "holds"),
    ("start", "starts"),
    ("stop", "stops"),
    ("follow", "follows"),
    ("carry", "carries"),
    ("grow", "grows"),
    ("share", "shares"),
];
pub const ADJECTIVES: [&str; 24] = [
    "new", "old", "large", "small", "first", "last", "empty", "whole", "given", "current",
    "default", "public", "private", "open", "free", "simple", "local", "remote", "valid",
    "complete", "quiet", "careful", "early", "modern",
];
const PREPOSITIONS: [&str; 10] = [
    "of", "in", "with", "from", "to", "for", "by", "on", "after", "before",
];

impl Rng {
    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// One English sentence from a small grammar (stop words such as `the`, `of`, `and`,
/// `that`, `with`, `to`, `be` and `have` occur as in real prose).
pub fn sentence(rng: &mut Rng) -> String {
    let n = |rng: &mut Rng| *rng.pick(&NOUNS);
    let a = |rng: &mut Rng| *rng.pick(&ADJECTIVES);
    let v = |rng: &mut Rng| *rng.pick(&VERBS);
    let p = |rng: &mut Rng| *rng.pick(&PREPOSITIONS);
    let text = match rng.below(8) {
        0 => format!(
            "the {} {} {} the {} {} the {}",
            a(rng),
            n(rng),
            v(rng).1,
            n(rng),
            p(rng),
            n(rng)
        ),
        1 => format!(
            "if the {} is {}, the {} {} it and {} a {} {}",
            n(rng),
            a(rng),
            n(rng),
            v(rng).1,
            v(rng).1,
            a(rng),
            n(rng)
        ),
        2 => format!(
            "it is {} to {} the {} before the {} {} that {}",
            a(rng),
            v(rng).0,
            n(rng),
            n(rng),
            v(rng).1,
            n(rng)
        ),
        3 => format!(
            "each {} that you {} with the {} has to be {} and {}",
            n(rng),
            v(rng).0,
            n(rng),
            a(rng),
            a(rng)
        ),
        4 => format!(
            "we {} the {} {} of the {} so that the {} can {} it {} the {}",
            v(rng).0,
            a(rng),
            n(rng),
            n(rng),
            n(rng),
            v(rng).0,
            p(rng),
            n(rng)
        ),
        5 => format!(
            "a {} {} {} {} {} {} and the {} {} the rest",
            a(rng),
            n(rng),
            v(rng).1,
            n(rng).to_string() + "s",
            p(rng),
            n(rng),
            n(rng),
            v(rng).1
        ),
        6 => format!(
            "there have been {} {} {} in the {} since the {} {} was {}",
            2 + rng.below(40),
            a(rng),
            n(rng).to_string() + "s",
            n(rng),
            n(rng),
            n(rng),
            a(rng)
        ),
        _ => format!(
            "when a {} {} the {}, its {} {} {} with the {} {}",
            n(rng),
            v(rng).1,
            n(rng),
            n(rng),
            v(rng).1,
            a(rng),
            n(rng),
            n(rng)
        ),
    };
    capitalise(&text) + "."
}

/// A paragraph of `3..=7` sentences.
pub fn paragraph(rng: &mut Rng) -> String {
    let k = 3 + rng.below(5);
    (0..k).map(|_| sentence(rng)).collect::<Vec<_>>().join(" ")
}

/// An article: a title line and `paragraphs` paragraphs.
pub fn article(rng: &mut Rng, paragraphs: usize) -> String {
    let title = capitalise(&format!(
        "{} {} and the {} {}",
        rng.pick(&ADJECTIVES),
        rng.pick(&NOUNS),
        rng.pick(&ADJECTIVES),
        rng.pick(&NOUNS)
    ));
    let body: Vec<String> = (0..paragraphs).map(|_| paragraph(rng)).collect();
    format!("{title}\n\n{}\n", body.join("\n\n"))
}

fn identifier(rng: &mut Rng) -> String {
    format!("{}_{}", rng.pick(&VERBS).0, rng.pick(&NOUNS))
}

fn class_name(rng: &mut Rng) -> String {
    let (adjective, noun) = (*rng.pick(&ADJECTIVES), *rng.pick(&NOUNS));
    capitalise(adjective) + &capitalise(noun)
}

/// A Python-like module: a docstring, imports, constants, functions and a class with
/// docstrings and comments, in a fixed layout filled from the seed.
pub fn python_module(rng: &mut Rng) -> String {
    const MODULES: [&str; 12] = [
        "os",
        "sys",
        "re",
        "json",
        "math",
        "itertools",
        "functools",
        "collections",
        "pathlib",
        "typing",
        "dataclasses",
        "logging",
    ];
    let mut out = format!("\"\"\"{}\n\n{}\n\"\"\"\n\n", sentence(rng), paragraph(rng));
    for _ in 0..1 + rng.below(4) {
        out += &format!("import {}\n", rng.pick(&MODULES));
    }
    out += &format!(
        "from {} import {}, {}\n\n",
        rng.pick(&MODULES),
        rng.pick(&NOUNS),
        identifier(rng)
    );
    for _ in 0..1 + rng.below(3) {
        out += &format!(
            "{}_{} = {}\n",
            rng.pick(&ADJECTIVES).to_uppercase(),
            rng.pick(&NOUNS).to_uppercase(),
            rng.below(10_000)
        );
    }
    for _ in 0..2 + rng.below(4) {
        let (name, a, b) = (identifier(rng), *rng.pick(&NOUNS), *rng.pick(&NOUNS));
        let (b, limit) = (if a == b { "other" } else { b }, 1 + rng.below(100));
        out += &format!(
            "\n\ndef {name}({a}, {b}=None):\n    \"\"\"{}\"\"\"\n    result = []\n    \
             # {}\n    for i in range({limit}):\n        if {b} is not None and i % {} == 0:\n            \
             result.append({a}[i] + {b})\n        elif i > len({a}):\n            break\n    \
             return {{\"{a}\": result, \"count\": len(result)}}\n",
            sentence(rng),
            sentence(rng),
            2 + rng.below(7),
        );
    }
    let (class, field) = (class_name(rng), *rng.pick(&NOUNS));
    out += &format!(
        "\n\nclass {class}(object):\n    \"\"\"{}\n\n    {}\n    \"\"\"\n\n    \
         def __init__(self, {field}, size={}):\n        self.{field} = {field}\n        \
         self.size = size\n        self._items = {{}}\n\n    def {}(self, key):\n        \
         # {}\n        if key not in self._items:\n            raise KeyError(key)\n        \
         return self._items[key] * self.size\n",
        sentence(rng),
        sentence(rng),
        rng.below(512),
        identifier(rng),
        sentence(rng),
    );
    out
}

/// The docstrings of a Python module (every `\"\"\"…\"\"\"` block), joined by blank lines.
pub fn docstrings(source: &str) -> String {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(i) = rest.find("\"\"\"") {
        let after = &rest[i + 3..];
        let Some(j) = after.find("\"\"\"") else { break };
        let block = after[..j].trim();
        if !block.is_empty() {
            out.push(block.to_string());
        }
        rest = &after[j + 3..];
    }
    out.join("\n\n")
}
