//! Learning rates through kiln-plan's one implementation (`LrSchedule::at`, `lr_for_step`):
//! at every step of the tiny demo's real plan (planned here by the compiler, so it cannot go
//! stale) against an independent transcription (tests/engines/validate.py's `kiln_lr`, the
//! formula the engine validators replay), and on each schedule kind at its boundaries.

use std::path::PathBuf;
use std::process::Command;

use kiln_train::schedule::{lr_for_step, LrSchedule};
use kiln_train::spec::{Plan, TrainParams};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The train steps of today's `kiln plan experiments/tiny.kiln`.
fn tiny_phases() -> Vec<TrainParams> {
    let (checked, plans) = kiln::plan_paths(
        &[root().join("experiments/tiny.kiln")],
        &kiln::load::FsLoader,
        &[],
    )
    .expect("tiny plans");
    assert_eq!(checked.errors(), 0);
    let plan = Plan::from_value(serde_json::to_value(&plans[0].1).unwrap()).unwrap();
    plan.steps
        .iter()
        .filter_map(|s| kiln_train::spec::train_params(s).ok().cloned())
        .collect()
}

#[test]
fn the_tiny_demos_real_plan_at_every_step_against_the_validators_formula() {
    let phases = tiny_phases();
    assert_eq!(phases.len(), 2, "tiny has a main phase and an anneal");
    let (main, anneal) = (&phases[0].schedule, &phases[1].schedule);
    assert_eq!(
        anneal.start_step, main.steps,
        "the anneal starts where main ends"
    );
    assert!(anneal.anneal && !main.anneal);
    // The anneal starts at the learning rate main ends on, and its last update is 0.
    assert_eq!(
        main.lr.at(main.steps, main.steps),
        anneal.lr.at(0, anneal.steps)
    );
    assert_eq!(
        lr_for_step(&anneal.lr, anneal.steps - 1, anneal.steps, true),
        0.0
    );

    let python = root().join(".venv/bin/python");
    assert!(python.exists(), "no .venv: run `bash scripts/setup`");
    let phases_json = serde_json::to_string(
        &phases
            .iter()
            .map(|p| serde_json::json!({"lr": p.schedule.lr, "steps": p.schedule.steps}))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let script = "import importlib.util, json, sys\n\
        spec = importlib.util.spec_from_file_location('validate', sys.argv[1])\n\
        v = importlib.util.module_from_spec(spec); spec.loader.exec_module(v)\n\
        phases = json.loads(sys.argv[2])\n\
        print(json.dumps([[v.kiln_lr(p['lr'], s, p['steps']) for s in range(p['steps'])] for p in phases]))";
    let out = Command::new(&python)
        .args(["-c", script])
        .arg(root().join("tests/engines/validate.py"))
        .arg(&phases_json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<Vec<f64>> = serde_json::from_slice(&out.stdout).unwrap();
    let mut checked = 0;
    for (phase, want) in phases.iter().zip(&expected) {
        let s = &phase.schedule;
        assert_eq!(want.len() as u64, s.steps);
        for (step, &w) in want.iter().enumerate() {
            let got = s.lr.at(step as u64, s.steps);
            assert!(
                (got - w).abs() <= 1e-12 * w.abs().max(1e-12),
                "phase {} step {step}: {got} against the validator's {w}",
                s.name
            );
            // What the optimizer applies: the same, except the anneal's last update.
            let applied = lr_for_step(&s.lr, step as u64, s.steps, s.anneal);
            if !(s.anneal && step as u64 + 1 == s.steps) {
                assert_eq!(applied, got);
            }
            checked += 1;
        }
    }
    assert_eq!(checked as u64, main.steps + anneal.steps);
}

#[test]
fn each_kind_at_its_boundaries() {
    let constant = LrSchedule::Constant {
        value: 1e-3,
        warmup_steps: 4,
    };
    assert_eq!(constant.at(0, 10), 2.5e-4);
    assert_eq!(constant.at(3, 10), 1e-3);
    assert_eq!(constant.at(9, 10), 1e-3);
    let wsd = LrSchedule::Wsd {
        peak: 1e-3,
        warmup_steps: 2,
        decay_steps: 4,
    };
    assert_eq!(wsd.at(1, 10), 1e-3);
    assert_eq!(wsd.at(5, 10), 1e-3, "the last stable step");
    assert_eq!(wsd.at(6, 10), 1e-3, "the decay's first step is at the peak");
    assert_eq!(wsd.at(8, 10), 5e-4);
    assert_eq!(wsd.at(10, 10), 0.0);
    assert_eq!(lr_for_step(&wsd, 9, 10, true), 0.0);
    assert_eq!(lr_for_step(&wsd, 9, 10, false), wsd.at(9, 10));
    let linear = LrSchedule::Linear { from: 1.0, to: 0.0 };
    assert_eq!(linear.at(0, 4), 1.0);
    assert_eq!(linear.at(4, 4), 0.0);
    assert_eq!(lr_for_step(&linear, 3, 4, true), 0.0);
    let cosine = LrSchedule::Cosine {
        peak: 1.0,
        warmup_steps: 0,
        final_lr: 0.1,
    };
    assert_eq!(cosine.at(0, 100), 1.0);
    assert!((cosine.at(50, 100) - 0.55).abs() < 1e-15);
    assert_eq!(cosine.at(100, 100), 0.1);
    // A one-step anneal runs at its end value.
    assert_eq!(lr_for_step(&linear, 0, 1, true), 0.0);
}
