//! Near deduplication: MinHash signatures over word n-gram shingles of normalised text,
//! banded locality-sensitive hashing, union-find clusters, one document kept per cluster.
//!
//! # MinHash (Broder 1997, "On the resemblance and containment of documents")
//! A document's shingles are the 64-bit hashes of its `ngram`-word shingles
//! (`normalize::shingle_hashes` of `normalize::simplify_text`). Its signature holds
//! `bands × rows` values; value `i` is `min_x (a_i·x + b_i mod 2^64)` over the shingle
//! hashes `x`, with `a_i` odd and `b_i` drawn from [`MINHASH_SEED`] by SplitMix64. Each map
//! is a bijection of the 64-bit hashes, so no two shingles collide inside a permutation;
//! this is datasketch's `affine64` scheme (datasketch ≥ 2.0, `minhash.py`), applied to an
//! XXH3 hash that is already avalanched (datasketch pre-mixes its SHA-1 hash with
//! MurmurHash3's finaliser for the same purpose). For two documents with shingle-set
//! Jaccard similarity `J`, each value agrees with probability ≈ `J`, so the fraction of
//! agreeing values estimates `J` ([`Signature::estimated_jaccard`]).
//!
//! # LSH (Leskovec, Rajaraman & Ullman, *Mining of Massive Datasets*, §3.4)
//! The signature is cut into `bands` bands of `rows` values; two documents are a candidate
//! pair when any band is identical, which happens with probability `1 − (1 − J^r)^b`.
//! The S-curve's threshold is `(1/b)^(1/r)` ([`MinHasher::threshold`]): 0.72 for the
//! default 14 × 8 (the FineWeb setting, datatrove's `MinhashConfig` defaults). A band is
//! bucketed by the XXH3-64 hash of its values (seeded with the band's index); two different
//! bands collide with probability 2^-64 per pair, negligible next to LSH's own errors.
//!
//! # Clustering
//! Every document in a band bucket is joined with the bucket's first document by a
//! union-find whose root is always the smallest document index, so a cluster's root is its
//! first document in input order — the one kept ([`NearClusters::is_kept`]). This is the
//! same component structure as datatrove's `MinhashDedupBuckets` + `MinhashDedupCluster`
//! (all documents sharing a bucket end up connected), in one process.
//!
//! Documents with fewer than `ngram` words have no shingles and no signature: they are
//! never candidates and always kept (datatrove skips them too; exact dedup catches short
//! copies).
//!
//! # Memory and parallelism
//! Signatures are computed in parallel (rayon, per batch of [`BATCH_DOCS`] documents) and
//! reduced to one 64-bit key per band; the index keeps, per band, a hash map from key to
//! the first document's index, plus one `u32` parent per document — roughly 20 bytes per
//! band per document, ~300 bytes per document at 14 bands. Documents are numbered with
//! `u32`, so one pass takes at most 2^32 − 1 documents ([`NearError::TooManyDocuments`]).
//! [`near_dedup_step`] reads the inputs twice (index, then write the kept documents) so no
//! document text is held beyond a batch.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::ingest::{Ingest, IngestConfig, IngestError, IngestReport, JsonlWriter};
use crate::normalize::{shingle_hashes_into, simplify_text_into, TextNormConfig};

/// The seed of the permutation parameters (fixed, so signatures are reproducible across
/// runs and machines; the value is ASCII "kilnMH01").
pub const MINHASH_SEED: u64 = 0x6b69_6c6e_4d48_3031;

/// Default shingle size in words (datatrove's `MinhashConfig.n_grams`; FineWeb).
pub const DEFAULT_NGRAM: usize = 5;
/// Default number of bands (datatrove's `MinhashConfig.num_buckets`; FineWeb).
pub const DEFAULT_BANDS: usize = 14;
/// Default rows per band (datatrove's `MinhashConfig.hashes_per_bucket`; FineWeb).
pub const DEFAULT_ROWS: usize = 8;
/// Documents whose signatures are computed in one parallel batch (assumption: enough work
/// per thread to amortise scheduling, small enough to bound the texts held at once).
pub const BATCH_DOCS: usize = 4096;
/// The most hash values per signature (assumption: beyond any useful LSH setting; bounds
/// the work a mistyped parameter can cause).
pub const MAX_SIGNATURE_LEN: usize = 4096;

/// MinHash LSH parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NearParams {
    /// Words per shingle.
    pub ngram: usize,
    pub bands: usize,
    pub rows: usize,
    /// Seed of the permutations.
    pub seed: u64,
}

impl Default for NearParams {
    fn default() -> Self {
        NearParams {
            ngram: DEFAULT_NGRAM,
            bands: DEFAULT_BANDS,
            rows: DEFAULT_ROWS,
            seed: MINHASH_SEED,
        }
    }
}

/// A near-dedup failure.
#[derive(Debug)]
pub enum NearError {
    /// Parameters out of range.
    InvalidParams(String),
    /// More documents than a `u32` index holds.
    TooManyDocuments,
    Ingest(IngestError),
}

impl fmt::Display for NearError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NearError::InvalidParams(why) => write!(f, "invalid MinHash parameters: {why}"),
            NearError::TooManyDocuments => write!(
                f,
                "more than {} documents in one near-dedup pass; split the source",
                u32::MAX - 1
            ),
            NearError::Ingest(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for NearError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NearError::Ingest(e) => Some(e),
            _ => None,
        }
    }
}

impl From<IngestError> for NearError {
    fn from(e: IngestError) -> Self {
        NearError::Ingest(e)
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): the generator of the permutation parameters.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A MinHash signature: `bands × rows` values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub values: Vec<u64>,
}

impl Signature {
    /// The fraction of agreeing values: an unbiased estimate of the shingle sets' Jaccard
    /// similarity (Broder 1997). 0 for signatures of different lengths.
    pub fn estimated_jaccard(&self, other: &Signature) -> f64 {
        if self.values.len() != other.values.len() || self.values.is_empty() {
            return 0.0;
        }
        let same = self
            .values
            .iter()
            .zip(&other.values)
            .filter(|(a, b)| a == b)
            .count();
        same as f64 / self.values.len() as f64
    }
}

/// Computes signatures and band keys for one parameter set.
#[derive(Clone, Debug)]
pub struct MinHasher {
    params: NearParams,
    a: Vec<u64>,
    b: Vec<u64>,
    norm: TextNormConfig,
}

/// Reusable buffers for one thread.
#[derive(Default)]
struct Scratch {
    simplified: String,
    shingles: Vec<u64>,
}

impl MinHasher {
    /// Checks the parameters and draws the permutations.
    pub fn new(params: NearParams) -> Result<Self, NearError> {
        if params.ngram == 0 {
            return Err(NearError::InvalidParams(
                "`ngram` must be at least 1".into(),
            ));
        }
        if params.bands == 0 || params.rows == 0 {
            return Err(NearError::InvalidParams(
                "`bands` and `rows` must be at least 1".into(),
            ));
        }
        let len = params.bands.saturating_mul(params.rows);
        if len > MAX_SIGNATURE_LEN {
            return Err(NearError::InvalidParams(format!(
                "bands × rows = {} × {} exceeds {MAX_SIGNATURE_LEN} hash values",
                params.bands, params.rows
            )));
        }
        let mut state = params.seed;
        let mut a = Vec::with_capacity(len);
        let mut b = Vec::with_capacity(len);
        for _ in 0..len {
            a.push(splitmix64(&mut state) | 1);
            b.push(splitmix64(&mut state));
        }
        Ok(MinHasher {
            params,
            a,
            b,
            norm: TextNormConfig::default(),
        })
    }

    pub fn params(&self) -> &NearParams {
        &self.params
    }

    /// The LSH threshold `(1/b)^(1/r)`: the similarity at which the S-curve rises steepest,
    /// used as the duplicate/not-duplicate boundary (MMDS §3.4.2).
    pub fn threshold(&self) -> f64 {
        (1.0 / self.params.bands as f64).powf(1.0 / self.params.rows as f64)
    }

    /// The probability that two documents with Jaccard similarity `j` become a candidate
    /// pair: `1 − (1 − j^r)^b`.
    pub fn candidate_probability(&self, j: f64) -> f64 {
        1.0 - (1.0 - j.powi(self.params.rows as i32)).powi(self.params.bands as i32)
    }

    /// The signature of a set of shingle hashes; `None` when it is empty.
    pub fn signature_of_shingles(&self, shingles: &[u64]) -> Option<Signature> {
        if shingles.is_empty() {
            return None;
        }
        // Four permutations at a time over all shingles keeps their parameters and running
        // minima in registers (four independent multiply–add–min chains per shingle).
        let mut values = Vec::with_capacity(self.a.len());
        let mut a_chunks = self.a.chunks_exact(4);
        let mut b_chunks = self.b.chunks_exact(4);
        for (a, b) in a_chunks.by_ref().zip(b_chunks.by_ref()) {
            let (a0, a1, a2, a3) = (a[0], a[1], a[2], a[3]);
            let (b0, b1, b2, b3) = (b[0], b[1], b[2], b[3]);
            let (mut v0, mut v1, mut v2, mut v3) = (u64::MAX, u64::MAX, u64::MAX, u64::MAX);
            for &x in shingles {
                v0 = v0.min(a0.wrapping_mul(x).wrapping_add(b0));
                v1 = v1.min(a1.wrapping_mul(x).wrapping_add(b1));
                v2 = v2.min(a2.wrapping_mul(x).wrapping_add(b2));
                v3 = v3.min(a3.wrapping_mul(x).wrapping_add(b3));
            }
            values.extend_from_slice(&[v0, v1, v2, v3]);
        }
        for (&a, &b) in a_chunks.remainder().iter().zip(b_chunks.remainder()) {
            let v = shingles
                .iter()
                .map(|&x| a.wrapping_mul(x).wrapping_add(b))
                .min()
                .unwrap_or(u64::MAX);
            values.push(v);
        }
        Some(Signature { values })
    }

    fn signature_with(&self, text: &str, scratch: &mut Scratch) -> Option<Signature> {
        simplify_text_into(text, &self.norm, &mut scratch.simplified);
        scratch.shingles.clear();
        shingle_hashes_into(
            &scratch.simplified,
            self.params.ngram,
            &mut scratch.shingles,
        );
        self.signature_of_shingles(&scratch.shingles)
    }

    /// The signature of a raw text (normalised and shingled here); `None` when it has fewer
    /// than `ngram` words.
    pub fn signature(&self, text: &str) -> Option<Signature> {
        self.signature_with(text, &mut Scratch::default())
    }

    /// One 64-bit key per band: XXH3-64 of the band's values (little-endian), seeded with
    /// the band's index.
    pub fn band_keys(&self, signature: &Signature) -> Vec<u64> {
        let rows = self.params.rows;
        let mut bytes = Vec::with_capacity(rows * 8);
        signature
            .values
            .chunks(rows)
            .enumerate()
            .map(|(band, values)| {
                bytes.clear();
                for v in values {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                xxh3_64_with_seed(&bytes, band as u64)
            })
            .collect()
    }

    /// Whether two signatures make a candidate pair: some band identical.
    pub fn is_candidate(&self, x: &Signature, y: &Signature) -> bool {
        x.values.len() == y.values.len()
            && x.values
                .chunks(self.params.rows)
                .zip(y.values.chunks(self.params.rows))
                .any(|(p, q)| p == q)
    }
}

/// The exact Jaccard similarity of two texts' `ngram`-shingle sets (of shingle hashes; 0
/// when both are empty): the ground truth the tests compare MinHash with.
pub fn true_jaccard(x: &str, y: &str, ngram: usize) -> f64 {
    use crate::normalize::{shingle_hashes, simplify_text};
    use std::collections::HashSet;
    let sx: HashSet<u64> = shingle_hashes(&simplify_text(x), ngram)
        .into_iter()
        .collect();
    let sy: HashSet<u64> = shingle_hashes(&simplify_text(y), ngram)
        .into_iter()
        .collect();
    let union = sx.union(&sy).count();
    if union == 0 {
        return 0.0;
    }
    sx.intersection(&sy).count() as f64 / union as f64
}

/// A pass-through hasher for keys that are already uniform 64-bit hashes.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type BandMap = HashMap<u64, u32, BuildHasherDefault<KeyHasher>>;

/// What a near-dedup pass found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NearReport {
    pub input_docs: u64,
    pub kept_docs: u64,
    /// Clusters of two or more documents (each keeps one).
    pub clusters: u64,
    /// Documents too short to shingle (always kept).
    pub unshingled_docs: u64,
}

/// The index: band buckets and union-find over the documents added so far, in order.
pub struct NearDedup {
    hasher: MinHasher,
    buckets: Vec<BandMap>,
    parent: Vec<u32>,
    unshingled: u64,
}

impl NearDedup {
    pub fn new(params: NearParams) -> Result<Self, NearError> {
        let hasher = MinHasher::new(params)?;
        let buckets = (0..params.bands).map(|_| BandMap::default()).collect();
        Ok(NearDedup {
            hasher,
            buckets,
            parent: Vec::new(),
            unshingled: 0,
        })
    }

    pub fn hasher(&self) -> &MinHasher {
        &self.hasher
    }

    /// Documents added so far.
    pub fn len(&self) -> u64 {
        self.parent.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    fn find(&mut self, mut i: u32) -> u32 {
        // Path halving.
        while self.parent[i as usize] != i {
            let grand = self.parent[self.parent[i as usize] as usize];
            self.parent[i as usize] = grand;
            i = grand;
        }
        i
    }

    fn union(&mut self, x: u32, y: u32) {
        let (rx, ry) = (self.find(x), self.find(y));
        if rx != ry {
            // The smaller index (the earlier document) stays the root.
            let (root, child) = if rx < ry { (rx, ry) } else { (ry, rx) };
            self.parent[child as usize] = root;
        }
    }

    /// Adds the next documents in input order; their signatures are computed in parallel
    /// on the current rayon pool.
    pub fn add_batch<S: AsRef<str> + Sync>(&mut self, texts: &[S]) -> Result<(), NearError> {
        let start = self.parent.len();
        if start + texts.len() >= u32::MAX as usize {
            return Err(NearError::TooManyDocuments);
        }
        let hasher = &self.hasher;
        let keys: Vec<Option<Vec<u64>>> = texts
            .par_iter()
            .map_init(Scratch::default, |scratch, text| {
                hasher
                    .signature_with(text.as_ref(), scratch)
                    .map(|sig| hasher.band_keys(&sig))
            })
            .collect();
        for (offset, keys) in keys.into_iter().enumerate() {
            let doc = (start + offset) as u32;
            self.parent.push(doc);
            let Some(keys) = keys else {
                self.unshingled += 1;
                continue;
            };
            for (band, key) in keys.into_iter().enumerate() {
                let first = *self.buckets[band].entry(key).or_insert(doc);
                if first != doc {
                    self.union(first, doc);
                }
            }
        }
        Ok(())
    }

    /// Resolves the clusters.
    pub fn finish(mut self) -> NearClusters {
        let n = self.parent.len();
        let mut root = Vec::with_capacity(n);
        let mut size = vec![0u32; n];
        for i in 0..n as u32 {
            let r = self.find(i);
            root.push(r);
            size[r as usize] += 1;
        }
        let kept = (0..n).filter(|&i| root[i] as usize == i).count() as u64;
        let clusters = size.iter().filter(|&&s| s >= 2).count() as u64;
        NearClusters {
            root,
            report: NearReport {
                input_docs: n as u64,
                kept_docs: kept,
                clusters,
                unshingled_docs: self.unshingled,
            },
        }
    }
}

/// The clusters of a finished pass.
pub struct NearClusters {
    root: Vec<u32>,
    report: NearReport,
}

impl NearClusters {
    /// Whether document `index` (0-based, input order) is kept: it is its cluster's first.
    /// Out of range: false.
    pub fn is_kept(&self, index: u64) -> bool {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.root.get(i).map(|&r| r as usize == i))
            .unwrap_or(false)
    }

    /// The index of the kept document of `index`'s cluster.
    pub fn cluster_of(&self, index: u64) -> Option<u64> {
        let i = usize::try_from(index).ok()?;
        self.root.get(i).map(|&r| r as u64)
    }

    pub fn report(&self) -> &NearReport {
        &self.report
    }
}

/// Near-deduplicates documents held in memory (input order), with the current rayon pool.
pub fn near_dedup_texts<S: AsRef<str> + Sync>(
    texts: &[S],
    params: NearParams,
) -> Result<NearClusters, NearError> {
    let mut dedup = NearDedup::new(params)?;
    for batch in texts.chunks(BATCH_DOCS) {
        dedup.add_batch(batch)?;
    }
    Ok(dedup.finish())
}

/// What [`near_dedup_step`] returns.
pub struct NearStepOutput {
    pub report: NearReport,
    /// The first (indexing) read of the inputs.
    pub ingest: IngestReport,
}

/// The near-dedup step: indexes the inputs, then reads them again and writes each
/// cluster's first document and every unclustered one to `output` (`.jsonl` or
/// `.jsonl.zst`, atomically). Inputs are checked before any work.
pub fn near_dedup_step(
    config: &IngestConfig,
    params: NearParams,
    output: &Path,
) -> Result<NearStepOutput, NearError> {
    let mut dedup = NearDedup::new(params)?;
    let mut ingest = Ingest::open(config)?;
    let mut batch: Vec<String> = Vec::with_capacity(BATCH_DOCS);
    let mut bytes = 0u64;
    for doc in ingest.by_ref() {
        let text = doc?.text;
        bytes += text.len() as u64;
        batch.push(text);
        if batch.len() == BATCH_DOCS || bytes >= crate::ingest::MAX_BATCH_BYTES {
            dedup.add_batch(&batch)?;
            batch.clear();
            bytes = 0;
        }
    }
    dedup.add_batch(&batch)?;
    let ingest_report = ingest.into_report();
    let clusters = dedup.finish();

    let mut writer = JsonlWriter::create(output)?;
    let mut second = Ingest::open(config)?;
    for (index, doc) in second.by_ref().enumerate() {
        let doc = doc?;
        if clusters.is_kept(index as u64) {
            writer.write(&doc)?;
        }
    }
    writer.finish()?;
    Ok(NearStepOutput {
        report: clusters.report().clone(),
        ingest: ingest_report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_of_the_defaults() {
        let h = MinHasher::new(NearParams::default()).unwrap();
        assert!((h.threshold() - 0.7187).abs() < 1e-3);
        assert!((h.candidate_probability(h.threshold()) - 0.65).abs() < 0.01);
    }

    #[test]
    fn invalid_params_are_errors() {
        for p in [
            NearParams {
                ngram: 0,
                ..NearParams::default()
            },
            NearParams {
                bands: 0,
                ..NearParams::default()
            },
            NearParams {
                rows: 0,
                ..NearParams::default()
            },
            NearParams {
                bands: 1 << 40,
                rows: 1 << 40,
                ..NearParams::default()
            },
        ] {
            assert!(matches!(
                MinHasher::new(p),
                Err(NearError::InvalidParams(_))
            ));
        }
    }

    #[test]
    fn first_document_of_a_cluster_is_kept() {
        let base = "the quick brown fox jumps over the lazy dog and keeps on running far away";
        let texts = [
            "an unrelated sentence with enough words to make several shingles here",
            base,
            "short",
            base,
            "The quick brown fox jumps over the lazy dog, and keeps on running far away!",
        ];
        let c = near_dedup_texts(&texts, NearParams::default()).unwrap();
        let kept: Vec<bool> = (0..5).map(|i| c.is_kept(i)).collect();
        assert_eq!(kept, [true, true, true, false, false]);
        assert_eq!(c.cluster_of(4), Some(1));
        assert_eq!(
            *c.report(),
            NearReport {
                input_docs: 5,
                kept_docs: 3,
                clusters: 1,
                unshingled_docs: 1
            }
        );
    }
}
