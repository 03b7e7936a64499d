//! Scoring throughput beside training throughput, for the same model, in one run.
//!
//! `cargo bench -p kiln-train --bench score` plans `experiments/tiny.kiln` (or the file in
//! `KILN_BENCH_EXPERIMENT`), takes its first train step's model and, for `KILN_BENCH_ROUNDS`
//! rounds (default 3), on `KILN_BENCH_THREADS` threads (default 2), fp32 on the CPU:
//! - the score step end to end (`score::score_documents`: JSONL read, BPE tokenizer, batches
//!   of `KILN_BENCH_BATCH` documents (default 16) each reading the model's `seq_len` tokens,
//!   the fsynced `scores.jsonl`), over `KILN_BENCH_DOCS` generated documents (default 512),
//!   with the model as a checkpoint directory (random weights: the speed does not depend on
//!   them);
//! - the forward pass alone (`score::mean_losses` on random token ids, the same batches);
//! - `KILN_BENCH_STEPS` optimizer steps of the train step (default 3, after one warm-up,
//!   `bench::time_steps`), whose tokens/s is the trainer's.
//!
//! It prints each round and the medians in tokens/s (scored tokens: those each document's
//! `tokens` counts).

use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_data::ingest::{Document, JsonlWriter};
use kiln_train::bench::{median, time_steps};
use kiln_train::checkpoint::{self, RngState, TrainState, STATE_FORMAT};
use kiln_train::collective::Collective;
use kiln_train::model::Model;
use kiln_train::score::{self, ScoreJob, ScoreMethod, ScoreOutcome, ScorerContext, ScorerModel};
use kiln_train::spec::{Plan, Precision, TrainParams};
use tch::{Device, Kind, Tensor};

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Documents of random words from a small dictionary, each long enough for `seq_len`
/// tokens of a tokenizer trained on them.
fn documents(n: usize, words_per_doc: usize) -> Vec<Document> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let dictionary: Vec<String> = (0..3000)
        .map(|i| {
            let len = 2 + (i * 7919) % 9;
            (0..len)
                .map(|j| char::from(b'a' + ((i * 31 + j * 17) % 26) as u8))
                .collect()
        })
        .collect();
    (0..n)
        .map(|i| Document {
            id: format!("doc-{i}"),
            text: (0..words_per_doc)
                .map(|_| dictionary[(next() % dictionary.len() as u64) as usize].as_str())
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect()
}

/// A train step's output directory for `p`'s model: `model.json`, one checkpoint of
/// freshly initialised weights, and `tokenizer`'s `tokenizer.json`.
fn checkpoint_dir(dir: &Path, p: &TrainParams, tokenizer: &kiln_data::tokenize::Tokenizer) {
    let model = Model::new(&p.model, Precision::Fp32, p.seed, Device::Cpu).unwrap();
    let state = TrainState {
        format: STATE_FORMAT,
        step_id: "bench".into(),
        phase: p.phase.clone(),
        global_step: 0,
        phase_step: 0,
        samples_consumed: 0,
        tokens_trained: 0,
        adam_step: 0,
        rng: RngState {
            rule: "none".into(),
            seed: p.seed,
            next_step_seed: 0,
        },
        loss_scale: None,
        precision: "fp32".into(),
        lr: 0.0,
        loss: 0.0,
        files: Vec::new(),
        world: 1,
        zero: 0,
    };
    checkpoint::write(
        &dir.join("checkpoints"),
        model.named_parameters(),
        &[],
        &state,
        1,
    )
    .unwrap();
    std::fs::write(
        dir.join(score::MODEL_SPEC_FILE),
        serde_json::to_string(&p.model).unwrap(),
    )
    .unwrap();
    kiln_data::tokenize::save(tokenizer, dir).unwrap();
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let experiment = root.join(env_or(
        "KILN_BENCH_EXPERIMENT",
        "experiments/tiny.kiln".to_string(),
    ));
    let rounds: usize = env_or("KILN_BENCH_ROUNDS", 3);
    let steps: usize = env_or("KILN_BENCH_STEPS", 3);
    let threads: usize = env_or("KILN_BENCH_THREADS", 2);
    let docs_n: usize = env_or("KILN_BENCH_DOCS", 512);
    let batch: u64 = env_or("KILN_BENCH_BATCH", 16);

    let (checked, plans) = kiln::plan_paths(
        std::slice::from_ref(&experiment),
        &kiln::load::FsLoader,
        &[],
    )
    .expect("plan");
    assert!(
        checked.errors() == 0 && !plans.is_empty(),
        "{} does not plan",
        experiment.display()
    );
    let plan = Plan::from_value(serde_json::to_value(&plans[0].1).unwrap()).unwrap();
    let step = plan
        .steps
        .iter()
        .find(|s| s.kind() == kiln_plan::StepKind::Train)
        .expect("a train step");
    let p: &TrainParams = kiln_train::spec::train_params(step).unwrap();
    let seq_len = p.model.seq_len;
    let train_tokens = p.batch_tokens;
    tch::set_num_threads(threads as i32);

    let dir = tempfile::tempdir().unwrap();
    let docs = documents(docs_n, 2 * seq_len as usize);
    let input = dir.path().join("docs.jsonl");
    let mut w = JsonlWriter::create(&input).unwrap();
    for d in &docs {
        w.write(d).unwrap();
    }
    w.finish().unwrap();
    let (tokenizer, _) = kiln_data::tokenize::train_texts(
        &docs.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
        kiln_data::tokenize::TrainConfig::new(kiln_data::tokenize::ModelKind::Bpe, p.model.vocab),
    )
    .unwrap();
    let model_dir = dir.path().join("model");
    checkpoint_dir(&model_dir, p, &tokenizer);
    let model = Model::new(&p.model, Precision::Fp32, p.seed, Device::Cpu).unwrap();

    println!(
        "{}: {} parameters, seq_len {seq_len}, fp32, {threads} threads; scoring {docs_n} documents in batches of {batch}, training {train_tokens} tokens per step",
        experiment.display(),
        p.model.params
    );
    let (mut step_rates, mut forward_rates, mut train_rates) = (Vec::new(), Vec::new(), Vec::new());
    let here = PathBuf::from(".");
    for round in 1..=rounds {
        // The score step, end to end.
        let output = dir.path().join(format!("scores-{round}"));
        let job = ScoreJob {
            name: "bench".into(),
            id: None,
            source: None,
            input: input.clone(),
            output: output.clone(),
            scorer: ScorerModel::Checkpoint {
                path: model_dir.display().to_string(),
            },
            method: ScoreMethod::Perplexity,
            max_tokens: None,
            batch_docs: batch,
            max_document_bytes: kiln_data::ingest::DEFAULT_MAX_DOCUMENT_BYTES,
            context: ScorerContext {
                plan: None,
                run_dir: &here,
                source_root: &here,
                device: Device::Cpu,
            },
            progress: false,
            stop: Default::default(),
        };
        let started = Instant::now();
        let report = match score::score_documents(&job).unwrap() {
            ScoreOutcome::Done(r) => r,
            other => panic!("{other:?}"),
        };
        let step_rate = report.scored_tokens as f64 / started.elapsed().as_secs_f64();
        assert_eq!(report.scored_tokens, docs_n as u64 * seq_len);

        // The forward passes alone, on random ids of the same shape.
        let ids = Tensor::randint(
            p.model.vocab as i64,
            [docs_n as i64, seq_len as i64],
            (Kind::Int64, Device::Cpu),
        );
        let seqs: Vec<Vec<u32>> = (0..docs_n as i64)
            .map(|i| {
                Vec::<i64>::try_from(ids.get(i))
                    .unwrap()
                    .into_iter()
                    .map(|x| x as u32)
                    .collect()
            })
            .collect();
        let started = Instant::now();
        for chunk in seqs.chunks(batch as usize) {
            score::mean_losses(&model, chunk, Device::Cpu).unwrap();
        }
        let forward_rate = (docs_n as u64 * seq_len) as f64 / started.elapsed().as_secs_f64();

        let t = time_steps(p, Device::Cpu, 1, steps, Collective::single(), 0)
            .expect("kiln-train steps")
            .step_s;
        let train_rate = train_tokens / median(&t);
        println!(
            "round {round}: score step {step_rate:.0} tokens/s ({:.1} docs/s), forward only {forward_rate:.0} tokens/s, training {train_rate:.0} tokens/s",
            step_rate / seq_len as f64
        );
        step_rates.push(step_rate);
        forward_rates.push(forward_rate);
        train_rates.push(train_rate);
    }
    let (s, f, t) = (
        median(&step_rates),
        median(&forward_rates),
        median(&train_rates),
    );
    println!(
        "median over {rounds} rounds: score step {s:.0} tokens/s, forward only {f:.0} tokens/s, training {t:.0} tokens/s; scoring / training = {:.2}x",
        s / t
    );
}
