//! Learning rates at phase boundaries, as the compiler's `LrSchedule::at` defines them, on
//! the tiny demo's real plan (`fixtures/tiny_train_steps.json`) and on each schedule kind.

use kiln_train::schedule::{lr_for_step, LrSchedule};
use kiln_train::spec::TrainParams;

fn tiny_phases() -> Vec<TrainParams> {
    let steps: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("fixtures/tiny_train_steps.json")).unwrap();
    steps
        .iter()
        .map(|s| serde_json::from_value(s["params"].clone()).unwrap())
        .collect()
}

#[test]
fn the_tiny_demos_phases() {
    let phases = tiny_phases();
    assert_eq!(phases.len(), 2);
    let (main, anneal) = (&phases[0].schedule, &phases[1].schedule);
    assert_eq!((main.start_step, main.steps), (0, 550));
    assert_eq!((anneal.start_step, anneal.steps), (550, 62));
    let lr = |p: &kiln_train::spec::PhaseSpec, s: u64| lr_for_step(&p.lr, s, p.steps, p.anneal);
    // Warm-up: linear from peak/50 to the peak at its last step.
    assert_eq!(lr(main, 0), 0.002 / 50.0);
    assert_eq!(lr(main, 49), 0.002);
    assert_eq!(lr(main, 50), 0.002);
    // Cosine down: the value after the phase's last step is the final learning rate, which
    // is where the anneal starts.
    assert!((main.lr.at(550, 550) - 2e-4).abs() < 1e-18);
    assert!(lr(main, 549) > 2e-4 && lr(main, 549) < 2e-4 * 1.001);
    assert_eq!(lr(anneal, 0), 2e-4);
    // The anneal's last update is at exactly 0, its second last one step of the line.
    assert_eq!(lr(anneal, 61), 0.0);
    assert_eq!(lr(anneal, 60), 2e-4 + (0.0 - 2e-4) * (60.0 / 62.0));
    assert!(phases[1].schedule.anneal && !phases[0].schedule.anneal);
    assert_eq!(phases[0].model.params, 1_049_728);
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
