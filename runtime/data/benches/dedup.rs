//! Dedup throughput: near-dedup documents per second on one core, kiln against datasketch
//! on the same documents, and Bloom-filter inserts per second.
//!
//! `cargo bench -p kiln-data --bench dedup` runs the criterion benchmarks
//! (`near_dedup/kiln_1_thread`, `bloom/insert`), then times kiln once more outside criterion
//! and `tests/reference/datasketch_bench.py` (the project's `.venv`) on the same corpus and
//! prints both rates and their ratio (the target: ≥ 10×). kiln runs on a one-thread
//! rayon pool, so its rate is per core; datasketch is single-threaded.
//! `cargo test -p kiln-data --benches` and `cargo bench … -- --test` run each benchmark
//! once as a smoke test, without the comparison.

#[path = "../tests/reference/corpus.rs"]
mod corpus;

use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput};
use kiln_data::exact::BloomFilter;
use kiln_data::near::{near_dedup_texts, NearParams};

/// Documents in the near-dedup corpus (license chunks of 300–700 words and edited copies).
const NEAR_DOCS: usize = 4000;
/// Edited copies per original in the corpus.
const NEAR_VARIANTS: usize = 7;
/// Keys per Bloom-filter measurement, at the schema's default rate.
const BLOOM_KEYS: u64 = 1_000_000;
const BLOOM_RATE: f64 = 1e-6;

fn one_thread() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread rayon pool")
}

fn near_dedup(c: &mut Criterion, docs: &[String]) {
    let pool = one_thread();
    let mut group = c.benchmark_group("near_dedup");
    group.throughput(Throughput::Elements(docs.len() as u64));
    group.sample_size(10);
    group.bench_function("kiln_1_thread", |b| {
        b.iter(|| {
            pool.install(|| near_dedup_texts(black_box(docs), NearParams::default()).unwrap())
        })
    });
    group.finish();
}

fn bloom(c: &mut Criterion) {
    let keys: Vec<[u8; 8]> = (0..BLOOM_KEYS).map(|i| i.to_le_bytes()).collect();
    let mut group = c.benchmark_group("bloom");
    group.throughput(Throughput::Elements(BLOOM_KEYS));
    group.sample_size(10);
    group.bench_function("insert", |b| {
        b.iter_batched_ref(
            || BloomFilter::for_items(BLOOM_KEYS, BLOOM_RATE).unwrap(),
            |filter| {
                for key in &keys {
                    filter.insert(black_box(key));
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// kiln's near-dedup rate on one thread, best of three runs, in documents per second.
fn kiln_docs_per_second(docs: &[String]) -> (f64, u64, u64) {
    let pool = one_thread();
    let mut best = f64::INFINITY;
    let mut report = None;
    for _ in 0..3 {
        let start = Instant::now();
        let clusters = pool.install(|| near_dedup_texts(docs, NearParams::default()).unwrap());
        best = best.min(start.elapsed().as_secs_f64());
        report = Some(clusters.report().clone());
    }
    let report = report.unwrap_or_default();
    (docs.len() as f64 / best, report.kept_docs, report.clusters)
}

/// Runs the datasketch script on the same documents; `None` (with the reason printed) when
/// the Python environment is missing.
fn datasketch_docs_per_second(docs: &[String]) -> Option<serde_json::Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        println!(
            "datasketch: {} is missing: run bash scripts/setup",
            python.display()
        );
        return None;
    }
    let dir = tempfile::tempdir().ok()?;
    let path = dir.path().join("docs.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).ok()?);
    for (i, text) in docs.iter().enumerate() {
        writeln!(
            f,
            "{}",
            serde_json::json!({"id": i.to_string(), "text": text})
        )
        .ok()?;
    }
    drop(f);
    let params = NearParams::default();
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference");
    let out = Command::new(&python)
        .arg(reference.join("datasketch_bench.py"))
        .arg(&path)
        .args(["--ngram", &params.ngram.to_string()])
        .args(["--bands", &params.bands.to_string()])
        .args(["--rows", &params.rows.to_string()])
        .current_dir(&reference)
        .output()
        .ok()?;
    if !out.status.success() {
        println!(
            "datasketch: the script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; `cargo test` does not, and then each benchmark runs
    // once as a smoke test.
    let benchmarking = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let docs = corpus::bench_corpus(NEAR_DOCS, NEAR_VARIANTS, 11);
    // Criterion itself runs each benchmark once when `--bench` is absent.
    let mut criterion = Criterion::default().configure_from_args();
    near_dedup(&mut criterion, &docs);
    bloom(&mut criterion);
    criterion.final_summary();
    if !benchmarking {
        return;
    }

    let words: usize = docs.iter().map(|d| d.split_whitespace().count()).sum();
    println!(
        "\nnear dedup, {} documents ({:.0} words each on average), 5-grams, 14 bands x 8 rows, one core:",
        docs.len(),
        words as f64 / docs.len() as f64
    );
    let (kiln_rate, kept, clusters) = kiln_docs_per_second(&docs);
    println!("  kiln:       {kiln_rate:>10.0} docs/s  (kept {kept}, clusters {clusters})");
    if let Some(ds) = datasketch_docs_per_second(&docs) {
        let rate = ds["docs_per_second"].as_f64().unwrap_or(f64::NAN);
        println!(
            "  datasketch: {rate:>10.0} docs/s  (kept {}, clusters {})",
            ds["kept_docs"], ds["clusters"]
        );
        println!("  ratio:      {:>10.1}x", kiln_rate / rate);
    }
}
