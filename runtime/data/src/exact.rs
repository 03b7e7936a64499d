//! Exact deduplication: a Bloom filter over document text, sized from the expected count
//! and false-positive rate, saved in a stable binary format so runs and sources can share it.
//!
//! # Key
//! Following Dolma's `dedupe` (documents mode, `key: $.text`; allenai/dolma
//! `src/deduper.rs`), the key is the document's raw text, byte for byte ([`ExactKey::Text`],
//! the default): exact deduplication removes copies, and near-duplicates — including copies
//! that differ only in case, spacing or punctuation — are the job of `near` (MinHash over
//! normalised text). [`ExactKey::Simplified`] keys on datatrove's simplified text instead,
//! for a cheaper pass that also catches those trivial variants; note that it folds digits,
//! so texts differing only in numbers count as copies.
//!
//! # Sizing (Bloom 1970; the standard derivation, e.g. Broder & Mitzenmacher 2004, §2.1)
//! After `n` insertions into `m` bits with `k` hash functions the false-positive
//! probability is `p ≈ (1 − e^{−kn/m})^k`, minimised at `k = (m/n) ln 2`, where
//! `p = 2^{−k}`; hence for a target `p`: `m = ⌈−n ln p / (ln 2)²⌉` (rounded up to whole
//! 64-bit words) and `k = round((m/n) ln 2)` (at least 1).
//!
//! # Hashing (Kirsch & Mitzenmacher 2006, "Less hashing, same performance")
//! One 128-bit XXH3 hash of the key gives two 64-bit halves `h1`, `h2` (`h2` forced odd);
//! the `i`-th probe is `g_i = h1 + i·h2 (mod 2^64)`, mapped to a bit with Lemire's
//! multiply-shift range reduction, `⌊g_i · m / 2^64⌋` (Lemire 2019, "Fast random integer
//! generation in an interval"). Kirsch and Mitzenmacher show two hash functions combined
//! this way keep the asymptotic false-positive rate of `k` independent ones; the test in
//! `tests/dedup.rs` measures it on 10 million keys.
//!
//! # File format (version 1), all integers little-endian
//! | offset | bytes | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `KILNBLOM` |
//! | 8 | 4 | format version (`u32`, 1) |
//! | 12 | 4 | `k`, hash functions (`u32`) |
//! | 16 | 8 | `m`, bits (`u64`, a multiple of 64) |
//! | 24 | 8 | `n`, keys inserted so far (`u64`) |
//! | 32 | m/8 | the bits, as `m/64` `u64` words; bit `j` is bit `j mod 64` of word `j / 64` |
//! | 32 + m/8 | 8 | XXH3-64 of all preceding bytes (`u64`) |
//!
//! The hashing above is part of version 1: a filter is only meaningful to code that probes
//! the same bits. [`BloomFilter::save`] writes a temporary file and renames it into place.
//! [`BloomFilter::load`] refuses a wrong magic, an unknown version, inconsistent sizes, a
//! truncated file and a checksum mismatch, each with its own error.
//!
//! # Deduplicating
//! [`ExactDedup`] keeps a document when its key was not (probably) seen before — the first
//! occurrence in input order — and inserts it. A false positive drops a unique document
//! with probability about `p`; nothing is ever kept twice. [`exact_dedup_step`] runs it over
//! an ingest and writes the kept documents.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{xxh3_128, Xxh3Default};

use crate::ingest::{Ingest, IngestConfig, IngestError, IngestReport, JsonlWriter};
use crate::normalize::{simplify_text_into, TextNormConfig};

/// The file's magic bytes.
pub const BLOOM_MAGIC: [u8; 8] = *b"KILNBLOM";
/// The file format version this code reads and writes.
pub const BLOOM_FORMAT_VERSION: u32 = 1;
/// Header bytes before the bit array.
const HEADER_BYTES: usize = 32;
/// The largest filter kiln allocates: 2^40 bits = 128 GiB (assumption: beyond one node's
/// memory; a larger corpus must be deduplicated in partitions).
pub const MAX_BLOOM_BITS: u64 = 1 << 40;
/// The most hash functions: `p = 2^-64` is already far below any useful rate.
pub const MAX_BLOOM_HASHES: u32 = 64;

/// A Bloom filter error.
#[derive(Debug)]
pub enum BloomError {
    /// Sizing parameters out of range (`expected_items ≥ 1`, `0 < p < 1`, size limits).
    InvalidParameters(String),
    /// The memory for the bits could not be reserved.
    OutOfMemory { bytes: u64 },
    /// Reading or writing a filter file failed.
    Io { path: PathBuf, source: io::Error },
    /// The file is not a kiln Bloom filter or is damaged.
    Corrupt { path: PathBuf, reason: String },
}

impl fmt::Display for BloomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BloomError::InvalidParameters(why) => {
                write!(f, "invalid Bloom filter parameters: {why}")
            }
            BloomError::OutOfMemory { bytes } => {
                write!(f, "cannot allocate a Bloom filter of {bytes} bytes")
            }
            BloomError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            BloomError::Corrupt { path, reason } => {
                write!(
                    f,
                    "{}: not a usable kiln Bloom filter: {reason}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for BloomError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BloomError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A Bloom filter over byte strings (see the module doc for sizing, hashing and format).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BloomFilter {
    words: Vec<u64>,
    bits: u64,
    hashes: u32,
    inserted: u64,
}

/// `m = ⌈−n ln p / (ln 2)²⌉` bits, rounded up to whole 64-bit words (Bloom 1970).
pub fn optimal_bits(expected_items: u64, false_positive_rate: f64) -> f64 {
    let ln2 = std::f64::consts::LN_2;
    let raw = -(expected_items as f64) * false_positive_rate.ln() / (ln2 * ln2);
    (raw / 64.0).ceil() * 64.0
}

/// `k = round((m/n) ln 2)`, at least 1 (Bloom 1970).
pub fn optimal_hashes(bits: u64, expected_items: u64) -> u32 {
    let k = (bits as f64 / expected_items as f64 * std::f64::consts::LN_2).round();
    k.clamp(1.0, MAX_BLOOM_HASHES as f64) as u32
}

impl BloomFilter {
    /// A filter for `expected_items` keys at `false_positive_rate`.
    pub fn for_items(expected_items: u64, false_positive_rate: f64) -> Result<Self, BloomError> {
        if expected_items == 0 {
            return Err(BloomError::InvalidParameters(
                "the expected number of documents must be at least 1".into(),
            ));
        }
        if !(false_positive_rate > 0.0 && false_positive_rate < 1.0) {
            return Err(BloomError::InvalidParameters(format!(
                "the false-positive rate must be between 0 and 1 (exclusive), not {false_positive_rate}"
            )));
        }
        let bits = optimal_bits(expected_items, false_positive_rate);
        if bits.is_nan() || bits > MAX_BLOOM_BITS as f64 {
            return Err(BloomError::InvalidParameters(format!(
                "{expected_items} documents at rate {false_positive_rate} need {bits:.3e} bits, \
                 more than the limit of {MAX_BLOOM_BITS}; deduplicate in partitions"
            )));
        }
        let bits = (bits as u64).max(64);
        BloomFilter::with_size(bits, optimal_hashes(bits, expected_items))
    }

    /// A filter of `bits` bits (rounded up to a multiple of 64) and `hashes` hash functions.
    pub fn with_size(bits: u64, hashes: u32) -> Result<Self, BloomError> {
        if bits == 0 || bits > MAX_BLOOM_BITS {
            return Err(BloomError::InvalidParameters(format!(
                "the size must be between 1 and {MAX_BLOOM_BITS} bits, not {bits}"
            )));
        }
        if hashes == 0 || hashes > MAX_BLOOM_HASHES {
            return Err(BloomError::InvalidParameters(format!(
                "the number of hash functions must be between 1 and {MAX_BLOOM_HASHES}, not {hashes}"
            )));
        }
        let n_words = bits.div_ceil(64);
        let words = zeroed_words(n_words)?;
        Ok(BloomFilter {
            words,
            bits: n_words * 64,
            hashes,
            inserted: 0,
        })
    }

    /// `m`, the number of bits.
    pub fn bits(&self) -> u64 {
        self.bits
    }

    /// `k`, the number of hash functions.
    pub fn hashes(&self) -> u32 {
        self.hashes
    }

    /// `n`, the keys inserted (those that were not already present).
    pub fn inserted(&self) -> u64 {
        self.inserted
    }

    /// The false-positive probability at the current fill, `(1 − e^{−kn/m})^k`.
    pub fn estimated_false_positive_rate(&self) -> f64 {
        let k = self.hashes as f64;
        (1.0 - (-k * self.inserted as f64 / self.bits as f64).exp()).powf(k)
    }

    /// The two 64-bit halves of the key's hash (`h2` odd, so no probe sequence is constant).
    #[inline]
    fn hash_pair(key: &[u8]) -> (u64, u64) {
        let h = xxh3_128(key);
        (h as u64, ((h >> 64) as u64) | 1)
    }

    /// Bit `⌊g · m / 2^64⌋` for the probe value `g`.
    #[inline]
    fn bit_index(&self, g: u64) -> u64 {
        ((g as u128 * self.bits as u128) >> 64) as u64
    }

    /// Whether the key is (probably) present.
    pub fn contains(&self, key: &[u8]) -> bool {
        let (h1, h2) = Self::hash_pair(key);
        let mut g = h1;
        for _ in 0..self.hashes {
            let j = self.bit_index(g);
            if self.words[(j >> 6) as usize] & (1 << (j & 63)) == 0 {
                return false;
            }
            g = g.wrapping_add(h2);
        }
        true
    }

    /// Inserts the key; returns whether it was (probably) present already. A key already
    /// present does not count as inserted.
    pub fn insert(&mut self, key: &[u8]) -> bool {
        let (h1, h2) = Self::hash_pair(key);
        let mut g = h1;
        let mut present = true;
        for _ in 0..self.hashes {
            let j = self.bit_index(g);
            let word = &mut self.words[(j >> 6) as usize];
            let mask = 1 << (j & 63);
            present &= *word & mask != 0;
            *word |= mask;
            g = g.wrapping_add(h2);
        }
        if !present {
            self.inserted += 1;
        }
        present
    }

    /// Writes the filter in the version-1 format (see the module doc).
    pub fn write_to<W: Write>(&self, w: &mut W) -> io::Result<()> {
        let mut checksum = Xxh3Default::new();
        let mut header = Vec::with_capacity(HEADER_BYTES);
        header.extend_from_slice(&BLOOM_MAGIC);
        header.extend_from_slice(&BLOOM_FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&self.hashes.to_le_bytes());
        header.extend_from_slice(&self.bits.to_le_bytes());
        header.extend_from_slice(&self.inserted.to_le_bytes());
        checksum.update(&header);
        w.write_all(&header)?;
        let mut chunk = Vec::with_capacity(8 * 8192);
        for words in self.words.chunks(8192) {
            chunk.clear();
            for word in words {
                chunk.extend_from_slice(&word.to_le_bytes());
            }
            checksum.update(&chunk);
            w.write_all(&chunk)?;
        }
        w.write_all(&checksum.digest().to_le_bytes())
    }

    /// Saves the filter to `path` through a temporary file renamed into place
    /// (`kiln_fsio::AtomicFile`): the old file or the whole new one, never a part.
    pub fn save(&self, path: &Path) -> Result<(), BloomError> {
        let io_err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| BloomError::Io { path: p, source }
        };
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let fsio = |e: kiln_fsio::Error| BloomError::Io {
            path: e.path.clone(),
            source: e.into(),
        };
        let file = kiln_fsio::AtomicFile::create(path).map_err(fsio)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        self.write_to(&mut w).map_err(io_err(path))?;
        let file = w.into_inner().map_err(|e| BloomError::Io {
            path: path.to_path_buf(),
            source: e.into_error(),
        })?;
        file.commit().map_err(fsio)
    }

    /// Reads a filter in the version-1 format; `path` only names the source in errors.
    pub fn read_from<R: Read>(r: &mut R, path: &Path) -> Result<Self, BloomError> {
        let corrupt = |reason: String| BloomError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let read_exact = |r: &mut R, buf: &mut [u8], what: &str| -> Result<(), BloomError> {
            r.read_exact(buf).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => BloomError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("truncated in the {what}"),
                },
                _ => BloomError::Io {
                    path: path.to_path_buf(),
                    source: e,
                },
            })
        };
        let mut header = [0u8; HEADER_BYTES];
        read_exact(r, &mut header, "header")?;
        let u32_at =
            |o: usize| u32::from_le_bytes([header[o], header[o + 1], header[o + 2], header[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[o..o + 8]);
            u64::from_le_bytes(b)
        };
        if header[..8] != BLOOM_MAGIC {
            return Err(corrupt("wrong magic bytes (expected `KILNBLOM`)".into()));
        }
        let version = u32_at(8);
        if version != BLOOM_FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {version}; this kiln reads version {BLOOM_FORMAT_VERSION}"
            )));
        }
        let hashes = u32_at(12);
        let bits = u64_at(16);
        let inserted = u64_at(24);
        if bits == 0 || bits % 64 != 0 || bits > MAX_BLOOM_BITS {
            return Err(corrupt(format!("invalid size of {bits} bits")));
        }
        if hashes == 0 || hashes > MAX_BLOOM_HASHES {
            return Err(corrupt(format!(
                "invalid number of hash functions {hashes}"
            )));
        }
        let mut checksum = Xxh3Default::new();
        checksum.update(&header);
        let mut words = zeroed_words(bits / 64)?;
        let mut chunk = vec![0u8; 8 * 8192];
        for slot in words.chunks_mut(8192) {
            let bytes = &mut chunk[..slot.len() * 8];
            read_exact(r, bytes, "bit array")?;
            checksum.update(bytes);
            for (word, b) in slot.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                *word = u64::from_le_bytes(a);
            }
        }
        let mut stored = [0u8; 8];
        read_exact(r, &mut stored, "checksum")?;
        if u64::from_le_bytes(stored) != checksum.digest() {
            return Err(corrupt("checksum mismatch".into()));
        }
        let mut trailing = [0u8; 1];
        match r.read(&mut trailing) {
            Ok(0) => {}
            Ok(_) => return Err(corrupt("bytes after the checksum".into())),
            Err(source) => {
                return Err(BloomError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        Ok(BloomFilter {
            words,
            bits,
            hashes,
            inserted,
        })
    }

    /// Loads a filter saved by [`BloomFilter::save`].
    pub fn load(path: &Path) -> Result<Self, BloomError> {
        let file = File::open(path).map_err(|source| BloomError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        BloomFilter::read_from(&mut BufReader::with_capacity(1 << 20, file), path)
    }
}

/// A zeroed bit array of `n` words, or an error instead of an allocation abort.
fn zeroed_words(n: u64) -> Result<Vec<u64>, BloomError> {
    let bytes = n.saturating_mul(8);
    let len = usize::try_from(n).map_err(|_| BloomError::OutOfMemory { bytes })?;
    let mut words = Vec::new();
    words
        .try_reserve_exact(len)
        .map_err(|_| BloomError::OutOfMemory { bytes })?;
    words.resize(len, 0);
    Ok(words)
}

/// What the exact-dedup key of a document is (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExactKey {
    /// The raw text, byte for byte (Dolma's document dedup on `$.text`).
    #[default]
    Text,
    /// datatrove's simplified text (`normalize::simplify_text`).
    Simplified,
}

/// What an exact-dedup pass did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ExactReport {
    pub input_docs: u64,
    pub kept_docs: u64,
    /// `input_docs − kept_docs`.
    pub removed: u64,
    /// Keys in the filter afterwards (those of earlier runs included).
    pub filter_inserted: u64,
    /// The filter's false-positive probability afterwards, `(1 − e^{−kn/m})^k`.
    pub filter_false_positive_rate: f64,
}

/// First-occurrence deduplication of a document stream against a Bloom filter.
pub struct ExactDedup {
    filter: BloomFilter,
    key: ExactKey,
    report: ExactReport,
    scratch: String,
}

impl ExactDedup {
    /// Deduplicates against `filter` (new, or loaded from an earlier run or source).
    pub fn new(filter: BloomFilter, key: ExactKey) -> Self {
        let mut dedup = ExactDedup {
            filter,
            key,
            report: ExactReport::default(),
            scratch: String::new(),
        };
        dedup.refresh_filter_stats();
        dedup
    }

    fn refresh_filter_stats(&mut self) {
        self.report.filter_inserted = self.filter.inserted();
        self.report.filter_false_positive_rate = self.filter.estimated_false_positive_rate();
    }

    /// Whether to keep a document with this text: true the first time its key is seen.
    pub fn keep(&mut self, text: &str) -> bool {
        let present = match self.key {
            ExactKey::Text => self.filter.insert(text.as_bytes()),
            ExactKey::Simplified => {
                simplify_text_into(text, &TextNormConfig::default(), &mut self.scratch);
                self.filter.insert(self.scratch.as_bytes())
            }
        };
        self.report.input_docs += 1;
        if !present {
            self.report.kept_docs += 1;
        }
        self.report.removed = self.report.input_docs - self.report.kept_docs;
        !present
    }

    /// The counts so far.
    pub fn report(&self) -> ExactReport {
        let mut report = self.report.clone();
        report.filter_inserted = self.filter.inserted();
        report.filter_false_positive_rate = self.filter.estimated_false_positive_rate();
        report
    }

    /// The filter (to save and reuse) and the report.
    pub fn into_parts(self) -> (BloomFilter, ExactReport) {
        let report = self.report();
        (self.filter, report)
    }
}

/// An exact-dedup step failure.
#[derive(Debug)]
pub enum ExactError {
    Ingest(IngestError),
    Bloom(BloomError),
}

impl fmt::Display for ExactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExactError::Ingest(e) => e.fmt(f),
            ExactError::Bloom(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ExactError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExactError::Ingest(e) => Some(e),
            ExactError::Bloom(e) => Some(e),
        }
    }
}

impl From<IngestError> for ExactError {
    fn from(e: IngestError) -> Self {
        ExactError::Ingest(e)
    }
}

impl From<BloomError> for ExactError {
    fn from(e: BloomError) -> Self {
        ExactError::Bloom(e)
    }
}

/// What [`exact_dedup_step`] returns.
pub struct ExactStepOutput {
    pub report: ExactReport,
    pub ingest: IngestReport,
    /// The filter with this step's documents added: save it to reuse it.
    pub filter: BloomFilter,
}

/// The exact-dedup step: reads the inputs, keeps first occurrences, writes them to
/// `output` (`.jsonl` or `.jsonl.zst`, atomically). Inputs are checked before any work.
pub fn exact_dedup_step(
    config: &IngestConfig,
    filter: BloomFilter,
    key: ExactKey,
    output: &Path,
) -> Result<ExactStepOutput, ExactError> {
    let mut ingest = Ingest::open(config)?;
    let mut writer = JsonlWriter::create(output)?;
    let mut dedup = ExactDedup::new(filter, key);
    for doc in ingest.by_ref() {
        let doc = doc?;
        if dedup.keep(&doc.text) {
            writer.write(&doc)?;
        }
    }
    writer.finish()?;
    let (filter, report) = dedup.into_parts();
    Ok(ExactStepOutput {
        report,
        ingest: ingest.into_report(),
        filter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizing_follows_the_standard_formulas() {
        // n = 1e6, p = 1e-2: m = 9 585 059 bits (→ 9 585 088), k = 7.
        let f = BloomFilter::for_items(1_000_000, 0.01).unwrap();
        assert_eq!(f.bits(), 9_585_088);
        assert_eq!(f.hashes(), 7);
        let f = BloomFilter::for_items(1_000, 1e-6).unwrap();
        assert_eq!(f.hashes(), 20);
    }

    #[test]
    fn inserted_keys_are_found() {
        let mut f = BloomFilter::for_items(1000, 0.01).unwrap();
        for i in 0u64..1000 {
            assert!(!f.insert(&i.to_le_bytes()) || i > 0);
        }
        assert!((0u64..1000).all(|i| f.contains(&i.to_le_bytes())));
        assert!(f.inserted() >= 990);
    }
}
