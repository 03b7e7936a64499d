//! The data order: a permutation of the samples per epoch, a function of (seed, phase,
//! position) only; samples are the Megatron-LM windows over the packed stream.

mod common;

use common::*;
use kiln_train::data::{Permutation, SampleOrder, Samples, TokenStream};

#[test]
fn permutations_are_bijections() {
    for n in [1u64, 2, 3, 5, 16, 17, 100, 1000, 4097] {
        for key in [0u64, 1, 0xdead_beef] {
            let p = Permutation::new(n, key);
            let mut seen: Vec<u64> = (0..n).map(|i| p.apply(i)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
    }
    // Not the identity, and another key gives another order.
    let a: Vec<u64> = (0..100)
        .map(|i| Permutation::new(100, 1).apply(i))
        .collect();
    let b: Vec<u64> = (0..100)
        .map(|i| Permutation::new(100, 2).apply(i))
        .collect();
    assert_ne!(a, (0..100).collect::<Vec<_>>());
    assert_ne!(a, b);
}

#[test]
fn the_order_depends_on_seed_phase_and_epoch_only() {
    let mut a = SampleOrder::new(7, "main", 50);
    let mut b = SampleOrder::new(7, "main", 50);
    // Asked in another order (as a resumed run does), the same answers.
    let forward: Vec<u64> = (0..150).map(|p| a.sample(p)).collect();
    let backward: Vec<u64> = (0..150).rev().map(|p| b.sample(p)).collect();
    assert_eq!(forward, backward.into_iter().rev().collect::<Vec<_>>());
    // Each epoch visits every sample once, in a new order.
    let mut e0 = forward[..50].to_vec();
    let e1 = forward[50..100].to_vec();
    assert_ne!(e0, e1);
    e0.sort_unstable();
    assert_eq!(e0, (0..50).collect::<Vec<_>>());
    let mut other = SampleOrder::new(7, "anneal", 50);
    assert_ne!(
        (0..50).map(|p| other.sample(p)).collect::<Vec<_>>(),
        forward[..50]
    );
}

#[test]
fn samples_are_overlapping_windows() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("text_document");
    let docs = vec![(0u32..10).collect::<Vec<_>>(), (10u32..25).collect()];
    write_shard(&prefix, &docs, 100);
    let stream = TokenStream::open(&prefix).unwrap();
    assert_eq!(stream.tokens(), 25);
    let samples = Samples::open(&prefix, 8, 100).unwrap();
    assert_eq!(samples.count(), 3, "(25 − 1) / 8");
    let mut out = Vec::new();
    samples.read(1, &mut out).unwrap();
    assert_eq!(out, (8..17).collect::<Vec<i64>>());
    out.clear();
    assert!(samples.read(3, &mut out).is_err(), "past the end");
    let narrow = Samples::open(&prefix, 8, 20).unwrap();
    out.clear();
    assert!(narrow.read(2, &mut out).is_err(), "ids ≥ vocab");
}

/// The unigram baseline: frequencies from the training stream with add-one smoothing,
/// scored on the held-out windows' targets.
#[test]
fn unigram_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("text_document");
    let held = dir.path().join("held_out_document");
    // Training stream: token 0 ×6, token 1 ×2 (vocab 4): p = (c + 1) / (8 + 4).
    write_shard(&train, &[vec![0, 0, 0, 0, 0, 0, 1, 1]], 4);
    // Held out: one window of seq_len 4 → targets 0, 1, 2, 0.
    write_shard(&held, &[vec![3, 0, 1, 2, 0]], 4);
    let stream = TokenStream::open(&train).unwrap();
    let samples = Samples::open(&held, 4, 4).unwrap();
    let loss = kiln_train::trainer::unigram_loss(&stream, &samples, 1000, 4)
        .unwrap()
        .unwrap();
    let p = |c: f64| (c + 1.0) / 12.0;
    let expected = -(2.0 * p(6.0).ln() + p(2.0).ln() + p(0.0).ln()) / 4.0;
    assert!((loss - expected).abs() < 1e-12, "{loss} vs {expected}");
}
