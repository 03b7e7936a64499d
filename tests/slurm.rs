//! The emitted Slurm pipeline on a real one-node Slurm cluster: `kiln emit --target slurm`
//! for a two-rank CPU experiment, its `submit.sh` run with sbatch, every job waited for, and
//! the run's metrics, sharded checkpoints and evaluation checked.
//!
//! Needs a running cluster: `scripts/slurm up` (scripts/test starts it and runs this test
//! with `--ignored`), `SLURM_CONF` set (default /tmp/kiln-slurm/slurm.conf), and
//! `kiln-worker` built beside `kiln` (`cargo build --all-targets` does).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Every job's output file, for a failure message.
fn job_logs(out_dir: &Path) -> String {
    std::fs::read_dir(out_dir.join("logs"))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    format!(
                        "== {}\n{}",
                        e.path().display(),
                        std::fs::read_to_string(e.path()).unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
#[ignore = "needs a running Slurm cluster: scripts/slurm up (scripts/test runs it)"]
fn the_emitted_sbatch_pipeline_trains_on_two_ranks() {
    let conf = std::env::var("SLURM_CONF").unwrap_or_else(|_| "/tmp/kiln-slurm/slurm.conf".into());
    assert!(
        Path::new(&conf).exists(),
        "no Slurm configuration at {conf}: start the cluster with scripts/slurm up"
    );
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let bin_dir = Path::new(kiln).parent().unwrap();
    assert!(
        bin_dir.join("kiln-worker").exists(),
        "kiln-worker is not built beside kiln: cargo build --all-targets"
    );
    let dir = tempfile::Builder::new()
        .prefix("kiln-slurm-test")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    let file = dir.path().join("slurm_check.kiln");
    std::fs::write(&file, common::TWO_RANK_CPU_EXPERIMENT).unwrap();
    let out_dir = dir.path().join("emitted");
    let emit = Command::new(kiln)
        .args(["emit", "--target", "slurm", "-o"])
        .arg(&out_dir)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        emit.status.success(),
        "{}",
        String::from_utf8_lossy(&emit.stderr)
    );
    common::small_corpus(&out_dir.join("web.jsonl"));
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let submit = Command::new("bash")
        .arg(out_dir.join("submit.sh"))
        .env("PATH", &path)
        .env("SLURM_CONF", &conf)
        .current_dir(&out_dir)
        .output()
        .unwrap();
    assert!(
        submit.status.success(),
        "submit.sh: {}{}",
        String::from_utf8_lossy(&submit.stdout),
        String::from_utf8_lossy(&submit.stderr)
    );
    // Wait until none of this run's jobs is queued or running.
    let start = Instant::now();
    loop {
        let all = Command::new("squeue")
            .args(["-h", "-o", "%i %j %T"])
            .env("SLURM_CONF", &conf)
            .output()
            .unwrap();
        let queue = String::from_utf8_lossy(&all.stdout).trim().to_string();
        if queue.is_empty() {
            break;
        }
        let stuck = Command::new("squeue")
            .args(["-h", "-o", "%i %j %r"])
            .env("SLURM_CONF", &conf)
            .output()
            .unwrap();
        let stuck = String::from_utf8_lossy(&stuck.stdout).to_string();
        if stuck.contains("DependencyNeverSatisfied") {
            let ids: Vec<&str> = stuck
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            let _ = Command::new("scancel")
                .args(&ids)
                .env("SLURM_CONF", &conf)
                .status();
            let logs = job_logs(&out_dir);
            panic!("a job failed, so its dependents can never run:\n{stuck}\n{logs}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "jobs still queued after 15 minutes: {queue}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let logs = job_logs(&out_dir);
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("plan.json")).unwrap()).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    for s in steps {
        let output = out_dir.join(s["outputs"][0].as_str().unwrap());
        assert!(
            output.exists(),
            "step {} left no output {}; job logs:\n{logs}",
            s["name"],
            output.display()
        );
    }
    let train = steps.iter().find(|s| s["kind"] == "train").unwrap();
    let train_out = out_dir.join(train["outputs"][0].as_str().unwrap());
    let metrics = std::fs::read_to_string(train_out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 8, "8 optimizer steps logged");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(train_out.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["data_parallel"]["ranks"], 2, "{summary}");
    let ckpt = train_out.join("checkpoints/step-000000008");
    for f in [
        "model.safetensors",
        "optimizer-rank-00000-of-00002.safetensors",
        "optimizer-rank-00001-of-00002.safetensors",
        "state.json",
    ] {
        assert!(ckpt.join(f).exists(), "{} has no {f}", ckpt.display());
    }
    let eval = steps.iter().find(|s| s["kind"] == "evaluate").unwrap();
    let eval_summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            out_dir
                .join(eval["outputs"][0].as_str().unwrap())
                .join("summary.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(eval_summary["final_eval_loss"].as_f64().unwrap() > 0.0);
}
