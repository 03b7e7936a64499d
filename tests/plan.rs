//! The run plan: schema validity, determinism, topology, the step graph's content hashes,
//! schedules, and the launch files of every target (snapshots, shell and format checks).

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn kiln(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(common::root())
        .output()
        .unwrap()
}

/// experiments/tiny.kiln as a text that plans from any directory: its calibrated cluster
/// (a project file) replaced by a standard-library one of 8 GPUs, with micro-batches of 4
/// so that its 64 sequences per step still split (4 × 8 data × 2 accumulation).
fn tiny_anywhere() -> String {
    anywhere("experiments/tiny.kiln")
}

/// A CPU demo experiment on the standard library's cluster (see [`tiny_anywhere`]).
fn anywhere(path: &str) -> String {
    std::fs::read_to_string(common::root().join(path))
        .unwrap()
        .replace(
            "import \"../calibration/this_machine.kiln\"",
            "import std.clusters.dgx_h100_pod",
        )
        .replace(
            "cluster = this_machine_cluster",
            "cluster = dgx_h100_pod { nodes = 1 }",
        )
        .replace("micro_batch = 32", "micro_batch = 4")
}

fn plan_text(path: &str) -> String {
    let out = kiln(&["plan", path]);
    assert!(
        out.status.success(),
        "{path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn plan_of_text(name: &str, text: &str) -> Value {
    std::env::set_current_dir(common::root()).unwrap();
    let dir = std::env::temp_dir().join(format!("kiln-plan-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.kiln"));
    std::fs::write(&file, text).unwrap();
    let (checked, plans) = kiln::plan_paths(&[file], &kiln::load::FsLoader, &[]).unwrap();
    assert_eq!(checked.errors(), 0, "{}", common::render(&checked));
    serde_json::to_value(&plans[0].1).unwrap()
}

/// Every experiment's plan validates against `kiln schema` with an independent validator
/// (the `jsonschema` crate, which shares no code with schemars).
#[test]
fn plans_validate_against_the_schema() {
    let out = kiln(&["schema"]);
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
    for path in common::kiln_files("experiments")
        .into_iter()
        .chain(common::kiln_files("experiments/reference"))
    {
        let rel = path
            .strip_prefix(common::root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let plan: Value = serde_json::from_str(&plan_text(&rel)).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&plan)
            .take(5)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{rel}: {errors:?}");
    }
}

#[test]
fn the_same_input_gives_a_byte_identical_plan() {
    for path in ["experiments/tiny.kiln", "experiments/llama3_405b.kiln"] {
        assert_eq!(plan_text(path), plan_text(path), "{path}");
    }
}

/// Groups partition the world; tensor groups stay in a node; coordinates match the rank
/// lists; the sizes multiply to the world.
#[test]
fn topology_invariants() {
    for path in [
        "experiments/tiny.kiln",
        "experiments/llama3_8b.kiln",
        "experiments/llama3_405b.kiln",
        "experiments/gpt3_175b.kiln",
        "experiments/reference/narayanan_145_6b.kiln",
    ] {
        let plan: Value = serde_json::from_str(&plan_text(path)).unwrap();
        let t = &plan["topology"];
        let n = |k: &str| t[k].as_u64().unwrap();
        let world = n("world");
        assert_eq!(
            n("tensor") * n("context") * n("data") * n("pipeline"),
            world,
            "{path}"
        );
        assert_eq!(n("nodes") * n("gpus_per_node"), world, "{path}");
        let ranks = t["ranks"].as_array().unwrap();
        assert_eq!(ranks.len() as u64, world);
        for (dim, size) in [
            ("tensor", n("tensor")),
            ("context", n("context")),
            ("data", n("data")),
            ("pipeline", n("pipeline")),
        ] {
            let groups = t["groups"][dim].as_array().unwrap();
            assert_eq!(groups.len() as u64, world / size, "{path} {dim}");
            let mut seen = vec![false; world as usize];
            for group in groups {
                let members: Vec<u64> = group
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_u64().unwrap())
                    .collect();
                assert_eq!(members.len() as u64, size, "{path} {dim}");
                for (i, &r) in members.iter().enumerate() {
                    assert!(!seen[r as usize], "{path}: rank {r} in two {dim} groups");
                    seen[r as usize] = true;
                    // The coordinate of a member in its own dimension is its index in the group.
                    assert_eq!(
                        ranks[r as usize][dim].as_u64().unwrap(),
                        i as u64,
                        "{path} {dim}"
                    );
                }
                // Members agree on every other coordinate.
                for other in ["tensor", "context", "data", "pipeline"]
                    .iter()
                    .filter(|o| **o != dim)
                {
                    let first = ranks[members[0] as usize][*other].clone();
                    assert!(
                        members.iter().all(|&r| ranks[r as usize][*other] == first),
                        "{path}: {dim} group mixes {other}"
                    );
                }
                if dim == "tensor" {
                    let node = ranks[members[0] as usize]["node"].clone();
                    assert!(
                        members.iter().all(|&r| ranks[r as usize]["node"] == node),
                        "{path}: tensor group across nodes"
                    );
                }
            }
            assert!(
                seen.iter().all(|s| *s),
                "{path}: {dim} groups do not cover the world"
            );
        }
        for r in ranks {
            assert_eq!(
                r["node"].as_u64().unwrap() * n("gpus_per_node")
                    + r["local_rank"].as_u64().unwrap(),
                r["rank"].as_u64().unwrap()
            );
        }
    }
}

fn ids(plan: &Value) -> Vec<(String, String)> {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A changed parameter changes the id of its step and of every step downstream, and of no
/// other step.
#[test]
fn a_changed_parameter_reruns_exactly_the_steps_downstream() {
    let base = tiny_anywhere();
    let before = ids(&plan_of_text("base", &base));
    let cases: [(&str, &str, &[&str]); 3] = [
        // The anneal's learning rate: only its training step and evaluation.
        (
            "lr = linear { to = 0 }",
            "lr = linear { to = 0, from = 1e-4 }",
            &["train.anneal", "evaluate"],
        ),
        // A source's path: its ingest and everything after it, including the tokenizer.
        (
            "path = \"data/tiny/code.jsonl\"",
            "path = \"data/tiny/code2.jsonl\"",
            &[
                "ingest.code",
                "train_tokenizer",
                "encode.web",
                "encode.code",
                "mix.main",
                "train.main",
                "mix.anneal",
                "train.anneal",
                "evaluate",
            ],
        ),
        // The anneal's mix: its mix step, its training and evaluation.
        (
            "mix { web = 50%, code = 50% }",
            "mix { web = 40%, code = 60% }",
            &["mix.anneal", "train.anneal", "evaluate"],
        ),
    ];
    for (from, to, changed) in cases {
        assert_changed_steps(&base, &before, from, to, changed);
    }
}

/// Replacing `from` by `to` in `base` changes the ids of exactly the steps `changed` (in
/// plan order), against `before`, the ids of `base`'s plan.
fn assert_changed_steps(
    base: &str,
    before: &[(String, String)],
    from: &str,
    to: &str,
    changed: &[&str],
) {
    assert!(base.contains(from), "{from}");
    let after = ids(&plan_of_text("changed", &base.replacen(from, to, 1)));
    assert_eq!(before.len(), after.len());
    let differing: Vec<&str> = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, _)| a.0.as_str())
        .collect();
    assert_eq!(differing, changed, "changing `{from}`");
}

/// The model-based filter's chain (experiments/tiny_quality.kiln): a changed sample size,
/// scoring method (a rating prompt), or scorer re-runs exactly the steps that read it.
#[test]
fn the_quality_chain_reruns_exactly_what_depends_on_it() {
    let base = anywhere("experiments/tiny_quality.kiln");
    let before = ids(&plan_of_text("quality", &base));
    // Everything the filtered corpus feeds.
    let main = [
        "train_tokenizer",
        "encode.web",
        "mix.main",
        "train.main",
        "evaluate",
    ];
    let with = |first: &[&'static str]| -> Vec<&'static str> {
        first.iter().copied().chain(main).collect()
    };
    let scored = ["score.web", "train_classifier", "quality_filter.web"];
    let cases: [(&str, &str, Vec<&str>); 4] = [
        (
            "sample = 1000",
            "sample = 900",
            with(&[
                "sample.web",
                "score.web",
                "train_classifier",
                "quality_filter.web",
            ]),
        ),
        (
            "method = perplexity",
            "method = rating { prompt = \"Grade 0-5: {document}\\nGrade:\" }",
            with(&scored),
        ),
        (
            "tokens = 400K",
            "tokens = 300K",
            [&["mix.scorer.ref", "train.scorer.ref"][..], &scored[..]]
                .concat()
                .into_iter()
                .chain(main)
                .collect(),
        ),
        // The KL threshold: the reference step and the filters, not the scores.
        (
            "max = p99",
            "max = p95",
            with(&["kl_reference", "quality_filter.web"]),
        ),
    ];
    for (from, to, changed) in cases {
        assert_changed_steps(&base, &before, from, to, &changed);
    }
}

#[test]
fn schedules_in_optimizer_steps() {
    let plan: Value = serde_json::from_str(&plan_text("experiments/tiny.kiln")).unwrap();
    let s = &plan["schedule"];
    let phases = s["phases"].as_array().unwrap();
    assert_eq!(phases[0]["start_step"], 0);
    assert_eq!(phases[1]["start_step"], phases[0]["steps"]);
    let total: u64 = phases.iter().map(|p| p["steps"].as_u64().unwrap()).sum();
    assert_eq!(s["total_steps"].as_u64().unwrap(), total);
    // Phase boundaries carry the learning rate over: the anneal starts where the cosine ends.
    // tiny.kiln: cosine { peak = 1e-2, warmup = 30 steps, final = 1e-3 }, then linear to 0.
    let lr0: kiln::plan::schedule::LrSchedule = kiln::plan::schedule::LrSchedule::Cosine {
        peak: 1e-2,
        warmup_steps: 30,
        final_lr: 1e-3,
    };
    assert_eq!(phases[0]["lr"]["peak"].as_f64().unwrap(), 1e-2);
    let steps0 = phases[0]["steps"].as_u64().unwrap();
    assert!(
        (lr0.at(29, steps0) - 1e-2).abs() < 1e-15,
        "warm-up reaches the peak at its last step"
    );
    assert!((lr0.at(steps0, steps0) - 1e-3).abs() < 1e-15);
    assert_eq!(phases[1]["lr"]["from"].as_f64().unwrap(), 1e-3);
    let lr1 = kiln::plan::schedule::LrSchedule::Linear {
        from: 1e-3,
        to: 0.0,
    };
    assert_eq!(
        lr1.at(
            phases[1]["steps"].as_u64().unwrap(),
            phases[1]["steps"].as_u64().unwrap()
        ),
        0.0
    );
}

/// `kiln emit` for one target into a fresh directory; `tag` keeps the directories of tests
/// running in parallel apart.
fn emit(tag: &str, path: &str, target: &str) -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!(
        "kiln-emit-{}-{tag}-{}-{target}",
        std::process::id(),
        Path::new(path).file_stem().unwrap().to_str().unwrap()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let out = kiln(&[
        "emit",
        path,
        "--target",
        target,
        "-o",
        dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stem = Path::new(path).file_stem().unwrap().to_str().unwrap();
    if REFUSED.contains(&(stem, target)) {
        // The engine's start-up rules refuse the layout: nothing is written, and the
        // snapshot shows the K-E002 that says why.
        assert_eq!(out.status.code(), Some(1), "{path} {target}: {stderr}");
        assert!(
            stderr.contains("error[K-E002]"),
            "{path} {target}: {stderr}"
        );
        assert!(
            !dir.exists(),
            "{path} {target}: files written for a refused layout"
        );
        std::fs::create_dir_all(&dir).unwrap();
        return (dir, stderr);
    }
    assert!(out.status.success(), "{path} {target}: {stderr}");
    (dir, stderr)
}

/// Experiments whose layout an engine target refuses at start-up: Llama 3 405B's pipeline
/// of 16 with ZeRO-2 (FSDP in the paper) is one DeepSpeed's PipelineEngine refuses.
const REFUSED: &[(&str, &str)] = &[
    ("llama3_405b", "deepspeed"),
    ("llama3_405b_ramp", "deepspeed"),
];

/// Large plans are summarised in snapshots: the first ranks and groups, and the counts.
fn summarise(plan: &mut Value) {
    let t = &mut plan["topology"];
    if let Some(ranks) = t["ranks"].as_array_mut() {
        if ranks.len() > 16 {
            let n = ranks.len();
            ranks.truncate(4);
            ranks.push(Value::String(format!("… {} ranks in all", n)));
        }
    }
    for dim in ["tensor", "context", "data", "pipeline"] {
        if let Some(groups) = t["groups"][dim].as_array_mut() {
            if groups.len() > 4 {
                let n = groups.len();
                groups.truncate(2);
                groups.push(Value::String(format!("… {n} groups in all")));
            }
            for g in groups.iter_mut() {
                if let Some(members) = g.as_array_mut() {
                    if members.len() > 16 {
                        let n = members.len();
                        members.truncate(4);
                        members.push(Value::String(format!("… {n} ranks")));
                    }
                }
            }
        }
    }
}

#[test]
fn snapshots_of_plans_and_emitted_files() {
    // gpt3_175b and llama3_405b_ramp: the linear and the staged batch ramp.
    for exp in [
        "tiny",
        "llama3_8b",
        "llama3_405b",
        "gpt3_175b",
        "llama3_405b_ramp",
    ] {
        let path = format!("experiments/{exp}.kiln");
        let mut plan: Value = serde_json::from_str(&plan_text(&path)).unwrap();
        summarise(&mut plan);
        insta::with_settings!({ snapshot_path => "snapshots/plan", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(format!("{exp}.plan"), serde_json::to_string_pretty(&plan).unwrap());
        });
        for target in [
            "local",
            "slurm",
            "kubernetes",
            "megatron",
            "torchtitan",
            "deepspeed",
        ] {
            snapshot_emitted(exp, target);
        }
    }
}

/// The files `kiln emit --target TARGET` writes for `experiments/EXP.kiln` (its plan aside)
/// and its diagnostics, as one snapshot `EXP.TARGET`.
fn snapshot_emitted(exp: &str, target: &str) {
    let path = format!("experiments/{exp}.kiln");
    let (dir, stderr) = emit("snapshot", &path, target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        // The plan is snapshotted on its own; the manifest holds the files' hashes.
        .filter(|p| {
            let name = p.file_name().unwrap();
            name != "plan.json" && name != kiln::emit::write::MANIFEST
        })
        .collect();
    files.sort();
    let mut text = format!("----- kiln emit diagnostics -----\n{stderr}");
    for f in &files {
        text += &format!(
            "\n----- {} -----\n{}",
            f.file_name().unwrap().to_str().unwrap(),
            std::fs::read_to_string(f).unwrap()
        );
    }
    insta::with_settings!({ snapshot_path => "snapshots/emit", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(format!("{exp}.{target}"), text.replace(dir.to_str().unwrap(), "OUT"));
    });
    std::fs::remove_dir_all(&dir).ok();
}

/// The engine configs of the published runs whose models use the recipe features: GPT-NeoX-20B
/// (partial rotary, the parallel block with two norms: Megatron-LM's --rotary-percent, a
/// K-E001 for the block) and BLOOM-176B (ALiBi and the embedding norm: K-E001s).
#[test]
fn snapshots_of_recipe_feature_engine_configs() {
    for exp in ["gpt_neox_20b", "bloom_176b"] {
        for target in ["megatron", "torchtitan", "deepspeed"] {
            snapshot_emitted(exp, target);
        }
    }
}

/// Emitted shell scripts pass `bash -n` and `shellcheck`; YAML and JSON parse.
#[test]
fn emitted_files_are_well_formed() {
    let shellcheck = Command::new("shellcheck").arg("--version").output().is_ok();
    for exp in [
        "tiny",
        "llama3_8b",
        "llama3_405b",
        "gpt3_175b",
        "llama3_405b_ramp",
    ] {
        let path = format!("experiments/{exp}.kiln");
        for target in [
            "local",
            "slurm",
            "kubernetes",
            "megatron",
            "torchtitan",
            "deepspeed",
        ] {
            let (dir, _) = emit("checks", &path, target);
            for entry in std::fs::read_dir(&dir).unwrap() {
                let f = entry.unwrap().path();
                let text = std::fs::read_to_string(&f).unwrap();
                match f.extension().and_then(|e| e.to_str()).unwrap_or("") {
                    "sh" | "sbatch" => {
                        let n = Command::new("bash").arg("-n").arg(&f).output().unwrap();
                        assert!(
                            n.status.success(),
                            "{}: {}",
                            f.display(),
                            String::from_utf8_lossy(&n.stderr)
                        );
                        if shellcheck {
                            let sc = Command::new("shellcheck").arg(&f).output().unwrap();
                            assert!(
                                sc.status.success(),
                                "{}: {}",
                                f.display(),
                                String::from_utf8_lossy(&sc.stdout)
                            );
                        }
                    }
                    "json" => {
                        serde_json::from_str::<Value>(&text)
                            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                    }
                    "yaml" | "yml" => {
                        for doc in serde_yaml::Deserializer::from_str(&text) {
                            serde_yaml::Value::deserialize_from(doc, f.display());
                        }
                    }
                    _ => {}
                }
            }
            std::fs::remove_dir_all(&dir).ok();
        }
    }
    assert!(
        shellcheck || std::env::var_os("CI").is_none(),
        "CI installs shellcheck"
    );
}

trait DeserializeFrom {
    fn deserialize_from(doc: serde_yaml::Deserializer, what: std::path::Display);
}

impl DeserializeFrom for serde_yaml::Value {
    fn deserialize_from(doc: serde_yaml::Deserializer, what: std::path::Display) {
        use serde::Deserialize;
        serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

/// Strings that reach a shell cannot run a command: a hostile source path and text field,
/// through every target, and the local script run with stand-in programs.
#[test]
fn hostile_strings_cannot_inject_commands() {
    let dir = std::env::temp_dir().join(format!("kiln-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let canary = dir.join("pwned");
    let payload = format!(
        "x'; touch {0}; echo '$(touch {0})`touch {0}`\"; touch {0}; \"",
        canary.display()
    );
    let base = tiny_anywhere();
    let text = base.replace(
        "path = \"data/tiny/web.jsonl\"",
        &format!(
            "path = {}, text_field = {}",
            kiln::syntax::parse::escape(&payload),
            kiln::syntax::parse::escape(&payload)
        ),
    );
    assert_ne!(text, base);
    let file = dir.join("hostile.kiln");
    std::fs::write(&file, text).unwrap();
    // Stand-ins for the worker and mpirun that only record their arguments.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for prog in ["kiln-worker", "mpirun"] {
        let p = bin.join(prog);
        std::fs::write(
            &p,
            "#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/calls\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for target in [
        "local",
        "slurm",
        "kubernetes",
        "megatron",
        "torchtitan",
        "deepspeed",
    ] {
        let out_dir = dir.join(target);
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args([
                "emit",
                file.to_str().unwrap(),
                "--target",
                target,
                "-o",
                out_dir.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for entry in std::fs::read_dir(&out_dir).unwrap() {
            let f = entry.unwrap().path();
            if matches!(
                f.extension().and_then(|e| e.to_str()),
                Some("sh" | "sbatch")
            ) {
                let n = Command::new("bash").arg("-n").arg(&f).output().unwrap();
                assert!(
                    n.status.success(),
                    "{}: {}",
                    f.display(),
                    String::from_utf8_lossy(&n.stderr)
                );
            }
        }
    }
    let run = Command::new("bash")
        .arg(dir.join("local/run.sh"))
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!canary.exists(), "a declared string ran a command");
    std::fs::remove_dir_all(&dir).ok();
}

/// A source's `max_document_bytes` reaches its ingest step (the data runtime's limit);
/// left out, the step carries none and the runtime's default applies.
#[test]
fn a_sources_document_limit_reaches_its_ingest_step() {
    let limit = |plan: &Value, source: &str| {
        plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == format!("ingest.{source}"))
            .unwrap()["params"]["max_document_bytes"]
            .clone()
    };
    let text = tiny_anywhere();
    let plan = plan_of_text("doc_limit_default", &text);
    assert_eq!(limit(&plan, "web"), Value::Null);
    let text = text.replacen(
        "source web {",
        "source web {\n    max_document_bytes = 4MiB",
        1,
    );
    let plan = plan_of_text("doc_limit", &text);
    assert_eq!(limit(&plan, "web"), serde_json::json!(4194304));
    assert_eq!(limit(&plan, "code"), Value::Null);
}

/// The one contract: every experiment's plan, written by the compiler, is read by the
/// runtime's type (`kiln_plan::RunPlan`, the analysis as JSON) and written back unchanged.
#[test]
fn the_runtime_reads_every_experiments_plan() {
    let mut read = 0;
    for path in common::kiln_files("experiments") {
        let (checked, plans) =
            kiln::plan_paths(std::slice::from_ref(&path), &kiln::load::FsLoader, &[]).unwrap();
        assert_eq!(checked.errors(), 0, "{}", path.display());
        for (name, plan) in plans {
            let written = serde_json::to_value(&plan).unwrap();
            let runtime: kiln_plan::RunPlan = kiln_plan::RunPlan::from_json(&written.to_string())
                .unwrap_or_else(|e| panic!("{}: {name}: {e}", path.display()));
            assert_eq!(runtime.version, kiln_plan::PLAN_VERSION);
            let back = serde_json::to_value(&runtime).unwrap();
            let mut differences = Vec::new();
            differ("", &written, &back, &mut differences);
            assert!(
                differences.is_empty(),
                "{}: {name} reads back differently at {differences:?}",
                path.display()
            );
            read += 1;
        }
    }
    assert!(read >= 5, "{read} plans");
}

/// The JSON pointers where `a` and `b` differ (at most 10).
fn differ(at: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if out.len() >= 10 {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let (u, v) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                differ(&format!("{at}/{k}"), u, v, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                differ(&format!("{at}/{i}"), u, v, out);
            }
        }
        _ if a != b => out.push(format!("{at}: {a} vs {b}")),
        _ => {}
    }
}
