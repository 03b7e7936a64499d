//! `kiln-worker score`: a run killed with SIGKILL after some batches are in its partial
//! scores file, then run again, writes the same bytes as a run never interrupted; so does
//! one whose partial file ends in a torn batch; the report is printed as JSON or text; bad
//! arguments are usage errors (exit 2).
//!
//! The scorer is kiln-train's committed Hugging Face fixture (runtime/train/tests/fixtures/
//! hf_llama: vocabulary 96, seq_len 32) with a character-level tokenizer written here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const WORKER: &str = env!("CARGO_BIN_EXE_kiln-worker");

/// The fixture model with a character tokenizer (`<|endoftext|>`, then printable ASCII).
fn scorer(dir: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../train/tests/fixtures/hf_llama");
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), model.join(f)).unwrap();
    }
    let mut vocab = serde_json::Map::new();
    vocab.insert("<|endoftext|>".into(), json!(0));
    for (i, c) in (' '..='~').enumerate() {
        vocab.insert(c.to_string(), json!(i + 1));
    }
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": 0, "content": "<|endoftext|>", "single_word": false,
                          "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null, "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": []}
    });
    std::fs::write(model.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    model
}

/// `n` documents of 10–40 pseudo-random printable characters as JSONL.
fn write_docs(path: &Path, n: usize) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut text = String::new();
    for i in 0..n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = 10 + (state % 31) as usize;
        let doc: String = (0..len)
            .map(|j| {
                let k = state.rotate_left(j as u32 * 7) % 95;
                char::from(b' ' + k as u8)
            })
            .collect();
        text += &json!({"id": format!("d{i}"), "text": doc}).to_string();
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// `kiln-worker score` of `input` into `output` with the scorer `model`, 4 documents a
/// batch, one thread, the report as JSON.
fn score_command(input: &Path, output: &Path, model: &Path) -> Command {
    score_with(input, output, model, 4, "json")
}

fn score_with(input: &Path, output: &Path, model: &Path, batch: u64, format: &str) -> Command {
    let mut c = Command::new(WORKER);
    c.arg("score")
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .arg("--hf")
        .arg(model)
        .args(["--batch-docs", &batch.to_string(), "--max-tokens", "24"])
        .args([
            "--threads",
            "1",
            "--device",
            "cpu",
            "--quiet",
            "--format",
            format,
        ]);
    c
}

fn run(c: &mut Command) -> Output {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "kiln-worker score failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn lines_in(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

#[test]
fn a_killed_run_resumes_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let model = scorer(dir.path());
    let input = dir.path().join("docs.jsonl");
    let docs = 3000;
    write_docs(&input, docs);

    let reference = dir.path().join("reference");
    let out = run(&mut score_command(&input, &reference, &model));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["input_docs"], docs);
    assert_eq!(report["kept_docs"], docs, "every document has ≥ 10 tokens");
    assert_eq!(report["method"], "perplexity");
    assert_eq!(report["step"], "score");
    let want_scores = std::fs::read(reference.join("scores.jsonl")).unwrap();
    let want_report = std::fs::read(reference.join("report.json")).unwrap();
    assert_eq!(String::from_utf8_lossy(&want_scores).lines().count(), docs);

    // Killed (SIGKILL) once a few batches are in the partial file.
    let killed = dir.path().join("killed");
    let partial = dir.path().join("killed.partial/scores.jsonl");
    let mut child = score_command(&input, &killed, &model)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while lines_in(&partial) < 12 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no batch written"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = lines_in(&partial);
    println!("killed with {at_kill} of {docs} lines written");
    assert!(!killed.exists(), "the run finished before the kill");
    assert!(at_kill < docs);
    run(&mut score_command(&input, &killed, &model));
    assert_eq!(
        std::fs::read(killed.join("scores.jsonl")).unwrap(),
        want_scores
    );
    assert_eq!(
        std::fs::read(killed.join("report.json")).unwrap(),
        want_report
    );
    assert!(!dir.path().join("killed.partial").exists());

    // A torn tail: 10 whole lines (two batches and half of one) and half a line; the third
    // batch is scored again.
    let torn = dir.path().join("torn");
    let work = dir.path().join("torn.partial");
    std::fs::create_dir_all(&work).unwrap();
    let text = String::from_utf8(want_scores.clone()).unwrap();
    let mut head: String = text.lines().take(10).map(|l| format!("{l}\n")).collect();
    let eleventh = text.lines().nth(10).unwrap();
    head += &eleventh[..eleventh.len() / 2];
    std::fs::write(work.join("scores.jsonl"), head).unwrap();
    run(&mut score_command(&input, &torn, &model));
    assert_eq!(
        std::fs::read(torn.join("scores.jsonl")).unwrap(),
        want_scores
    );

    // A partial run of other documents is not resumed.
    let changed = dir.path().join("changed");
    std::fs::create_dir_all(dir.path().join("changed.partial")).unwrap();
    let head: String = text.lines().take(8).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.path().join("changed.partial/scores.jsonl"), head).unwrap();
    let other = dir.path().join("other.jsonl");
    let docs_text = std::fs::read_to_string(&input).unwrap();
    std::fs::write(&other, docs_text.replacen("\"d3\"", "\"e3\"", 1)).unwrap();
    let out = score_command(&other, &changed, &model).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("document 4 is not the one") && e.contains("input changed"),
        "{e}"
    );

    // Done: a re-run prints the same report and leaves the output alone.
    let again = run(&mut score_command(&input, &reference, &model));
    assert_eq!(
        serde_json::from_slice::<Value>(&again.stdout).unwrap(),
        report
    );
    // The text report.
    let out = run(&mut score_with(&input, &reference, &model, 4, "text"));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("3000 documents, 3000 scored, 0 null"), "{s}");
    // Other settings on the same output: refused, naming what differs.
    let out = score_with(&input, &reference, &model, 8, "json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("batch_docs was 4, now 8"), "{e}");
}

#[test]
fn bad_arguments_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = scorer(dir.path());
    let input = dir.path().join("docs.jsonl");
    write_docs(&input, 3);
    let output = dir.path().join("out");
    let status = |extra: &[&str]| {
        let out = score_command(&input, &output, &model)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, e) = status(&["--method", "likelihood_ratio"]);
    assert_eq!(code, Some(2));
    assert!(e.contains("--general-hf"), "{e}");
    let (code, e) = status(&["--method", "rating"]);
    assert_eq!(code, Some(2));
    assert!(e.contains("--prompt-file"), "{e}");
    let (code, e) = status(&["--method", "bleu"]);
    assert_eq!(code, Some(2));
    assert!(e.contains("perplexity, likelihood_ratio or rating"), "{e}");
    let prompt = dir.path().join("prompt.txt");
    std::fs::write(&prompt, "no placeholder").unwrap();
    let (code, e) = status(&[
        "--method",
        "rating",
        "--prompt-file",
        prompt.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(e.contains("{document}"), "{e}");
    // A missing input file: an input error (exit 1) naming it.
    let out = score_command(&dir.path().join("nothing.jsonl"), &output, &model)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing.jsonl"));
    assert!(!output.exists() && !dir.path().join("out.partial").exists());
}

/// The plan of `experiments/tiny.kiln` (planned now by the compiler) with a sample step of
/// `input`'s documents and a score step of them with the Hugging Face scorer at `scorer`
/// (relative to the source root), written to `run_dir/plan.json`.
fn plan_with_score_step(run_dir: &Path, input: &Path, scorer: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (checked, plans) = kiln::plan_paths(
        &[root.join("experiments/tiny.kiln")],
        &kiln::load::FsLoader,
        &[],
    )
    .unwrap();
    assert_eq!(checked.errors(), 0);
    let mut plan = serde_json::to_value(&plans[0].1).unwrap();
    let cpu = json!({"ranks": 1, "nodes": 1, "gpus_per_rank": 0, "predicted_seconds": null});
    let sample = json!({
        "id": "5a3791e000000001", "kind": "sample", "name": "sample.web", "inputs": [],
        "outputs": ["steps/sample.web-5a3791e000000001"],
        "params": {"source": "web", "docs": 3000, "seed": 0}, "resources": cpu,
        "command": ["kiln-worker", "--plan", "plan.json", "--step", "5a3791e000000001"]
    });
    let score = json!({
        "id": "5c0fe00000000002", "kind": "score", "name": "score.web",
        "inputs": ["5a3791e000000001"], "outputs": ["steps/score.web-5c0fe00000000002"],
        "params": {"source": "web", "scorer": {"kind": "hugging_face", "path": scorer},
                   "method": {"kind": "perplexity"}, "max_tokens": 24, "batch_docs": 4},
        "resources": cpu,
        "command": ["kiln-worker", "--plan", "plan.json", "--step", "5c0fe00000000002"]
    });
    let steps = plan["steps"].as_array_mut().unwrap();
    steps.push(sample);
    steps.push(score);
    std::fs::create_dir_all(run_dir).unwrap();
    std::fs::write(run_dir.join("plan.json"), plan.to_string()).unwrap();
    // The sample step's output: the documents, zstd-compressed as kiln-data writes them.
    let mut w = kiln_data::ingest::JsonlWriter::create(
        &run_dir
            .join("steps/sample.web-5a3791e000000001")
            .join(kiln_plan::run_dir::DOCS_FILE),
    )
    .unwrap();
    let text = std::fs::read_to_string(input).unwrap();
    for line in text.lines() {
        w.write(&serde_json::from_str(line).unwrap()).unwrap();
    }
    w.finish().unwrap();
}

fn plan_step(run_dir: &Path, source_root: &Path) -> Command {
    let mut c = Command::new(WORKER);
    c.arg("--plan")
        .arg(run_dir.join("plan.json"))
        .args(["--step", "score.web", "--threads", "1", "--quiet"])
        .arg("--run-dir")
        .arg(run_dir)
        .arg("--source-root")
        .arg(source_root);
    c
}

#[test]
fn a_plan_score_step_stops_on_sigterm_and_resumes_to_the_cli_bytes() {
    let dir = tempfile::tempdir().unwrap();
    scorer(dir.path());
    let input = dir.path().join("docs.jsonl");
    write_docs(&input, 3000);
    // The same documents and settings through `kiln-worker score`.
    let reference = dir.path().join("reference");
    run(&mut score_command(
        &input,
        &reference,
        &dir.path().join("model"),
    ));
    let want = std::fs::read(reference.join("scores.jsonl")).unwrap();

    let run_dir = dir.path().join("run");
    // The scorer's path is relative to the source root (the project).
    plan_with_score_step(&run_dir, &input, "model");
    let out = run_dir.join("steps/score.web-5c0fe00000000002");
    let partial = run_dir.join("steps/score.web-5c0fe00000000002.partial/scores.jsonl");
    let mut child = plan_step(&run_dir, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while lines_in(&partial) < 8 {
        assert!(child.try_wait().unwrap().is_none(), "ended before SIGTERM");
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no batch written"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: a signal to our own child, which has not been waited for.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let stopped = child.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(
        stopped.status.code(),
        Some(i32::from(kiln_plan::EXIT_CHECKPOINTED)),
        "{e}"
    );
    assert!(e.contains("asked to stop"), "{e}");
    let kept = lines_in(&partial);
    assert!(
        kept.is_multiple_of(4) && kept < 3000,
        "{kept} lines: whole batches"
    );
    assert!(!out.exists());
    let done = plan_step(&run_dir, dir.path()).output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(std::fs::read(out.join("scores.jsonl")).unwrap(), want);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        (&report["step"], &report["source"], &report["scorer"]),
        (
            &json!("score.web"),
            &json!("web"),
            &json!("hugging_face:model")
        )
    );
    // Done: the step is not run again.
    let again = plan_step(&run_dir, dir.path()).output().unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already done"));
}
