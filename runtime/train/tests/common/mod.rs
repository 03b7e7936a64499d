//! Shared test fixtures: the compiler's model specs (planned from `fixtures/models/*.kiln` at test time), small run
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
    // Planned now by the compiler (a dev-dependency), so the specs are today's `kiln plan`
    // of each fixture and cannot go stale.
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kiln"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let (checked, plans) =
                kiln::plan_paths(std::slice::from_ref(&file), &kiln::load::FsLoader, &[])
                    .unwrap_or_else(|e| panic!("{}: {e:?}", file.display()));
            assert_eq!(checked.errors(), 0, "{} does not plan", file.display());
            let plan = serde_json::to_value(&plans[0].1).unwrap();
            let name = file.file_stem().unwrap().to_str().unwrap().to_string();
            (name, plan["experiment"]["model"].clone())
        })
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
    /// A batch ramp: (first global step, sequences per step) from each step where the batch
    /// changes, the last the full `global_batch`; empty: `global_batch` throughout.
    pub ramp: Vec<(u64, u64)>,
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
            ramp: Vec::new(),
        }
    }
}

fn step_id(name: &str) -> String {
    // Stable ids shaped like the compiler's (16 hex digits).
    let h = kiln_train::data::derive_key(0, &[name.as_bytes()]);
    format!("{h:016x}")
}

/// The plan JSON for `def` (steps: mix and train per phase, then evaluate): a whole plan of
/// the current version, as the runtime's loader reads it.
pub fn plan_json(def: &RunDef) -> Value {
    let seq_len = def.model["seq_len"].as_u64().unwrap();
    let layers = def.model["layers"].as_u64().unwrap();
    let cpu = json!({"ranks": 1, "nodes": 1, "gpus_per_rank": 0, "predicted_seconds": null});
    let ranks = json!({"ranks": 2, "nodes": 1, "gpus_per_rank": 0, "predicted_seconds": null});
    let command = |id: &str| json!(["kiln-worker", "--plan", "plan.json", "--step", id]);
    let optimizer = json!({"beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "grad_clip": 1.0,
                           "kind": "adamw", "weight_decay": 0.1});
    let parallel = json!({"accumulation": def.global_batch / def.micro_batch / 2,
                          "first_stage_layers": null, "flash_attention": true,
                          "last_stage_layers": null, "micro_batch": def.micro_batch,
                          "recompute": "none", "sequence_parallel": false, "zero": 0});
    let mut steps = Vec::new();
    let mut phases = Vec::new();
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
                       "phase": phase.name, "seed": def.seed, "tokens": def.train_tokens as f64},
            "resources": cpu, "command": command(&mix_id)
        }));
        let train_name = format!("train.{}", phase.name);
        let train_id = step_id(&format!("{train_name}-{}", def.precision));
        let mut inputs = vec![mix_id.clone()];
        inputs.extend(previous_train.clone());
        // The phase's batch segments: the ramp's that reach into it.
        let end = start + phase.steps;
        let ramp = if def.ramp.is_empty() {
            vec![(0, def.global_batch)]
        } else {
            def.ramp.clone()
        };
        let mut batch = Vec::new();
        let mut samples = 0;
        for (i, &(first, b)) in ramp.iter().enumerate() {
            let next = ramp.get(i + 1).map_or(u64::MAX, |n| n.0);
            let (a, z) = (first.max(start), next.min(end));
            if z > a {
                samples += (z - a) * b;
                batch.push(
                    json!({"first_step": a, "global_batch": b, "batch_tokens": b * seq_len,
                                  "accumulation": b / def.micro_batch / 2}),
                );
            }
        }
        let schedule = json!({"anneal": phase.anneal, "lr": phase.lr, "mix": {"web": 1.0},
                              "name": phase.name, "start_step": start, "steps": phase.steps,
                              "tokens": (samples * seq_len) as f64,
                              "tokens_trained": (samples * seq_len) as f64, "batch": batch});
        phases.push(schedule.clone());
        steps.push(json!({
            "id": train_id, "kind": "train", "name": train_name, "inputs": inputs,
            "outputs": [format!("steps/{train_name}-{train_id}")],
            "params": {
                "batch_tokens": (def.global_batch * seq_len) as f64,
                "checkpoint": {"every_steps": def.checkpoint_every, "keep": def.keep},
                "eval_every_steps": def.eval_every,
                "model": def.model,
                "optimizer": optimizer,
                "parallel": parallel,
                "phase": phase.name,
                "precision": def.precision,
                "schedule": schedule,
                "seed": def.seed,
                "topology": {"context": 1, "data": 2, "pipeline": 1, "tensor": 1}
            },
            "resources": ranks, "command": command(&train_id)
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
        "params": {"held_out_tokens": def.held_out_tokens as f64, "seed": def.seed},
        "resources": ranks, "command": command(&eval_id)
    }));
    let rank = |r: u32| {
        json!({"rank": r, "node": 0, "local_rank": r, "tensor": 0,
                               "context": 0, "data": r, "pipeline": 0})
    };
    json!({
        "version": kiln_plan::PLAN_VERSION,
        "experiment": {
            "name": "kiln_train_test", "seed": def.seed, "model": def.model,
            "optimizer": optimizer, "precision": def.precision, "parallel": parallel,
            "tokenizer": null, "sources": [], "dedup": {"exact": null, "near": null},
            "quality": {"heuristics": [], "thresholds": {}, "classifier": null, "kl": null},
            "gpu": "cpu", "values": []
        },
        "predictions": {"tokens_per_s": null, "step_time_s": null, "memory_per_gpu_bytes": null,
                        "mfu": null, "data_bytes_per_step": null, "state_bytes": null},
        "analysis": {"throughput": null},
        "scheduler": {"max_job_seconds": null, "account": null, "partition": null, "qos": null},
        "topology": {
            "world": 2, "nodes": 1, "gpus_per_node": 2, "tensor": 1, "context": 1, "data": 2,
            "pipeline": 1, "virtual_stages": 1, "stage_layers": [layers],
            "ranks": [rank(0), rank(1)],
            "groups": {"tensor": [[0], [1]], "context": [[0], [1]], "data": [[0, 1]],
                       "pipeline": [[0], [1]]}
        },
        "schedule": {
            "batch_tokens": (def.global_batch * seq_len) as f64, "seq_len": seq_len,
            "global_batch": def.global_batch, "micro_batch": def.micro_batch,
            "accumulation": def.global_batch / def.micro_batch / 2, "total_steps": start,
            "batch_ramp": batch_ramp(def),
            "phases": phases, "checkpoint_every_steps": def.checkpoint_every,
            "checkpoint_keep": def.keep, "eval_every_steps": def.eval_every,
            "eval_tokens": def.held_out_tokens as f64, "predicted_step_time_s": null
        },
        "steps": steps
    })
}

/// The ramp's stages in samples from the run's start (what the plan's `batch_ramp` holds).
fn batch_ramp(def: &RunDef) -> Value {
    let mut samples = 0;
    let mut stages = Vec::new();
    for (i, &(first, b)) in def.ramp.iter().enumerate() {
        stages.push(json!({"from_samples": samples, "global_batch": b}));
        if let Some(next) = def.ramp.get(i + 1) {
            samples += (next.0 - first) * b;
        }
    }
    Value::Array(stages)
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
    Plan::from_value(plan).unwrap()
}

/// The output directory of step `name`.
pub fn output_of(plan: &Plan, run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join(plan.step(name).unwrap().output().unwrap())
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
        let wanted = step.kind() == kiln_plan::StepKind::Train
            || (evaluate && step.kind() == kiln_plan::StepKind::Evaluate);
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
    for step in plan
        .steps
        .iter()
        .filter(|s| s.kind() == kiln_plan::StepKind::Train)
    {
        let dir = run_dir.join(step.output().unwrap());
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
        kind: kiln_plan::OptimizerKind::Adamw,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        grad_clip: 1.0,
        weight_decay: 0.1,
    }
}

/// Writes a character-level `tokenizer.json` into `dir`: `<|endoftext|>` (id 0), then one
/// token per character of `chars` (ids 1…), no merges, no normaliser or pre-tokeniser, a
/// decoder that joins the characters back. A vocabulary as small as the test models' (which
/// kiln's own trainer cannot make: it needs the 256 bytes). Returns the file.
pub fn write_char_tokenizer(dir: &Path, chars: &[char]) -> PathBuf {
    let mut vocab = serde_json::Map::new();
    vocab.insert("<|endoftext|>".into(), json!(0));
    for (i, c) in chars.iter().enumerate() {
        vocab.insert(c.to_string(), json!(i + 1));
    }
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{"id": 0, "content": "<|endoftext|>", "single_word": false,
                          "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": []}
    });
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("tokenizer.json");
    std::fs::write(&file, serde_json::to_string_pretty(&tokenizer).unwrap()).unwrap();
    file
}

/// Printable ASCII (95 characters), optionally without the digits.
pub fn printable_ascii(digits: bool) -> Vec<char> {
    (' '..='~')
        .filter(|c| digits || !c.is_ascii_digit())
        .collect()
}
