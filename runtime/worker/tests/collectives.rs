//! The collective layer's four operations through kiln-worker: with MPI on 1, 2 and 4
//! ranks (values checked by the worker, bytes sent by each rank equal to the ring
//! formulas); with NCCL, a clear error rather than a panic where there is no GPU, after
//! loading PyTorch's wheel's NCCL through the `libnccl.so` link it makes (on a GPU machine
//! the same command must succeed).

use std::process::Command;

use serde_json::Value;

mod common;

use common::{launch, WORKER};

fn collectives(ranks: u32, backend: &str, elements: usize) -> std::process::Output {
    let mut c = launch(ranks);
    c.args(["collectives", "--backend", backend, "--elements"])
        .arg(elements.to_string())
        .env_remove("KILN_NCCL_REEXEC")
        .output()
        .unwrap()
}

#[test]
fn mpi_collectives_give_the_known_results_and_send_the_ring_volumes() {
    let k = 5_000_001; // more than one bucket of 4M elements
    for ranks in [1u32, 2, 4] {
        let out = collectives(ranks, "mpi", k);
        assert!(
            out.status.success(),
            "{ranks} ranks: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["ranks"], ranks);
        let n = ranks as u64;
        let bytes = 4 * k as u64;
        // Each rank sends (n−1)/n of the buffer per ring pass: all-reduce and broadcast
        // two passes over k elements, reduce-scatter and all-gather one over n·k.
        let pass = |b: u64| b * (n - 1) / n;
        let sent = &report["sent_bytes"];
        assert_eq!(sent["all_reduce"], 2 * pass(bytes), "{ranks} ranks");
        assert_eq!(sent["broadcast"], 2 * pass(bytes), "{ranks} ranks");
        assert_eq!(sent["reduce_scatter"], pass(n * bytes), "{ranks} ranks");
        assert_eq!(sent["all_gather"], pass(n * bytes), "{ranks} ranks");
    }
}

#[test]
fn nccl_says_what_is_missing_instead_of_panicking() {
    let out = collectives(1, "nccl", 1024);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    if tch::Cuda::is_available() {
        assert!(out.status.success(), "{stderr}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["backend"], "nccl");
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs an NVIDIA GPU"), "{stderr}");
    // PyTorch's CUDA wheel ships NCCL as libnccl.so.2, which cudarc finds only through the
    // worker's link; the error reports the version that loaded.
    assert!(stderr.contains("NCCL 2."), "{stderr}");
}

/// A plan for GPUs gives its train step a GPU per rank; on a machine without one the worker
/// says so (exit 2) before touching any data, and names `--device cpu`.
#[test]
fn a_gpu_plans_train_step_needs_a_gpu() {
    if tch::Cuda::is_available() {
        return;
    }
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/gpu_check.kiln");
    let (checked, plans) = kiln::plan_paths(&[file], &kiln::load::FsLoader, &[]).unwrap();
    assert!(checked.errors() == 0 && plans.len() == 1);
    let plan = serde_json::to_value(&plans[0].1).unwrap();
    let train = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "train")
        .unwrap();
    assert_eq!(train["resources"]["gpus_per_rank"], 1);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plan.json"), plan.to_string()).unwrap();
    let out = Command::new(WORKER)
        .args([
            "--plan",
            "plan.json",
            "--step",
            train["id"].as_str().unwrap(),
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("runs on a GPU per rank"), "{stderr}");
    assert!(stderr.contains("--device cpu"), "{stderr}");
}
