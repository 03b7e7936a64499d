//! The recipe features of the model shape — partial rotary (`rotary_fraction`), the
//! parallel attention + MLP block (shared norm or two) and the embedding norm — against an
//! independent forward pass in plain PyTorch (`tests/shapes/reference.py`, from the papers'
//! formulas), and their spec's round trip through `model.json`'s JSON.

mod common;

use common::*;
use kiln_train::model::Model;
use kiln_train::spec::{Block, ModelSpec, Precision};
use std::path::Path;
use tch::{Device, Kind, Tensor};

const FIXTURES: [&str; 3] = ["neox_mini", "gptj_mini", "bloom_mini"];

#[test]
fn recipe_blocks_match_an_independent_forward() {
    let _serial = serial();
    tch::set_num_threads(1);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = manifest.join("../../.venv/bin/python");
    for name in FIXTURES {
        let spec: ModelSpec = serde_json::from_value(fixture_model(name)).unwrap();
        let model = Model::new(&spec, Precision::Fp32, 3, Device::Cpu).unwrap();
        // Norm gains start at 1 and biases at 0, and N(0, 0.02²) weights leave attention
        // almost uniform: move every parameter, so a norm left out or applied to the wrong
        // tensor, or a rotation of the wrong dimensions, changes the logits.
        tch::no_grad(|| {
            for (_, t) in model.named_parameters() {
                let mut t = t.shallow_clone();
                let moved = &t + Tensor::randn_like(&t) * 0.3;
                t.copy_(&moved);
            }
        });
        let tokens = Tensor::randint(
            spec.vocab as i64,
            [2, spec.seq_len as i64],
            (Kind::Int64, Device::Cpu),
        );
        let logits = tch::no_grad(|| model.logits(&tokens, false));
        let dir = tempfile::tempdir().unwrap();
        let mut tensors: Vec<(String, Tensor)> = model
            .named_parameters()
            .iter()
            .map(|(n, t)| (n.clone(), t.detach()))
            .collect();
        tensors.push(("tokens".into(), tokens));
        tensors.push(("logits".into(), logits.to_kind(Kind::Float)));
        Tensor::write_safetensors(&tensors, dir.path().join("model.safetensors")).unwrap();
        std::fs::write(
            dir.path().join("spec.json"),
            serde_json::to_string(&spec).unwrap(),
        )
        .unwrap();
        let out = std::process::Command::new(&python)
            .arg(manifest.join("tests/shapes/reference.py"))
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup)", python.display()));
        assert!(
            out.status.success(),
            "{name}: reference.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let (diff, scale) = (
            result["max_diff"].as_f64().unwrap(),
            result["scale"].as_f64().unwrap(),
        );
        println!("{name}: largest logit difference {diff:.3e} (largest logit {scale:.3})");
        assert!(scale > 0.1, "{name}: logits too small to compare ({scale})");
        assert!(diff < 1e-4, "{name}: logits differ by {diff}");
    }
}

/// The layers hold the norms their layout has: one per parallel block with a shared norm,
/// two otherwise, and the embedding norm when asked for; rotary on the asked share.
#[test]
fn recipe_blocks_hold_their_norms() {
    let _serial = serial();
    for name in FIXTURES {
        let spec: ModelSpec = serde_json::from_value(fixture_model(name)).unwrap();
        let model = Model::new(&spec, Precision::Fp32, 0, Device::Cpu).unwrap();
        let names: Vec<&str> = model
            .named_parameters()
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        let has = |n: &str| names.contains(&n);
        let second_norm = has("model.layers.0.post_attention_layernorm.weight");
        assert_eq!(
            second_norm,
            spec.block != Block::Parallel { shared_norm: true },
            "{name}"
        );
        assert_eq!(
            has("model.embed_layernorm.weight"),
            spec.embedding_norm,
            "{name}"
        );
        // model.json is the spec's JSON: the new fields come back as they went.
        let json = serde_json::to_string(&spec).unwrap();
        let back: ModelSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec, "{name}");
    }
    // A share that does not rotate whole pairs is refused, not truncated.
    let mut m = fixture_model("neox_mini");
    m["rotary_fraction"] = serde_json::json!(0.3);
    let err = Model::new(
        &serde_json::from_value(m).unwrap(),
        Precision::Fp32,
        0,
        Device::Cpu,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("rotary_fraction"), "{err}");
}

/// Each recipe-feature model trains, halts between checkpoints and resumes to the same final
/// weights as an uninterrupted run (the embedding norm and the single shared norm are
/// checkpointed like any parameter), and the finished step's `model.json` holds the spec
/// with its new fields.
#[test]
fn recipe_models_checkpoint_and_resume_exactly() {
    use kiln_train::checkpoint::{self, MODEL_FILE};
    use kiln_train::score::MODEL_SPEC_FILE;
    use kiln_train::steps::StepOutcome;
    let _serial = serial();
    tch::set_num_threads(1);
    for name in FIXTURES {
        let mut def = RunDef::small("fp32");
        def.model = fixture_model(name);
        def.phases.truncate(1);
        let weights = |plan: &kiln_train::Plan, dir: &Path| {
            let found = checkpoint::latest(&output_of(plan, dir, "train.main").join("checkpoints"))
                .unwrap();
            std::fs::read(found.dir.join(MODEL_FILE)).unwrap()
        };
        let whole = tempfile::tempdir().unwrap();
        let plan = setup_run(whole.path(), &def);
        run_all(&plan, whole.path(), false);
        let reference = weights(&plan, whole.path());

        let halted = tempfile::tempdir().unwrap();
        let plan = setup_run(halted.path(), &def);
        let mut opts = options();
        opts.halt_after_steps = Some(3);
        let out = kiln_train::run_step(&plan, "train.main", halted.path(), &opts).unwrap();
        assert_eq!(out, StepOutcome::Halted { next_step: 3 }, "{name}");
        run_all(&plan, halted.path(), false);
        assert_eq!(weights(&plan, halted.path()), reference, "{name}");

        let text = std::fs::read_to_string(
            output_of(&plan, halted.path(), "train.main").join(MODEL_SPEC_FILE),
        )
        .unwrap();
        let spec: ModelSpec = serde_json::from_str(&text).unwrap();
        let want: ModelSpec = serde_json::from_value(def.model.clone()).unwrap();
        assert_eq!(spec, want, "{name}");
    }
}
