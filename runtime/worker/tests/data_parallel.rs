//! Data parallelism across processes: kiln-worker under `mpirun` with 2 and 4 ranks and
//! ZeRO 0, 1, 2 and 3 follows the 1-rank loss curve of the same global batch (fp32, CPU:
//! relative difference under 1e-5 at every step); each rank's sent bytes per step and its
//! weights, gradients and optimizer states equal kiln's predictions (1 % and 5 %); a run
//! resumes from its sharded checkpoint; a killed rank ends the job with an error naming a
//! rank within 60 s.
//!
//! Plans come from the compiler (`kiln::plan_paths`) for a small model on a CPU "node" of
//! N devices, so the predictions are kiln's own; the mix step's outputs are synthetic shards.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_data::shards::{IndexedWriter, TokenDtype};
use serde_json::Value;

mod common;

use common::launch;

fn experiment(ranks: u32, zero: u32, steps: u32) -> String {
    format!(
        r#"
gpu cpu_rank {{
  arch = cpu
  memory = 4 GB
  hbm_bandwidth = 10 GB/s
  peak_fp32 = 0.1 TFLOP/s
}}

node cpu_node {{
  gpu = cpu_rank
  gpus_per_node = {ranks}
  nvlink_bandwidth = 10 GB/s
  network_bandwidth = 10 GB/s
}}

cluster cpu_cluster {{
  node = cpu_node
  nodes = 1
}}

model dp_small {{
  layers = 2
  hidden = 64
  ffn_hidden = 192
  heads = 4
  kv_heads = 2
  vocab = 512
  seq_len = 32
  activation = swiglu
  tied_embeddings = false
}}

experiment dp_check {{
  model = dp_small
  objective = fixed
  tokens = {tokens}
  batch = 1024 tokens
  cluster = cpu_cluster
  parallel {{
    data = auto
    micro_batch = 4
    accumulation = auto
    zero = {zero}
  }}
  precision = fp32
  tokenizer = bpe {{ vocab = 512 }}
  seed = 7
  checkpoint {{ every = 3 steps, keep = 2 }}
  source web {{ path = "web.jsonl", unique_tokens = 1M }}

  phase main {{
    tokens = auto
    mix {{ web = 100% }}
    lr = cosine {{ peak = 3e-3, warmup = 2 steps, final = 3e-4 }}
  }}
}}
"#,
        tokens = 1024 * steps
    )
}

/// Plans the experiment in `dir`, writes synthetic shards where its mix step's output goes,
/// and returns the plan and the train step's id.
fn prepare(dir: &Path, ranks: u32, zero: u32, steps: u32) -> (Value, String) {
    prepare_text(dir, &experiment(ranks, zero, steps))
}

/// [`prepare`] for an experiment's text.
fn prepare_text(dir: &Path, text: &str) -> (Value, String) {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("dp.kiln");
    std::fs::write(&file, text).unwrap();
    let (checked, plans) = kiln::plan_paths(&[file], &kiln::load::FsLoader, &[]).unwrap();
    assert!(
        checked.errors() == 0 && plans.len() == 1,
        "{:?}",
        checked.diagnostics
    );
    let plan = serde_json::to_value(&plans[0].1).unwrap();
    std::fs::write(dir.join("plan.json"), serde_json::to_vec(&plan).unwrap()).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    let mix = steps.iter().find(|s| s["kind"] == "mix").unwrap();
    let out = dir.join(mix["outputs"][0].as_str().unwrap());
    std::fs::create_dir_all(&out).unwrap();
    for (prefix, seed) in [("text_document", 1u64), ("held_out_document", 2)] {
        let mut w = IndexedWriter::create(&out.join(prefix), TokenDtype::for_vocab(512)).unwrap();
        let mut state = seed;
        for _ in 0..400 {
            let doc: Vec<u32> = (0..60)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 33) % 400) as u32
                })
                .collect();
            w.add_document(&doc).unwrap();
        }
        w.finish().unwrap();
    }
    let train = steps.iter().find(|s| s["kind"] == "train").unwrap();
    (plan.clone(), train["id"].as_str().unwrap().to_string())
}

fn worker(dir: &Path, ranks: u32, step: &str) -> Command {
    let mut c = launch(ranks);
    c.args([
        "--plan",
        "plan.json",
        "--step",
        step,
        "--threads",
        "1",
        "--quiet",
    ])
    .current_dir(dir);
    c
}

fn run(dir: &Path, ranks: u32, step: &str) {
    let out = worker(dir, ranks, step).output().unwrap();
    assert!(
        out.status.success(),
        "{ranks} ranks: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn output_dir(dir: &Path, plan: &Value) -> PathBuf {
    let train = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "train")
        .unwrap();
    dir.join(train["outputs"][0].as_str().unwrap())
}

fn losses(out: &Path) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

/// The rank processes of a job: mpirun's children running kiln-worker.
fn ranks_of(mpirun: u32) -> Vec<String> {
    let ps = Command::new("pgrep")
        .args(["-P", &mpirun.to_string(), "-f", "kiln-worker"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&ps.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn summary(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn ranks_follow_one_rank_and_send_what_kiln_predicts() {
    let root = tempfile::tempdir().unwrap();
    let steps = 4;
    let dir = root.path().join("r1");
    let (plan, id) = prepare(&dir, 1, 0, steps);
    run(&dir, 1, &id);
    let reference = losses(&output_dir(&dir, &plan));
    assert_eq!(reference.len(), steps as usize);
    assert!(
        reference[steps as usize - 1] < reference[0],
        "{reference:?}"
    );

    for ranks in [2u32, 4] {
        for zero in [0u32, 1, 2, 3] {
            let dir = root.path().join(format!("r{ranks}z{zero}"));
            let (plan, id) = prepare(&dir, ranks, zero, steps);
            run(&dir, ranks, &id);
            let out = output_dir(&dir, &plan);
            let got = losses(&out);
            assert_eq!(got.len(), reference.len());
            let worst = got
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs() / b.abs())
                .fold(0.0, f64::max);
            for (step, (a, b)) in got.iter().zip(&reference).enumerate() {
                let rel = (a - b).abs() / b.abs();
                assert!(
                    rel < 1e-5,
                    "{ranks} ranks, ZeRO {zero}, step {step}: loss {a} vs {b} (1 rank), relative {rel:e}"
                );
            }
            let dp = &summary(&out)["data_parallel"];
            assert_eq!(dp["ranks"], ranks);
            let sent = dp["sent_bytes_per_step"].as_f64().unwrap();
            let predicted = dp["predicted_bytes_per_step"].as_f64().unwrap();
            assert!(
                (sent / predicted - 1.0).abs() < 0.01,
                "{ranks} ranks, ZeRO {zero}: sent {sent} bytes per step, kiln predicts {predicted}"
            );
            let state = &dp["state_bytes"];
            eprintln!(
                "{ranks} ranks, ZeRO {zero}: largest relative loss difference {worst:.2e}; sent {sent:.0} bytes per step, predicted {predicted:.0} ({:.5}x); weights/gradients/optimizer {}/{}/{} bytes, predicted {}/{}/{}",
                sent / predicted,
                state["weights"], state["gradients"], state["optimizer"],
                dp["predicted_state_bytes"][0], dp["predicted_state_bytes"][1], dp["predicted_state_bytes"][2],
            );
            for (i, key) in ["weights", "gradients", "optimizer"].iter().enumerate() {
                let m = state[key].as_f64().unwrap();
                let p = dp["predicted_state_bytes"][i].as_f64().unwrap();
                assert!(
                    (m / p - 1.0).abs() < 0.05,
                    "{ranks} ranks, ZeRO {zero}: {key} {m} bytes, kiln predicts {p}"
                );
            }
        }
    }
}

/// ZeRO 3 with tied embeddings: the embedding matrix is both the root unit's input table and
/// its output projection, so its gradient sums both uses before the reduce-scatter; 2 ranks
/// follow 1 rank, and the bytes sent equal kiln's prediction.
#[test]
fn zero3_with_tied_embeddings_follows_one_rank() {
    let root = tempfile::tempdir().unwrap();
    let steps = 4;
    let tied = |ranks, zero| {
        experiment(ranks, zero, steps).replace("tied_embeddings = false", "tied_embeddings = true")
    };
    let (plan, id) = prepare_text(&root.path().join("one"), &tied(1, 0));
    run(&root.path().join("one"), 1, &id);
    let reference = losses(&output_dir(&root.path().join("one"), &plan));
    let dir = root.path().join("zero3");
    let (plan, id) = prepare_text(&dir, &tied(2, 3));
    run(&dir, 2, &id);
    let out = output_dir(&dir, &plan);
    let got = losses(&out);
    assert_eq!(
        (got.len(), reference.len()),
        (steps as usize, steps as usize)
    );
    for (step, (a, b)) in got.iter().zip(&reference).enumerate() {
        let rel = (a - b).abs() / b.abs();
        assert!(
            rel < 1e-5,
            "step {step}: loss {a} vs {b} (1 rank), relative {rel:e}"
        );
    }
    let dp = &summary(&out)["data_parallel"];
    let sent = dp["sent_bytes_per_step"].as_f64().unwrap();
    let predicted = dp["predicted_bytes_per_step"].as_f64().unwrap();
    assert!(
        (sent / predicted - 1.0).abs() < 0.01,
        "sent {sent}, predicted {predicted}"
    );
}

/// Starts a 2-rank run of `dir`'s plan and kills the whole job (both ranks, then mpirun,
/// with SIGKILL, as a lost node would end it) once its checkpoint of step 3 exists. Returns
/// the step of the newest complete checkpoint left, after checking that it holds every
/// rank's optimizer shard.
fn kill_after_a_checkpoint(dir: &Path, plan: &Value, id: &str) -> u64 {
    let mut child = worker(dir, 2, id)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = output_dir(dir, plan);
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let ckpt = partial.join("checkpoints/step-000000003/state.json");
    let start = Instant::now();
    while !ckpt.exists() && start.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in ranks_of(child.id()) {
        Command::new("kill").args(["-9", &pid]).status().unwrap();
    }
    let _ = child.kill();
    let _ = child.wait();
    // Let the killed ranks go before looking at what they left.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!out.exists(), "the job finished before it was killed");
    let mut steps_saved: Vec<(u64, PathBuf)> = std::fs::read_dir(partial.join("checkpoints"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            e.path()
                .join("state.json")
                .exists()
                .then_some((step, e.path()))
        })
        .collect();
    steps_saved.sort();
    let (saved, latest) = steps_saved.pop().expect("a checkpoint survives the kill");
    assert!(saved >= 3);
    for rank in 0..2 {
        let shard = latest.join(format!("optimizer-rank-{rank:05}-of-00002.safetensors"));
        assert!(
            shard.exists(),
            "every rank's shard is saved: {}",
            shard.display()
        );
    }
    saved
}

/// A sharded run killed after a checkpoint resumes from its newest complete one: with the
/// same 2 ranks, the losses of an uninterrupted run exactly; with 4 ranks or one process
/// (the whole optimizer state re-sharded), within 1e-5. Under ZeRO 1 and ZeRO 3 (whose
/// shards are per unit).
#[test]
fn a_sharded_run_resumes_from_its_checkpoint() {
    let root = tempfile::tempdir().unwrap();
    let steps = 30;
    for (zero, resume_on) in [(1u32, vec![2u32, 4, 1]), (3, vec![2, 4, 1])] {
        let whole = root.path().join(format!("whole-z{zero}"));
        let (plan, id) = prepare(&whole, 2, zero, steps);
        run(&whole, 2, &id);
        let expected = losses(&output_dir(&whole, &plan));
        for resume_ranks in resume_on {
            let dir = root
                .path()
                .join(format!("z{zero}-resumed-on-{resume_ranks}"));
            let (plan, id) = prepare(&dir, 2, zero, steps);
            let saved = kill_after_a_checkpoint(&dir, &plan, &id);
            run(&dir, resume_ranks, &id);
            let out = output_dir(&dir, &plan);
            let got = losses(&out);
            if resume_ranks == 2 {
                assert_eq!(got, expected, "ZeRO {zero}");
            } else {
                assert_eq!(got.len(), expected.len());
                for (step, (a, b)) in got.iter().zip(&expected).enumerate() {
                    let rel = (a - b).abs() / b.abs();
                    assert!(
                        rel < 1e-5,
                        "ZeRO {zero} resumed on {resume_ranks} rank(s), step {step}: loss {a} vs {b}"
                    );
                }
            }
            let s = summary(&out);
            assert_eq!(s["resumed_at"].as_u64(), Some(saved), "{s}");
        }
    }
}

/// One rank killed mid-run: the job ends within 60 s with a failing exit code and an error
/// that names a rank.
#[test]
fn a_killed_rank_ends_the_job() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("killed");
    let (plan, id) = prepare(&dir, 2, 1, 200);
    let mut child = worker(&dir, 2, &id)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = PathBuf::from(format!("{}.partial", output_dir(&dir, &plan).display()))
        .join("metrics.jsonl");
    let start = Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |t| t.lines().count()) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the run never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pids = ranks_of(child.id());
    assert_eq!(pids.len(), 2, "two ranks under mpirun: {pids:?}");
    let killed = Instant::now();
    Command::new("kill")
        .args(["-9", &pids[1]])
        .status()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "the job still runs 60 s after a rank was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let ended = killed.elapsed();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("the job ended {ended:.1?} after the kill ({status}):\n{stderr}");
    assert!(
        stderr.contains("rank 1"),
        "the error names the rank: {stderr}"
    );
}
