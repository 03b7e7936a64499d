//! A seeded sample of documents (the plan's `sample` step): the `docs` documents with the
//! smallest `xxh3(seed, id)`, written in input order.
//!
//! Which documents are chosen depends only on their ids and the seed, never on the order the
//! documents come in or on the threads: a bottom-k sample by hash (the idea of Broder 1997's
//! min-wise sketches), which is a uniform sample without replacement when the hashes behave
//! as random. Two passes over the input: the first keeps a bounded max-heap of the `docs`
//! smallest (hash, position) pairs (16 bytes a document kept, never a text), the second
//! writes the chosen positions. Equal hashes (the same id twice, or a 64-bit collision) are
//! told apart by position.

use std::collections::BinaryHeap;
use std::path::Path;

use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::ingest::{Ingest, IngestConfig, JsonlWriter, Malformed};
use crate::ops::{de, DataError, REPORTED_PROBLEMS};
use crate::progress::Progress;

/// What [`sample_documents`] did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SampleReport {
    pub input_docs: u64,
    pub kept_docs: u64,
    /// The documents asked for.
    pub requested_docs: u64,
    /// How many fewer documents the input had than were asked for (every one is kept); 0
    /// when it had enough.
    pub short_by: u64,
    pub seed: u64,
    pub malformed_lines: u64,
    /// Documents skipped for being longer than the limit.
    pub too_large_docs: u64,
    pub malformed: Vec<Malformed>,
    pub too_large: Vec<Malformed>,
}

/// A document's sampling key: `xxh3_64(id)` seeded with `seed`.
pub fn sample_key(id: &str, seed: u64) -> u64 {
    xxh3_64_with_seed(id.as_bytes(), seed)
}

/// Writes to `output` the `docs` documents of `config` with the smallest [`sample_key`], in
/// input order (all of them, and `short_by` in the report, when there are fewer).
pub fn sample_documents(
    config: &IngestConfig,
    docs: u64,
    seed: u64,
    output: &Path,
    progress: bool,
) -> Result<SampleReport, DataError> {
    // Pass 1: the `docs` smallest (key, position) pairs.
    let mut heap: BinaryHeap<(u64, u64)> = BinaryHeap::new();
    let mut ingest = Ingest::open(config).map_err(de)?;
    let bar = Progress::new(progress, None, "sample: hashing ids", "docs");
    let mut input_docs = 0u64;
    for doc in ingest.by_ref() {
        let doc = doc.map_err(de)?;
        let item = (sample_key(&doc.id, seed), input_docs);
        input_docs += 1;
        bar.inc(1);
        bar.add_bytes(doc.text.len() as u64);
        if (heap.len() as u64) < docs {
            heap.push(item);
        } else if heap.peek().is_some_and(|top| item < *top) {
            heap.pop();
            heap.push(item);
        }
    }
    bar.finish_and_clear();
    let first = ingest.into_report();
    let mut chosen: Vec<u64> = heap.into_iter().map(|(_, pos)| pos).collect();
    chosen.sort_unstable();

    // Pass 2: the chosen positions, in input order.
    let mut writer = JsonlWriter::create(output).map_err(de)?;
    let mut second = Ingest::open(config).map_err(de)?;
    let bar = Progress::new(progress, Some(input_docs), "sample: writing", "docs");
    let mut next = chosen.iter().peekable();
    for (pos, doc) in second.by_ref().enumerate() {
        let Some(&&want) = next.peek() else { break };
        let doc = doc.map_err(de)?;
        bar.inc(1);
        if pos as u64 == want {
            writer.write(&doc).map_err(de)?;
            next.next();
        }
    }
    bar.finish_and_clear();
    if next.peek().is_some() {
        return Err(DataError::work(
            "the input changed between the sample's two passes",
        ));
    }
    let kept = writer.finish().map_err(de)?;
    Ok(SampleReport {
        input_docs,
        kept_docs: kept,
        requested_docs: docs,
        short_by: docs.saturating_sub(input_docs),
        seed,
        malformed_lines: first.malformed_lines,
        too_large_docs: first.too_large_docs,
        malformed: first
            .malformed
            .iter()
            .take(REPORTED_PROBLEMS)
            .cloned()
            .collect(),
        too_large: first
            .too_large
            .iter()
            .take(REPORTED_PROBLEMS)
            .cloned()
            .collect(),
    })
}
