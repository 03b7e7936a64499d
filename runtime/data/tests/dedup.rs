//! Normalisation, exact dedup (Bloom filter) and near dedup (MinHash LSH), with datatrove's
//! `simplify_text` and datasketch's MinHash LSH as references (run through the scripts in
//! `tests/reference/` with the project's `.venv`; `bash scripts/setup` creates it).

#[path = "reference/corpus.rs"]
mod corpus;

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use corpus::{edit, license_chunks, license_texts, vocabulary, Rng, EDITS};
use kiln_data::exact::{
    exact_dedup_step, BloomError, BloomFilter, ExactDedup, ExactKey, BLOOM_FORMAT_VERSION,
    BLOOM_MAGIC,
};
use kiln_data::ingest::{Document, IngestConfig, JsonlWriter};
use kiln_data::near::{
    near_dedup_step, near_dedup_texts, true_jaccard, MinHasher, NearParams, NearReport,
    MINHASH_SEED,
};
use kiln_data::normalize::simplify_text;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The project's Python, checked to have datatrove and datasketch.
fn python() -> PathBuf {
    let py = workspace_root().join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run bash scripts/setup",
        py.display()
    );
    let ok = Command::new(&py)
        .args(["-c", "import datatrove.utils.text, datasketch"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the Python environment lacks datatrove, regex or datasketch: run bash scripts/setup"
    );
    py
}

/// Runs `tests/reference/SCRIPT` with the project's Python; panics with its stderr.
fn run_reference(script: &str, args: &[OsString]) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference");
    let out = Command::new(python())
        .arg(dir.join(script))
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("run the reference script");
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_jsonl(path: &Path, values: impl IntoIterator<Item = serde_json::Value>) {
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    for v in values {
        writeln!(f, "{v}").unwrap();
    }
}

fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Normalisation

const UNICODE_CASES: &[&str] = &[
    "Héllo, WÖRLD! naïve café — déjà vu",
    "ΣΊΣΥΦΟΣ ΟΔΥΣΣΕΥΣ. ΑΣ, ΑΣ",
    "İstanbul ıI Straße ǅ Ǆ ǆ",
    "pi 3.14 and 3.14.15, 1,000,000 and 1,,2 and a.1 and 1. end",
    "١٢٣٫٤٥ ٣،٤ ٠.٥ 1⎖2 ৩৪ ๑๒",
    "Ⅻ ½ ²³ 𝟘𝟙 ፩ numbers of other categories",
    "x\u{301} \u{301} y, \u{301}leading mark",
    "ctrl\u{0}\u{1}\u{7f}\u{85}\u{9f} chars",
    "tab\tnew\nline\r\nvt\u{b}ff\u{c} seps\u{1c}\u{1d}\u{1e}\u{1f}end",
    "nbsp\u{a0}thin\u{2009}ideo\u{3000}line\u{2028}para\u{2029}",
    "“quotes” ‘single’ — dash – ellipsis… «guillemets» „low“",
    "全角１２３，。！（括弧）【】「」〈〉《》：；？～％",
    "한국어 텍스트 Tiếng Việt có dấu עִבְרִית हिन्दी 日本語のテキスト",
    "emoji 🎉👍🏽 and ﬁ ligature and Å Å",
    "0x1F e.g. U.S.A. ’tis it's a—b a-b a_b a/b a\\b",
    "",
    "   \t\n ",
    "\u{301}",
];

#[test]
fn simplify_text_matches_datatrove() {
    let mut inputs: Vec<String> = UNICODE_CASES.iter().map(|s| s.to_string()).collect();
    for (_, text) in license_texts() {
        inputs.extend(text.lines().map(str::to_string));
        inputs.push(text);
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.json");
    let dst = dir.path().join("out.json");
    fs::write(&src, serde_json::to_string(&inputs).unwrap()).unwrap();
    run_reference("simplify_text.py", &[src.into(), dst.clone().into()]);
    let expected: Vec<String> = serde_json::from_str(&fs::read_to_string(&dst).unwrap()).unwrap();
    assert_eq!(expected.len(), inputs.len());
    let mismatches: Vec<String> = inputs
        .iter()
        .zip(&expected)
        .filter(|(input, want)| simplify_text(input) != **want)
        .map(|(input, want)| {
            format!(
                "{input:?}\n  kiln:      {:?}\n  datatrove: {want:?}",
                simplify_text(input)
            )
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} texts differ from datatrove:\n{}",
        mismatches.len(),
        inputs.len(),
        mismatches.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Exact dedup

/// Declared rates of the false-positive test (the second needs k = 13 probes, where a weak
/// double-hashing scheme would show), and the number of keys inserted and probed.
const FP_RATES: [f64; 2] = [1e-2, 1e-4];
const FP_KEYS: u64 = 10_000_000;

#[test]
fn bloom_false_positive_rate_on_ten_million_keys() {
    for declared in FP_RATES {
        let mut filter = BloomFilter::for_items(FP_KEYS, declared).unwrap();
        // Inserted keys: 0..n; probed keys: n..2n, all distinct from them.
        for i in 0..FP_KEYS {
            filter.insert(&i.to_le_bytes());
        }
        let false_positives = (FP_KEYS..2 * FP_KEYS)
            .filter(|i| filter.contains(&i.to_le_bytes()))
            .count();
        let measured = false_positives as f64 / FP_KEYS as f64;
        println!(
            "Bloom filter: n = {FP_KEYS}, declared p = {declared}, m = {} bits, k = {}, \
             measured false-positive rate = {measured:.6} ({false_positives} of {FP_KEYS} absent keys)",
            filter.bits(),
            filter.hashes()
        );
        assert!(
            measured <= 2.0 * declared && measured >= declared / 2.0,
            "measured {measured}, declared {declared}"
        );
        // A new key counts as inserted unless it was a false positive at the fill of its
        // time, whose rate stays below the declared one.
        assert!(filter.inserted() <= FP_KEYS);
        assert!(filter.inserted() as f64 >= FP_KEYS as f64 * (1.0 - declared));
        // Inserted keys are always found.
        assert!((0..1000u64).all(|i| filter.contains(&i.to_le_bytes())));
    }
}

#[test]
fn bloom_file_format_is_as_documented() {
    let mut filter = BloomFilter::for_items(1000, 0.001).unwrap();
    for i in 0..500u32 {
        filter.insert(format!("doc {i}").as_bytes());
    }
    let mut bytes = Vec::new();
    filter.write_to(&mut bytes).unwrap();
    let m = filter.bits();
    assert_eq!(bytes.len() as u64, 32 + m / 8 + 8);
    assert_eq!(bytes[..8], BLOOM_MAGIC);
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        BLOOM_FORMAT_VERSION
    );
    assert_eq!(
        u32::from_le_bytes(bytes[12..16].try_into().unwrap()),
        filter.hashes()
    );
    assert_eq!(u64::from_le_bytes(bytes[16..24].try_into().unwrap()), m);
    assert_eq!(
        u64::from_le_bytes(bytes[24..32].try_into().unwrap()),
        filter.inserted()
    );
    let body = bytes.len() - 8;
    let checksum = xxhash_rust::xxh3::xxh3_64(&bytes[..body]);
    assert_eq!(
        u64::from_le_bytes(bytes[body..].try_into().unwrap()),
        checksum
    );
    // The number of set bits agrees with the words.
    let ones: u32 = bytes[32..body].iter().map(|b| b.count_ones()).sum();
    assert!(ones > 0 && ones as u64 <= 500 * filter.hashes() as u64);
}

#[test]
fn bloom_saves_loads_and_refuses_damaged_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("filters/exact.bloom");
    let mut filter = BloomFilter::for_items(10_000, 1e-6).unwrap();
    for i in 0..5000u32 {
        filter.insert(&i.to_le_bytes());
    }
    filter.save(&path).unwrap();
    let loaded = BloomFilter::load(&path).unwrap();
    assert_eq!(loaded, filter);
    // No temporary file is left beside it.
    assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);

    let good = fs::read(&path).unwrap();
    let damaged = |name: &str, bytes: &[u8]| -> String {
        let p = dir.path().join(name);
        fs::write(&p, bytes).unwrap();
        match BloomFilter::load(&p) {
            Err(BloomError::Corrupt { reason, .. }) => reason,
            other => panic!("{name}: expected a corrupt-file error, got {other:?}"),
        }
    };
    let mut b = good.clone();
    b[0] = b'X';
    assert!(damaged("magic", &b).contains("magic"));
    let mut b = good.clone();
    b[8] = 2;
    assert!(damaged("version", &b).contains("version 2"));
    assert!(damaged("truncated", &good[..good.len() - 100]).contains("truncated"));
    let mut b = good.clone();
    b[40] ^= 1;
    assert!(damaged("flipped", &b).contains("checksum"));
    let mut b = good.clone();
    b.push(0);
    assert!(damaged("trailing", &b).contains("after the checksum"));
    assert!(matches!(
        BloomFilter::load(&dir.path().join("absent")),
        Err(BloomError::Io { .. })
    ));
}

#[test]
fn bloom_rejects_invalid_parameters() {
    for (n, p) in [
        (0, 0.01),
        (10, 0.0),
        (10, 1.0),
        (10, f64::NAN),
        (10, -1.0),
        (u64::MAX, 1e-9),
    ] {
        assert!(
            matches!(
                BloomFilter::for_items(n, p),
                Err(BloomError::InvalidParameters(_))
            ),
            "n = {n}, p = {p}"
        );
    }
    assert!(BloomFilter::with_size(0, 3).is_err());
    assert!(BloomFilter::with_size(64, 0).is_err());
    assert!(BloomFilter::with_size(64, 65).is_err());
}

fn doc(id: &str, text: &str) -> Document {
    Document {
        id: id.to_string(),
        text: text.to_string(),
    }
}

fn write_docs(path: &Path, docs: &[Document]) {
    let mut w = JsonlWriter::create(path).unwrap();
    for d in docs {
        w.write(d).unwrap();
    }
    w.finish().unwrap();
}

fn texts_of(path: &Path) -> Vec<String> {
    let mut reader =
        kiln_data::ingest::Ingest::open(&IngestConfig::new(vec![path.to_path_buf()])).unwrap();
    let texts = reader.by_ref().map(|d| d.unwrap().text).collect();
    assert_eq!(reader.report().malformed_lines, 0);
    texts
}

#[test]
fn exact_dedup_step_keeps_first_occurrences_across_sources() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl.zst");
    write_docs(
        &a,
        &[
            doc("1", "alpha"),
            doc("2", "beta"),
            doc("3", "alpha"),
            doc("4", "Alpha!"),
            doc("5", "gamma"),
        ],
    );
    write_docs(
        &b,
        &[doc("1", "beta"), doc("2", "delta"), doc("3", "delta")],
    );

    // Source a, with a fresh filter; then the saved filter reused for source b.
    let filter = BloomFilter::for_items(100, 1e-6).unwrap();
    let out_a = dir.path().join("out/a.jsonl");
    let step = exact_dedup_step(
        &IngestConfig::new(vec![a.clone()]),
        filter,
        ExactKey::Text,
        &out_a,
    )
    .unwrap();
    assert_eq!(texts_of(&out_a), ["alpha", "beta", "Alpha!", "gamma"]);
    assert_eq!(
        (
            step.report.input_docs,
            step.report.kept_docs,
            step.report.removed
        ),
        (5, 4, 1)
    );
    assert_eq!(step.report.filter_inserted, 4);
    assert_eq!(step.ingest.docs, 5);
    let saved = dir.path().join("exact.bloom");
    step.filter.save(&saved).unwrap();

    let out_b = dir.path().join("out/b.jsonl.zst");
    let step = exact_dedup_step(
        &IngestConfig::new(vec![b]),
        BloomFilter::load(&saved).unwrap(),
        ExactKey::Text,
        &out_b,
    )
    .unwrap();
    assert_eq!(texts_of(&out_b), ["delta"]);
    assert_eq!(
        (
            step.report.input_docs,
            step.report.kept_docs,
            step.report.removed
        ),
        (3, 1, 2)
    );
    assert_eq!(step.report.filter_inserted, 5);
    assert!(step.report.filter_false_positive_rate < 1e-9);

    // Keyed on simplified text, case and punctuation variants are copies too.
    let mut dedup = ExactDedup::new(
        BloomFilter::for_items(100, 1e-6).unwrap(),
        ExactKey::Simplified,
    );
    let kept: Vec<bool> = ["alpha", "beta", "alpha", "Alpha!"]
        .iter()
        .map(|t| dedup.keep(t))
        .collect();
    assert_eq!(kept, [true, true, false, false]);
    assert_eq!(dedup.report().removed, 2);

    // A missing input fails before the output is created.
    let out_c = dir.path().join("out/c.jsonl");
    let err = exact_dedup_step(
        &IngestConfig::new(vec![dir.path().join("absent.jsonl")]),
        BloomFilter::for_items(10, 0.01).unwrap(),
        ExactKey::Text,
        &out_c,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("absent.jsonl"), "{err}");
    assert!(!out_c.exists());
}

// ---------------------------------------------------------------------------------------
// Near dedup

/// Edited copies made of each license chunk for the labelled set.
const VARIANTS_PER_BASE: usize = 30;
/// Largest fraction of words edited; at 5-grams it takes the true Jaccard from 1 to ~0.2,
/// across the 14 × 8 threshold of 0.72.
const MAX_EDIT_FRACTION: f64 = 0.15;
/// How much worse than datasketch kiln's recall and precision may be (the bound).
const QUALITY_TOLERANCE: f64 = 0.01;
/// Hash seeds per implementation. Whether a pair near the threshold becomes a candidate is
/// a coin flip for both, so one seed's recall and precision on a few thousand pairs move by
/// about a point from seed to seed; pooling the decisions of several seeds compares the
/// implementations rather than two draws (the spread is printed).
const QUALITY_SEEDS: u64 = 8;

struct Labelled {
    docs: Vec<String>,
    /// The license file names of the first documents.
    names: Vec<String>,
    /// (document, document, origin)
    pairs: Vec<(usize, usize, &'static str)>,
}

/// Whole license texts, every pair of them (real near-duplicates such as LGPL-2 / LGPL-2.1
/// and GFDL-1.2 / GFDL-1.3, the symlinked copies GPL / GPL-3, and unrelated pairs), plus
/// license chunks each with edited copies (true Jaccard spread over [~0.3, 1]).
fn labelled_set() -> Labelled {
    let mut docs = Vec::new();
    let mut pairs = Vec::new();
    let licenses = license_texts();
    let names = licenses.iter().map(|(name, _)| name.clone()).collect();
    for (_, text) in &licenses {
        docs.push(text.clone());
    }
    for i in 0..licenses.len() {
        for j in i + 1..licenses.len() {
            pairs.push((i, j, "license"));
        }
    }
    let mut rng = Rng(0x6b696c6e);
    let bases = license_chunks(&mut rng, 150, 400);
    let vocab = vocabulary(&bases);
    for base in &bases {
        let b = docs.len();
        docs.push(base.clone());
        for v in 0..VARIANTS_PER_BASE {
            let fraction = MAX_EDIT_FRACTION * rng.unit();
            docs.push(edit(
                base,
                fraction,
                EDITS[v % EDITS.len()],
                &vocab,
                &mut rng,
            ));
            pairs.push((b, docs.len() - 1, "synthetic"));
        }
    }
    Labelled { docs, names, pairs }
}

#[derive(Default, Debug, Clone, Copy)]
struct Confusion {
    tp: u64,
    fp: u64,
    fn_: u64,
    tn: u64,
}

impl Confusion {
    fn add(&mut self, truth: bool, decision: bool) {
        match (truth, decision) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (true, false) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
    }
    fn merge(&mut self, other: &Confusion) {
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
        self.tn += other.tn;
    }
    fn recall(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fn_).max(1) as f64
    }
    fn precision(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fp).max(1) as f64
    }
}

#[test]
fn near_dedup_is_as_good_as_datasketch() {
    use rayon::prelude::*;
    let params = NearParams::default();
    let threshold = MinHasher::new(params).unwrap().threshold();
    let set = labelled_set();

    let dir = tempfile::tempdir().unwrap();
    let docs_path = dir.path().join("docs.jsonl");
    let pairs_path = dir.path().join("pairs.jsonl");
    let out_path = dir.path().join("decisions.jsonl");
    write_jsonl(
        &docs_path,
        set.docs
            .iter()
            .enumerate()
            .map(|(i, t)| serde_json::json!({"id": format!("d{i}"), "text": t})),
    );
    write_jsonl(
        &pairs_path,
        set.pairs
            .iter()
            .map(|(a, b, _)| serde_json::json!({"a": format!("d{a}"), "b": format!("d{b}")})),
    );
    let seeds: Vec<String> = (1..=QUALITY_SEEDS).map(|s| s.to_string()).collect();
    let arg = |s: &str| OsString::from(s);
    run_reference(
        "datasketch_lsh.py",
        &[
            docs_path.into(),
            pairs_path.into(),
            out_path.clone().into(),
            arg("--ngram"),
            arg(&params.ngram.to_string()),
            arg("--bands"),
            arg(&params.bands.to_string()),
            arg("--rows"),
            arg(&params.rows.to_string()),
            arg("--seeds"),
            arg(&seeds.join(",")),
        ],
    );
    let reference = read_jsonl(&out_path);
    assert_eq!(reference.len(), set.pairs.len());

    // The ground truth, checked against the Python shingling of the same texts.
    let truth_j: Vec<f64> = set
        .pairs
        .par_iter()
        .map(|(a, b, _)| true_jaccard(&set.docs[*a], &set.docs[*b], params.ngram))
        .collect();
    let jaccard_mismatches: Vec<String> = set
        .pairs
        .iter()
        .zip(&truth_j)
        .zip(&reference)
        .filter(|((_, j), r)| (*j - r["true_jaccard"].as_f64().unwrap()).abs() > 1e-12)
        .map(|(((a, b, _), j), r)| format!("d{a}/d{b}: kiln {j}, Python {}", r["true_jaccard"]))
        .collect();
    assert!(
        jaccard_mismatches.is_empty(),
        "kiln's shingles differ from the reference on {} pairs:\n{}",
        jaccard_mismatches.len(),
        jaccard_mismatches.join("\n")
    );

    let similar: Vec<String> = set
        .pairs
        .iter()
        .zip(&truth_j)
        .filter(|((_, _, origin), &j)| *origin == "license" && j >= 0.1)
        .map(|((a, b, _), j)| format!("{}/{} {j:.3}", set.names[*a], set.names[*b]))
        .collect();
    println!(
        "license pairs with true Jaccard >= 0.1: {}",
        similar.join(", ")
    );

    let mut kiln = Confusion::default();
    let mut datasketch = Confusion::default();
    let mut kiln_license = Confusion::default();
    let mut datasketch_license = Confusion::default();
    let (mut kiln_err, mut datasketch_err) = (0.0f64, 0.0f64);
    let mut per_seed = Vec::new();
    for s in 0..QUALITY_SEEDS as usize {
        let hasher = MinHasher::new(NearParams {
            seed: MINHASH_SEED.wrapping_add(s as u64),
            ..params
        })
        .unwrap();
        let signatures: Vec<_> = set.docs.par_iter().map(|t| hasher.signature(t)).collect();
        let (mut k1, mut d1) = (Confusion::default(), Confusion::default());
        for (((a, b, origin), &j), r) in set.pairs.iter().zip(&truth_j).zip(&reference) {
            let truth = j >= threshold;
            let (kiln_says, kiln_est) = match (&signatures[*a], &signatures[*b]) {
                (Some(x), Some(y)) => (hasher.is_candidate(x, y), x.estimated_jaccard(y)),
                _ => (false, 0.0),
            };
            let datasketch_says = r["candidate"][s].as_bool().unwrap();
            k1.add(truth, kiln_says);
            d1.add(truth, datasketch_says);
            if *origin == "license" {
                kiln_license.add(truth, kiln_says);
                datasketch_license.add(truth, datasketch_says);
            }
            kiln_err += (kiln_est - j).abs();
            datasketch_err += (r["estimated_jaccard"][s].as_f64().unwrap() - j).abs();
        }
        per_seed.push(format!(
            "  seed {s}: kiln R {:.4} P {:.4} | datasketch R {:.4} P {:.4}",
            k1.recall(),
            k1.precision(),
            d1.recall(),
            d1.precision()
        ));
        kiln.merge(&k1);
        datasketch.merge(&d1);

        if s == 0 {
            // The index agrees with the pairwise decisions: candidates share a cluster.
            let clusters = near_dedup_texts(
                &set.docs,
                NearParams {
                    seed: hasher.params().seed,
                    ..params
                },
            )
            .unwrap();
            for (a, b, _) in &set.pairs {
                if let (Some(x), Some(y)) = (&signatures[*a], &signatures[*b]) {
                    if hasher.is_candidate(x, y) {
                        assert_eq!(
                            clusters.cluster_of(*a as u64),
                            clusters.cluster_of(*b as u64)
                        );
                    }
                }
            }
        }
    }
    let decisions = (set.pairs.len() as u64 * QUALITY_SEEDS) as f64;
    println!(
        "labelled pairs: {} ({} whole-license pairs, {} synthetic), duplicates (true {}-gram \
         Jaccard >= {threshold:.4}): {}; {} seeds each",
        set.pairs.len(),
        set.pairs.iter().filter(|p| p.2 == "license").count(),
        set.pairs.iter().filter(|p| p.2 == "synthetic").count(),
        params.ngram,
        (kiln.tp + kiln.fn_) / QUALITY_SEEDS,
        QUALITY_SEEDS
    );
    println!("{}", per_seed.join("\n"));
    println!(
        "kiln:       recall {:.4} precision {:.4}  {:?}  mean |estimated - true Jaccard| {:.4}",
        kiln.recall(),
        kiln.precision(),
        kiln,
        kiln_err / decisions
    );
    println!(
        "datasketch: recall {:.4} precision {:.4}  {:?}  mean |estimated - true Jaccard| {:.4}",
        datasketch.recall(),
        datasketch.precision(),
        datasketch,
        datasketch_err / decisions
    );
    println!("whole-license pairs: kiln {kiln_license:?}, datasketch {datasketch_license:?}");
    assert!(kiln.recall() >= datasketch.recall() - QUALITY_TOLERANCE);
    assert!(kiln.precision() >= datasketch.precision() - QUALITY_TOLERANCE);
    // The license set has real duplicates (the symlinked copies at least).
    assert!(kiln_license.tp >= 3 * QUALITY_SEEDS, "{kiln_license:?}");
}

#[test]
fn minhash_estimates_jaccard_without_bias() {
    let params = NearParams::default();
    let hasher = MinHasher::new(params).unwrap();
    let k = (params.bands * params.rows) as f64;
    let mut rng = Rng(7);
    let bases = license_chunks(&mut rng, 300, 500);
    let vocab = vocabulary(&bases);
    let (mut sum_err, mut sum_z2, mut count) = (0.0, 0.0, 0.0);
    for base in &bases {
        for kind in EDITS {
            let other = edit(base, 0.1 * rng.unit(), kind, &vocab, &mut rng);
            let j = true_jaccard(base, &other, params.ngram);
            let est = hasher
                .signature(base)
                .unwrap()
                .estimated_jaccard(&hasher.signature(&other).unwrap());
            let var = (j * (1.0 - j) / k).max(1.0 / (k * k));
            sum_err += est - j;
            sum_z2 += (est - j).powi(2) / var;
            count += 1.0;
        }
    }
    let bias = sum_err / count;
    let z2 = sum_z2 / count;
    println!("MinHash over {count} pairs: mean error {bias:+.4}, mean squared z {z2:.3}");
    // The binomial standard error of the mean of `count` estimates is < 0.05/sqrt(count).
    assert!(bias.abs() < 4.0 * 0.05 / count.sqrt(), "bias {bias}");
    // Each estimate's variance is J(1 − J)/k (a binomial proportion).
    assert!(z2 > 0.6 && z2 < 1.5, "mean squared z {z2}");
}

#[test]
fn near_dedup_does_not_depend_on_thread_count() {
    let corpus = corpus::bench_corpus(600, 5, 3);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let c = near_dedup_texts(&corpus, NearParams::default()).unwrap();
            let kept: Vec<bool> = (0..corpus.len() as u64).map(|i| c.is_kept(i)).collect();
            (kept, c.report().clone())
        })
    };
    let (one, report) = run(1);
    assert_eq!(run(3), (one, report.clone()));
    assert!(report.clusters > 0 && report.kept_docs < report.input_docs);
}

#[test]
fn near_dedup_step_writes_the_first_of_each_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    // 80 words; one replaced word leaves a true 5-gram Jaccard of 71/81 = 0.88, a
    // candidate with probability 0.998 at 14 × 8.
    let base = corpus::license_texts()
        .into_iter()
        .find(|(name, _)| name == "GPL-3")
        .map(|(_, t)| {
            t.split_whitespace()
                .skip(100)
                .take(80)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap();
    let replaced = base.split(' ').nth(40).unwrap().to_string();
    let edited: Vec<&str> = base
        .split(' ')
        .enumerate()
        .map(|(i, w)| if i == 40 { "changed" } else { w })
        .collect();
    let edited = edited.join(" ");
    assert_ne!(replaced, "changed");
    write_docs(
        &src.join("a.jsonl"),
        &[
            doc(
                "x",
                "an unrelated document about something else entirely with many words",
            ),
            doc("y", &base),
        ],
    );
    write_docs(
        &src.join("b.jsonl.zst"),
        &[
            doc("z", &edited.to_uppercase()),
            doc("w", "too short"),
            doc("v", &base),
        ],
    );
    let out = dir.path().join("near.jsonl.zst");
    let step = near_dedup_step(
        &IngestConfig::new(vec![src.clone()]),
        NearParams::default(),
        &out,
    )
    .unwrap();
    assert_eq!(
        step.report,
        NearReport {
            input_docs: 5,
            kept_docs: 3,
            clusters: 1,
            unshingled_docs: 1
        }
    );
    assert_eq!(step.ingest.files, 2);
    let ids: Vec<String> =
        kiln_data::ingest::Ingest::open(&IngestConfig::new(vec![out]).with_ids())
            .unwrap()
            .map(|d| d.unwrap().id)
            .collect();
    let a = src.join("a.jsonl");
    let b = src.join("b.jsonl.zst");
    assert_eq!(
        ids,
        [
            format!("{}:1", a.display()),
            format!("{}:2", a.display()),
            format!("{}:2", b.display())
        ]
    );
}
