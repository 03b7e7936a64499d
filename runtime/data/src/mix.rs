//! Mixing one phase: documents drawn from the sources' encoded datasets by the phase's
//! weights until its token count is met, deterministically from the plan's seed, with a
//! held-out evaluation set and a report of the epochs each source is repeated.
//!
//! # Held-out documents
//! Each source's documents are put in a random order that depends only on the seed and
//! the source's name (not on the phase). The first documents of that order, up to
//! `min(held_out_tokens, MAX_HELD_OUT_FRACTION × the source's tokens)`, are *reserved*:
//! no phase trains on them. A phase's held-out set takes, from each source, the first
//! reserved documents covering `weight × held_out_tokens` tokens (fewer when the reserve is
//! smaller; the report says so). Because every phase reserves the same documents, the
//! evaluation set of any phase was never trained on by any phase.
//!
//! # Drawing
//! The rest of a source's documents are its training pool. A source's stream visits the
//! pool in a random order (Fisher–Yates; Knuth, TAOCP Vol. 2, §3.4.2, Algorithm P), a new
//! order per epoch, seeded by (seed, phase, source, epoch). The next document comes from
//! the source furthest below its share: the one maximising `weight × drawn_total −
//! drawn_from_source` (in tokens), ties to the first in name order — Megatron-LM's
//! blending rule (`megatron/core/datasets/helpers.cpp`, `build_blending_indices`: the
//! dataset with the largest error `weight × (i + 1) − current_samples`), applied to tokens
//! rather than samples. Drawing stops when the phase's token count is met (the last
//! document is kept whole). A source's epochs are its drawn tokens over its pool's tokens;
//! above the source's `max_epochs` the report and stderr warn (Muennighoff et al. 2023,
//! "Scaling Data-Constrained Language Models", find repeated tokens lose value quickly
//! beyond about 4 epochs, the default `max_epochs`).
//!
//! # Randomness
//! ChaCha20 (`rand_chacha`), seeded from the XXH3-64 hash of the plan's seed and the labels
//! above; integers below `n` by Lemire's multiply-shift with rejection (Lemire 2019, "Fast
//! random integer generation in an interval"), so the draw is unbiased and the same on
//! every platform.

use std::fmt;
use std::path::Path;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde::Serialize;

use crate::shards::{IndexedDataset, IndexedWriter, ShardError};

/// The largest share of a source reserved for held-out evaluation (assumption: a small
/// source must keep most of its documents for training; Megatron-LM's customary
/// `--split 969,30,1` holds out about 3 %).
pub const MAX_HELD_OUT_FRACTION: f64 = 0.1;

/// One source of a phase.
pub struct MixSource<'a> {
    pub name: String,
    /// The phase's weight for the source (a fraction of its tokens).
    pub weight: f64,
    pub dataset: &'a IndexedDataset,
    /// Epochs beyond which kiln warns.
    pub max_epochs: f64,
}

/// What to draw.
#[derive(Clone, Debug)]
pub struct MixConfig {
    pub phase: String,
    /// Tokens to draw for training.
    pub train_tokens: u64,
    /// Tokens to hold out for evaluation (the plan's `eval.tokens`).
    pub held_out_tokens: u64,
    pub seed: u64,
}

/// One source in the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourceReport {
    pub name: String,
    pub weight: f64,
    pub docs: u64,
    pub tokens: u64,
    /// Reserved for held-out evaluation in every phase.
    pub reserved_docs: u64,
    pub reserved_tokens: u64,
    /// This phase's held-out documents from the source.
    pub held_out_docs: u64,
    pub held_out_tokens: u64,
    /// What training draws from.
    pub pool_docs: u64,
    pub pool_tokens: u64,
    pub train_docs: u64,
    pub train_tokens: u64,
    /// Share of the phase's training tokens actually drawn from the source.
    pub share: f64,
    /// `train_tokens / pool_tokens`.
    pub epochs: f64,
    pub max_epochs: f64,
    pub over_max_epochs: bool,
}

/// What a mix did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MixReport {
    pub phase: String,
    pub seed: u64,
    pub train_tokens_target: u64,
    pub train_tokens: u64,
    pub train_docs: u64,
    pub held_out_tokens_target: u64,
    pub held_out_tokens: u64,
    pub held_out_docs: u64,
    pub sources: Vec<SourceReport>,
    pub warnings: Vec<String>,
}

/// A mixing failure.
#[derive(Debug)]
pub enum MixError {
    /// Weights or sources that cannot be drawn from.
    Invalid(String),
    Shard(ShardError),
}

impl fmt::Display for MixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MixError::Invalid(why) => write!(f, "{why}"),
            MixError::Shard(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for MixError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MixError::Shard(e) => Some(e),
            MixError::Invalid(_) => None,
        }
    }
}

impl From<ShardError> for MixError {
    fn from(e: ShardError) -> Self {
        MixError::Shard(e)
    }
}

/// A ChaCha20 generator for the labels (see the module doc).
fn rng_for(seed: u64, labels: &[&str]) -> ChaCha20Rng {
    let mut key = seed.to_le_bytes().to_vec();
    for label in labels {
        key.push(0);
        key.extend_from_slice(label.as_bytes());
    }
    ChaCha20Rng::seed_from_u64(xxhash_rust::xxh3::xxh3_64(&key))
}

/// An integer uniform in `[0, n)` (Lemire 2019, with rejection); `n ≥ 1`.
fn below(rng: &mut ChaCha20Rng, n: u64) -> u64 {
    let mut m = (rng.next_u64() as u128) * (n as u128);
    let mut low = m as u64;
    if low < n {
        let threshold = n.wrapping_neg() % n;
        while low < threshold {
            m = (rng.next_u64() as u128) * (n as u128);
            low = m as u64;
        }
    }
    (m >> 64) as u64
}

/// Shuffles in place (Fisher–Yates).
fn shuffle(items: &mut [u32], rng: &mut ChaCha20Rng) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// A source's documents split into its reserve and its training pool.
struct Split {
    reserved: Vec<u32>,
    pool: Vec<u32>,
    reserved_tokens: u64,
    pool_tokens: u64,
}

fn split(source: &MixSource, seed: u64, held_out_tokens: u64) -> Result<Split, MixError> {
    let docs = source.dataset.documents();
    let docs32 = u32::try_from(docs).map_err(|_| {
        MixError::Invalid(format!(
            "source `{}` has {docs} documents; one mix takes at most {}",
            source.name,
            u32::MAX
        ))
    })?;
    let mut order: Vec<u32> = (0..docs32).collect();
    shuffle(&mut order, &mut rng_for(seed, &["held_out", &source.name]));
    let total = source.dataset.tokens();
    let cap = (held_out_tokens as f64).min(MAX_HELD_OUT_FRACTION * total as f64);
    let mut reserved_tokens = 0u64;
    let mut cut = 0usize;
    // Keep at least one document for training.
    while cut + 1 < order.len() && (reserved_tokens as f64) < cap {
        reserved_tokens += source.dataset.document_len(order[cut] as usize);
        cut += 1;
    }
    let reserved = order[..cut].to_vec();
    let mut pool = order[cut..].to_vec();
    pool.sort_unstable();
    Ok(Split {
        reserved,
        pool,
        reserved_tokens,
        pool_tokens: total - reserved_tokens,
    })
}

/// A source's training stream: its pool in a fresh random order each epoch.
struct Stream<'a> {
    source: &'a MixSource<'a>,
    seed: u64,
    phase: &'a str,
    pool: Vec<u32>,
    order: Vec<u32>,
    next: usize,
    epoch: u64,
}

impl Stream<'_> {
    fn next_doc(&mut self) -> u32 {
        if self.next == self.order.len() {
            self.order.clone_from(&self.pool);
            let epoch = self.epoch.to_string();
            let mut rng = rng_for(self.seed, &["train", self.phase, &self.source.name, &epoch]);
            shuffle(&mut self.order, &mut rng);
            self.epoch += 1;
            self.next = 0;
        }
        self.next += 1;
        self.order[self.next - 1]
    }
}

/// Mixes one phase: writes the training stream to `train_prefix` and the held-out set to
/// `held_out_prefix` (indexed datasets; see `shards`), calling `progress` with the training
/// tokens drawn so far. Sources with weight 0 are left out; the sources' datasets must share
/// a dtype.
pub fn mix(
    sources: &[MixSource],
    config: &MixConfig,
    train_prefix: &Path,
    held_out_prefix: &Path,
    mut progress: impl FnMut(u64),
) -> Result<MixReport, MixError> {
    let active: Vec<&MixSource> = sources.iter().filter(|s| s.weight > 0.0).collect();
    if active.is_empty() {
        return Err(MixError::Invalid(format!(
            "phase `{}` draws from no source with a positive weight",
            config.phase
        )));
    }
    if let Some(bad) = sources
        .iter()
        .find(|s| !s.weight.is_finite() || s.weight < 0.0)
    {
        return Err(MixError::Invalid(format!(
            "source `{}` has weight {}; weights are fractions in [0, 1]",
            bad.name, bad.weight
        )));
    }
    let dtype = active[0].dataset.dtype();
    if let Some(other) = active.iter().find(|s| s.dataset.dtype() != dtype) {
        return Err(MixError::Invalid(format!(
            "source `{}` is encoded as {:?} but `{}` as {:?}: encode them with one tokenizer",
            other.name,
            other.dataset.dtype(),
            active[0].name,
            dtype
        )));
    }
    let weight_sum: f64 = active.iter().map(|s| s.weight).sum();
    let mut warnings = Vec::new();
    if (weight_sum - 1.0).abs() > 1e-6 {
        warnings.push(format!(
            "phase `{}`: the weights sum to {weight_sum}, not 1; they are used as shares of their sum",
            config.phase
        ));
    }

    let mut splits = Vec::with_capacity(active.len());
    for s in &active {
        let sp = split(s, config.seed, config.held_out_tokens)?;
        if sp.pool_tokens == 0 {
            return Err(MixError::Invalid(format!(
                "source `{}` has no tokens to train on (it is empty, or all held out)",
                s.name
            )));
        }
        splits.push(sp);
    }

    // The held-out set, source by source in name order (as given).
    let mut held = IndexedWriter::create(held_out_prefix, dtype)?;
    let mut held_counts = Vec::with_capacity(active.len());
    let mut buf = Vec::new();
    for (s, sp) in active.iter().zip(&splits) {
        let target = s.weight / weight_sum * config.held_out_tokens as f64;
        let (mut docs, mut tokens) = (0u64, 0u64);
        for &d in &sp.reserved {
            if tokens as f64 >= target {
                break;
            }
            buf.clear();
            s.dataset.read_document(d as usize, &mut buf);
            held.add_document(&buf)?;
            docs += 1;
            tokens += buf.len() as u64;
        }
        if (tokens as f64) < target {
            warnings.push(format!(
                "phase `{}`: source `{}` holds out {tokens} tokens of the {} asked for: its reserve is {} tokens ({}% of the source at most)",
                config.phase,
                s.name,
                target.round(),
                sp.reserved_tokens,
                MAX_HELD_OUT_FRACTION * 100.0
            ));
        }
        held_counts.push((docs, tokens));
    }

    // The training stream.
    let mut streams: Vec<Stream> = active
        .iter()
        .zip(&splits)
        .map(|(s, sp)| Stream {
            source: s,
            seed: config.seed,
            phase: &config.phase,
            pool: sp.pool.clone(),
            order: Vec::new(),
            next: 0,
            epoch: 0,
        })
        .collect();
    let mut train = IndexedWriter::create(train_prefix, dtype)?;
    let mut drawn = vec![(0u64, 0u64); active.len()];
    let mut total = 0u64;
    while total < config.train_tokens {
        let mut best = 0;
        let mut best_error = f64::NEG_INFINITY;
        for (i, s) in active.iter().enumerate() {
            let error = s.weight / weight_sum * total as f64 - drawn[i].1 as f64;
            if error > best_error {
                best = i;
                best_error = error;
            }
        }
        let d = streams[best].next_doc();
        buf.clear();
        active[best].dataset.read_document(d as usize, &mut buf);
        train.add_document(&buf)?;
        drawn[best].0 += 1;
        drawn[best].1 += buf.len() as u64;
        total += buf.len() as u64;
        progress(total);
    }

    let mut reports = Vec::with_capacity(active.len());
    for (i, (s, sp)) in active.iter().zip(&splits).enumerate() {
        let epochs = drawn[i].1 as f64 / sp.pool_tokens as f64;
        let over = epochs > s.max_epochs;
        if over {
            warnings.push(format!(
                "phase `{}`: source `{}` is repeated {epochs:.2} times, more than its max_epochs = {}; add data, lower its weight, or raise max_epochs",
                config.phase, s.name, s.max_epochs
            ));
        }
        reports.push(SourceReport {
            name: s.name.clone(),
            weight: s.weight,
            docs: s.dataset.documents() as u64,
            tokens: s.dataset.tokens(),
            reserved_docs: sp.reserved.len() as u64,
            reserved_tokens: sp.reserved_tokens,
            held_out_docs: held_counts[i].0,
            held_out_tokens: held_counts[i].1,
            pool_docs: sp.pool.len() as u64,
            pool_tokens: sp.pool_tokens,
            train_docs: drawn[i].0,
            train_tokens: drawn[i].1,
            share: if total == 0 {
                0.0
            } else {
                drawn[i].1 as f64 / total as f64
            },
            epochs,
            max_epochs: s.max_epochs,
            over_max_epochs: over,
        });
    }
    let held_summary = held.finish()?;
    let train_summary = train.finish()?;
    Ok(MixReport {
        phase: config.phase.clone(),
        seed: config.seed,
        train_tokens_target: config.train_tokens,
        train_tokens: train_summary.tokens,
        train_docs: train_summary.documents,
        held_out_tokens_target: config.held_out_tokens,
        held_out_tokens: held_summary.tokens,
        held_out_docs: held_summary.documents,
        sources: reports,
        warnings,
    })
}
