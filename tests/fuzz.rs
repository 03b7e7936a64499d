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

/// The experiments whose numbers `scaled_numbers_plan_and_emit` mutates.
fn experiments() -> &'static Vec<(String, String)> {
    static FILES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let mut files = common::kiln_files("experiments");
        files.extend(common::kiln_files("experiments/reference"));
        files
            .iter()
            .map(|p| {
                let rel = p.strip_prefix(common::root()).unwrap();
                (
                    rel.display().to_string(),
                    std::fs::read_to_string(p).unwrap(),
                )
            })
            .collect()
    })
}

/// The byte ranges of the numbers written in `text` (outside comments and strings, and not
/// part of a name such as `llama3_8b`).
fn numbers(text: &str) -> Vec<std::ops::Range<usize>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut in_string) = (0, false);
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            in_string = c != b'"';
            i += 1;
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'0'..=b'9'
                if i == 0
                    || !(bytes[i - 1].is_ascii_alphanumeric()
                        || bytes[i - 1] == b'_'
                        || bytes[i - 1] == b'.') =>
            {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
                if i + 1 < bytes.len()
                    && (bytes[i] == b'e' || bytes[i] == b'E')
                    && (bytes[i + 1].is_ascii_digit()
                        || bytes[i + 1] == b'-'
                        || bytes[i + 1] == b'+')
                {
                    i += 2;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                out.push(start..i);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// How a number is changed: scaled by a factor, or replaced.
#[derive(Clone, Copy, Debug)]
enum Change {
    Scale(f64),
    Set(f64),
}

const CHANGES: &[Change] = &[
    Change::Scale(0.0),
    Change::Scale(1e-30),
    Change::Scale(1e-9),
    Change::Scale(1e-3),
    Change::Scale(0.5),
    Change::Scale(0.999),
    Change::Scale(1.5),
    Change::Scale(2.0),
    Change::Scale(3.0),
    Change::Scale(1e3),
    Change::Scale(1e6),
    Change::Scale(1e9),
    Change::Scale(1e15),
    Change::Scale(1e30),
    Change::Scale(1e300),
    Change::Scale(-1.0),
    Change::Set(1.0),
    Change::Set(4294967296.0),
    Change::Set(9007199254740992.0),
    Change::Set(9007199254740994.0),
    Change::Set(1.8446744073709552e19),
    Change::Set(1e308),
];

/// A number as kiln reads it: whole numbers below 2^63 in full, others in `e` notation.
fn written(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 9.2e18 {
        format!("{}", v as i64)
    } else {
        format!("{v:e}")
    }
}

/// Applies `edits` (which number, which change) to `text`; the new text, and what changed
/// (`line 12: 8192 → 1e30`).
fn mutate(text: &str, edits: &[(usize, usize)]) -> (String, String) {
    let spots = numbers(text);
    if spots.is_empty() {
        return (text.to_string(), String::new());
    }
    let mut changes: Vec<(std::ops::Range<usize>, String)> = edits
        .iter()
        .map(|&(which, change)| {
            let range = spots[which % spots.len()].clone();
            let v: f64 = text[range.clone()].parse().unwrap_or(1.0);
            let new = match CHANGES[change % CHANGES.len()] {
                Change::Scale(f) => v * f,
                Change::Set(x) => x,
            };
            (range, written(new))
        })
        .collect();
    changes.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    changes.dedup_by_key(|(r, _)| r.start);
    let what: Vec<String> = changes
        .iter()
        .rev()
        .map(|(r, new)| {
            let line = text[..r.start].matches('\n').count() + 1;
            format!("line {line}: {} → {new}", &text[r.clone()])
        })
        .collect();
    let mut out = text.to_string();
    for (range, new) in changes {
        out.replace_range(range, &new);
    }
    (out, what.join(", "))
}

/// Whenever a mutated experiment checks without errors, it lowers into a plan that is
/// consistent with itself and valid against the plan's schema, and every target emits it.
fn plans_whenever_it_checks(name: &str, text: &str, what: &str) {
    static SCHEMA: OnceLock<jsonschema::Validator> = OnceLock::new();
    let validator = SCHEMA.get_or_init(|| {
        let schema = serde_json::to_value(schemars::schema_for!(kiln::plan::RunPlan)).unwrap();
        jsonschema::validator_for(&schema).unwrap()
    });
    std::env::set_current_dir(common::root()).unwrap();
    let checked = kiln::check_source(name, text, &kiln::load::FsLoader, &[]);
    if checked.errors() > 0 {
        return;
    }
    for exp in checked.experiments() {
        if exp.record.record("tokenizer").is_none() {
            continue;
        }
        let (setup, analysis) = kiln::analyse::analyse(&exp.record)
            .unwrap_or_else(|| panic!("checked without errors, but no analysis: {name}, {what}"));
        let plan = kiln::plan::lower(exp, &setup, &analysis)
            .unwrap_or_else(|| panic!("checked without errors, but no plan: {name}, {what}"));
        let s = &plan.schedule;
        let mut start = 0u64;
        for phase in &s.phases {
            assert_eq!(
                phase.start_step, start,
                "phases follow each other: {name}, {what}"
            );
            assert!(
                phase.steps >= 1,
                "phase `{}` has no steps: {name}, {what}",
                phase.name
            );
            start = start.checked_add(phase.steps).expect("steps add up");
            assert!(
                phase.tokens_trained >= phase.tokens,
                "whole steps cover the tokens: {name}, {what}"
            );
            for step in [0, phase.steps / 2, phase.steps - 1, phase.steps] {
                let lr = phase.lr.at(step, phase.steps);
                assert!(
                    lr.is_finite() && lr >= 0.0,
                    "lr {lr} at step {step}: {name}, {what}"
                );
            }
        }
        assert_eq!(
            start, s.total_steps,
            "the phases' steps are the total: {name}, {what}"
        );
        if let Some(cost) = &analysis.cost {
            assert_eq!(
                cost.steps, s.total_steps as f64,
                "the analysis times the plan's steps: {name}, {what}"
            );
        }
        for v in [
            s.total_steps,
            s.global_batch,
            s.micro_batch,
            s.accumulation,
            s.seq_len,
            s.checkpoint_every_steps,
            s.eval_every_steps,
        ] {
            assert!(
                v >= 1 && v as f64 <= 9007199254740992.0,
                "a count of {v}: {name}, {what}"
            );
        }
        let t = &plan.topology;
        assert_eq!(
            s.micro_batch
                .checked_mul(u64::from(t.data))
                .and_then(|b| b.checked_mul(s.accumulation)),
            Some(s.global_batch),
            "global batch = micro_batch × data × accumulation: {name}, {what}"
        );
        assert_eq!(
            s.global_batch.checked_mul(s.seq_len).map(|b| b as f64),
            Some(s.batch_tokens),
            "batch = sequences × seq_len: {name}, {what}"
        );
        assert_eq!(
            t.ranks.len() as u64,
            u64::from(t.world),
            "every rank is listed: {name}, {what}"
        );
        assert_eq!(
            u64::from(t.nodes) * u64::from(t.gpus_per_node),
            u64::from(t.world),
            "the cluster is the world: {name}, {what}"
        );
        let json = serde_json::to_value(&plan).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .take(3)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{errors:?}: {name}, {what}");
        let at = |_: &str| kiln::span::Span::new(0, 0, 0);
        for target in kiln::emit::Target::ALL {
            let (files, _) = kiln::emit::emit(&plan, target, &at);
            assert!(
                !files.is_empty(),
                "{} emits nothing: {name}, {what}",
                target.name()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(128),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Numbers of the real experiments scaled by huge and tiny factors, zeroed, negated or
    /// set to the edges of f64, u32 and u64: either a diagnostic or a consistent plan.
    #[test]
    fn scaled_numbers_check_or_plan(file in 0usize..64, edits in proptest::collection::vec((any::<usize>(), 0..CHANGES.len()), 1..4)) {
        let (name, text) = &experiments()[file % experiments().len()];
        let (mutated, what) = mutate(text, &edits);
        plans_whenever_it_checks(name, &mutated, &what);
    }
}

/// Every number of every experiment negated, one at a time: a negative count hides nowhere
/// (CI's property run once found a ramp stage's negative `until` inside a list that checked
/// without errors and was then silently dropped; lists were not computed).
#[test]
fn every_number_negated_checks_or_plans() {
    let negate = CHANGES
        .iter()
        .position(|c| matches!(c, Change::Scale(f) if *f == -1.0))
        .unwrap();
    for (name, text) in experiments() {
        for which in 0..numbers(text).len() {
            let (mutated, what) = mutate(text, &[(which, negate)]);
            plans_whenever_it_checks(name, &mutated, &what);
        }
    }
}

/// Every experiment as it is plans consistently (the property's starting points), and the
/// numbers found in it are the ones written.
#[test]
fn experiments_as_written_plan() {
    for (name, text) in experiments() {
        assert!(!numbers(text).is_empty(), "{name}");
        plans_whenever_it_checks(name, text, "as written");
    }
    let text = "model m { layers = 32, x = llama3_8b } # 7\nlr = 3e-4 \"9\" 1.5T";
    let found: Vec<&str> = numbers(text).into_iter().map(|r| &text[r]).collect();
    assert_eq!(found, ["32", "3e-4", "1.5"]);
}

/// The batch ramps are the newest lowering (ramp.rs, the runtime's sample clock, Megatron-LM's
/// sample-based schedule): every change of every number of the two ramped experiments, one
/// at a time, deterministically.
#[test]
fn every_change_of_every_number_of_the_ramped_experiments() {
    let ramped: Vec<&(String, String)> = experiments()
        .iter()
        .filter(|(_, text)| text.contains("ramp {"))
        .collect();
    assert!(
        ramped.len() >= 2,
        "{:?}",
        ramped.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    for (name, text) in ramped {
        for which in 0..numbers(text).len() {
            for change in 0..CHANGES.len() {
                let (mutated, what) = mutate(text, &[(which, change)]);
                plans_whenever_it_checks(name, &mutated, &what);
            }
        }
    }
}

/// CI's property run found a warm-up of 2^53 steps under a ramp (llama3_405b_ramp.kiln,
/// `warmup = 8000 steps` → 9007199254740992, with its first stage's batch ×10^6): the
/// Megatron-LM emitter's sample count past the phase's end overflowed u64 and panicked.
#[test]
fn a_warmup_of_2_pow_53_steps_under_a_ramp_plans_and_emits() {
    let (name, text) = experiments()
        .iter()
        .find(|(n, _)| n.ends_with("llama3_405b_ramp.kiln"))
        .unwrap();
    let warmup = text.replace("warmup = 8000 steps", "warmup = 9007199254740992 steps");
    assert_ne!(&warmup, text);
    plans_whenever_it_checks(name, &warmup, "warmup 2^53 steps");
    let both = warmup.replace(
        "{ batch = 4Mi tokens, until",
        "{ batch = 4000000Mi tokens, until",
    );
    assert_ne!(both, warmup);
    plans_whenever_it_checks(name, &both, "warmup 2^53 steps, first batch ×10^6");
}
