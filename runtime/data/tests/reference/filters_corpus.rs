//! The quality filters' real corpus, built from text on this machine: Debian's license texts
//! (/usr/share/common-licenses) and package copyright files (/usr/share/doc/*/copyright),
//! Python's standard library (/usr/lib/python3.11: whole modules, and each module's
//! docstrings as prose), man pages rendered by `man -P cat`, and variants of license
//! paragraphs edited to sit near each Gopher threshold (repeated paragraphs and lines, bullet
//! and ellipsis lines, hashes, short pieces). Shared by `tests/filters.rs` and
//! `benches/filters.rs` (included with `#[path]`).

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_data::ingest::Document;

/// Files above this size are left out (assumption: keeps the corpus, and datatrove's pass
/// over it, to seconds; the long-document rule is exercised by the edited variants).
pub const MAX_FILE_BYTES: u64 = 60_000;
/// Man pages rendered (the first, by name, of man1).
pub const MAN_PAGES: usize = 60;

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
    /// Uniform in [0, n); n ≥ 1.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

fn sorted_files(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.retain(|p| keep(p));
    out.sort();
    out
}

fn small_text(path: &Path) -> Option<String> {
    let meta = fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return None;
    }
    fs::read_to_string(path).ok()
}

/// The docstrings of a Python module (every `"""…"""` block), joined by blank lines.
fn docstrings(source: &str) -> String {
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

fn man_page(name: &str) -> Option<String> {
    let out = Command::new("man")
        .args(["-P", "cat", name])
        .env("MANWIDTH", "80")
        .env("LANG", "C.UTF-8")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    (!text.trim().is_empty()).then_some(text)
}

/// Paragraphs (blank-line separated) of the license texts, trimmed, in file order.
pub fn license_paragraphs() -> Vec<String> {
    let mut out = Vec::new();
    for p in sorted_files(Path::new("/usr/share/common-licenses"), |_| true) {
        if let Some(text) = small_text(&p).or_else(|| fs::read_to_string(&p).ok()) {
            for para in text.split("\n\n") {
                let para = para.trim();
                if para.split_whitespace().count() >= 8 {
                    out.push(para.to_string());
                }
            }
        }
    }
    out
}

/// Edited variants of license paragraphs, each aimed at one Gopher rule's threshold.
fn variants(paragraphs: &[String], rng: &mut Rng, out: &mut Vec<Document>) {
    if paragraphs.is_empty() {
        return;
    }
    let pick = |rng: &mut Rng| paragraphs[rng.below(paragraphs.len())].clone();
    for k in 0..60 {
        // Several paragraphs, some repeated.
        let n = 3 + rng.below(6);
        let mut paras: Vec<String> = (0..n).map(|_| pick(rng)).collect();
        for _ in 0..rng.below(3) {
            let i = rng.below(paras.len());
            paras.push(paras[i].clone());
        }
        out.push(doc(format!("variant/repeat/{k}"), paras.join("\n\n")));
        // Lines, a fraction made bullets, ellipses or hashes.
        let text = pick(rng) + "\n" + &pick(rng);
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let frac = rng.below(101) as f64 / 100.0;
        let mut edited = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let hit = (i as f64 + 0.5) / (lines.len() as f64) < frac;
            edited.push(match (k % 4, hit) {
                (0, true) => format!("- {l}"),
                (1, true) => format!("• {l}"),
                (2, true) => format!("{l}..."),
                (3, true) => format!("{l} #tag #{i}"),
                _ => l.clone(),
            });
        }
        out.push(doc(format!("variant/lines/{k}"), edited.join("\n")));
        // A short piece of a paragraph (around the 50-word minimum).
        let words: Vec<String> = pick(rng).split_whitespace().map(str::to_string).collect();
        let take = (40 + rng.below(25)).min(words.len());
        out.push(doc(format!("variant/short/{k}"), words[..take].join(" ")));
    }
}

fn doc(id: String, text: String) -> Document {
    Document { id, text }
}

/// The corpus, in a fixed order, ids unique.
pub fn corpus() -> Vec<Document> {
    let mut out = Vec::new();
    for p in sorted_files(Path::new("/usr/share/common-licenses"), |_| true) {
        if let Some(text) = small_text(&p) {
            out.push(doc(p.display().to_string(), text));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for dir in sorted_files(Path::new("/usr/share/doc"), |p| p.is_dir()) {
        let p = dir.join("copyright");
        if let Some(text) = small_text(&p) {
            if seen.insert(text.clone()) {
                out.push(doc(p.display().to_string(), text));
            }
        }
    }
    for p in sorted_files(Path::new("/usr/lib/python3.11"), |p| {
        p.extension().is_some_and(|e| e == "py")
    }) {
        if let Some(text) = small_text(&p) {
            let ds = docstrings(&text);
            out.push(doc(p.display().to_string(), text));
            if !ds.is_empty() {
                out.push(doc(format!("{}#docstrings", p.display()), ds));
            }
        }
    }
    let pages = sorted_files(Path::new("/usr/share/man/man1"), |p| {
        p.to_str().is_some_and(|s| s.ends_with(".1.gz"))
    });
    for p in pages.iter().take(MAN_PAGES) {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.trim_end_matches(".1.gz").to_string());
        if let Some(text) = name.as_deref().and_then(man_page) {
            out.push(doc(format!("man/{}", name.unwrap_or_default()), text));
        }
    }
    let mut rng = Rng(0x5EED_F17E);
    variants(&license_paragraphs(), &mut rng, &mut out);
    out
}
