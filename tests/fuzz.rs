//! The parser and the whole check never panic: arbitrary bytes, truncations and mutations of
//! every file in experiments/ and stdlib/, and deeply nested input. Bounded for CI by
//! proptest's case count (`PROPTEST_CASES`, 256 by default).

mod common;

use proptest::prelude::*;
use std::sync::OnceLock;

fn corpus() -> &'static Vec<String> {
    static CORPUS: OnceLock<Vec<String>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut files = common::kiln_files("experiments");
        files.extend(common::kiln_files("stdlib"));
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    })
}

/// Checks, renders both ways, and formats whatever parses; any panic fails the test.
fn survive(text: &str) {
    std::env::set_current_dir(common::root()).unwrap();
    let checked = kiln::check_source("fuzz/input.kiln", text, &kiln::load::FsLoader, &[]);
    let rendered =
        kiln::diagnostic::render_text(&checked.program.sources, &checked.diagnostics, false);
    let json = kiln::diagnostic::to_json(&checked.program.sources, &checked.diagnostics);
    assert_eq!(json.len(), checked.diagnostics.len());
    assert!(checked.diagnostics.is_empty() || !rendered.is_empty());
    if let Ok(ast) = kiln::syntax::parse(0, text) {
        let once = kiln::syntax::fmt::format(&ast, text);
        let again = kiln::syntax::parse(0, &once).expect("formatted output parses");
        assert_eq!(
            once,
            kiln::syntax::fmt::format(&again, &once),
            "fmt is idempotent"
        );
    }
}

/// Pieces of the language, so that mutations make near-valid input and reach deep stages.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "=",
    ",",
    ".",
    "\"",
    "#",
    "\n",
    "auto",
    "8B",
    "80GB",
    "16M tokens",
    "25%",
    "*",
    "/",
    "+",
    "-",
    "model",
    "phase p {",
    "source s {",
    "mix",
    "tokens",
    "layers = 0",
    "1e400",
    "-3",
    "llama3_8b",
    "x.y.z",
    "import std.gpus",
    "import \"x.kiln\"",
    "lr = linear { to = 1 }",
    "data = auto",
    "tensor = 7",
    "3.5",
    "\\",
];

proptest! {
    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        survive(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutations_of_real_files(file in 0usize..64, at in any::<usize>(), len in 0usize..40, token in 0..TOKENS.len(), kind in 0u8..3) {
        let text = &corpus()[file % corpus().len()];
        let mut at = at % (text.len() + 1);
        while !text.is_char_boundary(at) { at -= 1; }
        let mut end = (at + len).min(text.len());
        while !text.is_char_boundary(end) { end -= 1; }
        let mutated = match kind {
            0 => format!("{}{}", &text[..at], &text[end..]),
            1 => format!("{}{}{}", &text[..at], TOKENS[token], &text[at..]),
            _ => format!("{}{}{}", &text[..at], TOKENS[token], &text[end..]),
        };
        survive(&mutated);
    }
}

#[test]
fn every_truncation_of_every_file() {
    for text in corpus() {
        let step = (text.len() / 150).max(1);
        for cut in (0..text.len())
            .step_by(step)
            .filter(|c| text.is_char_boundary(*c))
        {
            survive(&text[..cut]);
        }
    }
}

#[test]
fn deep_nesting_and_long_input() {
    let n = 100_000;
    for text in [
        format!(
            "experiment e {{ tokens = {}1{} }}",
            "(".repeat(n),
            ")".repeat(n)
        ),
        format!("experiment e {{ {} }}", "a { ".repeat(n)),
        format!("experiment e {{ x = {} }}", "[".repeat(n)),
        format!("experiment e {{ tokens = 1{} }}", " * 1".repeat(n)),
        format!("experiment e {{ tokens = {} }}", "a.".repeat(n) + "b"),
        format!("experiment {} {{}}", "a".repeat(n)),
        "}".repeat(n),
        "\"".repeat(n),
    ] {
        survive(&text);
    }
}

/// Found by `arbitrary_bytes`: a comment holding U+0001, which `kiln fmt` once used as its
/// own in-band marker of trailing comments, was split on the second pass.
#[test]
fn control_characters_in_comments_and_strings_format_stably() {
    survive("#\0\u{1}");
    survive("# leading \u{1} comment\nmodel m {\n  layers = 2 # trailing \u{1} one\n  hidden = 64  # two\n}\n");
    survive("experiment e {\n  note = \"a\u{1}b\" # c\n}\n");
}
