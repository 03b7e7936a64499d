//! Shared test fixtures: the compiler's model specs (`fixtures/models.json`), small run
//! plans shaped as `kiln plan` writes them, and synthetic token shards in Megatron-LM's
//! indexed format written with kiln-data's writer.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use kiln_data::shards::{IndexedWriter, TokenDtype};
use kiln_train::spec::Plan;
use serde_json::{json, Value};

/// The fixture models by name (the compiler's `experiment.model` of `fixtures/models/*.kiln`).
pub fn fixture_models() -> Vec<(String, Value)> {
    let text = include_str!("../fixtures/models.json");
    let list: Vec<Value> = serde_json::from_str(text).expect("fixtures/models.json parses");
    list.into_iter()
        .map(|m| (m["name"].as_str().unwrap().to_string(), m["model"].clone()))
        .collect()
}

pub fn fixture_model(name: &str) -> Value {
    fixture_models()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, m)| m)
        .unwrap_or_else(|| panic!("no fixture model {name}"))
}

/// One phase of a test plan.
pub struct PhaseDef {
    pub name: &'static str,
    pub steps: u64,
    pub lr: Value,
    pub anneal: bool,
}

/// A test run's shape.
pub struct RunDef {
    pub model: Value,
    pub precision: &'static str,
    pub phases: Vec<PhaseDef>,
    /// Sequences per optimizer step.
    pub global_batch: u64,
    pub micro_batch: u64,
    pub checkpoint_every: u64,
    pub keep: u64,
    pub eval_every: u64,
    pub seed: u64,
    /// Training tokens written per phase's mix output.
    pub train_tokens: u64,
    pub held_out_tokens: u64,
}

impl RunDef {
    /// The `llama_mini` fixture with dropout, two phases (cosine, then a linear anneal to 0).
    pub fn small(precision: &'static str) -> RunDef {
        let mut model = fixture_model("llama_mini");
        model["dropout"] = json!(0.1);
        RunDef {
            model,
            precision,
            phases: vec![
                PhaseDef {
                    name: "main",
                    steps: 9,
                    lr: json!({"kind": "cosine", "peak": 3e-3, "warmup_steps": 3, "final_lr": 3e-4}),
                    anneal: false,
                },
                PhaseDef {
                    name: "anneal",
                    steps: 4,
                    lr: json!({"kind": "linear", "from": 3e-4, "to": 0.0}),
                    anneal: true,
                },
            ],
            global_batch: 8,
            micro_batch: 4,
            checkpoint_every: 2,
            keep: 2,
            eval_every: 4,
            seed: 7,
            train_tokens: 20_000,
            held_out_tokens: 2_000,
        }
    }
}

fn step_id(name: &str) -> String {
    // Stable ids shaped like the compiler's (16 hex digits).
    let h = kiln_train::data::derive_key(0, &[name.as_bytes()]);
    format!("{h:016x}")
}

/// The plan JSON for `def` (steps: mix and train per phase, then evaluate).
pub fn plan_json(def: &RunDef) -> Value {
    let seq_len = def.model["seq_len"].as_u64().unwrap();
    let mut steps = Vec::new();
    let mut start = 0;
    let mut previous_train: Option<String> = None;
    let mut last_mix = String::new();
    for phase in &def.phases {
        let mix_name = format!("mix.{}", phase.name);
        let mix_id = step_id(&mix_name);
        steps.push(json!({
            "id": mix_id, "kind": "mix", "name": mix_name, "inputs": [],
            "outputs": [format!("steps/{mix_name}-{mix_id}")],
            "params": {"held_out_tokens": def.held_out_tokens as f64, "mix": {"web": 1.0},
                       "phase": phase.name, "seed": def.seed, "tokens": def.train_tokens as f64}
        }));
        let train_name = format!("train.{}", phase.name);
        let train_id = step_id(&format!("{train_name}-{}", def.precision));
        let mut inputs = vec![mix_id.clone()];
        inputs.extend(previous_train.clone());
        steps.push(json!({
            "id": train_id, "kind": "train", "name": train_name, "inputs": inputs,
            "outputs": [format!("steps/{train_name}-{train_id}")],
            "params": {
                "batch_tokens": (def.global_batch * seq_len) as f64,
                "checkpoint": {"every_steps": def.checkpoint_every, "keep": def.keep},
                "eval_every_steps": def.eval_every,
                "model": def.model,
                "optimizer": {"beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "grad_clip": 1.0,
                              "kind": "adamw", "weight_decay": 0.1},
                "parallel": {"accumulation": def.global_batch / def.micro_batch / 2,
                             "first_stage_layers": null, "flash_attention": true,
                             "last_stage_layers": null, "micro_batch": def.micro_batch,
                             "recompute": "none", "sequence_parallel": false, "zero": 0},
                "phase": phase.name,
                "precision": def.precision,
                "schedule": {"anneal": phase.anneal, "lr": phase.lr, "mix": {"web": 1.0},
                             "name": phase.name, "start_step": start, "steps": phase.steps,
                             "tokens": (phase.steps * def.global_batch * seq_len) as f64,
                             "tokens_trained": (phase.steps * def.global_batch * seq_len) as f64},
                "seed": def.seed,
                "topology": {"context": 1.0, "data": 2.0, "pipeline": 1.0, "tensor": 1.0}
            }
        }));
        start += phase.steps;
        previous_train = Some(train_id);
        last_mix = mix_id;
    }
    let eval_id = step_id(&format!("evaluate-{}", def.precision));
    steps.push(json!({
        "id": eval_id, "kind": "evaluate", "name": "evaluate",
        "inputs": [previous_train.unwrap(), last_mix],
        "outputs": [format!("steps/evaluate-{eval_id}")],
        "params": {"held_out_tokens": def.held_out_tokens as f64, "seed": def.seed}
    }));
    json!({
        "version": 1,
        "experiment": {"name": "kiln_train_test", "seed": def.seed},
        "schedule": {"eval_tokens": def.held_out_tokens as f64, "seq_len": seq_len},
        "analysis": {"throughput": null},
        "steps": steps
    })
}

/// Deterministic synthetic documents: a noisy affine chain over the vocabulary (learnable, so
/// the loss falls), each document ending in the end-of-document token `vocab − 1`.
pub fn synthetic_tokens(seed: u64, vocab: u64, tokens: u64) -> Vec<Vec<u32>> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let eod = (vocab - 1) as u32;
    let mut docs = Vec::new();
    let mut total = 0;
    while total < tokens {
        let len = 20 + next() % 60;
        let mut doc = Vec::with_capacity(len as usize + 1);
        let mut t = (next() % (vocab - 1)) as u32;
        for _ in 0..len {
            doc.push(t);
            let noise = if next() % 4 == 0 {
                (next() % 3) as u32
            } else {
                0
            };
            t = (t * 5 + 3 + noise) % eod;
        }
        doc.push(eod);
        total += doc.len() as u64;
        docs.push(doc);
    }
    docs
}

pub fn write_shard(prefix: &Path, docs: &[Vec<u32>], vocab: u64) {
    let mut w = IndexedWriter::create(prefix, TokenDtype::for_vocab(vocab)).unwrap();
    for d in docs {
        w.add_document(d).unwrap();
    }
    w.finish().unwrap();
}

/// Writes every mix step's outputs for `def` under `run_dir` and returns the plan.
pub fn setup_run(run_dir: &Path, def: &RunDef) -> Plan {
    let plan = plan_json(def);
    let vocab = def.model["vocab"].as_u64().unwrap();
    for (i, step) in plan["steps"].as_array().unwrap().iter().enumerate() {
        if step["kind"] != "mix" {
            continue;
        }
        let out = run_dir.join(step["outputs"][0].as_str().unwrap());
        write_shard(
            &out.join("text_document"),
            &synthetic_tokens(def.seed + i as u64, vocab, def.train_tokens),
            vocab,
        );
        write_shard(
            &out.join("held_out_document"),
            &synthetic_tokens(def.seed + 1000 + i as u64, vocab, def.held_out_tokens),
            vocab,
        );
    }
    std::fs::write(
        run_dir.join("plan.json"),
        serde_json::to_string_pretty(&plan).unwrap(),
    )
    .unwrap();
    Plan::from_value(&plan).unwrap()
}

/// The output directory of step `name`.
pub fn output_of(plan: &Plan, run_dir: &Path, name: &str) -> PathBuf {
    plan.step(name).unwrap().output(run_dir).unwrap()
}

/// Options for reproducible CPU runs: one thread, no progress bar.
pub fn options() -> kiln_train::TrainOptions {
    kiln_train::TrainOptions {
        threads: Some(1),
        progress: Some(false),
        ..Default::default()
    }
}

/// Runs every train step of the plan in order (and the evaluate step when `evaluate`).
pub fn run_all(plan: &Plan, run_dir: &Path, evaluate: bool) {
    for step in &plan.steps {
        let wanted = step.kind == "train" || (evaluate && step.kind == "evaluate");
        if wanted {
            match kiln_train::run_step(plan, &step.id, run_dir, &options()) {
                Ok(kiln_train::StepOutcome::Done(_) | kiln_train::StepOutcome::AlreadyDone(_)) => {}
                other => panic!("{}: {other:?}", step.name),
            }
        }
    }
}

/// Every metrics line of the plan's train steps, in order.
pub fn all_metrics(plan: &Plan, run_dir: &Path) -> Vec<kiln_train::metrics::StepMetrics> {
    let mut out = Vec::new();
    for step in plan.steps.iter().filter(|s| s.kind == "train") {
        let dir = step.output(run_dir).unwrap();
        out.extend(kiln_train::metrics::read_metrics(&dir.join("metrics.jsonl")).unwrap());
    }
    out
}

/// libtorch's generator is process-global and a step reseeds it, so tests of one binary
/// that train hold this lock (cargo runs a binary's tests on several threads).
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// AdamW as the test plans configure it (β = 0.9/0.95, ε 1e-8, clip 1, weight decay 0.1).
pub fn optimizer() -> kiln_train::spec::OptimizerSpec {
    kiln_train::spec::OptimizerSpec {
        kind: "adamw".into(),
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        grad_clip: 1.0,
        weight_decay: 0.1,
    }
}
