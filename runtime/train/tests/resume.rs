//! Exact resume: a run stopped at any moment — halted between checkpoints, or a child
//! process killed with SIGKILL wherever it is (a checkpoint write included) — and resumed
//! gives the same loss curve, bit for bit, and the same final weights as an uninterrupted
//! run (fp32 on CPU, one thread). And a checkpoint write interrupted at any point leaves the
//! previous checkpoint usable.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use kiln_train::checkpoint::{self, WritePoint, MODEL_FILE};
use kiln_train::error::TrainError;
use kiln_train::metrics::{read_metrics, StepMetrics};
use kiln_train::steps::StepOutcome;

/// The environment variable that makes [`child_trains`] run (in a child process).
const CHILD_RUN_DIR: &str = "KILN_TRAIN_TEST_CHILD_RUN_DIR";

fn losses(metrics: &[StepMetrics]) -> Vec<(u64, u64)> {
    metrics.iter().map(|m| (m.step, m.loss.to_bits())).collect()
}

fn final_weights(plan: &kiln_train::Plan, run_dir: &Path, step: &str) -> Vec<u8> {
    let dir = output_of(plan, run_dir, step).join("checkpoints");
    let found = checkpoint::latest(&dir).unwrap();
    std::fs::read(found.dir.join(MODEL_FILE)).unwrap()
}

fn uninterrupted(def: &RunDef) -> (tempfile::TempDir, Vec<StepMetrics>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let plan = setup_run(dir.path(), def);
    run_all(&plan, dir.path(), false);
    let metrics = all_metrics(&plan, dir.path());
    let last = plan
        .steps
        .iter()
        .rev()
        .find(|s| s.kind() == kiln_plan::StepKind::Train)
        .unwrap();
    let weights = final_weights(&plan, dir.path(), &last.name);
    (dir, metrics, weights)
}

#[test]
fn halted_runs_resume_to_the_same_losses() {
    let _serial = serial();
    let def = RunDef::small("fp32");
    let (_a, reference, reference_weights) = uninterrupted(&def);

    let dir = tempfile::tempdir().unwrap();
    let plan = setup_run(dir.path(), &def);
    // Checkpoints every 2 steps: halting after 3 steps loses step 2, which is redone; then
    // halt again inside the anneal phase, after one step of it.
    let mut opts = options();
    opts.halt_after_steps = Some(3);
    let out = kiln_train::run_step(&plan, "train.main", dir.path(), &opts).unwrap();
    assert_eq!(out, StepOutcome::Halted { next_step: 3 });
    assert!(!output_of(&plan, dir.path(), "train.main").exists());
    let out = kiln_train::run_step(&plan, "train.main", dir.path(), &options()).unwrap();
    let StepOutcome::Done(summary) = out else {
        panic!("{out:?}")
    };
    assert_eq!(summary.resumed_at, Some(2));
    assert_eq!(summary.steps_run, 7);
    opts.halt_after_steps = Some(1);
    let out = kiln_train::run_step(&plan, "train.anneal", dir.path(), &opts).unwrap();
    assert_eq!(out, StepOutcome::Halted { next_step: 10 });
    run_all(&plan, dir.path(), false);

    let resumed = all_metrics(&plan, dir.path());
    assert_eq!(losses(&resumed), losses(&reference));
    assert_eq!(
        resumed
            .iter()
            .map(|m| m.grad_norm.map(f64::to_bits))
            .collect::<Vec<_>>(),
        reference
            .iter()
            .map(|m| m.grad_norm.map(f64::to_bits))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        resumed
            .iter()
            .map(|m| m.eval_loss.map(f64::to_bits))
            .collect::<Vec<_>>(),
        reference
            .iter()
            .map(|m| m.eval_loss.map(f64::to_bits))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        final_weights(&plan, dir.path(), "train.anneal"),
        reference_weights
    );
}

/// A batch ramp (2, then 4, then 8 sequences per step, at a fixed micro-batch of 2) across
/// the main phase: each step trains the plan's batch for it (metrics.jsonl's `step_tokens`,
/// the cumulative `tokens`, the learning rate on the sample clock), and a run halted
/// mid-ramp, between checkpoints, resumes bit-identically.
#[test]
fn ramped_runs_train_each_steps_batch_and_resume_mid_ramp() {
    let _serial = serial();
    let mut def = RunDef::small("fp32");
    def.micro_batch = 2;
    def.ramp = vec![(0, 2), (4, 4), (7, 8)];
    let (_a, reference, reference_weights) = uninterrupted(&def);

    let plan = kiln_plan::RunPlan::<serde_json::Value>::from_value(plan_json(&def)).unwrap();
    let seq_len = plan.schedule.seq_len;
    let mut tokens = 0;
    let mut want = Vec::new();
    for phase in &plan.schedule.phases {
        for k in 0..phase.steps {
            let b = phase.segment(k).unwrap().global_batch;
            tokens += b * seq_len;
            want.push((
                phase.start_step + k,
                b * seq_len,
                tokens,
                phase.lr_at(k).to_bits(),
            ));
        }
    }
    let got: Vec<_> = reference
        .iter()
        .map(|m| (m.step, m.step_tokens, m.tokens, m.lr.to_bits()))
        .collect();
    assert_eq!(got, want);
    // The ramp's steps are the plan's: 4 of 2 sequences, 3 of 4, then 8.
    assert_eq!(
        reference
            .iter()
            .map(|m| m.step_tokens / seq_len)
            .collect::<Vec<_>>(),
        [2, 2, 2, 2, 4, 4, 4, 8, 8, 8, 8, 8, 8]
    );
    // Under the ramp the learning rate moves with the samples: the warm-up (3 steps of 2
    // sequences) ends at the peak.
    let main = &plan.schedule.phases[0];
    assert!(main.ramps());
    assert_eq!(main.lr_at(2), 3e-3);

    // Halted after 5 steps (checkpoints every 2: the one at step 4 is the ramp's second
    // stage's first step), then resumed.
    let dir = tempfile::tempdir().unwrap();
    let plan = setup_run(dir.path(), &def);
    let mut opts = options();
    opts.halt_after_steps = Some(5);
    let out = kiln_train::run_step(&plan, "train.main", dir.path(), &opts).unwrap();
    assert_eq!(out, StepOutcome::Halted { next_step: 5 });
    let out = kiln_train::run_step(&plan, "train.main", dir.path(), &options()).unwrap();
    let StepOutcome::Done(summary) = out else {
        panic!("{out:?}")
    };
    assert_eq!(summary.resumed_at, Some(4));
    // Steps 4..9 of the phase: 3 of 4 sequences and 2 of 8.
    assert_eq!(summary.tokens, (3 * 4 + 2 * 8) * seq_len);
    run_all(&plan, dir.path(), false);
    let resumed = all_metrics(&plan, dir.path());
    assert_eq!(losses(&resumed), losses(&reference));
    assert_eq!(
        resumed.iter().map(|m| m.tokens).collect::<Vec<_>>(),
        reference.iter().map(|m| m.tokens).collect::<Vec<_>>()
    );
    assert_eq!(
        final_weights(&plan, dir.path(), "train.anneal"),
        reference_weights
    );
}

/// The run the kill test's child process trains (a longer main phase, so the kill lands
/// mid-run).
fn long_run() -> RunDef {
    let mut def = RunDef::small("fp32");
    def.phases.truncate(1);
    def.phases[0].steps = 40;
    def.checkpoint_every = 3;
    def
}

/// Not a test of its own: the child process of [`killed_runs_resume_to_the_same_losses`]
/// (it returns at once unless that test started it).
#[test]
#[ignore = "run by killed_runs_resume_to_the_same_losses in a child process"]
fn child_trains() {
    let Some(run_dir) = std::env::var_os(CHILD_RUN_DIR) else {
        return;
    };
    let run_dir = Path::new(&run_dir);
    let plan = kiln_train::Plan::load(&run_dir.join("plan.json")).unwrap();
    kiln_train::run_step(&plan, "train.main", run_dir, &options()).unwrap();
}

#[test]
fn killed_runs_resume_to_the_same_losses() {
    let _serial = serial();
    let def = long_run();
    let (_a, reference, reference_weights) = uninterrupted(&def);

    let dir = tempfile::tempdir().unwrap();
    let plan = setup_run(dir.path(), &def);
    let output = output_of(&plan, dir.path(), "train.main");
    let metrics_path = Path::new(&format!("{}.partial", output.display())).join("metrics.jsonl");
    // Kill the child at several points: after it logged 8, then (resumed) 20, then 31 steps.
    for kill_after in [8usize, 20, 31] {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_trains", "--ignored", "--nocapture"])
            .env(CHILD_RUN_DIR, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            let lines = std::fs::read_to_string(&metrics_path)
                .map(|t| t.lines().count())
                .unwrap_or(0);
            if lines >= kill_after {
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "the child ended before the kill"
            );
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the child is stuck"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        // SIGKILL: no destructor, no flush, wherever the child is.
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!output.exists(), "a killed step has no output");
    }
    let out = kiln_train::run_step(&plan, "train.main", dir.path(), &options()).unwrap();
    let StepOutcome::Done(summary) = out else {
        panic!("{out:?}")
    };
    assert!(summary.resumed_at.is_some());
    let resumed = read_metrics(&output.join("metrics.jsonl")).unwrap();
    assert_eq!(losses(&resumed), losses(&reference));
    assert_eq!(
        final_weights(&plan, dir.path(), "train.main"),
        reference_weights
    );
}

#[test]
fn an_interrupted_checkpoint_leaves_the_previous_one() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let def = RunDef::small("fp32");
    let plan = setup_run(dir.path(), &def);
    run_all(&plan, dir.path(), false);
    let root = output_of(&plan, dir.path(), "train.main").join("checkpoints");
    let before = checkpoint::latest(&root).unwrap();
    assert_eq!(before.state.global_step, 9);
    let loaded = checkpoint::load(&before.dir).unwrap();

    for stop in [
        WritePoint::ModelWritten,
        WritePoint::OptimizerWritten,
        WritePoint::StateWritten,
        WritePoint::BeforeRename,
    ] {
        let mut state = before.state.clone();
        state.global_step = 11;
        let err = checkpoint::write_with(
            &root,
            &loaded.model,
            &loaded.optimizer,
            &state,
            2,
            &mut |at| {
                if at == stop {
                    Err(TrainError::Input(format!("crash at {at:?}")))
                } else {
                    Ok(())
                }
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("crash"));
        let after = checkpoint::latest(&root).unwrap();
        assert_eq!(after.state.global_step, 9, "stopped at {stop:?}");
        assert_eq!(after.dir, before.dir);
        checkpoint::load(&after.dir).unwrap();
    }
    // A damaged newest checkpoint (a file cut short) is passed over for the one before.
    let mut state = before.state.clone();
    state.global_step = 12;
    let newest = checkpoint::write(&root, &loaded.model, &loaded.optimizer, &state, 3).unwrap();
    assert_eq!(checkpoint::latest(&root).unwrap().state.global_step, 12);
    let model = newest.join(MODEL_FILE);
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(checkpoint::latest(&root).unwrap().state.global_step, 9);
    // The next complete write removes what the interrupted ones left.
    state.global_step = 13;
    checkpoint::write(&root, &loaded.model, &loaded.optimizer, &state, 3).unwrap();
    let leftovers: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
