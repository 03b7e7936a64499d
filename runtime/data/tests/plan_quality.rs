//! Quality thresholds declared in an experiment reach the filters through the plan: the
//! compiler's names are the filters' names.

use kiln_data::ops::{apply_thresholds, quality_config};
use kiln_data::plan::QualityParams;
use std::path::Path;
use std::process::Command;

#[test]
fn declared_thresholds_reach_the_filters() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let kiln = root.join("target/debug/kiln");
    // Built from this tree (nothing to do when current; an older binary would test old code).
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", "kiln"])
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("q.kiln");
    // The calibrated cluster is a project file: use a standard-library one (of 8 GPUs) from
    // a temporary directory.
    let text = std::fs::read_to_string(root.join("experiments/tiny.kiln"))
        .unwrap()
        .replace("import \"../calibration/this_machine.kiln\"", "import std.clusters.dgx_h100_pod")
        .replace("cluster = this_machine_cluster", "cluster = dgx_h100_pod { nodes = 1 }")
        // 64 sequences per step over 8 GPUs: micro-batches of 4.
        .replace("micro_batch = 32", "micro_batch = 4")
        .replace(
        "  seed = 0",
        "  seed = 0\n  quality {\n    heuristic = [c4]\n    gopher_quality { min_doc_words = 100, min_alpha_words_ratio = 70% }\n    fineweb { max_short_line_ratio = 50% }\n  }",
    );
    std::fs::write(&file, text).unwrap();
    let out = Command::new(&kiln)
        .args(["plan", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let step = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "quality_filter")
        .expect("a quality_filter step");
    let params: QualityParams = serde_json::from_value(step["params"].clone()).unwrap();
    let mut config = quality_config(&params.heuristics).unwrap();
    apply_thresholds(&mut config, &params.thresholds).unwrap();
    let gopher = config
        .gopher_quality
        .expect("declared thresholds turn the family on");
    assert_eq!(gopher.min_doc_words, Some(100));
    assert_eq!(gopher.min_alpha_words_ratio, Some(0.7));
    assert_eq!(
        gopher.max_doc_words,
        Some(100_000),
        "undeclared thresholds keep their defaults"
    );
    assert_eq!(
        config.fineweb.expect("fineweb on").max_short_line_ratio,
        0.5
    );
    assert!(config.c4.is_some());
    assert!(
        config.gopher_repetition.is_none(),
        "only what the experiment names is on"
    );
}
