//! Encoding throughput, kiln against Python `tokenizers` (the project's `.venv`): the same
//! texts, the same `tokenizer.json`, the same thread count (1 and 2), printed side by side
//! with the ratio (target: kiln within 10 % of Python). Criterion then measures kiln's
//! encoding on its own.
//!
//! Texts: about [`SAMPLE_BYTES`] from each demo source (`data/tiny/web.jsonl`,
//! `code.jsonl`; `bash scripts/corpus`), or the committed license texts and generated
//! Python-like modules when the demo corpus is absent. Tokenizers: BPE with 2048 tokens (tiny.kiln's), trained
//! here, byte-level and Metaspace. Both sides encode a list of documents in parallel on a
//! pool of N threads (kiln: `shards::encode_texts` on a rayon pool; Python:
//! `Tokenizer.encode_batch_fast` with `RAYON_NUM_THREADS=N`), in [`ROUNDS`] alternating
//! rounds of [`RUNS`] timed runs each after a warm-up; the best times are compared (the
//! least disturbed by other work on a shared machine), and the token counts must agree.
//!
//! Run: `cargo bench -p kiln-data --bench tokenize`.

#[path = "../tests/reference/corpus.rs"]
mod corpus;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use kiln_data::shards::encode_texts;
use kiln_data::tokenize::{self, train_texts, ModelKind, Pretokenize, TrainConfig};

/// Bytes of text per demo source (assumption: long enough for a stable timing, short
/// enough for a quick benchmark on 2 cores).
const SAMPLE_BYTES: usize = 1_500_000;
/// Timed runs per round and side.
const RUNS: usize = 3;
/// Alternating rounds (kiln, Python, kiln, …), so both sides see the machine's load alike.
const ROUNDS: usize = 3;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sample(path: &Path) -> Vec<String> {
    let size = fs::metadata(path).map(|m| m.len() as usize).unwrap_or(0);
    let every = (size / SAMPLE_BYTES).max(1);
    let mut out = Vec::new();
    let mut bytes = 0;
    let file = fs::File::open(path).expect("open the demo corpus");
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let Ok(line) = line else { break };
        if i % every != 0 || bytes >= SAMPLE_BYTES {
            continue;
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if let Some(t) = v["text"].as_str() {
                bytes += t.len();
                out.push(t.to_string());
            }
        }
    }
    out
}

fn texts() -> (Vec<String>, &'static str) {
    let demo = workspace_root().join("data/tiny");
    if demo.join("web.jsonl").exists() && demo.join("code.jsonl").exists() {
        let mut t = sample(&demo.join("web.jsonl"));
        t.extend(sample(&demo.join("code.jsonl")));
        return (t, "the demo corpus (data/tiny, sampled)");
    }
    let mut t: Vec<String> = corpus::license_texts()
        .into_iter()
        .map(|(_, x)| x)
        .collect();
    for seed in 0..200 {
        t.push(corpus::python_module(&mut corpus::Rng(seed)));
    }
    (
        t,
        "license texts and generated Python modules (no data/tiny)",
    )
}

fn best(xs: Vec<f64>) -> f64 {
    xs.into_iter().fold(f64::INFINITY, f64::min)
}

/// Best seconds of [`RUNS`] runs and the tokens of kiln's encoding on `threads` threads.
fn kiln(tok: &tokenize::Tokenizer, texts: &[String], threads: usize) -> (f64, u64) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let warm = encode_texts(tok, texts, None).unwrap();
        let tokens: u64 = warm.iter().map(|d| d.len() as u64).sum();
        let times = (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                let out = encode_texts(tok, texts, None).unwrap();
                let s = t.elapsed().as_secs_f64();
                assert_eq!(out.len(), texts.len());
                s
            })
            .collect();
        (best(times), tokens)
    })
}

const PYTHON: &str = r#"
import json, sys, time
import tokenizers
tok = tokenizers.Tokenizer.from_file(sys.argv[1])
texts = json.load(open(sys.argv[2]))
runs = int(sys.argv[3])
enc = tok.encode_batch_fast(texts, add_special_tokens=False)
tokens = sum(len(e.ids) for e in enc)
times = []
for _ in range(runs):
    t = time.perf_counter()
    tok.encode_batch_fast(texts, add_special_tokens=False)
    times.append(time.perf_counter() - t)
print(json.dumps({"seconds": min(times), "tokens": tokens, "version": tokenizers.__version__}))
"#;

/// Best seconds of [`RUNS`] runs, tokens and version of Python `tokenizers` on `threads`
/// threads.
fn python(tokenizer: &Path, texts: &Path, threads: usize) -> Option<(f64, u64, String)> {
    let py = workspace_root().join(".venv/bin/python");
    let out = Command::new(&py)
        .arg("-c")
        .arg(PYTHON)
        .arg(tokenizer)
        .arg(texts)
        .arg(RUNS.to_string())
        .env("RAYON_NUM_THREADS", threads.to_string())
        .env("TOKENIZERS_PARALLELISM", "true")
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "python tokenizers failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((
        v["seconds"].as_f64()?,
        v["tokens"].as_u64()?,
        v["version"].as_str()?.to_string(),
    ))
}

fn main() {
    let (texts, what) = texts();
    let bytes: usize = texts.iter().map(|t| t.len()).sum();
    println!(
        "encoding {} documents, {:.1} MB of {what}",
        texts.len(),
        bytes as f64 / 1e6
    );
    let dir = tempfile::tempdir().unwrap();
    let texts_path = dir.path().join("texts.json");
    fs::write(&texts_path, serde_json::to_string(&texts).unwrap()).unwrap();
    let configs = [
        ("bpe/byte_level", Pretokenize::ByteLevel),
        ("bpe/metaspace", Pretokenize::Metaspace),
    ];
    let mut trained = Vec::new();
    println!(
        "{:<16} {:>7} {:>14} {:>14} {:>8}",
        "tokenizer", "threads", "kiln tok/s", "python tok/s", "kiln/py"
    );
    for (label, pre) in configs {
        let cfg = TrainConfig {
            kind: ModelKind::Bpe,
            vocab_size: 2048,
            pretokenize: pre,
        };
        let (tok, _) = train_texts(&texts, cfg).unwrap();
        let tok_dir = dir.path().join(label.replace('/', "-"));
        tokenize::save(&tok, &tok_dir).unwrap();
        let tok = tokenize::load(&tok_dir).unwrap();
        for threads in [1, 2] {
            let mut ours = (f64::INFINITY, 0);
            let mut theirs: Option<(f64, u64, String)> = None;
            for _ in 0..ROUNDS {
                let (secs, tokens) = kiln(&tok, &texts, threads);
                ours = (ours.0.min(secs), tokens);
                if let Some((s, t, v)) =
                    python(&tok_dir.join("tokenizer.json"), &texts_path, threads)
                {
                    let prev = theirs.as_ref().map_or(f64::INFINITY, |p| p.0);
                    theirs = Some((prev.min(s), t, v));
                }
            }
            let (secs, tokens) = ours;
            let ours = tokens as f64 / secs;
            match theirs {
                Some((py_secs, py_tokens, version)) => {
                    assert_eq!(tokens, py_tokens, "{label}: kiln and Python disagree");
                    let theirs = py_tokens as f64 / py_secs;
                    println!(
                        "{label:<16} {threads:>7} {ours:>14.0} {theirs:>14.0} {:>8.3}   (tokenizers {version}, {tokens} tokens)",
                        ours / theirs
                    );
                }
                None => println!(
                    "{label:<16} {threads:>7} {ours:>14.0} {:>14} {:>8}   (no .venv: bash scripts/setup)",
                    "-", "-"
                ),
            }
        }
        trained.push((label, tok));
    }

    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = c.benchmark_group("encode");
    for (label, tok) in &trained {
        let tokens: u64 = encode_texts(tok, &texts, None)
            .unwrap()
            .iter()
            .map(|d| d.len() as u64)
            .sum();
        group.throughput(Throughput::Elements(tokens));
        for threads in [1usize, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            group.bench_function(format!("{label}/{threads}-threads"), |b| {
                b.iter(|| pool.install(|| encode_texts(tok, &texts, None).unwrap()))
            });
        }
    }
    group.finish();
    c.final_summary();
}
