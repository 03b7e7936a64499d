//! kiln-train's training step beside the same step in PyTorch eager, side by side.
//!
//! `cargo bench -p kiln-train --bench step` plans `experiments/tiny.kiln` (or the file in
//! `KILN_BENCH_EXPERIMENT`), takes its first train step's model, optimizer and batch, and
//! alternates, for `KILN_BENCH_ROUNDS` rounds (default 3): `KILN_BENCH_STEPS` timed
//! optimizer steps (default 5, after one warm-up) of kiln-train in this process, then the
//! same in `scripts/eager_train.py` with the venv's Python (`KILN_BENCH_PYTHON`, default
//! `.venv/bin/python`), both on `KILN_BENCH_THREADS` threads (default 2) and random token
//! ids. It prints each round, the medians, their ratio, and kiln's prediction of the step
//! time for the plan's device.

use kiln_train::bench::{median, time_steps};
use kiln_train::collective::Collective;
use kiln_train::spec::{Plan, TrainParams};
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::Device;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn eager_steps(
    python: &Path,
    script: &Path,
    params: &Path,
    steps: usize,
    threads: usize,
) -> Vec<f64> {
    let out = Command::new(python)
        .arg(script)
        .args(["--params", &params.display().to_string()])
        .args([
            "--steps",
            &steps.to_string(),
            "--threads",
            &threads.to_string(),
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (run scripts/setup first)",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "eager_train.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(line.trim()).expect("eager_train.py prints JSON");
    v["step_s"]
        .as_array()
        .expect("step_s")
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let experiment = root.join(env_or(
        "KILN_BENCH_EXPERIMENT",
        "experiments/tiny.kiln".to_string(),
    ));
    let rounds: usize = env_or("KILN_BENCH_ROUNDS", 3);
    let steps: usize = env_or("KILN_BENCH_STEPS", 5);
    let threads: usize = env_or("KILN_BENCH_THREADS", 2);
    let python = root.join(env_or("KILN_BENCH_PYTHON", ".venv/bin/python".to_string()));
    let script = root.join("scripts/eager_train.py");

    let (checked, plans) = kiln::plan_paths(
        std::slice::from_ref(&experiment),
        &kiln::load::FsLoader,
        &[],
    )
    .expect("plan");
    assert!(
        checked.errors() == 0 && !plans.is_empty(),
        "{} does not plan",
        experiment.display()
    );
    let plan = Plan::from_value(serde_json::to_value(&plans[0].1).unwrap()).unwrap();
    let step = plan
        .steps
        .iter()
        .find(|s| s.kind() == kiln_plan::StepKind::Train)
        .expect("a train step");
    let p: &TrainParams = kiln_train::spec::train_params(step).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let params_file = dir.path().join("params.json");
    std::fs::write(
        &params_file,
        serde_json::to_vec(&step.params.params_json()).unwrap(),
    )
    .unwrap();
    let tokens = (p.parallel.micro_batch * p.parallel.accumulation * p.model.seq_len) as f64;
    let predicted_s = plan.predictions.step_time_s;

    tch::set_num_threads(threads as i32);
    println!(
        "{}: {} parameters, {} tokens per step ({} micro-batches of {} x {}), {}, {threads} threads, {steps} steps per round",
        experiment.display(),
        p.model.params,
        tokens,
        p.parallel.accumulation,
        p.parallel.micro_batch,
        p.model.seq_len,
        p.precision.as_str()
    );
    let (mut kiln_all, mut eager_all) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let k = time_steps(p, Device::Cpu, 1, steps, Collective::single(), 0)
            .expect("kiln-train steps")
            .step_s;
        let e = eager_steps(&python, &script, &params_file, steps, threads);
        println!(
            "round {round}: kiln-train {:.3} s/step ({:.0} tokens/s), PyTorch eager {:.3} s/step ({:.0} tokens/s)",
            median(&k),
            tokens / median(&k),
            median(&e),
            tokens / median(&e)
        );
        kiln_all.extend(k);
        eager_all.extend(e);
    }
    let (k, e) = (median(&kiln_all), median(&eager_all));
    println!(
        "median over {} steps each: kiln-train {:.3} s/step = {:.0} tokens/s; PyTorch eager {:.3} s/step = {:.0} tokens/s; kiln / eager = {:.2}x tokens/s",
        kiln_all.len(),
        k,
        tokens / k,
        e,
        tokens / e,
        e / k
    );
    if let Some(pred) = predicted_s {
        println!(
            "kiln's predicted step time for this plan's device: {pred:.3} s ({:.0} tokens/s); measured / predicted = {:.2}",
            tokens / pred,
            k / pred
        );
    }
}
