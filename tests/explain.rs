//! Snapshots of `kiln explain` for every experiment in experiments/ (text), and one in each
//! of the other formats, through the binary.

mod common;

use std::process::Command;

fn explain(path: &str, format: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["explain", path, "--format", format])
        .current_dir(common::root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn explain_every_experiment() {
    let mut files = common::kiln_files("experiments");
    files.extend(common::kiln_files("experiments/reference"));
    for path in files {
        let rel = path
            .strip_prefix(common::root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let name = rel
            .trim_start_matches("experiments/")
            .trim_end_matches(".kiln")
            .replace('/', "__");
        insta::with_settings!({ snapshot_path => "snapshots/explain", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(name, explain(&rel, "text"));
        });
    }
}

#[test]
fn explain_markdown_and_json() {
    insta::with_settings!({ snapshot_path => "snapshots/explain", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!("llama3_405b.markdown", explain("experiments/llama3_405b.kiln", "markdown"));
        insta::assert_snapshot!("llama3_405b.json", explain("experiments/llama3_405b.kiln", "json"));
    });
}

#[test]
fn explain_exits_1_on_a_file_with_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["explain", "tests/cases/c002_mix_sum_low.kiln"])
        .current_dir(common::root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("K-C002"));
}

/// A file that fails a check (out of memory here) still gets its analysis, after the errors
/// and marked, so the user sees by how much; the exit code stays 1 and JSON prints nothing.
#[test]
fn explain_analyses_a_file_with_errors_after_them_marked() {
    let run = |format: &str| {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args([
                "explain",
                "tests/cases/m001_out_of_memory.kiln",
                "--format",
                format,
            ])
            .current_dir(common::root())
            .output()
            .unwrap()
    };
    let out = run("text");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("K-M001"));
    assert!(
        stdout.starts_with("!! analysis of `") && stdout.contains("despite 1 error (above)"),
        "{stdout}"
    );
    assert!(stdout.to_lowercase().contains("memory"), "{stdout}");
    let json = run("json");
    assert_eq!(json.status.code(), Some(1));
    assert!(json.stdout.is_empty());
}
