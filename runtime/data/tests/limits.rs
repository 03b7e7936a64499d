//! Bounded cost on large documents: a document above `--max-document-bytes` is skipped and
//! counted without ever being held in memory, so `kiln data tokenize` and `filter` on a
//! 200 MB document finish (exit 0) in a small, asserted amount of memory.

mod common;

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use common::{child_main, run_child};

/// A line of prose-like words, deterministic.
fn words_chunk(bytes: usize, seed: u64) -> String {
    const WORDS: [&str; 16] = [
        "the", "data", "model", "tokens", "of", "training", "and", "a", "corpus", "is", "filtered",
        "before", "it", "reaches", "each", "step",
    ];
    let mut out = String::with_capacity(bytes + 16);
    let mut state = seed;
    let mut i = 0usize;
    while out.len() < bytes {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.push_str(WORDS[(state >> 60) as usize]);
        i += 1;
        out.push_str(if i.is_multiple_of(20) { ".\\n" } else { " " });
    }
    out
}

/// Writes `path`: `small` ordinary documents, then one document of `big_bytes` bytes of
/// text (streamed to the file, never held whole), then `small` more.
fn corpus_with_a_large_document(path: &Path, small: usize, big_bytes: usize) {
    let mut w = BufWriter::new(fs::File::create(path).unwrap());
    let line = |w: &mut BufWriter<fs::File>, i: usize| {
        let text = words_chunk(2_000, i as u64).replace("\\n", "\n");
        writeln!(w, "{}", serde_json::json!({ "text": text })).unwrap();
    };
    for i in 0..small {
        line(&mut w, i);
    }
    // The large document: `\n` is written escaped, as JSON needs.
    let chunk = words_chunk(1 << 20, 99);
    w.write_all(b"{\"text\": \"").unwrap();
    let mut written = 0;
    while written < big_bytes {
        let n = chunk.len().min(big_bytes - written);
        w.write_all(&chunk.as_bytes()[..n]).unwrap();
        written += n;
    }
    w.write_all(b"\"}\n").unwrap();
    for i in 0..small {
        line(&mut w, small + i);
    }
    w.flush().unwrap();
}

/// The child side of the memory tests (runs only when the parent sets its variable).
#[test]
fn child() {
    child_main();
}

/// A bound on the peak resident memory of a child process handling a 200 MB document:
/// the test binary itself, the read buffers, one batch of ordinary documents and the
/// line buffer (at most `max_line_bytes` of the default 8 MiB limit), far below the
/// document's own size.
const PEAK_RSS_BOUND_BYTES: u64 = 300 << 20;
const LARGE_DOCUMENT_BYTES: usize = 200 << 20;

fn counted_as_too_large(summary: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(summary).expect("a JSON summary");
    assert_eq!(v["too_large_docs"], 1, "{v:#}");
    v
}

#[test]
fn a_200_mb_document_is_skipped_by_tokenize_and_filter_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    corpus_with_a_large_document(&input, 20, LARGE_DOCUMENT_BYTES);
    assert!(fs::metadata(&input).unwrap().len() > LARGE_DOCUMENT_BYTES as u64);

    let tok = run_child(
        "child",
        &[
            "tokenize",
            "big.jsonl",
            "--out",
            "tok",
            "--vocab",
            "300",
            "--format",
            "json",
            "--quiet",
        ],
        dir.path(),
    );
    assert_eq!(tok.code, 0, "{}\n{}", tok.stdout, tok.stderr);
    let v = counted_as_too_large(&tok.summary);
    assert_eq!(v["input_docs"], 40);
    assert_eq!(v["too_large"][0]["line"], 21, "{v:#}");
    assert_eq!(v["encode"]["too_large"][0]["line"], 21, "{v:#}");

    let filter = run_child(
        "child",
        &[
            "filter",
            "big.jsonl",
            "--out",
            "good.jsonl",
            "--format",
            "json",
            "--quiet",
        ],
        dir.path(),
    );
    assert_eq!(filter.code, 0, "{}\n{}", filter.stdout, filter.stderr);
    let v = counted_as_too_large(&filter.summary);
    assert_eq!(v["input_docs"], 40);

    eprintln!(
        "peak resident memory on a {} MB document: tokenize {:.1} MB, filter {:.1} MB (bound {} MB)",
        LARGE_DOCUMENT_BYTES >> 20,
        tok.peak_rss_bytes as f64 / (1 << 20) as f64,
        filter.peak_rss_bytes as f64 / (1 << 20) as f64,
        PEAK_RSS_BOUND_BYTES >> 20
    );
    for (name, run) in [("tokenize", &tok), ("filter", &filter)] {
        assert!(run.peak_rss_bytes > 0, "{name}: no VmHWM read");
        assert!(
            run.peak_rss_bytes < PEAK_RSS_BOUND_BYTES,
            "{name}: peak resident memory {} bytes",
            run.peak_rss_bytes
        );
    }
}

/// A document just within the limit is processed whole (tokenizer training, encoding,
/// the filters) in memory a small multiple of its size: `tokenizers` needs about a hundred
/// bytes per byte it pre-tokenises at once, so kiln feeds it pieces (`tokenize::pieces`).
#[test]
fn a_document_at_the_limit_costs_a_small_multiple_of_its_size() {
    const LIMIT: usize = 4 << 20;
    // Baseline (the test binary, buffers) plus this many times the document.
    const BASELINE_BYTES: u64 = 48 << 20;
    const PER_DOCUMENT_BYTE: u64 = 16;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    corpus_with_a_large_document(&input, 20, LIMIT - 64);
    let limit = LIMIT.to_string();
    let mut peaks = Vec::new();
    for command in [
        &["tokenize", "big.jsonl", "--out", "tok", "--vocab", "300"][..],
        &["filter", "big.jsonl", "--out", "good.jsonl"][..],
    ] {
        let mut args = command.to_vec();
        args.extend([
            "--max-document-bytes",
            &limit,
            "--format",
            "json",
            "--quiet",
        ]);
        args.extend(["--threads", "1"]);
        let run = run_child("child", &args, dir.path());
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        let v: serde_json::Value = serde_json::from_str(&run.summary).unwrap();
        assert_eq!(v["input_docs"], 41, "{v:#}");
        assert_eq!(v["too_large_docs"], 0, "{v:#}");
        peaks.push((command[0], run.peak_rss_bytes));
    }
    for (name, peak) in &peaks {
        eprintln!(
            "{name}: peak resident memory {:.1} MB with a {} MiB document",
            *peak as f64 / (1 << 20) as f64,
            LIMIT >> 20
        );
        assert!(
            *peak < BASELINE_BYTES + PER_DOCUMENT_BYTE * LIMIT as u64,
            "{name}: {peak} bytes"
        );
    }
}
