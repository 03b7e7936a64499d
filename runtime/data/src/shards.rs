//! Token shards in Megatron-LM's indexed-dataset format (`PREFIX.bin` + `PREFIX.idx`): the
//! writer, a validating memory-mapped reader, and parallel encoding of documents into them.
//!
//! # Format (Megatron-LM `megatron/core/datasets/indexed_dataset.py`, `MMapIndexedDataset`;
//! all integers little-endian)
//! `PREFIX.bin` holds every sequence's token ids back to back, each as the dataset's dtype,
//! with no header. `PREFIX.idx`:
//!
//! | offset | bytes | field |
//! | --- | --- | --- |
//! | 0 | 9 | magic `MMIDIDX\x00\x00` |
//! | 9 | 8 | version (`u64`, 1) |
//! | 17 | 1 | dtype code (`u8`): 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32, 8 uint16 |
//! | 18 | 8 | `S`, sequence count (`u64`) |
//! | 26 | 8 | `D`, document-index count (`u64`), documents + 1 |
//! | 34 | 4·S | sequence lengths in tokens (`i32`) |
//! | 34 + 4S | 8·S | sequence pointers: byte offset of each sequence in `.bin` (`i64`) |
//! | 34 + 12S | 8·D | document indices (`i64`): document `d` is sequences `[idx[d], idx[d+1])`; starts at 0, ends at `S` |
//!
//! kiln writes one sequence per document (what `tools/preprocess_data.py` writes without
//! `--split-sentences`), so `S` is the document count and the document indices are
//! `0, 1, …, S`. Each document ends with the tokenizer's end-of-document token. The dtype is
//! Megatron-LM's `DType.optimal_dtype(vocab_size)`: `uint16` when the vocabulary has fewer
//! than 65,500 tokens, `int32` otherwise ([`TokenDtype::for_vocab`]). Megatron-LM's
//! `IndexedDataset(prefix)` reads these files (tested with its own code in
//! `tests/tokenize.rs`).
//!
//! # Determinism and atomicity
//! [`encode_texts`] encodes a batch in parallel on the current rayon pool and returns the
//! documents in input order; [`ShardEncoder`] writes them in that order, so the bytes do not
//! depend on the thread count. [`IndexedWriter`] writes hidden temporary files beside the
//! destination (`kiln_fsio::AtomicFile`) and renames them into place in
//! [`IndexedWriter::finish`] (`.bin` first, then `.idx`): a reader never sees a half-written
//! index, and a writer dropped unfinished leaves nothing.

use std::fmt;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use kiln_fsio::AtomicFile;
use memmap2::Mmap;
use rayon::prelude::*;
use serde::Serialize;

use crate::tokenize::{self, Tokenizer};

/// The index file's magic bytes.
pub const INDEX_MAGIC: [u8; 9] = *b"MMIDIDX\x00\x00";
/// The index version Megatron-LM writes and reads.
pub const INDEX_VERSION: u64 = 1;
/// Bytes of the index header before the arrays.
pub const INDEX_HEADER_BYTES: usize = 34;
/// The file prefix of an encode step's dataset in its output directory (kiln-plan's run
/// directory layout; Megatron-LM's `--data-path` in the emitted scripts names it).
pub use kiln_plan::run_dir::DATA_PREFIX;
/// Megatron-LM's `DType.optimal_dtype` threshold: vocabularies below it fit `uint16`.
pub const UINT16_VOCAB_LIMIT: u64 = 65_500;
/// Documents encoded per parallel batch (assumption: enough work per thread to amortise
/// scheduling, little enough text held at once).
pub const ENCODE_BATCH_DOCS: usize = 1024;

/// The element type of the token ids in `.bin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenDtype {
    Uint16,
    Int32,
}

impl TokenDtype {
    /// Megatron-LM's `DType.optimal_dtype(cardinality)`.
    pub fn for_vocab(vocab_size: u64) -> TokenDtype {
        if vocab_size < UINT16_VOCAB_LIMIT {
            TokenDtype::Uint16
        } else {
            TokenDtype::Int32
        }
    }

    /// Megatron-LM's `DType` code.
    pub fn code(self) -> u8 {
        match self {
            TokenDtype::Uint16 => 8,
            TokenDtype::Int32 => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<TokenDtype> {
        match code {
            8 => Some(TokenDtype::Uint16),
            4 => Some(TokenDtype::Int32),
            _ => None,
        }
    }

    /// Bytes per token.
    pub fn size(self) -> usize {
        match self {
            TokenDtype::Uint16 => 2,
            TokenDtype::Int32 => 4,
        }
    }

    /// The largest id it holds.
    pub fn max_id(self) -> u32 {
        match self {
            TokenDtype::Uint16 => u16::MAX as u32,
            TokenDtype::Int32 => i32::MAX as u32,
        }
    }
}

/// A shard failure.
#[derive(Debug)]
pub enum ShardError {
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file that is not a valid indexed dataset (what is wrong, in words).
    Format { path: PathBuf, why: String },
    /// A token id or a document too large for the dataset's dtype.
    OutOfRange(String),
    /// The tokenizer failed on a document.
    Tokenizer(String),
    /// An output could not be written (or was refused) by `kiln_fsio`.
    Output(kiln_fsio::Error),
}

impl fmt::Display for ShardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            ShardError::Format { path, why } => {
                write!(f, "{}: not a valid indexed dataset: {why}", path.display())
            }
            ShardError::OutOfRange(why) => write!(f, "{why}"),
            ShardError::Tokenizer(why) => write!(f, "tokenizer: {why}"),
            ShardError::Output(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ShardError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ShardError::Io { source, .. } => Some(source),
            ShardError::Output(e) => Some(e),
            _ => None,
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ShardError + '_ {
    move |source| ShardError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `PREFIX.bin` and `PREFIX.idx`.
pub fn dataset_paths(prefix: &Path) -> (PathBuf, PathBuf) {
    let with = |ext: &str| {
        let mut s = prefix.as_os_str().to_os_string();
        s.push(ext);
        PathBuf::from(s)
    };
    (with(".bin"), with(".idx"))
}

/// What a written dataset holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DatasetSummary {
    pub documents: u64,
    pub tokens: u64,
    pub dtype: TokenDtype,
}

/// Writes an indexed dataset, one sequence per document (see the module doc).
pub struct IndexedWriter {
    dtype: TokenDtype,
    bin_path: PathBuf,
    idx_path: PathBuf,
    bin: Option<BufWriter<AtomicFile>>,
    lengths: Vec<i32>,
    tokens: u64,
    scratch: Vec<u8>,
}

impl IndexedWriter {
    /// Starts `PREFIX.bin` / `PREFIX.idx` (creating the directory); nothing appears at
    /// those names until [`IndexedWriter::finish`].
    pub fn create(prefix: &Path, dtype: TokenDtype) -> Result<IndexedWriter, ShardError> {
        let (bin_path, idx_path) = dataset_paths(prefix);
        if let Some(dir) = bin_path.parent() {
            if !dir.as_os_str().is_empty() {
                fs::create_dir_all(dir).map_err(io_error(dir))?;
            }
        }
        let file = AtomicFile::create(&bin_path).map_err(ShardError::Output)?;
        Ok(IndexedWriter {
            dtype,
            bin_path,
            idx_path,
            bin: Some(BufWriter::with_capacity(1 << 20, file)),
            lengths: Vec::new(),
            tokens: 0,
            scratch: Vec::new(),
        })
    }

    pub fn dtype(&self) -> TokenDtype {
        self.dtype
    }

    /// Documents written so far.
    pub fn documents(&self) -> u64 {
        self.lengths.len() as u64
    }

    /// Tokens written so far.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Appends one document (its end-of-document token included).
    pub fn add_document(&mut self, tokens: &[u32]) -> Result<(), ShardError> {
        let len = i32::try_from(tokens.len()).map_err(|_| {
            ShardError::OutOfRange(format!(
                "a document of {} tokens is longer than the index's int32 lengths",
                tokens.len()
            ))
        })?;
        let max = self.dtype.max_id();
        if let Some(&bad) = tokens.iter().find(|&&t| t > max) {
            return Err(ShardError::OutOfRange(format!(
                "token id {bad} does not fit the dataset's {:?}",
                self.dtype
            )));
        }
        self.scratch.clear();
        match self.dtype {
            TokenDtype::Uint16 => {
                for &t in tokens {
                    self.scratch.extend_from_slice(&(t as u16).to_le_bytes());
                }
            }
            TokenDtype::Int32 => {
                for &t in tokens {
                    self.scratch.extend_from_slice(&(t as i32).to_le_bytes());
                }
            }
        }
        let bin = self.bin.as_mut().ok_or_else(|| ShardError::Io {
            path: self.bin_path.clone(),
            source: std::io::Error::other("writer already finished"),
        })?;
        bin.write_all(&self.scratch)
            .map_err(io_error(&self.bin_path))?;
        self.lengths.push(len);
        self.tokens += tokens.len() as u64;
        Ok(())
    }

    /// Writes the index, syncs both files and renames them into place.
    pub fn finish(mut self) -> Result<DatasetSummary, ShardError> {
        let bin = self.bin.take().ok_or_else(|| ShardError::Io {
            path: self.bin_path.clone(),
            source: std::io::Error::other("writer already finished"),
        })?;
        let bin = bin.into_inner().map_err(|e| ShardError::Io {
            path: self.bin_path.clone(),
            source: e.into_error(),
        })?;

        let s = self.lengths.len();
        let mut idx = Vec::with_capacity(INDEX_HEADER_BYTES + 12 * s + 8 * (s + 1));
        idx.extend_from_slice(&INDEX_MAGIC);
        idx.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        idx.push(self.dtype.code());
        idx.extend_from_slice(&(s as u64).to_le_bytes());
        idx.extend_from_slice(&(s as u64 + 1).to_le_bytes());
        for &len in &self.lengths {
            idx.extend_from_slice(&len.to_le_bytes());
        }
        let size = self.dtype.size() as i64;
        let mut pointer = 0i64;
        for &len in &self.lengths {
            idx.extend_from_slice(&pointer.to_le_bytes());
            pointer += len as i64 * size;
        }
        for d in 0..=s as i64 {
            idx.extend_from_slice(&d.to_le_bytes());
        }
        let mut idx_file = AtomicFile::create(&self.idx_path).map_err(ShardError::Output)?;
        idx_file.write_all(&idx).map_err(io_error(&self.idx_path))?;
        bin.commit().map_err(ShardError::Output)?;
        idx_file.commit().map_err(ShardError::Output)?;
        Ok(DatasetSummary {
            documents: s as u64,
            tokens: self.tokens,
            dtype: self.dtype,
        })
    }
}

/// A memory-mapped indexed dataset, validated on open.
pub struct IndexedDataset {
    dtype: TokenDtype,
    lengths: Vec<u32>,
    pointers: Vec<u64>,
    doc_index: Vec<u64>,
    bin: Option<Mmap>,
    bin_path: PathBuf,
    tokens: u64,
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl IndexedDataset {
    /// Opens `PREFIX.bin` / `PREFIX.idx`; every inconsistency is an error naming the file.
    pub fn open(prefix: &Path) -> Result<IndexedDataset, ShardError> {
        let (bin_path, idx_path) = dataset_paths(prefix);
        let idx = fs::read(&idx_path).map_err(io_error(&idx_path))?;
        let bad = |why: String| ShardError::Format {
            path: idx_path.clone(),
            why,
        };
        if idx.len() < INDEX_HEADER_BYTES {
            return Err(bad(format!(
                "{} bytes, shorter than the {INDEX_HEADER_BYTES}-byte header",
                idx.len()
            )));
        }
        if idx[..9] != INDEX_MAGIC {
            return Err(bad("wrong magic (expected MMIDIDX\\x00\\x00)".into()));
        }
        let version = read_u64(&idx, 9);
        if version != INDEX_VERSION {
            return Err(bad(format!(
                "version {version}; kiln reads version {INDEX_VERSION}"
            )));
        }
        let dtype = TokenDtype::from_code(idx[17]).ok_or_else(|| {
            bad(format!(
                "dtype code {}; kiln reads token ids as uint16 (8) or int32 (4)",
                idx[17]
            ))
        })?;
        let s = read_u64(&idx, 18);
        let d = read_u64(&idx, 26);
        let need = (s as u128) * 12 + (d as u128) * 8 + INDEX_HEADER_BYTES as u128;
        // Megatron-LM's multimodal datasets append one mode byte per sequence.
        if (idx.len() as u128) != need && (idx.len() as u128) != need + s as u128 {
            return Err(bad(format!(
                "{} bytes, but {s} sequences and {d} document indices need {need}",
                idx.len()
            )));
        }
        let (s, d) = (s as usize, d as usize);
        let mut at = INDEX_HEADER_BYTES;
        let mut lengths = Vec::with_capacity(s);
        for _ in 0..s {
            let len = i32::from_le_bytes([idx[at], idx[at + 1], idx[at + 2], idx[at + 3]]);
            if len < 0 {
                return Err(bad(format!("a negative sequence length {len}")));
            }
            lengths.push(len as u32);
            at += 4;
        }
        let mut pointers = Vec::with_capacity(s);
        let mut expected = 0u64;
        let size = dtype.size() as u64;
        for (i, &len) in lengths.iter().enumerate() {
            let p = read_u64(&idx, at);
            if p != expected {
                return Err(bad(format!(
                    "sequence {i} starts at byte {p}, expected {expected} (sequences must be contiguous)"
                )));
            }
            pointers.push(p);
            expected += len as u64 * size;
            at += 8;
        }
        let mut doc_index = Vec::with_capacity(d);
        for _ in 0..d {
            doc_index.push(read_u64(&idx, at));
            at += 8;
        }
        if doc_index.first() != Some(&0)
            || doc_index.last() != Some(&(s as u64))
            || doc_index.windows(2).any(|w| w[0] > w[1])
        {
            return Err(bad(
                "document indices must rise from 0 to the sequence count".into(),
            ));
        }
        let file = File::open(&bin_path).map_err(io_error(&bin_path))?;
        let bin_len = file.metadata().map_err(io_error(&bin_path))?.len();
        if bin_len != expected {
            return Err(ShardError::Format {
                path: bin_path.clone(),
                why: format!("{bin_len} bytes, but the index describes {expected}"),
            });
        }
        // SAFETY: the map is read-only; kiln's files are renamed into place complete and
        // never modified afterwards (a file truncated under the map would fault).
        let bin = if bin_len == 0 {
            None
        } else {
            Some(unsafe { Mmap::map(&file) }.map_err(io_error(&bin_path))?)
        };
        Ok(IndexedDataset {
            dtype,
            tokens: expected / size,
            lengths,
            pointers,
            doc_index,
            bin,
            bin_path,
        })
    }

    pub fn dtype(&self) -> TokenDtype {
        self.dtype
    }

    /// Documents in the dataset.
    pub fn documents(&self) -> usize {
        self.doc_index.len().saturating_sub(1)
    }

    /// Sequences in the dataset (equal to documents for kiln's files).
    pub fn sequences(&self) -> usize {
        self.lengths.len()
    }

    /// Tokens in the dataset.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Tokens of document `d` (all its sequences).
    pub fn document_len(&self, d: usize) -> u64 {
        match (self.doc_index.get(d), self.doc_index.get(d + 1)) {
            (Some(&a), Some(&b)) => (a..b).map(|s| self.lengths[s as usize] as u64).sum(),
            _ => 0,
        }
    }

    /// Appends document `d`'s token ids to `out`; out of range appends nothing.
    pub fn read_document(&self, d: usize, out: &mut Vec<u32>) {
        let (Some(&a), Some(&b)) = (self.doc_index.get(d), self.doc_index.get(d + 1)) else {
            return;
        };
        for s in a..b {
            self.read_sequence(s as usize, out);
        }
    }

    /// Appends sequence `s`'s token ids to `out`; out of range appends nothing.
    pub fn read_sequence(&self, s: usize, out: &mut Vec<u32>) {
        let (Some(&p), Some(&len), Some(bin)) =
            (self.pointers.get(s), self.lengths.get(s), self.bin.as_ref())
        else {
            return;
        };
        let size = self.dtype.size();
        let start = p as usize;
        let bytes = &bin[start..start + len as usize * size];
        match self.dtype {
            TokenDtype::Uint16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32),
            ),
            TokenDtype::Int32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u32),
            ),
        }
    }

    /// Document `d`'s token ids.
    pub fn document(&self, d: usize) -> Vec<u32> {
        let mut out = Vec::new();
        self.read_document(d, &mut out);
        out
    }

    /// The `.bin` file's path.
    pub fn bin_path(&self) -> &Path {
        &self.bin_path
    }
}

/// Encodes texts on the current rayon pool, in input order, each followed by `eod` when
/// given. The result does not depend on the pool's size. A tokenizer kiln trained encodes a
/// long text in pieces (`tokenize::pieces`), with the same ids, in bounded memory.
pub fn encode_texts<S: AsRef<str> + Sync>(
    tokenizer: &Tokenizer,
    texts: &[S],
    eod: Option<u32>,
) -> Result<Vec<Vec<u32>>, ShardError> {
    let in_pieces = tokenize::encodes_in_pieces(tokenizer);
    texts
        .par_iter()
        .map(|text| {
            let text = text.as_ref();
            let encode = |piece: &str, out: &mut Vec<u32>| {
                let encoding = tokenizer
                    .encode_fast(piece, false)
                    .map_err(|e| ShardError::Tokenizer(e.to_string()))?;
                out.extend_from_slice(encoding.get_ids());
                Ok::<(), ShardError>(())
            };
            let mut out = Vec::new();
            if in_pieces {
                for piece in tokenize::pieces(text) {
                    encode(piece, &mut out)?;
                }
            } else {
                encode(text, &mut out)?;
            }
            out.extend(eod);
            Ok(out)
        })
        .collect()
}

/// Encodes batches of documents into an indexed dataset (see the module doc).
pub struct ShardEncoder<'t> {
    tokenizer: &'t Tokenizer,
    eod: u32,
    writer: IndexedWriter,
}

impl<'t> ShardEncoder<'t> {
    /// Starts `PREFIX.bin/.idx` with the dtype the tokenizer's vocabulary needs.
    pub fn create(
        tokenizer: &'t Tokenizer,
        eod: u32,
        prefix: &Path,
    ) -> Result<ShardEncoder<'t>, ShardError> {
        let dtype = TokenDtype::for_vocab(tokenizer.get_vocab_size(true) as u64);
        Ok(ShardEncoder {
            tokenizer,
            eod,
            writer: IndexedWriter::create(prefix, dtype)?,
        })
    }

    /// Encodes the next documents (in parallel) and appends them in order.
    pub fn add_batch<S: AsRef<str> + Sync>(&mut self, texts: &[S]) -> Result<(), ShardError> {
        for doc in encode_texts(self.tokenizer, texts, Some(self.eod))? {
            self.writer.add_document(&doc)?;
        }
        Ok(())
    }

    pub fn documents(&self) -> u64 {
        self.writer.documents()
    }

    pub fn tokens(&self) -> u64 {
        self.writer.tokens()
    }

    pub fn finish(self) -> Result<DatasetSummary, ShardError> {
        self.writer.finish()
    }
}
