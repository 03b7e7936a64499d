//! `kiln run` end to end on this machine: every step of a two-rank CPU experiment, its
//! training steps as two ranks under mpirun (`--ranks 2`), then a second `kiln run` that
//! finds every step done. Needs `kiln-worker` built beside `kiln` and OpenMPI's mpirun
//! (scripts/setup installs it).

mod common;

use std::process::Command;

#[test]
fn kiln_run_trains_on_two_ranks_and_skips_what_is_done() {
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let worker = std::path::Path::new(kiln).with_file_name("kiln-worker");
    assert!(
        worker.exists(),
        "kiln-worker is not built beside kiln: cargo build --all-targets"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("two_ranks.kiln");
    std::fs::write(&file, common::TWO_RANK_CPU_EXPERIMENT).unwrap();
    common::small_corpus(&dir.path().join("web.jsonl"));
    let out = dir.path().join("run");
    let run = || {
        Command::new(kiln)
            .arg("run")
            .arg(&file)
            .args(["--ranks", "2", "--out"])
            .arg(&out)
            .output()
            .unwrap()
    };
    let first = run();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert!(stderr.contains("running train.main"), "{stderr}");
    assert!(stderr.contains("on 2 ranks"), "{stderr}");
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    let train = steps.iter().find(|s| s["kind"] == "train").unwrap();
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            out.join(train["outputs"][0].as_str().unwrap())
                .join("summary.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(summary["data_parallel"]["ranks"], 2, "{summary}");
    assert_eq!(summary["steps_run"], 8, "{summary}");
    let second = run();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("is done, skipping").count(),
        steps.len(),
        "{stderr}"
    );
}

/// `kiln calibrate --device cuda` asks for the presets it overrides, and on a machine without
/// a CUDA device says so (exit 1) and writes nothing; a GPU runs it in scripts/gpu-check.
#[test]
fn kiln_calibrate_on_cuda_needs_presets_and_a_gpu() {
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("this_gpu.kiln");
    let run = |args: &[&str]| {
        Command::new(kiln)
            .arg("calibrate")
            .args(args)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap()
    };
    let bare = run(&["--device", "cuda"]);
    assert_eq!(bare.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bare.stderr).contains("needs --gpu and --node"));
    if tch_sees_no_gpu() {
        let no_gpu = run(&[
            "--device", "cuda", "--gpu", "h100_sxm", "--node", "dgx_h100",
        ]);
        let stderr = String::from_utf8_lossy(&no_gpu.stderr);
        assert_eq!(no_gpu.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("no CUDA device 0"), "{stderr}");
        assert!(!out.exists());
    }
}

/// True where no NVIDIA driver is present (this project's CI and development machines).
fn tch_sees_no_gpu() -> bool {
    !std::path::Path::new("/proc/driver/nvidia").exists()
}
