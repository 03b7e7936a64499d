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

/// fp8_mixed runs only the linear layers at the fp8 peak: attention and the output layer stay
/// bf16 and the casts cost memory passes, so the speed-up over bf16 is well under the peaks'
/// 2×; MFU is against the bf16 peak, with the fp8-peak figure beside it.
#[test]
fn fp8_speeds_up_only_the_linear_layers() {
    let fp8 = std::fs::read_to_string(
        common::root().join("experiments/measured/nemo_24_07_perf_summary_llama3_8b_g8.kiln"),
    )
    .unwrap();
    let throughput = |text: &str, name: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{name}.kiln"));
        std::fs::write(&path, text).unwrap();
        let checked = kiln::check_paths(&[path], &kiln::load::FsLoader, &[]).unwrap();
        let exp = checked.experiments().next().unwrap();
        kiln::analyse::analyse(&exp.record)
            .and_then(|(_, a)| a.throughput)
            .unwrap()
    };
    let f = throughput(&fp8, "fp8");
    let b = throughput(&fp8.replace("fp8_mixed", "bf16_mixed"), "bf16");
    let speedup = f.tokens_per_s / b.tokens_per_s;
    assert!(speedup > 1.1 && speedup < 1.8, "fp8 over bf16: {speedup}");
    assert_eq!(f.peak_flops, b.peak_flops, "MFU against the bf16 peak");
    let fp8_mfu = f.mfu_fp8_peak.expect("fp8 runs carry the fp8-peak MFU");
    // H100 SXM: 1,979 dense fp8 TFLOP/s against 989 bf16.
    assert!((f.mfu / fp8_mfu - 1979.0 / 989.0).abs() < 0.01, "{f:?}");
    assert!(b.mfu_fp8_peak.is_none());
}
