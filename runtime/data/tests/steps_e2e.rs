//! End to end: the data steps of `experiments/tiny.kiln`, planned by the `kiln` binary and
//! run by `kiln-worker` processes, once straight through (1 thread) and once with steps
//! killed (SIGKILL) midway and run again (2 threads); every output file must be
//! byte-identical, a killed step must leave no output, and a done step is not run again.
//!
//! The corpus is built by the test, the same on every machine: the committed license texts
//! (`tests/fixtures/common-licenses`) as `web` and generated Python-like modules as `code`.
//!
//! The binaries are `target/debug/kiln` and `target/debug/kiln-worker`, built here with
//! `cargo build -p kiln -p kiln-worker` (nothing to do when they are current).

#[path = "reference/corpus.rs"]
mod corpus;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `target/debug` (or wherever this test binary was built).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/steps_e2e-HASH
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// `kiln` and `kiln-worker`, built from this tree (cargo does nothing when they are current;
/// binaries left by an older build would test old code).
fn binaries() -> (PathBuf, PathBuf) {
    let dir = bin_dir();
    let (kiln, worker) = (dir.join("kiln"), dir.join("kiln-worker"));
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", "kiln", "-p", "kiln-worker"])
        .current_dir(workspace_root())
        .status()
        .expect("run cargo build");
    assert!(
        status.success(),
        "cargo build -p kiln -p kiln-worker failed"
    );
    assert!(
        kiln.exists() && worker.exists(),
        "{} lacks kiln and kiln-worker",
        dir.display()
    );
    (kiln, worker)
}

/// Python-like modules in the `code` source.
const CODE_DOCS: u64 = 80;

/// The sources under `root/data/tiny/`, the same on every machine: the committed license
/// texts as `web`, generated Python-like modules as `code`; returns what it is.
fn build_corpus(root: &Path) -> &'static str {
    let dest = root.join("data/tiny");
    fs::create_dir_all(&dest).unwrap();
    let line = |text: &str| serde_json::json!({ "text": text }).to_string() + "\n";
    let mut web = String::new();
    for (_, text) in corpus::license_texts() {
        web += &line(&text);
    }
    fs::write(dest.join("web.jsonl"), web).unwrap();
    let mut code = String::new();
    for seed in 0..CODE_DOCS {
        code += &line(&corpus::python_module(&mut corpus::Rng(seed)));
    }
    fs::write(dest.join("code.jsonl"), code).unwrap();
    "the license texts (web) and generated Python modules (code)"
}

struct Step {
    id: String,
    name: String,
    output: String,
}

fn data_steps(plan: &Value) -> Vec<Step> {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !matches!(s["kind"].as_str(), Some("train" | "evaluate")))
        .map(|s| Step {
            id: s["id"].as_str().unwrap().into(),
            name: s["name"].as_str().unwrap().into(),
            output: s["outputs"][0].as_str().unwrap().into(),
        })
        .collect()
}

fn worker(worker: &Path, run: &Path, src: &Path, step: &str, threads: &str) -> Command {
    let mut c = Command::new(worker);
    c.args(["--plan", "plan.json", "--step", step, "--source-root"])
        .arg(src)
        .args(["--threads", threads])
        .current_dir(run)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn run_ok(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed: {stderr}");
    stderr
}

/// Every file under `dir`, relative path → bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push((
            p.file_name().unwrap().to_string_lossy().into_owned(),
            fs::read(&p).unwrap(),
        ));
    }
    out.sort();
    out
}

/// Waits until `ready` holds while the child still runs, then SIGKILLs it. Panics if the
/// child finished first (the step was not killed midway).
fn kill_midway(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} finished ({status}) before it could be killed midway");
        }
        if ready() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{what} never got going"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(!status.success(), "{what} was killed");
}

/// The first entry of `dir` whose name starts with `prefix`.
fn find_entry(dir: &Path, prefix: &str) -> Option<PathBuf> {
    fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with(prefix)
            .then(|| e.path())
    })
}

/// Whether a file under `dir` has a name starting with `prefix`.
fn has_file(dir: &Path, prefix: &str) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
    })
}

#[test]
fn killed_steps_rerun_to_identical_outputs() {
    let (kiln, worker_bin) = binaries();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("project");
    eprintln!("corpus: {}", build_corpus(&src));
    let plan_path = tmp.path().join("plan.json");
    let out = Command::new(&kiln)
        .arg("plan")
        .arg(workspace_root().join("experiments/tiny.kiln"))
        .arg("-o")
        .arg(&plan_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kiln plan: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_str(&fs::read_to_string(&plan_path).unwrap()).unwrap();
    let steps = data_steps(&plan);
    let kinds: Vec<&str> = steps
        .iter()
        .map(|s| s.name.split('.').next().unwrap())
        .collect();
    for k in ["ingest", "train_tokenizer", "encode", "mix"] {
        assert!(kinds.contains(&k), "tiny.kiln's plan has no {k} step");
    }

    // Run A: straight through, one thread.
    let run_a = tmp.path().join("a");
    fs::create_dir_all(&run_a).unwrap();
    fs::copy(&plan_path, run_a.join("plan.json")).unwrap();
    for s in &steps {
        run_ok(worker(&worker_bin, &run_a, &src, &s.id, "1"), &s.name);
    }

    // Run B: two threads; the tokenizer, one encode and one mix killed midway first.
    let run_b = tmp.path().join("b");
    fs::create_dir_all(&run_b).unwrap();
    fs::copy(&plan_path, run_b.join("plan.json")).unwrap();
    let mut killed = 0;
    for s in &steps {
        let output = run_b.join(&s.output);
        let steps_dir = output.parent().unwrap().to_path_buf();
        // kiln_fsio's temporary directory: `.NAME.kiln-PID-RANDOM.tmp` beside the output.
        let tmp_prefix = format!(".{}.kiln-", output.file_name().unwrap().to_string_lossy());
        let kill_this = s.name == "train_tokenizer"
            || s.name.starts_with("encode.") && killed < 2
            || s.name == "mix.main";
        if kill_this {
            let mut child = worker(&worker_bin, &run_b, &src, &s.id, "2")
                .spawn()
                .unwrap();
            let pid = child.id();
            let tmp_dir = || find_entry(&steps_dir, &format!("{tmp_prefix}{pid}-"));
            // Killed once the step has begun writing its token shards into the temporary
            // directory (the tokenizer: once the step has started; it writes at the end).
            let want = if s.name == "train_tokenizer" {
                None
            } else {
                Some(".text_document.bin.kiln-")
            };
            kill_midway(&mut child, &s.name, || match (want, tmp_dir()) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(prefix), Some(dir)) => has_file(&dir, prefix),
            });
            killed += 1;
            assert!(!output.exists(), "{}: a killed step left an output", s.name);
            assert!(
                tmp_dir().is_some_and(|d| d.is_dir()),
                "{}: the killed step's temporary directory",
                s.name
            );
            let stderr = run_ok(worker(&worker_bin, &run_b, &src, &s.id, "2"), &s.name);
            assert!(stderr.contains("done in"), "{}: {stderr}", s.name);
            assert!(
                find_entry(&steps_dir, &tmp_prefix).is_none(),
                "{}: the stale temporary directory was removed",
                s.name
            );
        } else {
            run_ok(worker(&worker_bin, &run_b, &src, &s.id, "2"), &s.name);
        }
    }
    assert_eq!(killed, 3);

    for s in &steps {
        let a = files(&run_a.join(&s.output));
        let b = files(&run_b.join(&s.output));
        let names: Vec<&String> = a.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            b.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            "{}",
            s.name
        );
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            assert!(x == y, "{}: {name} differs between the runs", s.name);
        }
        let report: Value =
            serde_json::from_slice(&fs::read(run_a.join(&s.output).join("report.json")).unwrap())
                .unwrap();
        assert!(
            report["input_docs"].as_u64().is_some() && report["kept_docs"].as_u64().is_some(),
            "{}",
            s.name
        );
    }
    // The shards: Megatron-LM's files, with a mix as long as the phase asks.
    for s in steps
        .iter()
        .filter(|s| s.name.starts_with("encode.") || s.name.starts_with("mix."))
    {
        let dir = run_a.join(&s.output);
        assert!(dir.join("text_document.bin").exists() && dir.join("text_document.idx").exists());
    }
    let main = steps.iter().find(|s| s.name == "mix.main").unwrap();
    let report: Value =
        serde_json::from_slice(&fs::read(run_a.join(&main.output).join("report.json")).unwrap())
            .unwrap();
    let phase = &plan["schedule"]["phases"][0];
    assert!(report["train_tokens"].as_f64().unwrap() >= phase["tokens_trained"].as_f64().unwrap());

    // A done step is not run again.
    let stderr = run_ok(
        worker(&worker_bin, &run_a, &src, &main.id, "1"),
        "mix.main again",
    );
    assert!(stderr.contains("already done"), "{stderr}");
}

/// The filtering steps (exact and near dedup, the quality filters) through the worker, on
/// a plan of tiny.kiln with `dedup` and `quality` blocks added, over a corpus with planted
/// copies: each step's input is the previous step's output, the planted copies go, and
/// the reports add up.
#[test]
fn filtering_steps_run_from_a_plan() {
    let (kiln, worker_bin) = binaries();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("project");
    eprintln!("corpus: {}", build_corpus(&src));
    // Planted copies: 5 exact, 5 near (a sentence appended).
    let web_path = src.join("data/tiny/web.jsonl");
    let web = fs::read_to_string(&web_path).unwrap();
    let originals: Vec<Value> = web
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["text"]
                .as_str()
                .is_some_and(|t| t.split_whitespace().count() > 200)
        })
        .take(10)
        .collect();
    assert_eq!(originals.len(), 10, "the corpus has long documents to copy");
    let mut planted = web.clone();
    for (i, v) in originals.iter().enumerate() {
        let text = v["text"].as_str().unwrap();
        let copy = if i < 5 {
            text.to_string()
        } else {
            format!("{text}\nThis sentence was appended to make a near copy.")
        };
        planted += &(serde_json::json!({ "text": copy }).to_string() + "\n");
    }
    fs::write(&web_path, planted).unwrap();

    // The calibrated cluster is a project file: use a standard-library one from the
    // temporary directory.
    let tiny = fs::read_to_string(workspace_root().join("experiments/tiny.kiln"))
        .unwrap()
        .replace(
            "import \"../calibration/this_machine.kiln\"",
            "import std.clusters.dgx_h100_pod",
        )
        .replace(
            "cluster = this_machine_cluster",
            "cluster = dgx_h100_pod { nodes = 1 }",
        )
        // 64 sequences per step over 8 GPUs: micro-batches of 4.
        .replace("micro_batch = 32", "micro_batch = 4");
    let blocks = "  seed = 0\n  dedup {\n    exact = bloom { false_positive = 1e-6 }\n    near = minhash { ngram = 5, bands = 14, rows = 8 }\n  }\n  quality { heuristic = [gopher, c4, fineweb] }\n";
    assert!(tiny.contains("  seed = 0\n"));
    let kiln_file = src.join("filtered.kiln");
    fs::write(&kiln_file, tiny.replacen("  seed = 0\n", blocks, 1)).unwrap();
    let run = tmp.path().join("run");
    fs::create_dir_all(&run).unwrap();
    let out = Command::new(&kiln)
        .arg("plan")
        .arg(&kiln_file)
        .arg("-o")
        .arg(run.join("plan.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kiln plan: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value =
        serde_json::from_str(&fs::read_to_string(run.join("plan.json")).unwrap()).unwrap();
    let steps = data_steps(&plan);
    let chain = [
        "ingest.web",
        "exact_dedup.web",
        "near_dedup.web",
        "quality_filter.web",
    ];
    let mut reports = Vec::new();
    for name in chain {
        let s = steps
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no step {name}"));
        run_ok(worker(&worker_bin, &run, &src, &s.id, "2"), name);
        let r: Value =
            serde_json::from_slice(&fs::read(run.join(&s.output).join("report.json")).unwrap())
                .unwrap();
        reports.push(r);
    }
    for w in reports.windows(2) {
        assert_eq!(
            w[0]["kept_docs"], w[1]["input_docs"],
            "{} → {}",
            w[0]["step"], w[1]["step"]
        );
    }
    let n = |r: &Value, k: &str| r[k].as_u64().unwrap();
    assert!(n(&reports[1]["removed"], "exact") >= 5, "{}", reports[1]);
    assert!(n(&reports[2]["removed"], "near") >= 5, "{}", reports[2]);
    let q = &reports[3];
    assert_eq!(
        n(q, "input_docs") - n(q, "kept_docs"),
        q["removed"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        "every removed document is charged to a rule: {q}"
    );
    assert!(q["removed"]
        .as_object()
        .unwrap()
        .keys()
        .any(|k| k.starts_with("c4.")));
    // The kept documents carry the source's ids through every step.
    let docs = zstd::decode_all(
        fs::File::open(
            run.join(
                &steps
                    .iter()
                    .find(|s| s.name == "quality_filter.web")
                    .unwrap()
                    .output,
            )
            .join("docs.jsonl.zst"),
        )
        .unwrap(),
    )
    .unwrap();
    let first: Value = serde_json::from_slice(docs.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert!(
        first["id"]
            .as_str()
            .unwrap()
            .starts_with("data/tiny/web.jsonl:"),
        "{first}"
    );
}

/// The plan crate's types read the compiler's plan: another version is refused, an unknown
/// step kind and a missing `zero` are errors that name them (never a default), and steps are
/// found by id or name.
#[test]
fn plan_structs_read_the_compilers_plan() {
    use kiln_data::plan::{Plan, PlanError, StepKind};
    let (kiln, _) = binaries();
    let out = Command::new(&kiln)
        .arg("plan")
        .arg(workspace_root().join("experiments/tiny.kiln"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let plan = Plan::from_json(&text).unwrap();
    assert_eq!(plan.experiment.sources.len(), 2);
    let enc = plan.step("encode.web").unwrap();
    assert_eq!(enc.kind(), StepKind::Encode);
    assert_eq!(plan.step(&enc.id).unwrap().name, "encode.web");
    assert!(matches!(plan.step("nope"), Err(PlanError::NoStep(_))));

    let original: Value = serde_json::from_str(&text).unwrap();
    let mut v = original.clone();
    v["steps"][0]["kind"] = "distill".into();
    match Plan::from_json(&v.to_string()) {
        Err(PlanError::Parse(why)) => assert!(why.contains("distill"), "{why}"),
        other => panic!("an unknown step kind parsed: {other:?}"),
    }
    let mut v = original.clone();
    v["experiment"]["parallel"]
        .as_object_mut()
        .unwrap()
        .remove("zero");
    match Plan::from_json(&v.to_string()) {
        Err(PlanError::Parse(why)) => assert!(why.contains("missing field `zero`"), "{why}"),
        other => panic!("a plan without `zero` parsed: {other:?}"),
    }
    let mut v = original;
    v["version"] = 99.into();
    assert!(matches!(
        Plan::from_json(&v.to_string()),
        Err(PlanError::Version(99))
    ));
    assert!(matches!(Plan::from_json("{}"), Err(PlanError::Parse(_))));
}
