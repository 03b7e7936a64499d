//! A whole two-phase run through the worker's entry points: metrics, checkpoints, the phase
//! hand-over, the anneal ending at learning rate 0, evaluation, and skipping done steps.

mod common;

use common::*;
use kiln_train::checkpoint;
use kiln_train::steps::{StepOutcome, SUMMARY_FILE};

#[test]
fn two_phases_then_evaluate() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let def = RunDef::small("fp32");
    let plan = setup_run(dir.path(), &def);
    run_all(&plan, dir.path(), true);

    let metrics = all_metrics(&plan, dir.path());
    assert_eq!(metrics.len(), 13, "one line per optimizer step");
    for (i, m) in metrics.iter().enumerate() {
        assert_eq!(m.step, i as u64);
        assert_eq!(m.tokens, (i as u64 + 1) * 8 * 32);
        assert!(m.loss.is_finite() && m.tokens_per_s > 0.0);
        assert!(m.grad_norm.is_some_and(|g| g.is_finite() && g > 0.0));
        assert!(!m.skipped && m.loss_scale.is_none());
    }
    assert_eq!(metrics[0].phase, "main");
    assert_eq!(metrics[9].phase, "anneal");
    // The anneal starts where the main phase's cosine ends and its last update is at 0.
    assert_eq!(metrics[9].lr, 3e-4);
    assert_eq!(metrics[12].lr, 0.0);
    // The loss falls on the learnable synthetic data (ln 256 ≈ 5.55 at the start).
    assert!(
        metrics[12].loss < metrics[0].loss - 0.3,
        "{} → {}",
        metrics[0].loss,
        metrics[12].loss
    );
    // Evaluations at every 4th step and at each phase's end.
    let evals: Vec<u64> = metrics
        .iter()
        .filter(|m| m.eval_loss.is_some())
        .map(|m| m.step)
        .collect();
    assert_eq!(evals, vec![3, 7, 8, 11, 12]);

    // Checkpoints: every 2 steps and the phase's end, the newest 2 kept.
    let main = output_of(&plan, dir.path(), "train.main");
    let mut kept: Vec<String> = std::fs::read_dir(main.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(kept, vec!["step-000000008", "step-000000009"]);
    let last = checkpoint::latest(&main.join("checkpoints")).unwrap();
    assert_eq!(last.state.global_step, 9);
    assert_eq!(last.state.samples_consumed, 72);
    assert_eq!(last.state.adam_step, 9);

    let summary: kiln_train::Summary = serde_json::from_str(
        &std::fs::read_to_string(output_of(&plan, dir.path(), "train.anneal").join(SUMMARY_FILE))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(summary.final_lr, Some(0.0));
    assert_eq!((summary.start_step, summary.end_step), (9, 13));
    assert_eq!(summary.final_loss, Some(metrics[12].loss));
    assert!(summary.peak_rss_bytes.is_some_and(|b| b > 0));
    assert!(summary.measured_tokens_per_s.is_some_and(|t| t > 0.0));

    // The evaluate step scores the final checkpoint on the last phase's held-out set: the
    // same number the anneal's last evaluation logged.
    let eval: kiln_train::Summary = serde_json::from_str(
        &std::fs::read_to_string(output_of(&plan, dir.path(), "evaluate").join(SUMMARY_FILE))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(eval.final_eval_loss, metrics[12].eval_loss);
    assert_eq!(
        eval.tokens, 1984,
        "62 windows of 32 tokens in 2,000 held-out tokens"
    );

    // Done steps are not run again.
    let again = kiln_train::run_step(&plan, "train.main", dir.path(), &options()).unwrap();
    assert!(matches!(again, StepOutcome::AlreadyDone(_)));
}

#[test]
fn a_later_phase_needs_the_previous_one() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let plan = setup_run(dir.path(), &RunDef::small("fp32"));
    let err = kiln_train::run_step(&plan, "train.anneal", dir.path(), &options()).unwrap_err();
    assert!(err.to_string().contains("not done"), "{err}");
}

#[test]
fn tokens_outside_the_vocabulary_are_an_error() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let def = RunDef::small("fp32");
    let plan = setup_run(dir.path(), &def);
    // Rewrite the main mix's stream with an id the model's 256-token vocabulary lacks.
    let mix = output_of(&plan, dir.path(), "mix.main");
    write_shard(&mix.join("text_document"), &[vec![300u32; 400]], 1000);
    let err = kiln_train::run_step(&plan, "train.main", dir.path(), &options()).unwrap_err();
    assert!(
        err.to_string().contains("outside the model's vocabulary"),
        "{err}"
    );
}
