//! Mixing: shares follow the weights, the draw is deterministic from the seed, held-out
//! documents are never trained on by any phase, epochs are counted (and warned about), and
//! each epoch visits every pool document once before any repeats.
//!
//! The sources are synthetic datasets whose documents carry their identity in their first
//! tokens (`[source, index / 1000, index % 1000, filler…, EOD]`), so a drawn document can be
//! traced back to where it came from.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use kiln_data::mix::{mix, MixConfig, MixError, MixReport, MixSource, MAX_HELD_OUT_FRACTION};
use kiln_data::shards::{dataset_paths, IndexedDataset, IndexedWriter, TokenDtype};

const EOD: u32 = 0;

/// A dataset of `docs` documents of 4 to `max_len + 3` tokens, tagged with `tag`.
fn source(dir: &Path, name: &str, tag: u32, docs: u32, max_len: u32) -> IndexedDataset {
    let prefix = dir.join(name);
    let mut w = IndexedWriter::create(&prefix, TokenDtype::Uint16).unwrap();
    for i in 0..docs {
        // A spread of lengths without a generator: 1..=max_len, varied by the index.
        let len = 1 + (i * 7919 + tag * 31) % max_len;
        let mut doc = vec![tag, i / 1000, i % 1000];
        doc.extend((0..len).map(|j| 10 + j % 50));
        doc.push(EOD);
        w.add_document(&doc).unwrap();
    }
    w.finish().unwrap();
    IndexedDataset::open(&prefix).unwrap()
}

/// (source tag, document index) of each document of a dataset.
fn identities(prefix: &Path) -> Vec<(u32, u32)> {
    let ds = IndexedDataset::open(prefix).unwrap();
    (0..ds.documents())
        .map(|d| {
            let doc = ds.document(d);
            (doc[0], doc[1] * 1000 + doc[2])
        })
        .collect()
}

fn run(
    dir: &Path,
    sources: &[MixSource],
    phase: &str,
    tokens: u64,
    held_out: u64,
    seed: u64,
) -> MixReport {
    let config = MixConfig {
        phase: phase.into(),
        train_tokens: tokens,
        held_out_tokens: held_out,
        seed,
    };
    mix(
        sources,
        &config,
        &dir.join(format!("{phase}-{seed}-train")),
        &dir.join(format!("{phase}-{seed}-held")),
        |_| {},
    )
    .unwrap()
}

fn two_sources<'a>(a: &'a IndexedDataset, b: &'a IndexedDataset, wa: f64) -> Vec<MixSource<'a>> {
    vec![
        MixSource {
            name: "code".into(),
            weight: 1.0 - wa,
            dataset: b,
            max_epochs: 4.0,
        },
        MixSource {
            name: "web".into(),
            weight: wa,
            dataset: a,
            max_epochs: 4.0,
        },
    ]
}

#[test]
fn shares_follow_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    let web = source(dir.path(), "web", 1, 3000, 400);
    let code = source(dir.path(), "code", 2, 1000, 900);
    for wa in [0.8, 0.5, 0.1] {
        let r = run(
            dir.path(),
            &two_sources(&web, &code, wa),
            &format!("p{wa}"),
            500_000,
            20_000,
            7,
        );
        assert!(r.train_tokens >= 500_000);
        // The last document is kept whole: at most one document over.
        assert!(r.train_tokens < 500_000 + 1000, "{}", r.train_tokens);
        let web_share = r.sources.iter().find(|s| s.name == "web").unwrap().share;
        assert!(
            (web_share - wa).abs() < 0.005,
            "weight {wa}: share {web_share}"
        );
        // Checked against the written stream, not only the report.
        let ids = identities(&dir.path().join(format!("p{wa}-7-train")));
        assert_eq!(ids.len() as u64, r.train_docs);
        let ds = IndexedDataset::open(&dir.path().join(format!("p{wa}-7-train"))).unwrap();
        let web_tokens: u64 = (0..ds.documents())
            .filter(|&d| ids[d].0 == 1)
            .map(|d| ds.document_len(d))
            .sum();
        assert!(((web_tokens as f64 / ds.tokens() as f64) - wa).abs() < 0.005);
    }
}

#[test]
fn the_draw_is_deterministic_from_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let web = source(dir.path(), "web", 1, 500, 300);
    let code = source(dir.path(), "code", 2, 200, 300);
    let a = run(
        dir.path(),
        &two_sources(&web, &code, 0.7),
        "main",
        100_000,
        5_000,
        1,
    );
    let read = |name: &str| {
        let (bin, idx) = dataset_paths(&dir.path().join(name));
        (fs::read(bin).unwrap(), fs::read(idx).unwrap())
    };
    let first = (read("main-1-train"), read("main-1-held"));
    let b = run(
        dir.path(),
        &two_sources(&web, &code, 0.7),
        "main",
        100_000,
        5_000,
        1,
    );
    assert_eq!(a, b);
    assert!(
        first == (read("main-1-train"), read("main-1-held")),
        "same seed, different bytes"
    );
    run(
        dir.path(),
        &two_sources(&web, &code, 0.7),
        "main",
        100_000,
        5_000,
        2,
    );
    assert!(
        read("main-1-train") != read("main-2-train"),
        "another seed draws another order"
    );
    // The held-out set depends on the seed and the source only, not on the phase.
    run(
        dir.path(),
        &two_sources(&web, &code, 0.7),
        "other",
        100_000,
        5_000,
        1,
    );
    assert!(read("main-1-held") == read("other-1-held"));
}

#[test]
fn held_out_documents_are_never_trained_on() {
    let dir = tempfile::tempdir().unwrap();
    let web = source(dir.path(), "web", 1, 800, 300);
    let code = source(dir.path(), "code", 2, 400, 300);
    // Two phases with different weights, like tiny.kiln's main and anneal.
    let main = run(
        dir.path(),
        &two_sources(&web, &code, 0.8),
        "main",
        150_000,
        10_000,
        3,
    );
    let anneal = run(
        dir.path(),
        &two_sources(&web, &code, 0.5),
        "anneal",
        50_000,
        10_000,
        3,
    );
    let mut trained = BTreeSet::new();
    for phase in ["main", "anneal"] {
        trained.extend(identities(&dir.path().join(format!("{phase}-3-train"))));
    }
    for phase in ["main", "anneal"] {
        let held = identities(&dir.path().join(format!("{phase}-3-held")));
        assert!(!held.is_empty());
        for id in &held {
            assert!(
                !trained.contains(id),
                "{phase}: held-out document {id:?} was trained on"
            );
        }
    }
    // The held-out tokens follow the phase's weights, within one document per source.
    for r in [&main, &anneal] {
        assert!(r.held_out_tokens >= 10_000 && r.held_out_tokens < 10_000 + 2 * 310);
        for s in &r.sources {
            assert!(s.reserved_tokens as f64 <= MAX_HELD_OUT_FRACTION * s.tokens as f64 + 310.0);
            assert!((s.held_out_tokens as f64) >= s.weight * 10_000.0);
        }
    }
}

#[test]
fn epochs_are_counted_and_repeats_warned() {
    let dir = tempfile::tempdir().unwrap();
    let web = source(dir.path(), "web", 1, 100, 100);
    let code = source(dir.path(), "code", 2, 100, 100);
    let sources = vec![
        MixSource {
            name: "code".into(),
            weight: 0.5,
            dataset: &code,
            max_epochs: 100.0,
        },
        MixSource {
            name: "web".into(),
            weight: 0.5,
            dataset: &web,
            max_epochs: 2.0,
        },
    ];
    let r = run(dir.path(), &sources, "main", 40_000, 1_000, 5);
    let web_r = r.sources.iter().find(|s| s.name == "web").unwrap();
    let code_r = r.sources.iter().find(|s| s.name == "code").unwrap();
    let expect = web_r.train_tokens as f64 / web_r.pool_tokens as f64;
    assert!((web_r.epochs - expect).abs() < 1e-12);
    assert!(web_r.epochs > 2.0 && web_r.over_max_epochs);
    assert!(!code_r.over_max_epochs);
    assert!(r
        .warnings
        .iter()
        .any(|w| w.contains("`web`") && w.contains("max_epochs = 2")));
    assert!(!r.warnings.iter().any(|w| w.contains("`code` is repeated")));
    // Every pool document is drawn once per epoch: counts differ by at most one.
    let mut counts: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    for id in identities(&dir.path().join("main-5-train")) {
        *counts.entry(id).or_default() += 1;
    }
    for tag in [1, 2] {
        let c: Vec<u64> = counts
            .iter()
            .filter(|(id, _)| id.0 == tag)
            .map(|(_, n)| *n)
            .collect();
        let pool = if tag == 1 {
            web_r.pool_docs
        } else {
            code_r.pool_docs
        };
        assert_eq!(
            c.len() as u64,
            pool,
            "source {tag}: every pool document drawn"
        );
        let (lo, hi) = (c.iter().min().unwrap(), c.iter().max().unwrap());
        assert!(
            hi - lo <= 1,
            "source {tag}: draws per document from {lo} to {hi}"
        );
    }
}

#[test]
fn unusable_mixes_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let web = source(dir.path(), "web", 1, 10, 10);
    let config = MixConfig {
        phase: "p".into(),
        train_tokens: 100,
        held_out_tokens: 0,
        seed: 0,
    };
    let out = dir.path().join("o");
    let zero = vec![MixSource {
        name: "web".into(),
        weight: 0.0,
        dataset: &web,
        max_epochs: 4.0,
    }];
    assert!(matches!(
        mix(&zero, &config, &out, &out, |_| {}),
        Err(MixError::Invalid(_))
    ));
    let prefix = dir.path().join("wide");
    let mut w = IndexedWriter::create(&prefix, TokenDtype::Int32).unwrap();
    w.add_document(&[1, 0]).unwrap();
    w.finish().unwrap();
    let wide = IndexedDataset::open(&prefix).unwrap();
    let mixed = vec![
        MixSource {
            name: "web".into(),
            weight: 0.5,
            dataset: &web,
            max_epochs: 4.0,
        },
        MixSource {
            name: "wide".into(),
            weight: 0.5,
            dataset: &wide,
            max_epochs: 4.0,
        },
    ];
    match mix(&mixed, &config, &out, &out, |_| {}) {
        Err(MixError::Invalid(why)) => assert!(why.contains("one tokenizer"), "{why}"),
        other => panic!("mixed dtypes: {:?}", other.map(|r| r.train_tokens)),
    }
    let empty_prefix = dir.path().join("empty");
    IndexedWriter::create(&empty_prefix, TokenDtype::Uint16)
        .unwrap()
        .finish()
        .unwrap();
    let empty = IndexedDataset::open(&empty_prefix).unwrap();
    let with_empty = vec![MixSource {
        name: "empty".into(),
        weight: 1.0,
        dataset: &empty,
        max_epochs: 4.0,
    }];
    assert!(matches!(
        mix(&with_empty, &config, &out, &out, |_| {}),
        Err(MixError::Invalid(_))
    ));
}
