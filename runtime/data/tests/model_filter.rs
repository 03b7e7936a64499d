//! Model-based quality filtering (issue 17): the `sample`, `train_classifier`, `kl_reference`
//! and `quality_filter` steps of hand-written plans run through `run_step`, the classifier's
//! two objectives on synthetic scored documents, the good tokens the heuristics lose checked
//! against a count made outside the step, the missing-input errors, and `kiln data classify`.

#[path = "reference/corpus.rs"]
mod corpus;

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use corpus::Rng;
use kiln_data::filters::classifier::Classifier;
use kiln_data::filters::words::split_into_words;
use kiln_data::filters::{filter_documents_with, Document, Models, QualityConfig};
use kiln_data::ingest::IngestConfig;
use kiln_data::ops::{self, ScoreInput};
use kiln_data::plan::{ClassifierLabels, KeepRule, Plan, TrainClassifierParams};
use kiln_data::sample::sample_documents;
use kiln_data::steps::{run_step, StepContext, StepError, StepOutcome};
use serde_json::{json, Value};
use xxhash_rust::xxh3::xxh3_64_with_seed;

// ---------------------------------------------------------------------------------------
// Helpers.

fn write_jsonl(path: &Path, lines: &[Value]) {
    let text: String = lines.iter().map(|l| l.to_string() + "\n").collect();
    fs::write(path, text).unwrap();
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    let bytes = fs::read(path).unwrap();
    let text = if path.extension().is_some_and(|e| e == "zst") {
        String::from_utf8(zstd::decode_all(&bytes[..]).unwrap()).unwrap()
    } else {
        String::from_utf8(bytes).unwrap()
    };
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn report(outcome: StepOutcome) -> Value {
    match outcome {
        StepOutcome::Done { report, .. } => report,
        other => panic!("not run: {other:?}"),
    }
}

fn context(run: &Path, src: &Path) -> StepContext {
    let mut ctx = StepContext::new(run.to_path_buf(), src.to_path_buf());
    ctx.progress = false;
    ctx
}

fn source(name: &str) -> Value {
    json!({ "name": name, "path": format!("{name}.jsonl"), "text_field": "text",
            "unique_tokens": null, "max_epochs": 4.0 })
}

fn ingest(name: &str) -> Value {
    json!({ "id": format!("ing-{name}"), "kind": "ingest", "name": format!("ingest.{name}"),
            "inputs": [], "outputs": [format!("steps/ingest.{name}")],
            "params": { "source": name, "path": format!("{name}.jsonl"), "text_field": "text" } })
}

/// A word of letters only (one token for the word splitter): `prefix` and `k` in base 26.
fn word(prefix: &str, mut k: usize) -> String {
    let mut s = prefix.to_string();
    loop {
        s.push((b'a' + (k % 26) as u8) as char);
        k /= 26;
        if k == 0 {
            return s;
        }
    }
}

/// Synthetic scored documents whose score is a function of their words: each document has a
/// latent quality q; its words are drawn from 40 "good" words with probability 0.3 q, 40
/// "bad" words with probability 0.3 (1 − q), 300 neutral words otherwise; the score is
/// 5 × (good − bad words) / words, plus a little noise (no ties).
fn synthetic_scored(n: usize, seed: u64, id_prefix: &str) -> Vec<Value> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let q = rng.unit();
            let len = 40 + rng.below(80);
            let (mut good, mut bad) = (0i64, 0i64);
            let mut words = Vec::with_capacity(len);
            for j in 0..len {
                let r = rng.unit();
                let w = if r < 0.3 * q {
                    good += 1;
                    word("gq", rng.below(40))
                } else if r < 0.3 {
                    bad += 1;
                    word("bz", rng.below(40))
                } else {
                    word("n", rng.below(300))
                };
                words.push(if j % 12 == 11 { w + "." } else { w });
            }
            let score = 5.0 * (good - bad) as f64 / len as f64 + 0.01 * rng.unit();
            json!({ "id": format!("{id_prefix}:{i}"), "text": words.join(" "),
                    "score": score, "tokens": len + len / 3 })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// sample

#[test]
fn sample_is_the_smallest_hashes_whatever_the_order_or_threads() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(5);
    let docs: Vec<Value> = (0..400)
        .map(|i| json!({ "id": format!("doc-{i}"), "text": corpus::sentence(&mut rng) }))
        .collect();
    let mut shuffled = docs.clone();
    for i in (1..shuffled.len()).rev() {
        let j = rng.below(i + 1);
        shuffled.swap(i, j);
    }
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    write_jsonl(&a, &docs);
    write_jsonl(&b, &shuffled);
    let seed = 42;
    // The 50 smallest xxh3(seed, id), counted here.
    let mut keyed: Vec<(u64, String)> = docs
        .iter()
        .map(|d| {
            let id = d["id"].as_str().unwrap().to_string();
            (xxh3_64_with_seed(id.as_bytes(), seed), id)
        })
        .collect();
    keyed.sort();
    let expected: BTreeSet<String> = keyed[..50].iter().map(|(_, id)| id.clone()).collect();
    let mut outputs = Vec::new();
    for (input, threads) in [(&a, 1), (&b, 1), (&a, 3)] {
        let out = dir.path().join(format!("out-{threads}-{}", outputs.len()));
        fs::create_dir(&out).unwrap();
        let out = out.join("docs.jsonl");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let config = IngestConfig::new(vec![input.clone()]).with_ids();
        let r = pool
            .install(|| sample_documents(&config, 50, seed, &out, false))
            .unwrap();
        assert_eq!((r.input_docs, r.kept_docs, r.short_by), (400, 50, 0));
        let lines = read_jsonl(&out);
        let ids: Vec<String> = lines
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), expected);
        // In input order.
        let source: Vec<Value> = read_jsonl(input);
        let positions: Vec<usize> = ids
            .iter()
            .map(|id| source.iter().position(|d| d["id"] == *id.as_str()).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        outputs.push(fs::read(&out).unwrap());
    }
    assert_eq!(outputs[0], outputs[2], "the thread count changes nothing");
}

#[test]
fn the_sample_step_keeps_everything_and_says_so_when_short() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let mut rng = Rng(1);
    let docs: Vec<Value> = (0..30)
        .map(|_| json!({ "text": corpus::sentence(&mut rng) }))
        .collect();
    write_jsonl(&src.join("web.jsonl"), &docs);
    let plan = |n: u64| {
        let v = common::plan_with(
            json!([source("web")]),
            vec![
                ingest("web"),
                json!({ "id": "smp", "kind": "sample", "name": "sample.web",
                        "inputs": ["ing-web"], "outputs": [format!("steps/sample-{n}")],
                        "params": { "source": "web", "docs": n, "seed": 3 } }),
            ],
        );
        Plan::from_json(&v.to_string()).unwrap()
    };
    let run = dir.path().join("run");
    let ctx = context(&run, &src);
    report(run_step(&plan(10), "ingest.web", &ctx).unwrap());
    let r = report(run_step(&plan(10), "sample.web", &ctx).unwrap());
    assert_eq!(
        (
            &r["kind"],
            &r["input_docs"],
            &r["kept_docs"],
            &r["short_by"]
        ),
        (&json!("sample"), &json!(30), &json!(10), &json!(0)),
        "{r:#}"
    );
    let r = report(run_step(&plan(45), "sample.web", &ctx).unwrap());
    assert_eq!(
        (&r["kept_docs"], &r["requested_docs"], &r["short_by"]),
        (&json!(30), &json!(45), &json!(15)),
        "{r:#}"
    );
    assert_eq!(
        read_jsonl(&run.join("steps/sample-45/docs.jsonl.zst")).len(),
        30
    );
}

// ---------------------------------------------------------------------------------------
// train_classifier

/// Two score files of synthetic documents (one with a few null scores) in `dir`.
fn score_files(dir: &Path) -> (Vec<ScoreInput>, Vec<Value>) {
    let mut a = synthetic_scored(1200, 11, "a");
    let b = synthetic_scored(1000, 12, "b");
    for i in (0..a.len()).step_by(97) {
        a[i]["score"] = Value::Null;
    }
    let (pa, pb) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    write_jsonl(&pa, &a);
    write_jsonl(&pb, &b);
    let inputs = vec![
        ScoreInput {
            name: "a".into(),
            path: pa,
        },
        ScoreInput {
            name: "b".into(),
            path: pb,
        },
    ];
    (inputs, a.into_iter().chain(b).collect())
}

fn load(dir: &Path) -> Classifier {
    serde_json::from_slice(&fs::read(dir.join(ops::CLASSIFIER_FILE)).unwrap()).unwrap()
}

#[test]
fn the_classifier_learns_scores_both_ways_and_keeps_the_asked_fraction() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, all) = score_files(dir.path());
    let n = all.len();
    let nulls = all.iter().filter(|d| d["score"].is_null()).count();
    for (labels, keep) in [
        (
            ClassifierLabels::Top { fraction: 0.3 },
            KeepRule::Fraction { fraction: 0.7 },
        ),
        (
            ClassifierLabels::Regression,
            KeepRule::Fraction { fraction: 0.25 },
        ),
    ] {
        let params = TrainClassifierParams {
            labels,
            keep,
            held_out_fraction: 0.2,
            seed: 4,
        };
        let out = dir.path().join(format!("{labels:?}"));
        fs::create_dir(&out).unwrap();
        let r = ops::train_quality_classifier(&inputs, &params, &out).unwrap();
        eprintln!("{labels:?}: {}", serde_json::to_string(&r).unwrap());
        assert_eq!(r.input_docs as usize, n);
        assert_eq!(r.null_score_docs as usize, nulls);
        assert_eq!((r.train_docs + r.held_out_docs) as usize, n - nulls);
        assert_eq!(r.held_out_docs, ((n - nulls) as f64 * 0.2).round() as u64);
        let spearman = r.held_out_spearman.unwrap();
        let auc = r.held_out_auc.unwrap();
        assert!(spearman > 0.8, "{labels:?}: held-out Spearman {spearman}");
        assert!(auc > 0.9, "{labels:?}: held-out AUC {auc}");
        // The label cut, counted here.
        let mut scores: Vec<f64> = all.iter().filter_map(|d| d["score"].as_f64()).collect();
        scores.sort_by(f64::total_cmp);
        let q = match labels {
            ClassifierLabels::Top { fraction } => 1.0 - fraction,
            ClassifierLabels::Regression => 0.5,
        };
        let h = (scores.len() - 1) as f64 * q;
        let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
        let cut = scores[lo] + (scores[hi] - scores[lo]) * (h - lo as f64);
        assert!((r.label_cut - cut).abs() < 1e-12, "{} {cut}", r.label_cut);
        match labels {
            ClassifierLabels::Top { .. } => {
                assert!(r.held_out_accuracy.unwrap() > 0.85, "{r:?}");
                assert!(r.target_mean.is_none());
            }
            ClassifierLabels::Regression => {
                assert!(r.held_out_accuracy.is_none());
                assert!(r.target_std.unwrap() > 0.0);
            }
        }
        // The keep fraction of every scored document (null scores too), within 1/n.
        let model = load(&out);
        let kept = all
            .iter()
            .filter(|d| model.score(d["text"].as_str().unwrap()) >= r.threshold)
            .count();
        let KeepRule::Fraction { fraction } = keep else {
            unreachable!()
        };
        assert!(
            (kept as f64 / n as f64 - fraction).abs() <= 1.0 / n as f64,
            "kept {kept} of {n}, asked {fraction}"
        );
        assert!((r.sample_kept_fraction - kept as f64 / n as f64).abs() < 1e-12);
        // Deterministic: the same model file, the same report.
        let again = dir.path().join(format!("{labels:?}-again"));
        fs::create_dir(&again).unwrap();
        let r2 = ops::train_quality_classifier(&inputs, &params, &again).unwrap();
        assert_eq!(r, r2);
        assert_eq!(
            fs::read(out.join(ops::CLASSIFIER_FILE)).unwrap(),
            fs::read(again.join(ops::CLASSIFIER_FILE)).unwrap()
        );
    }
    // A threshold rule is kept as given.
    let out = dir.path().join("threshold");
    fs::create_dir(&out).unwrap();
    let params = TrainClassifierParams {
        labels: ClassifierLabels::Top { fraction: 0.5 },
        keep: KeepRule::Threshold { min_score: 0.8 },
        held_out_fraction: 0.1,
        seed: 0,
    };
    let r = ops::train_quality_classifier(&inputs, &params, &out).unwrap();
    assert_eq!(r.threshold, 0.8);
    // Errors: no scores at all, and nothing left to train on.
    let nulls = dir.path().join("nulls.jsonl");
    write_jsonl(
        &nulls,
        &[json!({ "id": "x", "text": "a b c", "score": null, "tokens": 3 })],
    );
    let e = ops::train_quality_classifier(
        &[ScoreInput {
            name: "n".into(),
            path: nulls,
        }],
        &params,
        &out,
    )
    .unwrap_err();
    assert!(e.message.contains("has a score"), "{e}");
}

#[test]
fn a_regression_classifier_scores_in_the_scorers_units_and_old_files_read_as_logistic() {
    let docs = synthetic_scored(600, 3, "r");
    let texts: Vec<&str> = docs.iter().map(|d| d["text"].as_str().unwrap()).collect();
    let scores: Vec<f64> = docs.iter().map(|d| d["score"].as_f64().unwrap()).collect();
    let config = kiln_data::filters::classifier::ClassifierTrainConfig {
        buckets: 1 << 14,
        ..Default::default()
    };
    let model = kiln_data::filters::classifier::fit(
        &texts,
        kiln_data::filters::classifier::Targets::Scores(&scores),
        &config,
    )
    .unwrap();
    let predicted: Vec<f64> = texts.iter().map(|t| model.score(t)).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    // On its training documents the predictions are on the scores' scale.
    assert!((mean(&predicted) - mean(&scores)).abs() < 0.2);
    let err = predicted
        .iter()
        .zip(&scores)
        .map(|(p, s)| (p - s).powi(2))
        .sum::<f64>()
        / scores.len() as f64;
    let var = scores
        .iter()
        .map(|s| (s - mean(&scores)).powi(2))
        .sum::<f64>()
        / scores.len() as f64;
    assert!(err < 0.2 * var, "mse {err} against variance {var}");
    // score_words is score.
    for t in &texts[..20] {
        assert_eq!(model.score(t), model.score_words(&split_into_words(t)));
    }
    // A file without `objective` (written before regression) reads as logistic.
    let mut v = serde_json::to_value(&model).unwrap();
    assert_eq!(v["objective"], "regression");
    let obj = v.as_object_mut().unwrap();
    obj.remove("objective");
    obj.remove("target_mean");
    obj.remove("target_std");
    let old: Classifier = serde_json::from_value(v).unwrap();
    assert_eq!(
        old.objective(),
        kiln_data::filters::classifier::Objective::Logistic
    );
    assert!((0.0..=1.0).contains(&old.score(texts[0])));
}

// ---------------------------------------------------------------------------------------
// kl_reference

fn kl_plan(max: Value, held_out: f64) -> Plan {
    let v = common::plan_with(
        json!([source("ref")]),
        vec![
            ingest("ref"),
            json!({ "id": "klr", "kind": "kl_reference", "name": "kl_reference.ref",
                    "inputs": ["ing-ref"],
                    "outputs": [format!("steps/kl_reference-{}-{held_out}", max["kind"].as_str().unwrap())],
                    "params": { "source": "ref", "max": max, "smoothing": 1.0,
                                "held_out_fraction": held_out, "seed": 8 } }),
        ],
    );
    Plan::from_json(&v.to_string()).unwrap()
}

#[test]
fn the_kl_quantile_threshold_removes_that_share_of_held_out_reference_documents() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let mut rng = Rng(21);
    let docs: Vec<Value> = (0..2000)
        .map(|_| json!({ "text": corpus::paragraph(&mut rng) }))
        .collect();
    write_jsonl(&src.join("ref.jsonl"), &docs);
    let run = dir.path().join("run");
    let ctx = context(&run, &src);
    let plan = kl_plan(json!({ "kind": "quantile", "quantile": 0.99 }), 0.3);
    let ing = report(run_step(&plan, "ingest.ref", &ctx).unwrap());
    assert_eq!(ing["kept_docs"], 2000);
    let r = report(run_step(&plan, "kl_reference.ref", &ctx).unwrap());
    eprintln!("{r:#}");
    let held = r["held_out_docs"].as_u64().unwrap();
    assert_eq!(r["input_docs"], 2000);
    assert_eq!(r["kept_docs"].as_u64().unwrap() + held, 2000);
    assert!((500..700).contains(&held), "{held}");
    let t = r["max_kl_nats"].as_f64().unwrap();
    assert_eq!(t, r["held_out_kl"]["p99"].as_f64().unwrap());
    // Counted here: the held-out documents (xxh3(seed, id) in the lowest 30 %) and their KL
    // against the written reference.
    let file = ops::load_kl_reference(&run.join("steps/kl_reference-quantile-0.3")).unwrap();
    assert_eq!(file.max_kl_nats, t);
    assert_eq!(file.smoothing, 1.0);
    let ingested = read_jsonl(&run.join("steps/ingest.ref/docs.jsonl.zst"));
    let held_docs: Vec<&Value> = ingested
        .iter()
        .filter(|d| {
            let key = xxh3_64_with_seed(d["id"].as_str().unwrap().as_bytes(), 8);
            (key as f64 / 2f64.powi(64)) < 0.3
        })
        .collect();
    assert_eq!(held_docs.len() as u64, held);
    let removed = held_docs
        .iter()
        .filter(|d| {
            file.config().removes(
                &split_into_words(d["text"].as_str().unwrap()),
                &file.reference,
            )
        })
        .count();
    let fraction = removed as f64 / held as f64;
    assert_eq!(r["held_out_removed_fraction"].as_f64().unwrap(), fraction);
    // The rule judges a document by the threshold of its length: the p99 of the KL of
    // windows of that many words of the held-out documents. Recounted here, each length's
    // threshold is exceeded by 1 % of its windows (within one window).
    let by_length = &file.by_length;
    assert!(by_length.len() >= 2, "{by_length:?}");
    for t in by_length {
        let n = t.words as usize;
        let kls: Vec<f64> = held_docs
            .iter()
            .flat_map(|d| {
                let words = split_into_words(d["text"].as_str().unwrap());
                words
                    .chunks_exact(n)
                    .take(ops::KL_WINDOWS_PER_DOC)
                    .filter_map(|w| file.reference.kl_divergence_nats(w, 1.0))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(kls.len() >= ops::KL_WINDOW_MIN_COUNT);
        let above = kls.iter().filter(|&&k| k > t.max_kl_nats).count() as f64;
        assert!(
            (above / kls.len() as f64 - 0.01).abs() <= 1.0 / kls.len() as f64,
            "{n} words: {above} of {} windows above the p99",
            kls.len()
        );
    }
    // Whole documents are judged at their length's window threshold; they are at least as
    // long as those windows, so about 1 % or fewer of them are removed.
    assert!(
        fraction <= 0.01 + 2.0 / held as f64,
        "the p99 rule removes {removed} of {held} held-out documents"
    );

    // In nats: as given.
    let plan = kl_plan(json!({ "kind": "nats", "nats": 2.5 }), 0.1);
    let r = report(run_step(&plan, "kl_reference.ref", &ctx).unwrap());
    assert_eq!(r["max_kl_nats"], 2.5);
    assert_eq!(r["max"], "nats");
    // A quantile without held-out documents: a clear error.
    let plan = kl_plan(json!({ "kind": "quantile", "quantile": 0.99 }), 0.0);
    let e = run_step(&plan, "kl_reference.ref", &ctx).unwrap_err();
    assert!(
        e.to_string()
            .contains("none of the 2000 documents was held out"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------
// quality_filter with its model inputs, and the good tokens the heuristics lose.

fn quality_step(id: &str, inputs: &[&str], classifier: bool, kl: bool) -> Value {
    json!({ "id": id, "kind": "quality_filter", "name": format!("quality_filter.{id}"),
            "inputs": inputs, "outputs": [format!("steps/{id}")],
            "params": {
                "heuristics": ["gopher", "c4", "fineweb"], "thresholds": {},
                "classifier": if classifier { json!({
                    "scorer": "judge", "labels": { "kind": "top", "fraction": 0.4 },
                    "keep": { "kind": "fraction", "fraction": 0.7 }, "sample_docs": 120 }) }
                    else { Value::Null },
                "kl": if kl { json!({ "reference": "ref",
                    "max": { "kind": "quantile", "quantile": 0.9 }, "smoothing": 1.0 }) }
                    else { Value::Null } } })
}

/// The web source: articles, one-sentence documents (Gopher's minimum words), articles
/// whose paragraphs repeat (Gopher's repetition), and Python modules (far from the prose
/// reference), with the score file of the first 150.
fn quality_corpus(src: &Path) -> Vec<Value> {
    let mut rng = Rng(77);
    let mut web = Vec::new();
    for i in 0..240 {
        let text = match i % 6 {
            0..=2 => {
                let paragraphs = 2 + rng.below(3);
                corpus::article(&mut rng, paragraphs)
            }
            3 => corpus::sentence(&mut rng),
            4 => {
                let p = corpus::paragraph(&mut rng);
                vec![p; 5].join("\n\n")
            }
            _ => corpus::python_module(&mut rng),
        };
        web.push(json!({ "text": text }));
    }
    write_jsonl(&src.join("web.jsonl"), &web);
    let reference: Vec<Value> = (0..300)
        .map(|_| json!({ "text": corpus::article(&mut rng, 3) }))
        .collect();
    write_jsonl(&src.join("ref.jsonl"), &reference);
    // Scores: a function of the words (the share of words of five letters or more) with
    // noise; every 13th document ungraded.
    web.iter()
        .take(150)
        .enumerate()
        .map(|(i, d)| {
            let text = d["text"].as_str().unwrap();
            let words = split_into_words(text);
            let long = words.iter().filter(|w| w.len() >= 5).count() as f64;
            let score = if i % 13 == 5 {
                Value::Null
            } else {
                json!(5.0 * long / words.len().max(1) as f64 + rng.unit())
            };
            json!({ "id": format!("web.jsonl:{}", i + 1), "text": text, "score": score,
                    "tokens": words.len() * 4 / 3 + 1 })
        })
        .collect()
}

#[test]
fn quality_filter_with_classifier_kl_and_score_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let scored = quality_corpus(&src);
    let plan = common::plan_with(
        json!([source("web"), source("ref")]),
        vec![
            ingest("web"),
            ingest("ref"),
            json!({ "id": "score-web", "kind": "score", "name": "score.web",
                    "inputs": ["ing-web"], "outputs": ["steps/score.web"],
                    "params": { "source": "web",
                                "scorer": { "kind": "hugging_face", "path": "judge" },
                                "method": { "kind": "perplexity" },
                                "max_tokens": 512, "batch_docs": 16 } }),
            json!({ "id": "cls", "kind": "train_classifier", "name": "train_classifier",
                    "inputs": ["score-web"], "outputs": ["steps/train_classifier"],
                    "params": { "labels": { "kind": "top", "fraction": 0.4 },
                                "keep": { "kind": "fraction", "fraction": 0.7 },
                                "held_out_fraction": 0.2, "seed": 1 } }),
            json!({ "id": "klr", "kind": "kl_reference", "name": "kl_reference.ref",
                    "inputs": ["ing-ref"], "outputs": ["steps/kl_reference.ref"],
                    "params": { "source": "ref", "max": { "kind": "quantile", "quantile": 0.9 },
                                "smoothing": 1.0, "held_out_fraction": 0.2, "seed": 2 } }),
            quality_step("q", &["ing-web", "cls", "klr", "score-web"], true, true),
            quality_step("q-no-cls", &["ing-web", "klr"], true, true),
            quality_step("q-no-kl", &["ing-web", "cls"], true, true),
            quality_step("q-extra", &["ing-web", "cls"], false, false),
        ],
    );
    let plan = Plan::from_json(&plan.to_string()).unwrap();
    let run = dir.path().join("run");
    let ctx = context(&run, &src);
    // The score step is kiln-train's: its output is written here.
    let score_dir = run.join("steps/score.web");
    fs::create_dir_all(&score_dir).unwrap();
    write_jsonl(&score_dir.join("scores.jsonl"), &scored);
    fs::write(score_dir.join("report.json"), "{}\n").unwrap();
    for s in ["ingest.web", "ingest.ref", "kl_reference.ref"] {
        report(run_step(&plan, s, &ctx).unwrap());
    }
    // The quality step before its classifier exists: the input is not done.
    assert!(matches!(
        run_step(&plan, "quality_filter.q", &ctx),
        Err(StepError::InputNotDone { .. })
    ));
    let cls = report(run_step(&plan, "train_classifier", &ctx).unwrap());
    assert_eq!(cls["kind"], "train_classifier");
    assert_eq!(cls["sources"][0]["name"], "score.web");
    assert_eq!(cls["null_score_docs"], 12);
    let r = report(run_step(&plan, "quality_filter.q", &ctx).unwrap());
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&r["good_tokens_lost"]).unwrap()
    );
    assert_eq!(r["source"], "web");
    assert_eq!(r["models"]["classifier"]["threshold"], cls["threshold"]);
    assert_eq!(r["models"]["classifier"]["step"], "train_classifier");
    let klr = ops::load_kl_reference(&run.join("steps/kl_reference.ref")).unwrap();
    assert_eq!(
        r["models"]["kl"]["max_kl_nats"].as_f64().unwrap(),
        klr.max_kl_nats
    );
    // Both model families are on (here the heuristics and KL remove, first, every document
    // the classifier would).
    assert!(r["removed"]["classifier.classifier_score"].is_u64());
    assert!(r["removed"]["kl.kl_divergence"].is_u64());

    // The classifier and KL families filter as the loaded models say: the kept documents
    // are what the filter keeps with those models, counted through the library's batch API.
    let classifier = load(&run.join("steps/train_classifier"));
    let models = Models {
        kl_reference: Some(&klr.reference),
        classifier: Some(&classifier),
    };
    let ingested: Vec<Document> = read_jsonl(&run.join("steps/ingest.web/docs.jsonl.zst"))
        .into_iter()
        .map(|d| serde_json::from_value(d).unwrap())
        .collect();
    let mut config =
        ops::quality_config(&["gopher".into(), "c4".into(), "fineweb".into()]).unwrap();
    config.kl = Some(klr.config());
    config.classifier = Some(kiln_data::filters::classifier::ClassifierFilterConfig {
        min_score: cls["threshold"].as_f64().unwrap(),
    });
    let (kept, _) = filter_documents_with(ingested.clone(), &config, models).unwrap();
    assert_eq!(r["kept_docs"].as_u64().unwrap(), kept.len() as u64);
    let threshold = cls["threshold"].as_f64().unwrap();
    assert!(
        ingested
            .iter()
            .any(|d| classifier.score(&d.text) < threshold),
        "the classifier alone removes documents"
    );
    let written = read_jsonl(&run.join("steps/q/docs.jsonl.zst"));
    assert_eq!(written.len(), kept.len());

    // Good tokens lost, counted here: the sample's documents scoring at least the label
    // cut, each family alone and all together (no classifier), through the batch API.
    let g = &r["good_tokens_lost"];
    let cut = cls["label_cut"].as_f64().unwrap();
    assert_eq!(g["label_cut"].as_f64().unwrap(), cut);
    let good: Vec<&Value> = scored
        .iter()
        .filter(|d| d["score"].as_f64().is_some_and(|s| s >= cut))
        .collect();
    let good_tokens: u64 = good.iter().map(|d| d["tokens"].as_u64().unwrap()).sum();
    assert_eq!(g["scored_docs"], 150 - 12);
    assert_eq!(g["good_docs"].as_u64().unwrap(), good.len() as u64);
    assert_eq!(g["good_tokens"].as_u64().unwrap(), good_tokens);
    let good_docs: Vec<Document> = good
        .iter()
        .map(|d| Document {
            id: d["id"].as_str().unwrap().into(),
            text: d["text"].as_str().unwrap().into(),
        })
        .collect();
    let lost_under = |config: &QualityConfig| -> u64 {
        let (kept, _) = filter_documents_with(good_docs.clone(), config, models).unwrap();
        let kept: BTreeSet<&str> = kept.iter().map(|d| d.id.as_str()).collect();
        good.iter()
            .filter(|d| !kept.contains(d["id"].as_str().unwrap()))
            .map(|d| d["tokens"].as_u64().unwrap())
            .sum()
    };
    let alone = |family: &str| -> QualityConfig {
        if family == "kl" {
            QualityConfig {
                gopher_repetition: None,
                gopher_quality: None,
                kl: Some(klr.config()),
                ..Default::default()
            }
        } else {
            ops::quality_config(&[family.to_string()]).unwrap()
        }
    };
    let families = g["families"].as_object().unwrap();
    assert_eq!(
        families.keys().collect::<Vec<_>>(),
        ["c4", "fineweb", "gopher_quality", "gopher_repetition", "kl"]
    );
    let mut any = 0;
    for (family, got) in families {
        let tokens = lost_under(&alone(family));
        assert_eq!(got["tokens"].as_u64().unwrap(), tokens, "{family}");
        assert_eq!(
            got["fraction"].as_f64().unwrap(),
            tokens as f64 / good_tokens as f64
        );
        any += tokens;
    }
    let all = QualityConfig {
        classifier: None,
        ..config.clone()
    };
    let all_tokens = lost_under(&all);
    assert_eq!(g["all"]["tokens"].as_u64().unwrap(), all_tokens);
    assert!(
        all_tokens > 0 && all_tokens < good_tokens && all_tokens <= any,
        "{all_tokens} of {good_tokens}"
    );

    // Missing or unexpected model inputs: clear errors.
    let e = run_step(&plan, "quality_filter.q-no-cls", &ctx).unwrap_err();
    assert!(
        e.to_string().contains(
            "quality.classifier is on but `quality_filter.q-no-cls` has no train_classifier input"
        ),
        "{e}"
    );
    let e = run_step(&plan, "quality_filter.q-no-kl", &ctx).unwrap_err();
    assert!(
        e.to_string()
            .contains("quality.kl is on but `quality_filter.q-no-kl` has no kl_reference input"),
        "{e}"
    );
    let e = run_step(&plan, "quality_filter.q-extra", &ctx).unwrap_err();
    assert!(e.to_string().contains("quality.classifier is off"), "{e}");
}

// ---------------------------------------------------------------------------------------
// kiln data classify

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn kiln_data_classify_trains_and_applies() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, all) = score_files(dir.path());
    let out = dir.path().join("classifier");
    let v = common::execute(&[
        "classify",
        "train",
        "--scores",
        path(&inputs[0].path),
        path(&inputs[1].path),
        "-o",
        path(&out),
        "--labels",
        "top:30%",
        "--keep",
        "70%",
        "--seed",
        "3",
        "--quiet",
        "--format",
        "json",
    ])
    .unwrap();
    assert_eq!(v["command"], "classify train");
    assert_eq!(v["labels"], "top");
    assert_eq!(v["top_fraction"], 0.3);
    assert_eq!(v["keep_fraction"], 0.7);
    assert!(v["held_out_auc"].as_f64().unwrap() > 0.9, "{v:#}");
    // The same as the step's code with the same parameters.
    let step_dir = dir.path().join("step");
    fs::create_dir(&step_dir).unwrap();
    let params = TrainClassifierParams {
        labels: ClassifierLabels::Top { fraction: 0.3 },
        keep: KeepRule::Fraction { fraction: 0.7 },
        held_out_fraction: 0.1,
        seed: 3,
    };
    let named: Vec<ScoreInput> = inputs
        .iter()
        .map(|i| ScoreInput {
            name: path(&i.path).into(),
            path: i.path.clone(),
        })
        .collect();
    let r = ops::train_quality_classifier(&named, &params, &step_dir).unwrap();
    assert_eq!(v["threshold"].as_f64().unwrap(), r.threshold);
    assert_eq!(
        fs::read(out.join("classifier.json")).unwrap(),
        fs::read(step_dir.join("classifier.json")).unwrap()
    );
    let written: Value =
        serde_json::from_str(&fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(written, v);

    // apply: the documents scoring at least the report's threshold, or --threshold.
    let docs: Vec<Value> = all
        .iter()
        .map(|d| json!({ "id": d["id"], "text": d["text"] }))
        .collect();
    let input = dir.path().join("docs.jsonl");
    write_jsonl(&input, &docs);
    let model = load(&out);
    for threshold in [None, Some("0.9")] {
        let filtered = dir.path().join("kept.jsonl");
        let mut args = vec![
            "classify",
            "apply",
            "--classifier",
            path(&out),
            path(&input),
            "-o",
            path(&filtered),
            "--quiet",
        ];
        if let Some(t) = threshold {
            args.extend(["--threshold", t]);
        }
        let s = common::execute(&args).unwrap();
        let t = threshold.map_or(r.threshold, |t| t.parse().unwrap());
        let expected: Vec<&Value> = docs
            .iter()
            .filter(|d| model.score(d["text"].as_str().unwrap()) >= t)
            .collect();
        assert_eq!(s["command"], "classify apply");
        assert_eq!(s["threshold"].as_f64().unwrap(), t);
        assert_eq!(s["input_docs"].as_u64().unwrap(), docs.len() as u64);
        assert_eq!(s["kept_docs"].as_u64().unwrap(), expected.len() as u64);
        assert_eq!(
            s["removed"]["classifier.classifier_score"]
                .as_u64()
                .unwrap(),
            (docs.len() - expected.len()) as u64
        );
        let kept = read_jsonl(&filtered);
        assert_eq!(
            kept.iter().map(|d| &d["id"]).collect::<Vec<_>>(),
            expected.iter().map(|d| &d["id"]).collect::<Vec<_>>()
        );
    }
    // The report's threshold keeps the asked fraction of the scored documents.
    assert!(threshold_keeps_seventy_percent(&model, &docs, r.threshold));

    // Usage errors exit 2; a bad --labels is refused by the parser.
    let e = common::execute(&[
        "classify",
        "train",
        "--scores",
        path(&dir.path().join("missing.jsonl")),
        "-o",
        path(&dir.path().join("x")),
        "--quiet",
    ])
    .unwrap_err();
    assert_eq!(e.1, 2, "{e}");
    let e = common::execute(&[
        "classify",
        "apply",
        "--classifier",
        path(&dir.path().join("nowhere")),
        path(&input),
        "-o",
        path(&dir.path().join("y.jsonl")),
        "--quiet",
    ])
    .unwrap_err();
    assert_eq!(e.1, 2, "{e}");
    use clap::Parser;
    assert!(common::DataCli::try_parse_from([
        "kiln data",
        "classify",
        "train",
        "--scores",
        "a.jsonl",
        "-o",
        "d",
        "--labels",
        "best:3"
    ])
    .is_err());
    assert!(common::DataCli::try_parse_from([
        "kiln data",
        "classify",
        "train",
        "--scores",
        "a.jsonl",
        "-o",
        "d",
        "--keep",
        "50%",
        "--threshold",
        "0.3"
    ])
    .is_err());
}

/// Whether `threshold` keeps 70 % of `docs` within one document.
fn threshold_keeps_seventy_percent(model: &Classifier, docs: &[Value], threshold: f64) -> bool {
    let kept = docs
        .iter()
        .filter(|d| model.score(d["text"].as_str().unwrap()) >= threshold)
        .count();
    let ok = (kept as f64 / docs.len() as f64 - 0.7).abs() <= 1.0 / docs.len() as f64;
    assert!(ok, "kept {kept} of {}", docs.len());
    ok
}
