//! `kiln tune`: the exhaustive layout search, on Llama 3 8B on one DGX A100 node of 40 GB
//! GPUs at micro-batch 4 (the issue's example: the declared layout is out of memory).

mod common;

use serde_json::Value;
use std::process::Command;

const EXPERIMENT: &str = r#"import std.models.llama3_8b
import std.nodes.dgx_a100
import std.gpus.a100_40gb

experiment e {
  model = llama3_8b
  objective = fixed
  allow = ["over-trained", "under-trained"]
  tokens = 10B
  batch = 1048576 tokens
  cluster { node = dgx_a100 { gpu = a100_40gb }, nodes = 1 }
  precision = bf16_mixed
  engine = megatron
  parallel { micro_batch = 4 }
  tokenizer = bpe { vocab = 128256 }
  source web { path = "data/web.jsonl" }
  phase main { mix { web = 100% }, lr = cosine { peak = 3e-4 } }
}
"#;

fn tune(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("e.kiln");
    std::fs::write(&file, EXPERIMENT).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("tune")
        .arg(&file)
        .args(["--format", "json"])
        .args(args)
        .current_dir(common::root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn divisors(n: u64) -> Vec<u64> {
    (1..=n).filter(|d| n.is_multiple_of(*d)).collect()
}

#[test]
fn every_layout_is_analysed_and_the_fitting_ones_are_ranked_by_step_time() {
    let v = tune(&["--top", "10"]);
    let s = &v["search"];
    // Counted independently: tensor within the node dividing 32 heads and 8 KV heads,
    // pipeline dividing 32 layers, context rings, data the rest, every micro-batch of a
    // rank's 128/data sequences, ZeRO 0-3, recompute none or full (Megatron; selective is
    // `none` under FlashAttention), sequence parallelism with tensor > 1.
    let mut count = 0;
    for t in divisors(8)
        .into_iter()
        .filter(|t| 32 % t == 0 && 8 % t == 0)
    {
        for p in divisors(32)
            .into_iter()
            .filter(|p| 8u64.is_multiple_of(t * p))
        {
            for c in divisors(8 / (t * p)) {
                let d = 8 / (t * p * c);
                count += divisors(128 / d).len() * 4 * 2 * if t > 1 { 2 } else { 1 };
            }
        }
    }
    assert_eq!(
        s["evaluated"].as_u64().unwrap(),
        count as u64,
        "exhaustive, not sampled"
    );
    let ranked = s["ranked"].as_array().unwrap();
    assert_eq!(ranked.len(), 10);
    assert!(s["fitting"].as_u64().unwrap() >= 10);
    let times: Vec<f64> = ranked
        .iter()
        .map(|c| c["step_time_s"].as_f64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    for c in ranked {
        assert!(
            c["memory_bytes"].as_f64() <= c["capacity_bytes"].as_f64(),
            "{c}"
        );
        let product: u64 = ["tensor", "pipeline", "context", "data"]
            .iter()
            .map(|k| c[k].as_u64().unwrap())
            .product();
        assert_eq!(product, 8, "{c}");
        let sequences = c["data"].as_u64().unwrap()
            * c["micro_batch"].as_u64().unwrap()
            * c["accumulation"].as_u64().unwrap();
        assert_eq!(sequences, 128, "the batch is kept: {c}");
    }
    let declared = &s["declared"];
    assert!(
        declared["memory_bytes"].as_f64() > declared["capacity_bytes"].as_f64(),
        "the declared layout is out of memory: {declared}"
    );
}

#[test]
fn an_engine_restricts_the_search_to_what_it_runs() {
    let v = tune(&["--engine", "deepspeed", "--top", "200"]);
    assert_eq!(v["engine"], "deepspeed");
    let ranked = v["search"]["ranked"].as_array().unwrap();
    assert!(!ranked.is_empty());
    for c in ranked {
        assert_eq!(
            c["tensor"], 1,
            "DeepSpeed's config has no tensor parallelism: {c}"
        );
        assert!(
            !(c["pipeline"].as_u64() > Some(1) && c["zero"].as_u64() >= Some(2)),
            "DeepSpeed runs no pipeline with ZeRO 2 or 3: {c}"
        );
    }
    let by_memory = tune(&["--objective", "memory", "--top", "5"]);
    let memory: Vec<f64> = by_memory["search"]["ranked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["memory_bytes"].as_f64().unwrap())
        .collect();
    assert!(memory.windows(2).all(|w| w[0] <= w[1]), "{memory:?}");
}

#[test]
fn write_puts_the_best_layout_into_the_file_keeping_its_comments() {
    let best = tune(&["--top", "1"])["search"]["ranked"][0].clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("e.kiln");
    let text = EXPERIMENT.replace(
        "  parallel { micro_batch = 4 }",
        "  # the layout, before tuning\n  parallel { micro_batch = 4, virtual_stages = 1 }  # trailing",
    );
    std::fs::write(&file, &text).unwrap();
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let out = Command::new(kiln)
        .args(["tune", "--write", "--top", "1"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.contains("# the layout, before tuning"), "{written}");
    assert!(written.contains("# trailing"), "{written}");
    assert!(!written.contains("virtual_stages"), "{written}");
    for field in ["tensor", "pipeline", "context", "micro_batch", "zero"] {
        assert!(
            written.contains(&format!("{field} = {}", best[field])),
            "{field} = {} missing in:\n{written}",
            best[field]
        );
    }
    assert!(written.contains(&format!(
        "recompute = {}",
        best["recompute"].as_str().unwrap()
    )));
    // The written file checks (it fits now) and is already in the canonical layout.
    let check = Command::new(kiln).arg("check").arg(&file).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let fmt = Command::new(kiln)
        .args(["fmt", "--check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        fmt.status.success(),
        "{}",
        String::from_utf8_lossy(&fmt.stderr)
    );
}

#[test]
fn auto_sizes_take_the_fastest_layout_that_keeps_the_written_ones() {
    // The whole search, filtered here to the layouts that keep what the auto file writes
    // (micro-batch 4; context 1 and no sequence parallelism by default), and to those that
    // fit with kiln's memory band free: the first of them is what `auto` must choose.
    let all = tune(&["--top", "100000"]);
    let band = all["memory_band"].as_f64().unwrap();
    let ranked = all["search"]["ranked"].as_array().unwrap();
    let expected = ranked
        .iter()
        .find(|c| {
            c["micro_batch"] == 4
                && c["context"] == 1
                && c["sequence_parallel"] == false
                && c["memory_bytes"].as_f64().unwrap() * (1.0 + band)
                    <= c["capacity_bytes"].as_f64().unwrap()
        })
        .expect("a layout at micro-batch 4 fits")
        .clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auto.kiln");
    std::fs::write(
        &file,
        EXPERIMENT.replace(
            "parallel { micro_batch = 4 }",
            "parallel { micro_batch = 4, tensor = auto, pipeline = auto, zero = auto, recompute = auto }",
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["check", "--values", "--color", "never"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("0 errors, 0 warnings"),
        "the chosen layout leaves the band free: {summary}"
    );
    let line = |field: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(&format!("parallel.{field} ")))
            .unwrap_or_else(|| panic!("no parallel.{field} in {text}"))
            .to_string()
    };
    for field in ["tensor", "pipeline", "zero"] {
        let l = line(field);
        assert!(
            l.contains(&format!("= {} ", expected[field])),
            "{l} vs {expected}"
        );
        assert!(l.contains("searched: best of"), "{l}");
    }
    assert!(line("recompute").contains(&format!("= {} ", expected["recompute"].as_str().unwrap())));
    assert!(line("micro_batch").contains("(declared)"));
    assert!(line("data").contains(&format!("= {} ", expected["data"])));
    assert!(line("accumulation").contains(&format!("= {} ", expected["accumulation"])));
}
