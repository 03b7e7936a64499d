//! Docs that cannot lie: every ` ```kiln ` block of the README and of `docs/` is checked as
//! a file of its own. It must check without errors or warnings, or carry `# expect: CODE`
//! lines naming exactly the diagnostics it is there to show (as tests/cases do). The
//! diagnostics and figures the README shows are today's binary's.

mod common;

use std::path::Path;

/// The ` ```kiln ` blocks of a markdown text: (first line number, text).
fn kiln_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == "```kiln" => current = Some((i + 2, String::new())),
            Some(_) if line.trim_start().starts_with("```") => {
                blocks.extend(current.take());
            }
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// The documentation files whose examples are checked.
fn documents() -> Vec<std::path::PathBuf> {
    let root = common::root();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// Every block's problems: the codes it gave (errors and warnings) against those it expects.
fn problems(doc: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(doc).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    for (line, block) in kiln_blocks(&text) {
        let file = dir.path().join(format!("line_{line}.kiln"));
        std::fs::write(&file, &block).unwrap();
        let checked = common::check(&[&file]);
        let mut got: Vec<&str> = checked
            .diagnostics
            .iter()
            .filter(|d| d.severity != kiln::diagnostic::Severity::Advice)
            .map(|d| d.code.code)
            .collect();
        got.sort();
        got.dedup();
        let mut expected: Vec<&str> = block
            .lines()
            .filter_map(|l| l.trim().strip_prefix("# expect:"))
            .map(str::trim)
            .collect();
        expected.sort();
        if got != expected {
            out.push(format!(
                "{}:{line}: expected {expected:?}, got {got:?}\n{}",
                doc.strip_prefix(common::root()).unwrap_or(doc).display(),
                common::render(&checked)
            ));
        }
    }
    out
}

#[test]
fn every_kiln_block_in_the_docs_checks() {
    let mut blocks = 0;
    let mut all = Vec::new();
    for doc in documents() {
        blocks += kiln_blocks(&std::fs::read_to_string(&doc).unwrap()).len();
        all.extend(problems(&doc));
    }
    assert!(blocks >= 3, "only {blocks} kiln blocks found");
    assert!(all.is_empty(), "{}", all.join("\n"));
}

/// The test catches a documented example that stops checking: a misspelt preset in a
/// block gives its diagnostic.
#[test]
fn a_broken_example_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("broken.md");
    std::fs::write(
        &doc,
        "Text.\n\n```kiln\nimport std.nodes.dgx_h100\n\ncluster c {\n  node = dgx_h10\n  nodes = 2\n}\n```\n",
    )
    .unwrap();
    let found = problems(&doc);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("broken.md:4"), "{}", found[0]);
    assert!(found[0].contains("K-R"), "{}", found[0]);
}

/// Every diagnostic shown in the README (a ` ``` ` block that starts with `warning[` or
/// `error[`) is what today's `kiln check` prints for the file it names.
#[test]
fn diagnostics_shown_in_the_readme_are_todays() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let mut shown = 0;
    // Fenced blocks as (language, lines): an opening fence, then everything to the closing one.
    let mut blocks: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(language) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        let block: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.trim_start().starts_with("```"))
            .collect();
        blocks.push((language.trim(), block));
    }
    for (language, block) in blocks {
        if !language.is_empty() {
            continue;
        }
        let first = block.first().copied().unwrap_or("");
        if !(first.starts_with("warning[") || first.starts_with("error[")) {
            continue;
        }
        let file = block
            .iter()
            .find_map(|l| l.trim().strip_prefix("┌─ "))
            .and_then(|at| at.split(':').next())
            .expect("a diagnostic names its file");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["check", file])
            .current_dir(common::root())
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stderr);
        let text = block.join("\n");
        assert!(
            printed.contains(&text),
            "the README shows for {file}:\n{text}\n\ntoday's kiln check prints:\n{printed}"
        );
        shown += 1;
    }
    assert!(shown >= 1, "no diagnostic found in the README");
}

/// Every field of the schema (of every kind, block and variant) and every variant's name is
/// written in docs/language.md as code (in backquotes or a kiln block).
#[test]
fn every_schema_field_is_in_the_language_docs() {
    use kiln::schema::{FieldSpec, KindSpec, Ty, KINDS};
    fn ty(t: &Ty, path: &str, out: &mut Vec<String>, seen: &mut Vec<&'static str>) {
        match t {
            Ty::Block(fields) => fields.iter().for_each(|f| field(f, path, out, seen)),
            Ty::Variant(vs) | Ty::NumOr(_, _, vs) => vs.iter().for_each(|v| {
                out.push(format!("{path}={}", v.name));
                v.fields
                    .iter()
                    .for_each(|f| field(f, &format!("{path}.{}", v.name), out, seen))
            }),
            Ty::Preset(k) => kind(k, out, seen),
            Ty::List(t) => ty(t, path, out, seen),
            _ => {}
        }
    }
    fn field(f: &FieldSpec, path: &str, out: &mut Vec<String>, seen: &mut Vec<&'static str>) {
        let here = format!("{path}.{}", f.name);
        out.push(here.clone());
        ty(&f.ty, &here, out, seen);
    }
    fn kind(k: &'static KindSpec, out: &mut Vec<String>, seen: &mut Vec<&'static str>) {
        if seen.contains(&k.name) {
            return;
        }
        seen.push(k.name);
        k.fields.iter().for_each(|f| field(f, k.name, out, seen));
        k.named.iter().for_each(|n| kind(n, out, seen));
    }
    let mut paths = Vec::new();
    let mut seen = Vec::new();
    KINDS.iter().for_each(|k| kind(k, &mut paths, &mut seen));
    // The names written in code (between backquotes, and in ```kiln blocks).
    let docs = std::fs::read_to_string(common::root().join("docs/language.md")).unwrap();
    let mut code = std::collections::BTreeSet::new();
    let mut words = |text: &str| {
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            code.insert(word.to_string());
        }
    };
    // Fenced blocks are code whole; in the prose between them, what is in backquotes.
    for (i, part) in docs.split("```").enumerate() {
        if i % 2 == 1 {
            words(part);
        } else {
            part.split('`').skip(1).step_by(2).for_each(&mut words);
        }
    }
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| !code.contains(p.rsplit(['.', '=']).next().unwrap()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} schema fields are not in docs/language.md: {missing:?}",
        missing.len()
    );
}

/// `kiln ARGS… --format json` from the repository root, parsed; it must succeed.
fn kiln_json(args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .args(["--format", "json"])
        .current_dir(common::root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kiln {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn number(v: &serde_json::Value, path: &str) -> f64 {
    path.split('.')
        .fold(v, |v, k| match k.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[k],
        })
        .as_f64()
        .unwrap_or_else(|| panic!("no number at {path}"))
}

/// An integer with thousands separators, as the README writes them: 20864 → `20,864`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// 713 → `713th`, 21 → `21st`.
fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{}{suffix}", thousands(n))
}

/// The figures the README quotes from kiln's own output (the Llama 3 405B layout, the tiny
/// demo's size, steps and predictions) are what today's binary computes: each expected
/// phrase is formatted from `kiln tune`, `kiln explain` or `kiln plan` and must appear in
/// the README (whitespace folded, so line breaks do not matter).
#[test]
fn figures_quoted_in_the_readme_are_todays() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut expected: Vec<String> = Vec::new();

    // Llama 3 405B as published, its rank among every layout that fits, and kiln's fastest.
    let tune = kiln_json(&["tune", "experiments/llama3_405b.kiln", "--top", "1000000"]);
    let search = &tune["search"];
    let declared_s = number(search, "declared.step_time_s");
    let ranked = search["ranked"].as_array().unwrap();
    assert_eq!(ranked.len() as f64, number(search, "fitting"));
    let rank = 1 + ranked
        .iter()
        .filter(|c| number(c, "step_time_s") < declared_s)
        .count() as u64;
    expected.push(format!(
        "ranks {} of the {} layouts that fit",
        ordinal(rank),
        thousands(number(search, "fitting") as u64)
    ));
    let best = &ranked[0];
    expected.push(format!(
        "kiln's fastest (TP {}, CP {}, PP {}, DP {}, {:.2} s) runs {} micro-batches per rank",
        number(best, "tensor"),
        number(best, "context"),
        number(best, "pipeline"),
        number(best, "data"),
        number(best, "step_time_s"),
        number(best, "accumulation"),
    ));

    let explain = kiln_json(&["explain", "experiments/llama3_405b.kiln"]);
    let step_s = number(&explain, "throughput.step_time_s");
    expected.push(format!(
        "stages idles {:.2} s of its {:.2} s step",
        number(&explain, "throughput.bubble_s"),
        step_s
    ));
    expected.push(format!(
        "{:.1} % as the file is written (plain 1F1B)",
        100.0 * number(&explain, "throughput.mfu")
    ));
    // The most loaded stage and what the first stage holds.
    let stages = explain["memory"]["per_stage"].as_array().unwrap();
    let (most, most_bytes) = stages
        .iter()
        .map(|s| number(s, "per_gpu.total"))
        .enumerate()
        .fold((0, 0.0), |a, (i, b)| if b > a.1 { (i, b) } else { a });
    expected.push(format!(
        "stage {} is the most loaded at {:.1} GB, the first holds the embedding and {} micro-batches",
        most + 1,
        most_bytes / 1e9,
        number(&stages[0], "micro_batches_in_flight")
    ));

    // The same layout interleaved with two virtual stages.
    let text = std::fs::read_to_string(common::root().join("experiments/llama3_405b.kiln"))
        .unwrap()
        .replace(
            "recompute = none",
            "recompute = none\n    virtual_stages = 2",
        );
    // It does not fit in memory (K-M001, the README says so), so this goes through the
    // library as `kiln explain` would, the memory error allowed.
    std::env::set_current_dir(common::root()).unwrap();
    let checked = kiln::check_source("llama3_405b_v2.kiln", &text, &kiln::load::FsLoader, &[]);
    assert!(
        checked
            .diagnostics
            .iter()
            .all(|d| !d.is_error() || d.code == kiln::codes::MEMORY),
        "{}",
        common::render(&checked)
    );
    let exp = checked.experiments().next().expect("an experiment");
    let (_, analysis) = kiln::analyse::analyse(&exp.record).expect("analysable");
    let interleaved: serde_json::Value =
        serde_json::from_str(&kiln::explain::json(&exp.name, &analysis)).unwrap();
    expected.push(format!(
        "needs {:.0} GB a GPU",
        number(&interleaved, "memory.per_gpu.total") / 1e9
    ));
    let v2_s = number(&interleaved, "throughput.step_time_s");
    expected.push(format!("still leaves {v2_s:.2} s with 2"));
    expected.push(format!(
        "{:.1} % interleaved (`virtual_stages = 2`; bubble {:.0} %, exposed communication {:.1} s of {:.1} s",
        100.0 * number(&interleaved, "throughput.mfu"),
        100.0 * number(&interleaved, "throughput.bubble_fraction"),
        number(&interleaved, "throughput.exposed_communication_s"),
        v2_s
    ));

    // The tiny demo: its size, its steps per phase and the predictions beside the measured run.
    let tiny = kiln_json(&["explain", "experiments/tiny.kiln"]);
    expected.push(format!(
        "trains the `tiny` model ({:.2}M parameters)",
        number(&tiny, "model.params") / 1e6
    ));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["plan", "experiments/tiny.kiln"])
        .current_dir(common::root())
        .output()
        .unwrap();
    assert!(out.status.success());
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    expected.push(format!(
        "{} steps of the main phase (80 % prose, 20 % code), {} steps of the anneal",
        number(&plan, "schedule.phases.0.steps"),
        number(&plan, "schedule.phases.1.steps")
    ));
    expected.push(format!(
        "| {} (",
        thousands(number(&tiny, "throughput.tokens_per_s").round() as u64)
    ));
    expected.push(format!(
        "| {:.1} MiB (",
        number(&tiny, "memory.per_gpu.total") / (1u64 << 20) as f64
    ));

    let missing: Vec<&String> = expected.iter().filter(|e| !readme.contains(*e)).collect();
    assert!(
        missing.is_empty(),
        "the README does not say what today's binary computes; expected these phrases:\n{}",
        missing
            .iter()
            .map(|m| format!("  {m}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
