//! The quality filters' corpus, the same on every machine (nothing outside this crate is
//! read): the committed license texts (`tests/fixtures/common-licenses`) whole and as
//! Debian-style copyright files, and generated documents of the kinds a web crawl holds —
//! articles, Python modules and their docstrings, manual pages, lists, tables, link farms,
//! boilerplate — plus edits of license paragraphs aimed at each Gopher threshold (repeated
//! paragraphs and lines, bullet and ellipsis lines, hashes, short pieces).
//!
//! Good and bad documents by Gopher's rules are both well represented (about half each), so
//! the classifier test can show learning against the majority class. Shared by
//! `tests/filters.rs` and `benches/filters.rs` (included with `#[path]`, beside
//! `corpus.rs`, whose generators it uses).

#![allow(dead_code)]

use kiln_data::ingest::Document;

pub use super::corpus::Rng;
use super::corpus::{self, article, docstrings, paragraph, python_module, sentence};

/// Documents of each generated kind (assumption: enough that each kind is seen in training
/// and held out, few enough for datatrove's pass over the corpus to take seconds).
pub const PER_KIND: usize = 60;

/// Paragraphs (blank-line separated) of the license texts, trimmed, in file order.
pub fn license_paragraphs() -> Vec<String> {
    let mut out = Vec::new();
    for (name, text) in corpus::license_texts() {
        if corpus::LICENSE_ALIASES
            .iter()
            .any(|(alias, _)| *alias == name)
        {
            continue;
        }
        for para in text.split("\n\n") {
            let para = para.trim();
            if para.split_whitespace().count() >= 8 {
                out.push(para.to_string());
            }
        }
    }
    out
}

fn doc(id: String, text: String) -> Document {
    Document { id, text }
}

/// Edited variants of license paragraphs, each aimed at one Gopher rule's threshold.
fn variants(paragraphs: &[String], rng: &mut Rng, out: &mut Vec<Document>) {
    let pick = |rng: &mut Rng| paragraphs[rng.below(paragraphs.len())].clone();
    for k in 0..PER_KIND {
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

const FIRST_NAMES: [&str; 12] = [
    "Ana",
    "Björn",
    "Chloé",
    "Dmitri",
    "Eleanor",
    "François",
    "Grace",
    "Håkon",
    "Ines",
    "José",
    "Kai",
    "Łucja",
];
const LAST_NAMES: [&str; 12] = [
    "Álvarez",
    "Berg",
    "Chen",
    "Dubois",
    "Evans",
    "Fischer",
    "García",
    "Hansen",
    "Ivanova",
    "Jørgensen",
    "Kowalski",
    "Müller",
];

fn person(rng: &mut Rng) -> (String, String) {
    let (first, last) = (*rng.pick(&FIRST_NAMES), *rng.pick(&LAST_NAMES));
    let mail = format!(
        "{}.{}@example.org",
        first.to_lowercase(),
        last.to_lowercase()
    );
    (format!("{first} {last}"), mail)
}

/// A Debian machine-readable copyright file (DEP-5): stanzas with names, e-mail addresses,
/// year ranges and URLs, and a license text indented with `.` for blank lines.
fn copyright_file(rng: &mut Rng, licenses: &[(String, String)]) -> String {
    let name = format!(
        "{}-{}",
        rng.pick(&corpus::VERBS).0,
        rng.pick(&corpus::NOUNS)
    );
    let (upstream, mail) = person(rng);
    let mut out = format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: {name}\nUpstream-Contact: {upstream} <{mail}>\n\
         Source: https://github.com/example/{name}/releases\n"
    );
    let (license, text) = &licenses[rng.below(licenses.len())];
    for files in ["*", "debian/*", "src/compat/*"]
        .iter()
        .take(1 + rng.below(3))
    {
        let (who, mail) = person(rng);
        let from = 1995 + rng.below(25);
        out += &format!(
            "\nFiles: {files}\nCopyright: {from}-{} {who} <{mail}>\n           © {} {}\n\
             License: {license}\n",
            from + rng.below(10),
            from + 2,
            person(rng).0
        );
    }
    // The license text of the last stanza, DEP-5 style; long texts cut to their start.
    let words: Vec<&str> = text.split_whitespace().collect();
    let cut = words.len().min(150 + rng.below(250));
    let head = words[..cut].join(" ");
    out += &format!("\nLicense: {license}\n");
    for para in head.split(". ").collect::<Vec<_>>().chunks(3) {
        out += &format!(" {}.\n .\n", para.join(". ").trim_end_matches('.'));
    }
    out
}

/// A manual page as `man` renders it: NAME, SYNOPSIS, DESCRIPTION, OPTIONS with
/// hyphenated flags, SEE ALSO with section numbers, typographic quotes and dashes.
fn man_page(rng: &mut Rng) -> String {
    let name = rng.pick(&corpus::VERBS).0.to_string() + *rng.pick(&corpus::NOUNS);
    let upper = name.to_uppercase();
    let mut out = format!(
        "{upper}(1)                    User Commands                   {upper}(1)\n\n\
         NAME\n       {name} ‐ {}\n\nSYNOPSIS\n       {name} [OPTION]... [FILE]...\n\n\
         DESCRIPTION\n",
        sentence(rng).trim_end_matches('.').to_lowercase()
    );
    for _ in 0..1 + rng.below(3) {
        out += &format!("       {}\n\n", paragraph(rng).replace(". ", ".\n       "));
    }
    out += "OPTIONS\n";
    for _ in 0..3 + rng.below(8) {
        let noun = rng.pick(&corpus::NOUNS);
        let flag = rng.pick(&corpus::ADJECTIVES);
        let what = sentence(rng);
        let (value, object) = (rng.pick(&corpus::ADJECTIVES), rng.pick(&corpus::NOUNS));
        out += &format!(
            "       -{}, --{flag}-{noun}[=WHEN]\n              {what} Use ‘{value}’ for the \
             {object}.\n\n",
            &noun[..1],
        );
    }
    out += &format!(
        "SEE ALSO\n       {}(1), {}(5), {}(8)\n\nGNU coreutils 9.1            September 2022                  {upper}(1)\n",
        rng.pick(&corpus::NOUNS),
        rng.pick(&corpus::NOUNS),
        rng.pick(&corpus::NOUNS)
    );
    out
}

/// A list page: a title, then bullet lines of a few words (fails the bullet rule).
fn bullet_list(rng: &mut Rng) -> String {
    let mut out = corpus::article(rng, 0);
    for _ in 0..12 + rng.below(20) {
        out += &format!(
            "• {} {} {}\n",
            rng.pick(&corpus::ADJECTIVES),
            rng.pick(&corpus::NOUNS),
            rng.pick(&corpus::NOUNS)
        );
    }
    out
}

/// A table of numbers (fails the alphabetic-word rule).
fn number_table(rng: &mut Rng) -> String {
    let mut out = format!(
        "{} {}\n",
        rng.pick(&corpus::NOUNS),
        rng.pick(&corpus::NOUNS)
    );
    for _ in 0..20 + rng.below(30) {
        out += &format!(
            "{} | {} | {}.{:02} | {}% | {}\n",
            1990 + rng.below(35),
            rng.below(100_000),
            rng.below(100),
            rng.below(100),
            rng.below(100),
            rng.below(10)
        );
    }
    out
}

/// Teasers ending in ellipses, with hashtags (fails the ellipsis and symbol rules).
fn teaser_feed(rng: &mut Rng) -> String {
    let mut out = String::new();
    for _ in 0..10 + rng.below(15) {
        let s = sentence(rng);
        let cut: Vec<&str> = s.split_whitespace().take(4 + rng.below(4)).collect();
        out += &format!(
            "{}… #{} #{}\n",
            cut.join(" "),
            rng.pick(&corpus::NOUNS),
            rng.pick(&corpus::ADJECTIVES)
        );
    }
    out
}

/// One boilerplate line repeated (fails the duplicate-line rules).
fn boilerplate(rng: &mut Rng) -> String {
    let line = sentence(rng);
    let other = sentence(rng);
    let mut lines = Vec::new();
    for i in 0..20 + rng.below(20) {
        lines.push(if i % 5 == 4 {
            other.clone()
        } else {
            line.clone()
        });
    }
    lines.join("\n")
}

/// A letter: a greeting with a name, paragraphs of prose, a signature.
fn letter(rng: &mut Rng) -> String {
    let (to, _) = person(rng);
    let (from, mail) = person(rng);
    let body: Vec<String> = (0..2 + rng.below(3)).map(|_| paragraph(rng)).collect();
    format!(
        "Dear {to},\n\n{}\n\nWith best wishes,\n{from} ({mail})\n",
        body.join("\n\n")
    )
}

/// Consecutive license paragraphs, as a page quoting a license would hold them.
fn license_excerpt(rng: &mut Rng, paragraphs: &[String]) -> String {
    let start = rng.below(paragraphs.len());
    let end = (start + 2 + rng.below(4)).min(paragraphs.len());
    paragraphs[start..end].join("\n\n")
}

/// A web page as a crawl extracts it: prose with navigation and notice lines (C4 removes
/// the lines about JavaScript, cookies and terms, and pages with `lorem ipsum` or a curly
/// bracket).
fn web_page(rng: &mut Rng, k: usize) -> String {
    const NOTICES: [&str; 6] = [
        "Please enable JavaScript to view the comments.",
        "This site uses cookies. Read our cookie policy.",
        "By using this site you agree to the terms of use and the privacy policy.",
        "Home | About | Contact",
        "Share this:",
        "Copyright © 2021 Example Media. All rights reserved.",
    ];
    let mut lines = vec![NOTICES[3].to_string()];
    for _ in 0..2 + rng.below(4) {
        lines.push(paragraph(rng));
        if rng.below(2) == 0 {
            lines.push(rng.pick(&NOTICES).to_string());
        }
    }
    match k % 6 {
        0 => lines.push("Lorem ipsum dolor sit amet, consectetur adipiscing elit.".into()),
        1 => lines.push(format!(
            "var {} = {{ enabled: true }};",
            rng.pick(&corpus::NOUNS)
        )),
        _ => {}
    }
    lines.push(NOTICES[5].to_string());
    lines.join("\n")
}

/// A very short note (fails the minimum word count).
fn short_note(rng: &mut Rng) -> String {
    let mut out = sentence(rng);
    for _ in 0..rng.below(3) {
        out += " ";
        out += &sentence(rng);
    }
    out
}

/// The corpus, in a fixed order, ids unique.
pub fn corpus() -> Vec<Document> {
    let mut rng = Rng(0x5EED_F17E);
    let mut out = Vec::new();
    let licenses: Vec<(String, String)> = corpus::license_texts()
        .into_iter()
        .filter(|(name, _)| !corpus::LICENSE_ALIASES.iter().any(|(a, _)| *a == name))
        .collect();
    for (name, text) in &licenses {
        out.push(doc(format!("licenses/{name}"), text.clone()));
    }
    let paragraphs = license_paragraphs();
    for k in 0..PER_KIND {
        out.push(doc(
            format!("copyright/{k}"),
            copyright_file(&mut rng, &licenses),
        ));
        for part in 0..3 {
            let paragraphs = 2 + rng.below(6);
            out.push(doc(
                format!("article/{k}.{part}"),
                article(&mut rng, paragraphs),
            ));
        }
        out.push(doc(format!("letter/{k}"), letter(&mut rng)));
        let excerpt = license_excerpt(&mut rng, &paragraphs);
        out.push(doc(format!("excerpt/{k}"), excerpt));
        let module = python_module(&mut rng);
        out.push(doc(
            format!("python/{k}.py#docstrings"),
            docstrings(&module),
        ));
        out.push(doc(format!("python/{k}.py"), module));
        out.push(doc(format!("man/{k}"), man_page(&mut rng)));
        out.push(doc(format!("list/{k}"), bullet_list(&mut rng)));
        out.push(doc(format!("table/{k}"), number_table(&mut rng)));
        out.push(doc(format!("teasers/{k}"), teaser_feed(&mut rng)));
        out.push(doc(format!("boilerplate/{k}"), boilerplate(&mut rng)));
        out.push(doc(format!("note/{k}"), short_note(&mut rng)));
        out.push(doc(format!("web/{k}"), web_page(&mut rng, k)));
    }
    variants(&paragraphs, &mut rng, &mut out);
    out
}
