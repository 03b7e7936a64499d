//! Measures training throughput of the tiny demo's real train step (its plan parameters,
//! `fixtures/tiny_train_steps.json`, cut to a few steps) on synthetic shards, beside the
//! calibrated prediction. A measurement, not a check: run it with
//! `cargo test --release -p kiln-train --test throughput -- --ignored --nocapture`
//! (KILN_THROUGHPUT_STEPS, KILN_THROUGHPUT_THREADS and KILN_THROUGHPUT_PRECISION change it).

mod common;

use common::*;
use kiln_train::calibrate::{calibrate, predicted_tokens_per_s, CalibrationConfig};
use kiln_train::spec::{Plan, TrainParams};
use kiln_train::steps::StepOutcome;
use serde_json::json;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn tiny_demo_tokens_per_second() {
    let steps: u64 = env_or("KILN_THROUGHPUT_STEPS", 5);
    let threads: usize = env_or("KILN_THROUGHPUT_THREADS", 2);
    let precision: String = env_or("KILN_THROUGHPUT_PRECISION", "fp32".to_string());
    let fixture: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("fixtures/tiny_train_steps.json")).unwrap();
    let mut train = fixture[0].clone();
    train["params"]["schedule"]["steps"] = json!(steps);
    train["params"]["precision"] = json!(precision);
    let mix_id = train["inputs"][0].as_str().unwrap().to_string();
    let mix_dir = format!("steps/mix.main-{mix_id}");
    let plan_json = json!({
        "version": 1,
        "experiment": {"name": "tiny_demo", "seed": 0},
        "schedule": {"eval_tokens": 32768.0},
        "steps": [
            {"id": mix_id, "kind": "mix", "name": "mix.main", "inputs": [],
             "outputs": [mix_dir], "params": {}},
            train
        ]
    });
    let plan = Plan::from_value(&plan_json).unwrap();
    let p: TrainParams = plan.step("train.main").unwrap().params().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vocab = p.model.vocab;
    let tokens = steps * p.batch_tokens as u64 + 1000;
    write_shard(
        &dir.path().join(&mix_dir).join("text_document"),
        &synthetic_tokens(1, vocab, tokens),
        vocab,
    );
    write_shard(
        &dir.path().join(&mix_dir).join("held_out_document"),
        &synthetic_tokens(2, vocab, 33_000),
        vocab,
    );

    tch::set_num_threads(threads as i32);
    let cal = calibrate(&CalibrationConfig {
        sizes: vec![128, 512, 1024],
        repeats: 3,
        ..Default::default()
    })
    .unwrap();
    let predicted = predicted_tokens_per_s(&cal, &p.model, p.precision);
    let mut opts = options();
    opts.threads = Some(threads);
    opts.predicted_tokens_per_s = Some(predicted);
    let out = kiln_train::run_step(&plan, "train.main", dir.path(), &opts).unwrap();
    let StepOutcome::Done(summary) = out else {
        panic!("{out:?}")
    };
    println!(
        "tiny ({} params, {}, {threads} threads): {:.0} tokens/s measured over {steps} steps of {} tokens; predicted upper bound {:.0} (fp32 matmul {:.1} GFLOP/s, bf16 {:.1}); peak RSS {:.0} MiB",
        summary.params,
        p.precision.name(),
        summary.measured_tokens_per_s.unwrap_or(0.0),
        summary.tokens_per_step,
        predicted,
        cal.matmul_fp32_flops_per_s / 1e9,
        cal.matmul_bf16_flops_per_s / 1e9,
        summary.peak_rss_bytes.unwrap_or(0) as f64 / 1048576.0
    );
}
