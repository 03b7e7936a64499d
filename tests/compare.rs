//! `kiln compare` through the binary: two experiments that differ in their layout and their
//! GPU-hour price, the text as a snapshot, the JSON's differences checked against each side's
//! `kiln explain --format json`, and the exit codes.

mod common;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// An 8B model on 4 nodes of H100s; `{tensor}` and `{price}` are replaced.
const EXPERIMENT: &str = r#"import std.models.llama3_8b
import std.clusters.dgx_h100_pod

experiment e {
  model = llama3_8b
  objective = fixed
  tokens = 100B
  batch = 4194304 tokens
  cluster = dgx_h100_pod { nodes = 4{price} }
  parallel { tensor = {tensor}, micro_batch = 1, zero = 1, recompute = full }
  source web { path = "data/web.jsonl" }
  phase main { mix { web = 100% }, lr = cosine { peak = 3e-4 } }
}
"#;

fn experiment(tensor: u32, price: Option<&str>) -> String {
    EXPERIMENT.replace("{tensor}", &tensor.to_string()).replace(
        "{price}",
        &price.map_or(String::new(), |p| format!(", gpu_hour_price = {p}")),
    )
}

fn kiln(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// A directory with `a.kiln` (tensor 1, 2 USD/h) and `b.kiln` (tensor 8, 3 USD/h).
fn pair() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.kiln"), experiment(1, Some("2 USD/h"))).unwrap();
    std::fs::write(dir.path().join("b.kiln"), experiment(8, Some("3 USD/h"))).unwrap();
    dir
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn num(v: &Value, path: &str) -> f64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in {v}"))
}

#[test]
fn compare_text() {
    let dir = pair();
    let out = kiln(dir.path(), &["compare", "a.kiln", "b.kiln"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    insta::with_settings!({ snapshot_path => "snapshots/compare", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!("tensor_and_price", String::from_utf8(out.stdout).unwrap());
    });
}

/// The metrics are each side's own analysis (as `kiln explain` reports it), with B − A and
/// B/A between them; the inputs that differ are exactly the ones changed and derived from them.
#[test]
fn compare_json_differences() {
    let dir = pair();
    let c = json(&kiln(
        dir.path(),
        &["compare", "a.kiln", "b.kiln", "--format", "json"],
    ));
    let ea = json(&kiln(
        dir.path(),
        &["explain", "a.kiln", "--format", "json"],
    ));
    let eb = json(&kiln(
        dir.path(),
        &["explain", "b.kiln", "--format", "json"],
    ));
    let m = &c["metrics"];
    for key in [
        "model.params",
        "scaling.tokens",
        "scaling.tokens_per_param",
        "scaling.compute_flops",
        "scaling.predicted_loss",
        "memory.per_gpu.total",
        "memory.capacity_bytes",
        "throughput.step_time_s",
        "throughput.mfu",
        "throughput.tokens_per_s",
        "cost.steps",
        "cost.wall_clock_s",
        "cost.gpu_hours",
        "cost.usd",
    ] {
        let (a, b) = (num(&ea, key), num(&eb, key));
        assert_eq!(m[key]["a"].as_f64(), Some(a), "{key}");
        assert_eq!(m[key]["b"].as_f64(), Some(b), "{key}");
        assert_eq!(m[key]["delta"].as_f64(), Some(b - a), "{key}");
        assert_eq!(m[key]["ratio"].as_f64(), Some(b / a), "{key}");
    }
    // The layout: tensor 1 → 8, so data 32 → 4 and accumulation 16 → 128 (4M-token batch of
    // 8K sequences, one per micro-batch).
    for (key, a, b) in [
        ("parallel.tensor", 1.0, 8.0),
        ("parallel.data", 32.0, 4.0),
        ("parallel.accumulation", 16.0, 128.0),
        ("parallel.pipeline", 1.0, 1.0),
        ("parallel.zero", 1.0, 1.0),
    ] {
        assert_eq!(m[key]["a"].as_f64(), Some(a), "{key}");
        assert_eq!(m[key]["b"].as_f64(), Some(b), "{key}");
        assert_eq!(m[key]["delta"].as_f64(), Some(b - a), "{key}");
    }
    assert_eq!(m["parallel.recompute"]["a"], "full");
    assert_eq!(m["parallel.recompute"]["changed"], false);
    // Same model and tokens: no difference there.
    assert_eq!(m["model.params"]["delta"].as_f64(), Some(0.0));
    assert_eq!(m["scaling.predicted_loss"]["ratio"].as_f64(), Some(1.0));
    // Headroom is capacity − total on each side.
    assert_eq!(
        m["memory.headroom_bytes"]["b"].as_f64(),
        Some(num(&eb, "memory.capacity_bytes") - num(&eb, "memory.per_gpu.total"))
    );
    // Cost is GPU-hours × the price per GPU-hour of each side: 2 and 3 USD/h.
    let side = |key: &str, side: &str| m[key][side].as_f64().unwrap();
    for (s, price) in [("a", 2.0), ("b", 3.0)] {
        let gpu_hours = side("cost.gpu_hours", s);
        assert!((side("cost.usd", s) - price * gpu_hours).abs() < 1e-9 * gpu_hours);
    }

    let inputs: Vec<(String, Value, Value)> = c["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_string(),
                d["a"].clone(),
                d["b"].clone(),
            )
        })
        .collect();
    let expected: Vec<(String, Value, Value)> = [
        ("cluster.gpu_hour_price", 2.0, 3.0),
        ("parallel.tensor", 1.0, 8.0),
        ("parallel.data", 32.0, 4.0),
        ("parallel.accumulation", 16.0, 128.0),
    ]
    .into_iter()
    .map(|(p, a, b)| (p.to_string(), Value::from(a), Value::from(b)))
    .collect();
    assert_eq!(inputs, expected);
    let price = &c["inputs"][0];
    assert_eq!(price["unit"], "usd_per_hour");
    assert_eq!(price["a_shown"], "2 USD/h");
    assert_eq!(price["b_shown"], "3 USD/h");
    assert_eq!(c["a"]["file"], "a.kiln");
    assert_eq!(c["b"]["experiment"], "e");
}

/// A file compared with itself differs in nothing; a price on one side only gives no cost
/// difference, and the price shows as an input only B has.
#[test]
fn compare_same_and_one_sided_price() {
    let dir = pair();
    let c = json(&kiln(
        dir.path(),
        &["compare", "a.kiln", "a.kiln", "--format", "json"],
    ));
    assert_eq!(c["inputs"], Value::Array(vec![]));
    for (key, metric) in c["metrics"].as_object().unwrap() {
        match metric.get("delta") {
            Some(d) => assert_eq!(d.as_f64(), Some(0.0), "{key}"),
            None => assert_eq!(metric["changed"], false, "{key}"),
        }
    }
    let text = kiln(dir.path(), &["compare", "a.kiln", "a.kiln"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("none: every resolved value is the same")
    );

    std::fs::write(dir.path().join("free.kiln"), experiment(1, None)).unwrap();
    let c = json(&kiln(
        dir.path(),
        &["compare", "free.kiln", "a.kiln", "--format", "json"],
    ));
    let usd = &c["metrics"]["cost.usd"];
    assert!(usd["a"].is_null() && usd["delta"].is_null() && usd["ratio"].is_null());
    assert!(usd["b"].as_f64().unwrap() > 0.0);
    let inputs = c["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 1, "{inputs:?}");
    assert_eq!(inputs[0]["path"], "cluster.gpu_hour_price");
    assert!(inputs[0]["a"].is_null());
    assert_eq!(inputs[0]["b"].as_f64(), Some(2.0));
}

/// As `kiln explain`: 1 with the diagnostics when a file has errors or no experiment, 2 when
/// a file cannot be read.
#[test]
fn compare_exit_codes() {
    let dir = pair();
    std::fs::write(
        dir.path().join("bad.kiln"),
        experiment(1, Some("2 USD")), // a total where a price per GPU-hour belongs
    )
    .unwrap();
    let out = kiln(dir.path(), &["compare", "a.kiln", "bad.kiln"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("K-U002"), "{stderr}");
    assert!(
        stderr.contains("`bad.kiln` has 1 error: nothing compared"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    std::fs::write(dir.path().join("none.kiln"), "import std.models.tiny\n").unwrap();
    let out = kiln(dir.path(), &["compare", "none.kiln", "a.kiln"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("declares no experiment to compare"));

    let out = kiln(dir.path(), &["compare", "a.kiln", "missing.kiln"]);
    assert_eq!(out.status.code(), Some(2));
}
