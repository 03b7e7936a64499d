//! Mixed precision: bf16 and fp16 runs train with fp32 master weights, and fp16's dynamic
//! loss scale skips a step on an overflow and halves, and grows after a run of good steps.

mod common;

use common::*;
use kiln_train::checkpoint;
use kiln_train::model::Model;
use kiln_train::optim::{LossScaler, GROWTH_INTERVAL, INIT_LOSS_SCALE};
use kiln_train::spec::{OptimizerSpec, Precision};
use kiln_train::trainer::{to_batch, Trainer};
use tch::{Device, Kind, Tensor};

#[test]
fn the_scale_backs_off_and_grows() {
    let mut s = LossScaler::default();
    assert_eq!(s.scale, 65_536.0);
    s.update(true);
    assert_eq!((s.scale, s.growth_tracker), (32_768.0, 0));
    for _ in 0..GROWTH_INTERVAL - 1 {
        s.update(false);
    }
    assert_eq!(s.scale, 32_768.0);
    s.update(false);
    assert_eq!((s.scale, s.growth_tracker), (65_536.0, 0));
    for _ in 0..10 {
        s.update(false);
    }
    s.update(true);
    assert_eq!(
        (s.scale, s.growth_tracker),
        (32_768.0, 0),
        "an overflow resets the run"
    );
}

fn optimizer() -> OptimizerSpec {
    serde_json::from_value(serde_json::json!({"beta1": 0.9, "beta2": 0.95, "eps": 1e-8,
        "grad_clip": 1.0, "kind": "adamw", "weight_decay": 0.1}))
    .unwrap()
}

fn snapshot(t: &Trainer) -> Vec<Tensor> {
    t.model
        .named_parameters()
        .iter()
        .map(|(_, p)| p.detach().copy())
        .collect()
}

/// An overflow injected through an enormous loss scale: the fp16 backward pass overflows,
/// the step is skipped (weights, moments and step count untouched) and the scale halves.
#[test]
fn an_overflow_skips_the_step_and_halves_the_scale() {
    let _serial = serial();
    let spec = serde_json::from_value(fixture_model("llama_mini")).unwrap();
    let model = Model::new(&spec, Precision::Fp16Mixed, 3, Device::Cpu).unwrap();
    let mut trainer =
        Trainer::new(model, &optimizer(), Precision::Fp16Mixed, 3, Device::Cpu).unwrap();
    assert_eq!(trainer.scaler.as_ref().unwrap().scale, INIT_LOSS_SCALE);
    let docs = synthetic_tokens(1, 256, 2000);
    let ids: Vec<i64> = docs
        .concat()
        .iter()
        .take(4 * 33)
        .map(|&t| t as i64)
        .collect();
    let batch = |_| to_batch(&ids, 4, 32, Device::Cpu);

    let huge = 2f64.powi(100);
    trainer.scaler.as_mut().unwrap().scale = huge;
    let before = snapshot(&trainer);
    let report = trainer.step(0, 1, 1e-3, batch).unwrap();
    assert!(report.skipped, "{report:?}");
    assert_eq!(report.loss_scale, Some(huge));
    assert!(
        report.loss.is_finite(),
        "the loss itself is fp32 and finite"
    );
    assert_eq!(trainer.scaler.as_ref().unwrap().scale, huge / 2.0);
    assert_eq!(trainer.optimizer.step, 0);
    for (a, (_, b)) in before.iter().zip(trainer.model.named_parameters()) {
        assert!(a.equal(b), "a skipped step changed the weights");
    }
    assert!(trainer
        .optimizer
        .exp_avg
        .iter()
        .all(|m| m.abs().max().double_value(&[]) == 0.0));

    // At the default scale the same batch trains.
    trainer.scaler.as_mut().unwrap().scale = INIT_LOSS_SCALE;
    let report = trainer.step(1, 1, 1e-3, batch).unwrap();
    assert!(!report.skipped && report.grad_norm.is_some_and(f64::is_finite));
    assert_eq!(trainer.optimizer.step, 1);
    assert_eq!(trainer.scaler.as_ref().unwrap().growth_tracker, 1);
    let changed = before
        .iter()
        .zip(trainer.model.named_parameters())
        .any(|(a, (_, b))| !a.equal(b));
    assert!(changed);
}

/// fp32 gives a non-finite gradient no second chance: the run stops with an error.
#[test]
fn fp32_divergence_is_an_error() {
    let _serial = serial();
    let spec = serde_json::from_value(fixture_model("llama_mini")).unwrap();
    let model = Model::new(&spec, Precision::Fp32, 3, Device::Cpu).unwrap();
    let mut trainer = Trainer::new(model, &optimizer(), Precision::Fp32, 3, Device::Cpu).unwrap();
    tch::no_grad(|| {
        let mut w = trainer.model.named_parameters()[0].1.shallow_clone();
        let _ = w.fill_(f64::NAN);
    });
    let ids: Vec<i64> = (0..4 * 33).map(|i| i % 200).collect();
    let err = trainer
        .step(5, 1, 1e-3, |_| to_batch(&ids, 4, 32, Device::Cpu))
        .unwrap_err();
    assert!(err.to_string().contains("step 5"), "{err}");
}

#[test]
fn mixed_precision_runs_train_fp32_master_weights() {
    let _serial = serial();
    let mut first_losses = Vec::new();
    for precision in ["fp32", "bf16_mixed", "fp16_mixed"] {
        let dir = tempfile::tempdir().unwrap();
        let def = RunDef::small(precision);
        let plan = setup_run(dir.path(), &def);
        run_all(&plan, dir.path(), false);
        let metrics = all_metrics(&plan, dir.path());
        assert_eq!(metrics.len(), 13);
        assert!(metrics.iter().all(|m| m.loss.is_finite()), "{precision}");
        assert!(
            metrics[12].loss < metrics[0].loss - 0.3,
            "{precision} did not learn"
        );
        if precision == "fp16_mixed" {
            assert!(metrics.iter().all(|m| m.loss_scale.is_some()));
            assert_eq!(metrics[0].loss_scale, Some(INIT_LOSS_SCALE));
        } else {
            assert!(metrics.iter().all(|m| m.loss_scale.is_none()));
        }
        first_losses.push(metrics[0].loss);
        let root = output_of(&plan, dir.path(), "train.anneal").join("checkpoints");
        let found = checkpoint::latest(&root).unwrap();
        let loaded = checkpoint::load(&found.dir).unwrap();
        assert!(loaded.model.iter().all(|(_, t)| t.kind() == Kind::Float));
        assert!(loaded
            .optimizer
            .iter()
            .all(|(_, t)| t.kind() == Kind::Float));
        assert_eq!(found.state.loss_scale.is_some(), precision == "fp16_mixed");
    }
    // The same initial weights and batch: the low-precision losses are close to fp32's.
    for l in &first_losses[1..] {
        assert!((l - first_losses[0]).abs() < 0.05, "{first_losses:?}");
    }
}
