//! Snapshot tests of rendered diagnostics: every `tests/cases/*.kiln` is a bad input whose
//! snapshot holds the input and what `kiln check` prints for it (`kiln plan` for the
//! lowering cases, `l…`). See tests/README.md.

mod common;

use std::collections::BTreeSet;

#[test]
fn cases() {
    let cases = common::kiln_files("tests/cases");
    assert!(
        cases.len() >= 40,
        "at least 40 bad inputs, found {}",
        cases.len()
    );
    let mut seen = BTreeSet::new();
    let mut missing_expectation = Vec::new();
    for path in &cases {
        let input = std::fs::read_to_string(path).unwrap();
        // Lowering cases (l…) run as `kiln plan`; the rest as `kiln check`.
        let lowering = path.file_name().unwrap().to_string_lossy().starts_with('l');
        let checked = if lowering {
            common::plan(&[path])
        } else {
            common::check(&[path])
        };
        let output = common::render(&checked);
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        for d in &checked.diagnostics {
            seen.insert(d.code.code);
        }
        // The case says which code it exists to show; that code must be reported.
        let expect = input
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .map(str::trim);
        match expect {
            Some(code) if !checked.diagnostics.iter().any(|d| d.code.code == code) => {
                missing_expectation.push(format!(
                    "{name}: expected {code}, got {:?}",
                    checked
                        .diagnostics
                        .iter()
                        .map(|d| d.code.code)
                        .collect::<Vec<_>>()
                ))
            }
            None => missing_expectation.push(format!("{name}: no `# expect:` line")),
            _ => {}
        }
        insta::with_settings!({ snapshot_path => "snapshots/cases", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(name, format!("{input}\n----- kiln check -----\n{output}"));
        });
    }
    assert!(
        missing_expectation.is_empty(),
        "{}",
        missing_expectation.join("\n")
    );
    // K-E001 comes from `kiln emit`; its cases are the emit snapshots (tests/plan.rs).
    let never: Vec<&str> = kiln::codes::ALL
        .iter()
        .map(|c| c.code)
        .filter(|c| !seen.contains(c) && *c != "K-E001")
        .collect();
    assert!(
        never.is_empty(),
        "codes without a case in tests/cases: {never:?}"
    );
}

/// docs/diagnostics.md is generated from the registry; regenerate with
/// `cargo run -- codes --markdown > docs/diagnostics.md`.
#[test]
fn diagnostics_page_is_current() {
    let page =
        std::fs::read_to_string(common::root().join("docs/diagnostics.md")).unwrap_or_default();
    assert!(page == kiln::codes::docs_markdown(), "docs/diagnostics.md is stale: run `cargo run -q -- codes --markdown > docs/diagnostics.md`");
}
