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
    let summary = train_summary(&out, train);
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

/// A batch ramp end to end: `kiln plan` lowers it, `kiln run` trains it on two ranks (MPI),
/// and every step's tokens in metrics.jsonl are the plan's batch for that step (8, 16, 24,
/// then 32 sequences of 32 tokens), with the run's cumulative tokens.
#[test]
fn kiln_run_trains_each_step_of_a_batch_ramp() {
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ramp.kiln");
    let experiment = common::TWO_RANK_CPU_EXPERIMENT.replace(
        "  batch = 1024 tokens",
        "  batch = ramp { from = 256 tokens, to = 1024 tokens, over = 2048 tokens }",
    );
    assert_ne!(experiment, common::TWO_RANK_CPU_EXPERIMENT);
    std::fs::write(&file, experiment).unwrap();
    common::small_corpus(&dir.path().join("web.jsonl"));
    let out = dir.path().join("run");
    let run = Command::new(kiln)
        .arg("run")
        .arg(&file)
        .args(["--ranks", "2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    let phase = &plan["schedule"]["phases"][0];
    let segments = phase["batch"].as_array().unwrap();
    let (start, steps) = (
        phase["start_step"].as_u64().unwrap(),
        phase["steps"].as_u64().unwrap(),
    );
    // The plan's tokens of every step, from its segments.
    let mut planned = Vec::new();
    for step in start..start + steps {
        let seg = segments
            .iter()
            .rev()
            .find(|s| s["first_step"].as_u64().unwrap() <= step)
            .unwrap();
        planned.push(seg["batch_tokens"].as_u64().unwrap());
    }
    // 2,048 tokens over 3 increments of 8 sequences: 8 × 32 tokens until sample 22, …
    assert_eq!(
        segments
            .iter()
            .map(|s| s["global_batch"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [8, 16, 24, 32]
    );
    let train = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "train")
        .unwrap();
    let metrics = std::fs::read_to_string(
        out.join(train["outputs"][0].as_str().unwrap())
            .join("metrics.jsonl"),
    )
    .unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let logged: Vec<u64> = lines
        .iter()
        .map(|m| m["step_tokens"].as_u64().unwrap())
        .collect();
    assert_eq!(logged, planned, "{metrics}");
    let mut total = 0;
    for (m, t) in lines.iter().zip(&planned) {
        total += t;
        assert_eq!(m["tokens"].as_u64().unwrap(), total, "{m}");
    }
    assert_eq!(total as f64, phase["tokens_trained"].as_f64().unwrap());
    // Each batch's predicted step time: shorter for the ramp's smaller batches; the
    // summary compares the measured rate with the prediction at the batches it ran.
    let times: Vec<f64> = segments
        .iter()
        .map(|s| s["predicted_step_time_s"].as_f64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    let (mut tokens, mut seconds) = (0.0, 0.0);
    for (i, seg) in segments.iter().enumerate() {
        let next = segments
            .get(i + 1)
            .map_or(start + steps, |n| n["first_step"].as_u64().unwrap());
        let n = (next - seg["first_step"].as_u64().unwrap()) as f64;
        tokens += n * seg["batch_tokens"].as_f64().unwrap();
        seconds += n * times[i];
    }
    let summary = train_summary(&out, train);
    let predicted = summary["predicted_tokens_per_s"].as_f64().unwrap();
    assert!(
        (predicted / (tokens / seconds) - 1.0).abs() < 1e-12,
        "{predicted} against {}",
        tokens / seconds
    );
    let full = plan["predictions"]["tokens_per_s"].as_f64().unwrap();
    assert!(predicted < full, "{predicted} ≥ the full batch's {full}");
    // The run's report draws that prediction per batch, not the full batch's line.
    let page = dir.path().join("report.html");
    let report = Command::new(kiln)
        .arg("report")
        .arg(&out)
        .arg("-o")
        .arg(&page)
        .output()
        .unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    let throughput = &html[html.find("data-chart=\"throughput\"").unwrap()..];
    // The chart, then its legend (a list after the `<svg>`).
    let throughput = &throughput[..throughput.find("</ul>").unwrap()];
    assert!(throughput.contains("at each step"), "{throughput}");
    assert!(throughput.contains("class=\"line dashed\""), "{throughput}");
    assert!(!throughput.contains("class=\"ref\""), "{throughput}");
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

/// The model-based filter end to end through `kiln run --until quality_filter` on the
/// small CPU experiment: a scorer trained by the plan on a second source, its perplexity on
/// a sample, the classifier, the KL reference, the filter with the good-token loss; then the
/// same scores through `kiln data classify train` give the same classifier as the plan's step.
#[test]
fn the_quality_chain_runs_until_the_filter() {
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quality.kiln");
    let experiment = common::TWO_RANK_CPU_EXPERIMENT.replace(
        "  source web { path = \"web.jsonl\", unique_tokens = 100K }",
        "  source web { path = \"web.jsonl\", unique_tokens = 100K }
  source good { path = \"good.jsonl\" }
  scorer ref {
    model = slurm_small
    source = good
    tokens = 4096
    lr = constant { value = 3e-3 }
  }
  quality {
    kl { reference = good, max = p90 }
    classifier { scorer = ref, sample = 200, labels = top { fraction = 50% }, keep = 80% }
  }",
    );
    assert_ne!(experiment, common::TWO_RANK_CPU_EXPERIMENT);
    std::fs::write(&file, experiment).unwrap();
    common::small_corpus(&dir.path().join("web.jsonl"));
    common::small_corpus(&dir.path().join("good.jsonl"));
    let out = dir.path().join("run");
    let run = Command::new(kiln)
        .arg("run")
        .arg(&file)
        .args(["--until", "quality_filter", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    for step in [
        "train.scorer.ref",
        "sample.web",
        "score.web",
        "train_classifier",
        "kl_reference",
        "quality_filter.web",
    ] {
        assert!(
            stderr.contains(&format!("running {step} ")),
            "{step}: {stderr}"
        );
    }
    // --until: nothing after the filter ran.
    assert!(!stderr.contains("running train.main"), "{stderr}");
    assert!(
        stderr.contains("held-out agreement with the scorer"),
        "{stderr}"
    );
    assert!(
        stderr.contains("good tokens the heuristics remove"),
        "{stderr}"
    );
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    let dir_of = |name: &str| {
        let step = plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap();
        out.join(step["outputs"][0].as_str().unwrap())
    };
    let report = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir_of(name).join("report.json")).unwrap())
            .unwrap()
    };
    let scores = report("score.web");
    assert_eq!(scores["input_docs"], 200);
    let cls = report("train_classifier");
    assert!(cls["held_out_spearman"].is_f64(), "{cls}");
    let filtered = report("quality_filter.web");
    assert_eq!(
        filtered["models"]["classifier"]["threshold"],
        cls["threshold"]
    );
    assert_eq!(filtered["good_tokens_lost"]["scored_docs"], 200);

    // The scores through `kiln data classify train`: the same classifier file.
    let cli_dir = dir.path().join("cls");
    let o = Command::new(kiln)
        .args(["data", "classify", "train", "--scores"])
        .arg(dir_of("score.web").join("scores.jsonl"))
        .args([
            "--labels",
            "top:50%",
            "--keep",
            "80%",
            "--held-out",
            "10%",
            "--seed",
            "3",
        ])
        .arg("-o")
        .arg(&cli_dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(cli_dir.join("classifier.json")).unwrap(),
        std::fs::read(dir_of("train_classifier").join("classifier.json")).unwrap()
    );
}

/// The summary.json of a plan's train step in run directory `out`.
fn train_summary(out: &std::path::Path, train: &serde_json::Value) -> serde_json::Value {
    let dir = out.join(train["outputs"][0].as_str().unwrap());
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}
