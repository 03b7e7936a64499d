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
