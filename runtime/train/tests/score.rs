//! The `score` step: perplexity equals minus the mean next-token loss computed one document
//! at a time with the model's own forward, and batching does not change it; a rating whose
//! replies hold no grade scores null and counts it, and one that does equals the grade of an
//! independently decoded reply; a plan's trained scorer and the same model as a checkpoint
//! directory score alike, and the likelihood ratio is the difference of two perplexities;
//! malformed inputs are errors naming the file or step.
//!
//! The Hugging Face scorer is the committed fixture `tests/fixtures/hf_llama` (vocabulary 96,
//! seq_len 32) with a character-level tokenizer written by the test (`common`): kiln's
//! tokenizer trainer needs at least 257 tokens. The resume test of `kiln-worker score` (a
//! kill and a torn tail) is in runtime/worker/tests/score.rs.

mod common;

use std::path::{Path, PathBuf};

use kiln_data::ingest::{Document, JsonlWriter};
use kiln_plan::run_dir::{DOCS_FILE, REPORT_FILE};
use kiln_train::score::{self, ScoreLine, ScoreReport, SCORES_FILE};
use kiln_train::spec::{Plan, Precision};
use kiln_train::{StepOutcome, TrainError};
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_llama")
}

/// The fixture model with a character tokenizer (with or without digits) in `dir`.
fn hf_scorer(dir: &Path, digits: bool) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture().join(f), dir.join(f)).unwrap();
    }
    common::write_char_tokenizer(dir, &common::printable_ascii(digits));
    dir.to_path_buf()
}

/// Deterministic documents of printable ASCII, 0 to ~60 characters (the first two too short
/// to score: no text, one character).
fn documents(n: usize, seed: u64) -> Vec<Document> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let words = [
        "the", "model", "reads", "a", "document", "and", "scores", "it", "tokens", "of", "web",
        "text", "quality", "is", "high", "low", "Hello,", "world!", "data", "filter",
    ];
    (0..n)
        .map(|i| {
            let text = match i {
                0 => String::new(),
                1 => "x".into(),
                _ => {
                    let count = 1 + next() % 12;
                    (0..count)
                        .map(|_| words[(next() % words.len() as u64) as usize])
                        .collect::<Vec<_>>()
                        .join(" ")
                }
            };
            Document {
                id: format!("doc-{i}"),
                text,
            }
        })
        .collect()
}

fn step_id(name: &str) -> String {
    format!(
        "{:016x}",
        kiln_train::data::derive_key(1, &[name.as_bytes()])
    )
}

fn cpu() -> Value {
    json!({"ranks": 1, "nodes": 1, "gpus_per_rank": 0, "predicted_seconds": null})
}

/// A plan step's JSON.
fn step(name: &str, kind: &str, inputs: Vec<String>, params: Value) -> Value {
    let id = step_id(name);
    json!({
        "id": id, "kind": kind, "name": name, "inputs": inputs,
        "outputs": [format!("steps/{name}-{id}")],
        "params": params, "resources": cpu(),
        "command": ["kiln-worker", "--plan", "plan.json", "--step", id]
    })
}

/// The sample step of source `web` (its output written with `docs`) and score steps, added
/// to `plan`; the plan written to `run_dir` and loaded.
fn with_score_steps(
    mut plan: Value,
    run_dir: &Path,
    docs: &[Document],
    scores: &[(&str, Value, Vec<String>)],
) -> Plan {
    let sample = step(
        "sample.web",
        "sample",
        vec![],
        json!({"source": "web", "docs": docs.len(), "seed": 0}),
    );
    let sample_dir = run_dir.join(sample["outputs"][0].as_str().unwrap());
    let mut w = JsonlWriter::create(&sample_dir.join(DOCS_FILE)).unwrap();
    for d in docs {
        w.write(d).unwrap();
    }
    w.finish().unwrap();
    let sample_id = sample["id"].as_str().unwrap().to_string();
    let steps = plan["steps"].as_array_mut().unwrap();
    steps.push(sample);
    for (name, params, extra) in scores {
        let mut inputs = vec![sample_id.clone()];
        inputs.extend(extra.iter().cloned());
        steps.push(step(name, "score", inputs, params.clone()));
    }
    std::fs::write(
        run_dir.join("plan.json"),
        serde_json::to_string_pretty(&plan).unwrap(),
    )
    .unwrap();
    Plan::from_value(plan).unwrap()
}

fn score_params(scorer: Value, method: Value, max_tokens: u64, batch_docs: u64) -> Value {
    json!({"source": "web", "scorer": scorer, "method": method,
           "max_tokens": max_tokens, "batch_docs": batch_docs})
}

fn hf(path: &Path) -> Value {
    json!({"kind": "hugging_face", "path": path.display().to_string()})
}

fn run(plan: &Plan, run_dir: &Path, name: &str) -> Result<StepOutcome, TrainError> {
    kiln_train::run_step(plan, name, run_dir, &common::options())
}

/// The score step's lines and report.
fn read_scores(plan: &Plan, run_dir: &Path, name: &str) -> (Vec<ScoreLine>, ScoreReport) {
    let out = common::output_of(plan, run_dir, name);
    let lines = std::fs::read_to_string(out.join(SCORES_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let report =
        serde_json::from_str(&std::fs::read_to_string(out.join(REPORT_FILE)).unwrap()).unwrap();
    (lines, report)
}

/// Minus the mean next-token loss of `ids` under `model`, one document alone through
/// `Model::logits` (no padding, no chunking).
fn independent_score(model: &kiln_train::model::Model, ids: &[u32]) -> Option<f64> {
    if ids.len() < 2 {
        return None;
    }
    let x: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
    let n = x.len() as i64;
    let input = Tensor::from_slice(&x[..x.len() - 1]).view([1, n - 1]);
    let target = Tensor::from_slice(&x[1..]).view([n - 1, 1]);
    let logits = tch::no_grad(|| model.logits(&input, false)).to_kind(Kind::Double);
    let logp = logits.view([n - 1, -1]).log_softmax(-1, Kind::Double);
    let nll = -logp.gather(1, &target, false).mean(Kind::Double);
    Some(-nll.double_value(&[]))
}

#[test]
fn perplexity_is_minus_the_mean_loss_and_batching_does_not_change_it() {
    let _guard = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let model_dir = hf_scorer(&dir.path().join("model"), true);
    let run_dir = dir.path().join("run");
    let docs = documents(23, 3);
    let base = common::plan_json(&common::RunDef::small("fp32"));
    let (max_tokens, seq_len) = (24u64, 32u64);
    let plan = with_score_steps(
        base,
        &run_dir,
        &docs,
        &[
            (
                "score.batched",
                score_params(hf(&model_dir), json!({"kind": "perplexity"}), max_tokens, 5),
                vec![],
            ),
            (
                "score.single",
                score_params(hf(&model_dir), json!({"kind": "perplexity"}), max_tokens, 1),
                vec![],
            ),
            (
                "score.long",
                score_params(hf(&model_dir), json!({"kind": "perplexity"}), 1000, 7),
                vec![],
            ),
        ],
    );
    for name in ["score.batched", "score.single", "score.long"] {
        match run(&plan, &run_dir, name).unwrap() {
            StepOutcome::Scored(r) => assert_eq!(r.input_docs, docs.len() as u64),
            other => panic!("{name}: {other:?}"),
        }
    }
    let model = kiln_train::hf::load(&model_dir, Precision::Fp32, Device::Cpu).unwrap();
    let tokenizer = kiln_data::tokenize::load(&model_dir).unwrap();
    let (batched, report) = read_scores(&plan, &run_dir, "score.batched");
    let (single, _) = read_scores(&plan, &run_dir, "score.single");
    let (long, long_report) = read_scores(&plan, &run_dir, "score.long");
    assert_eq!(batched.len(), docs.len());
    let mut worst: f64 = 0.0;
    let mut worst_batching: f64 = 0.0;
    for (limit, lines) in [(max_tokens, &batched), (seq_len, &long)] {
        for (doc, line) in docs.iter().zip(lines.iter()) {
            assert_eq!((&line.id, &line.text), (&doc.id, &doc.text));
            let mut ids = tokenizer
                .encode(doc.text.as_str(), true)
                .unwrap()
                .get_ids()
                .to_vec();
            ids.truncate(limit as usize);
            assert_eq!(line.tokens, ids.len() as u64, "{}", doc.id);
            let want = independent_score(&model, &ids);
            match (line.score, want) {
                (None, None) => {}
                (Some(got), Some(want)) => worst = worst.max((got - want).abs()),
                other => panic!("{}: {other:?}", doc.id),
            }
        }
    }
    for (b, s) in batched.iter().zip(&single) {
        assert_eq!((b.tokens, b.score.is_some()), (s.tokens, s.score.is_some()));
        if let (Some(x), Some(y)) = (b.score, s.score) {
            worst_batching = worst_batching.max((x - y).abs());
        }
    }
    println!("largest difference from the independent loss {worst:.3e}; batched vs one at a time {worst_batching:.3e}");
    assert!(worst < 1e-5, "{worst}");
    assert!(worst_batching < 1e-5, "{worst_batching}");
    // Capped at the model's seq_len.
    assert!(long.iter().all(|l| l.tokens <= seq_len));
    assert!(long.iter().any(|l| l.tokens == seq_len));
    assert_eq!(long_report.seq_len, seq_len);

    // The report: counts, the scores' statistics, the settings; no time, no path of this
    // machine beyond the scorer's path as the plan wrote it.
    let scored: Vec<f64> = batched.iter().filter_map(|l| l.score).collect();
    assert_eq!(report.input_docs, 23);
    assert_eq!(
        report.null_scores, 2,
        "the empty and one-character documents"
    );
    assert_eq!(report.kept_docs, 21);
    assert_eq!(
        report.scored_tokens,
        batched.iter().map(|l| l.tokens).sum::<u64>()
    );
    let mean = scored.iter().sum::<f64>() / scored.len() as f64;
    assert!((report.mean_score.unwrap() - mean).abs() < 1e-12);
    assert_eq!(
        report.min_score.unwrap(),
        scored.iter().copied().fold(f64::INFINITY, f64::min)
    );
    assert_eq!(
        report.max_score.unwrap(),
        scored.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    );
    assert_eq!(report.settings.method, "perplexity");
    assert_eq!(
        (report.settings.batch_docs, report.settings.max_tokens),
        (5, Some(24))
    );
    let text = std::fs::read_to_string(
        common::output_of(&plan, &run_dir, "score.batched").join(REPORT_FILE),
    )
    .unwrap();
    for key in [
        "\"step\"",
        "\"id\"",
        "\"kind\"",
        "\"input_docs\"",
        "\"kept_docs\"",
        "\"scored_tokens\"",
        "\"null_scores\"",
        "\"mean_score\"",
        "\"method\"",
    ] {
        assert!(text.contains(key), "{key} in {text}");
    }
    assert!(!text.contains("seconds"), "{text}");
    // Each line has exactly the four keys.
    let out = common::output_of(&plan, &run_dir, "score.batched");
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(out.join(SCORES_FILE))
            .unwrap()
            .lines()
            .nth(2)
            .unwrap(),
    )
    .unwrap();
    let keys: Vec<&String> = first.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "score", "text", "tokens"]);
    // Done once: a re-run finds the output.
    assert!(matches!(
        run(&plan, &run_dir, "score.batched").unwrap(),
        StepOutcome::AlreadyScored(_)
    ));
    assert!(!run_dir
        .join(format!(
            "{}.partial",
            plan.step("score.batched").unwrap().output().unwrap()
        ))
        .exists());
}

/// Greedy decoding one document at a time through `Model::logits`, as an independent check
/// of the batched decoder: the reply's token ids.
fn independent_reply(
    model: &kiln_train::model::Model,
    prompt: &[u32],
    max_new: usize,
    stop: &[u32],
) -> Vec<u32> {
    let mut seq: Vec<i64> = prompt.iter().map(|&i| i64::from(i)).collect();
    let mut reply = Vec::new();
    for _ in 0..max_new {
        let n = seq.len() as i64;
        let logits = tch::no_grad(|| model.logits(&Tensor::from_slice(&seq).view([1, n]), false));
        let next = logits.get(0).get(n - 1).argmax(-1, false).int64_value(&[]) as u32;
        if stop.contains(&next) {
            break;
        }
        seq.push(i64::from(next));
        reply.push(next);
    }
    reply
}

#[test]
fn ratings_are_the_grade_in_the_reply_or_null() {
    let _guard = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let no_digits = hf_scorer(&dir.path().join("no_digits"), false);
    let digits = hf_scorer(&dir.path().join("digits"), true);
    let run_dir = dir.path().join("run");
    let docs = documents(11, 5);
    let prompt = "Doc: {document}\nGrade:";
    let rating = json!({"kind": "rating", "prompt": prompt, "scale": 9, "max_new_tokens": 6});
    let plan = with_score_steps(
        common::plan_json(&common::RunDef::small("fp32")),
        &run_dir,
        &docs,
        &[
            (
                "score.nodigits",
                score_params(hf(&no_digits), rating.clone(), 1000, 4),
                vec![],
            ),
            (
                "score.digits",
                score_params(hf(&digits), rating.clone(), 1000, 4),
                vec![],
            ),
        ],
    );
    // A tokenizer without digits: no reply can hold a grade.
    let report = match run(&plan, &run_dir, "score.nodigits").unwrap() {
        StepOutcome::Scored(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (report.input_docs, report.kept_docs, report.null_scores),
        (11, 0, 11)
    );
    assert_eq!(report.mean_score, None);
    assert_eq!(report.settings.scale, Some(9));
    let (lines, _) = read_scores(&plan, &run_dir, "score.nodigits");
    assert!(lines.iter().all(|l| l.score.is_none()));
    // The prompt and the longest reply fit seq_len = 32: the documents are cut to fit.
    let tokenizer = kiln_data::tokenize::load(&no_digits).unwrap();
    let empty = tokenizer
        .encode(prompt.replace("{document}", ""), true)
        .unwrap()
        .len() as u64;
    assert!(
        lines.iter().all(|l| l.tokens + empty + 6 <= 32),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.tokens + empty + 6 == 32));

    // With digits: each score is the first grade of the reply decoded one document at a
    // time (the decoder batched, right-padded).
    run(&plan, &run_dir, "score.digits").unwrap();
    let (lines, report) = read_scores(&plan, &run_dir, "score.digits");
    let model = kiln_train::hf::load(&digits, Precision::Fp32, Device::Cpu).unwrap();
    let tokenizer = kiln_data::tokenize::load(&digits).unwrap();
    // eos_token_id = 2 in the fixture's config.json, and <|endoftext|> = 0.
    let stop = [0u32, 2];
    let mut graded = 0;
    for (doc, line) in docs.iter().zip(&lines) {
        let cut: String = doc.text.chars().take(line.tokens as usize).collect();
        let ids = tokenizer
            .encode(prompt.replace("{document}", &cut), true)
            .unwrap()
            .get_ids()
            .to_vec();
        let reply = independent_reply(&model, &ids, 6, &stop);
        let text = tokenizer.decode(&reply, true).unwrap();
        let want = score::parse_rating(&text, 9).map(f64::from);
        assert_eq!(line.score, want, "{}: reply {text:?}", doc.id);
        graded += usize::from(want.is_some());
    }
    println!("{graded} of {} replies held a grade", lines.len());
    assert_eq!(report.kept_docs as usize, graded);
}

/// The one-phase run of the `llama_mini` fixture the trained-scorer test uses.
fn trained_def() -> common::RunDef {
    let mut def = common::RunDef::small("fp32");
    def.phases.truncate(1);
    def.phases[0].steps = 2;
    def
}

/// `trained_def`'s run whose mix step reads an encode step with a character tokenizer, and
/// the score steps given (`true`: the train step is among its inputs).
fn trained_run(run_dir: &Path, docs: &[Document], scores: &[(&str, Value, bool)]) -> Plan {
    let def = trained_def();
    common::setup_run(run_dir, &def);
    let mut plan = common::plan_json(&def);
    let encode = step(
        "encode.web",
        "encode",
        vec![],
        json!({"source": "web", "seq_len": 32}),
    );
    common::write_char_tokenizer(
        &run_dir.join(encode["outputs"][0].as_str().unwrap()),
        &common::printable_ascii(true),
    );
    let encode_id = encode["id"].as_str().unwrap().to_string();
    let steps = plan["steps"].as_array_mut().unwrap();
    for s in steps.iter_mut() {
        if s["kind"] == "mix" {
            s["inputs"] = json!([encode_id]);
        }
    }
    steps.push(encode);
    let train_id = steps.iter().find(|s| s["name"] == "train.main").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let scores: Vec<(&str, Value, Vec<String>)> = scores
        .iter()
        .map(|(name, params, trained)| {
            let extra = if *trained {
                vec![train_id.clone()]
            } else {
                vec![]
            };
            (*name, params.clone(), extra)
        })
        .collect();
    with_score_steps(plan, run_dir, docs, &scores)
}

#[test]
fn a_trained_scorer_scores_as_its_checkpoint_directory_and_ratios_subtract() {
    let _guard = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let model_dir = hf_scorer(&dir.path().join("hf"), true);
    let docs = documents(9, 11);
    // The train step's output, known before the plan is built (ids hash names).
    let train_out = {
        let plan = common::plan_json(&trained_def());
        let train = plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "train.main")
            .unwrap()
            .clone();
        run_dir.join(train["outputs"][0].as_str().unwrap())
    };
    let trained = json!({"kind": "trained", "step": "train.main"});
    let checkpoint = json!({"kind": "checkpoint", "path": train_out.display().to_string()});
    let perplexity = json!({"kind": "perplexity"});
    let ratio = json!({"kind": "likelihood_ratio", "general": hf(&model_dir)});
    let plan = trained_run(
        &run_dir,
        &docs,
        &[
            (
                "score.trained",
                score_params(trained.clone(), perplexity.clone(), 100, 4),
                true,
            ),
            (
                "score.checkpoint",
                score_params(checkpoint, perplexity.clone(), 100, 4),
                false,
            ),
            (
                "score.general",
                score_params(hf(&model_dir), perplexity.clone(), 100, 4),
                false,
            ),
            (
                "score.ratio",
                score_params(trained.clone(), ratio, 100, 4),
                true,
            ),
            (
                "score.orphan",
                score_params(trained.clone(), perplexity.clone(), 100, 4),
                false,
            ),
        ],
    );
    // Not trained yet: the error names the step and says it is not done.
    let e = run(&plan, &run_dir, "score.trained")
        .unwrap_err()
        .to_string();
    assert!(e.contains("train.main") && e.contains("not done"), "{e}");
    // A trained scorer that is not among the step's inputs.
    let e = run(&plan, &run_dir, "score.orphan")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not among its inputs"), "{e}");
    common::run_all(&plan, &run_dir, false);
    // The train step left its shape and tokenizer beside its checkpoints.
    let spec: kiln_train::spec::ModelSpec =
        serde_json::from_str(&std::fs::read_to_string(train_out.join("model.json")).unwrap())
            .unwrap();
    assert_eq!(spec.vocab, 256);
    assert!(train_out.join("tokenizer.json").is_file());
    for name in [
        "score.trained",
        "score.checkpoint",
        "score.general",
        "score.ratio",
    ] {
        run(&plan, &run_dir, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let bytes = |name: &str| {
        std::fs::read(common::output_of(&plan, &run_dir, name).join(SCORES_FILE)).unwrap()
    };
    assert_eq!(bytes("score.trained"), bytes("score.checkpoint"));
    let (own, _) = read_scores(&plan, &run_dir, "score.trained");
    let (general, _) = read_scores(&plan, &run_dir, "score.general");
    let (ratio, report) = read_scores(&plan, &run_dir, "score.ratio");
    assert_eq!(report.settings.method, "likelihood_ratio");
    assert_eq!(
        report.settings.general.as_deref(),
        Some(format!("hugging_face:{}", model_dir.display()).as_str())
    );
    for ((o, g), r) in own.iter().zip(&general).zip(&ratio) {
        // −loss_scorer − (−loss_general) = loss_general − loss_scorer.
        let want = o.score.zip(g.score).map(|(o, g)| o - g);
        match (r.score, want) {
            (Some(x), Some(y)) => assert!((x - y).abs() < 1e-12, "{x} vs {y}"),
            (x, y) => assert_eq!(x, y),
        }
        assert_eq!(r.tokens, o.tokens, "the scorer's tokens");
    }
}

#[test]
fn malformed_inputs_are_errors_naming_the_file_or_step() {
    let _guard = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let good = hf_scorer(&dir.path().join("good"), true);
    // A Hugging Face directory without tokenizer.json.
    let bare = dir.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture().join(f), bare.join(f)).unwrap();
    }
    // A tokenizer larger than the model's vocabulary (96).
    let big = hf_scorer(&dir.path().join("big"), true);
    let mut chars = common::printable_ascii(true);
    chars.extend(['é', 'ü', 'ß']);
    common::write_char_tokenizer(&big, &chars);
    // A directory that is not a train step's output.
    let not_trained = dir.path().join("not_trained");
    std::fs::create_dir_all(&not_trained).unwrap();
    let docs = documents(5, 1);
    let perplexity = json!({"kind": "perplexity"});
    let no_placeholder =
        json!({"kind": "rating", "prompt": "Grade it:", "scale": 5, "max_new_tokens": 4});
    let too_long =
        json!({"kind": "rating", "prompt": "{document}", "scale": 5, "max_new_tokens": 40});
    let checkpoint = json!({"kind": "checkpoint", "path": not_trained.display().to_string()});
    let plan = with_score_steps(
        common::plan_json(&common::RunDef::small("fp32")),
        &run_dir,
        &docs,
        &[
            (
                "score.bare",
                score_params(hf(&bare), perplexity.clone(), 16, 2),
                vec![],
            ),
            (
                "score.big",
                score_params(hf(&big), perplexity.clone(), 16, 2),
                vec![],
            ),
            (
                "score.missing",
                score_params(hf(&dir.path().join("nowhere")), perplexity.clone(), 16, 2),
                vec![],
            ),
            (
                "score.checkpoint",
                score_params(checkpoint, perplexity.clone(), 16, 2),
                vec![],
            ),
            (
                "score.noplaceholder",
                score_params(hf(&good), no_placeholder, 16, 2),
                vec![],
            ),
            (
                "score.toolong",
                score_params(hf(&good), too_long, 16, 2),
                vec![],
            ),
            (
                "score.nobatch",
                score_params(hf(&good), perplexity.clone(), 16, 0),
                vec![],
            ),
        ],
    );
    let err = |name: &str| run(&plan, &run_dir, name).unwrap_err().to_string();
    let e = err("score.bare");
    assert!(
        e.contains(&bare.join("tokenizer.json").display().to_string()),
        "{e}"
    );
    let e = err("score.big");
    assert!(
        e.contains("99 tokens") && e.contains("vocabulary of 96"),
        "{e}"
    );
    let e = err("score.missing");
    assert!(
        e.contains("nowhere") && e.contains("not a directory"),
        "{e}"
    );
    let e = err("score.checkpoint");
    assert!(e.contains("model.json"), "{e}");
    let e = err("score.noplaceholder");
    assert!(e.contains("{document}"), "{e}");
    let e = err("score.toolong");
    assert!(e.contains("seq_len of 32"), "{e}");
    let e = err("score.nobatch");
    assert!(e.contains("batch_docs"), "{e}");
    // The sample step's output missing.
    let sample = common::output_of(&plan, &run_dir, "sample.web");
    std::fs::remove_dir_all(&sample).unwrap();
    let e = err("score.bare");
    assert!(e.contains("sample.web") && e.contains("not done"), "{e}");
}
