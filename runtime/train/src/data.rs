//! Training and held-out samples from a mix step's token shards, in an order fixed by the seed.
//!
//! The phase's stream is cut into windows, and the order the steps visit them is a function
//! of (seed, phase, position) only, so any step's batch is known without replaying the ones
//! before it.
//!
//! # Samples (Megatron-LM's GPT dataset, `megatron/core/datasets/gpt_dataset.py`)
//! The mix step's `text_document` holds the phase's documents back to back, each ending in
//! the end-of-document token; training reads it as one stream of tokens (documents packed,
//! attention not reset at their borders, as Megatron-LM's default). Sample i is the
//! seq_len + 1 tokens starting at i·seq_len — inputs are its first seq_len tokens, targets
//! its last seq_len — so consecutive samples share one token and every token but the first
//! is a target once per epoch.
//!
//! # Order
//! A phase's training position p (the p-th sample it trains on: step-in-phase × global
//! batch + index in the batch) reads sample π_e(p mod n) of epoch e = ⌊p / n⌋, where n is
//! the sample count and π_e a pseudo-random permutation of [0, n): a four-round Feistel
//! network (Luby & Rackoff 1988) over the smallest even-bit power of two ≥ n, with
//! cycle-walking to stay inside [0, n) (Black & Rogaway 2002, "Ciphers with Arbitrary
//! Finite Domains", Sec. 2). Its round keys come from SplitMix64 (Steele, Lea & Flood 2014)
//! over the seed, the phase's name and the epoch. It needs no memory per sample and no
//! state: a resumed run reads exactly the batches an uninterrupted one would.
//!
//! # Held-out evaluation
//! The mix step's `held_out_document` read in order as non-overlapping windows of
//! seq_len + 1 tokens (the same overlap of one), up to the tokens asked for.

use std::fs::File;
use std::path::Path;

use kiln_data::shards::{dataset_paths, IndexedDataset, TokenDtype};
use memmap2::Mmap;

use crate::error::{io_at, TrainError};

/// Feistel rounds: four make a pseudo-random permutation (Luby & Rackoff 1988, Theorem 1
/// is for three against chosen-plaintext; four for the strong variant).
pub const FEISTEL_ROUNDS: u64 = 4;

/// One step of SplitMix64 (Steele, Lea & Flood 2014, `mix64` of Java's `SplittableRandom`).
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 64-bit key from a seed and labels (each byte folded through SplitMix64).
pub fn derive_key(seed: u64, labels: &[&[u8]]) -> u64 {
    let mut h = splitmix64(seed);
    for label in labels {
        h = splitmix64(h ^ label.len() as u64);
        for &b in *label {
            h = splitmix64(h ^ b as u64);
        }
    }
    h
}

/// A permutation of `[0, n)` (see the module doc).
#[derive(Clone, Debug)]
pub struct Permutation {
    n: u64,
    half_bits: u32,
    keys: [u64; FEISTEL_ROUNDS as usize],
}

impl Permutation {
    pub fn new(n: u64, key: u64) -> Permutation {
        // The smallest even number of bits whose domain holds n (at least 2).
        let bits = (64 - n.saturating_sub(1).leading_zeros()).max(2);
        let half_bits = bits.div_ceil(2);
        let mut keys = [0u64; FEISTEL_ROUNDS as usize];
        for (r, k) in keys.iter_mut().enumerate() {
            *k = splitmix64(key ^ splitmix64(r as u64 + 1));
        }
        Permutation { n, half_bits, keys }
    }

    fn feistel(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (x >> self.half_bits, x & mask);
        for k in self.keys {
            let f = splitmix64(right ^ k) & mask;
            (left, right) = (right, left ^ f);
        }
        (left << self.half_bits) | right
    }

    /// π(i) for i < n; the domain is at most 4n, so cycle-walking ends after a few rounds.
    /// An `i ≥ n` (outside the domain) is returned unchanged.
    pub fn apply(&self, i: u64) -> u64 {
        if i >= self.n {
            return i;
        }
        let mut x = self.feistel(i);
        while x >= self.n {
            x = self.feistel(x);
        }
        x
    }
}

/// An indexed dataset's tokens as one memory-mapped stream (kiln writes the sequences
/// contiguously, which [`IndexedDataset::open`] checks).
pub struct TokenStream {
    map: Option<Mmap>,
    dtype: TokenDtype,
    tokens: u64,
}

impl TokenStream {
    /// Opens `PREFIX.bin/.idx`, validating the index with kiln-data's reader.
    pub fn open(prefix: &Path) -> Result<TokenStream, TrainError> {
        let dataset = IndexedDataset::open(prefix).map_err(|e| TrainError::Input(e.to_string()))?;
        let (bin, _) = dataset_paths(prefix);
        let tokens = dataset.tokens();
        let dtype = dataset.dtype();
        drop(dataset);
        let file = File::open(&bin).map_err(io_at(&bin))?;
        let len = file.metadata().map_err(io_at(&bin))?.len();
        if len != tokens * dtype.size() as u64 {
            return Err(TrainError::Input(format!(
                "{}: {len} bytes, but its index describes {tokens} tokens",
                bin.display()
            )));
        }
        // SAFETY: read-only map of a file that kiln renamed into place complete and never
        // modifies (a file truncated under the map would fault).
        let map = if len == 0 {
            None
        } else {
            Some(unsafe { Mmap::map(&file) }.map_err(io_at(&bin))?)
        };
        Ok(TokenStream { map, dtype, tokens })
    }

    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Appends tokens `[start, start + len)` (clipped to the stream) to `out`.
    pub fn read(&self, start: u64, len: u64, out: &mut Vec<i64>) {
        let Some(map) = &self.map else {
            return;
        };
        let end = (start + len).min(self.tokens);
        if start >= end {
            return;
        }
        let size = self.dtype.size();
        let bytes = &map[start as usize * size..end as usize * size];
        match self.dtype {
            TokenDtype::Uint16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64),
            ),
            TokenDtype::Int32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64),
            ),
        }
    }
}

/// The samples of one stream (see the module doc).
pub struct Samples {
    stream: TokenStream,
    seq_len: u64,
    vocab: u64,
    count: u64,
}

impl Samples {
    /// Windows of `seq_len + 1` tokens over the stream at `prefix`; token ids must be below
    /// `vocab` (checked as samples are read).
    pub fn open(prefix: &Path, seq_len: u64, vocab: u64) -> Result<Samples, TrainError> {
        let stream = TokenStream::open(prefix)?;
        let count = stream.tokens().saturating_sub(1) / seq_len.max(1);
        Ok(Samples {
            stream,
            seq_len,
            vocab,
            count,
        })
    }

    /// Samples in one epoch.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn tokens(&self) -> u64 {
        self.stream.tokens()
    }

    /// Target tokens per sample.
    pub fn seq_len(&self) -> u64 {
        self.seq_len
    }

    /// Appends sample `i`'s `seq_len + 1` token ids to `out`.
    pub fn read(&self, i: u64, out: &mut Vec<i64>) -> Result<(), TrainError> {
        let before = out.len();
        self.stream.read(i * self.seq_len, self.seq_len + 1, out);
        if let Some(&bad) = out[before..]
            .iter()
            .find(|&&t| t < 0 || t as u64 >= self.vocab)
        {
            return Err(TrainError::Input(format!(
                "token id {bad} in sample {i} is outside the model's vocabulary of {}: the shards were encoded with another tokenizer",
                self.vocab
            )));
        }
        if out.len() - before != (self.seq_len + 1) as usize {
            return Err(TrainError::Input(format!(
                "sample {i} is past the end of the stream ({} tokens)",
                self.stream.tokens()
            )));
        }
        Ok(())
    }
}

/// Where each training position of a phase reads (see the module doc).
pub struct SampleOrder {
    seed: u64,
    phase: String,
    count: u64,
    /// The permutation of the epoch last asked for.
    cached: Option<(u64, Permutation)>,
}

impl SampleOrder {
    pub fn new(seed: u64, phase: &str, count: u64) -> SampleOrder {
        SampleOrder {
            seed,
            phase: phase.to_string(),
            count,
            cached: None,
        }
    }

    /// The sample index read at training position `p` (an empty stream, `count` 0, is
    /// treated as one sample; the caller refuses it before training).
    pub fn sample(&mut self, p: u64) -> u64 {
        let count = self.count.max(1);
        let epoch = p / count;
        let stale = self.cached.as_ref().is_none_or(|(e, _)| *e != epoch);
        if stale {
            let key = derive_key(
                self.seed,
                &[b"train-order", self.phase.as_bytes(), &epoch.to_le_bytes()],
            );
            self.cached = Some((epoch, Permutation::new(count, key)));
        }
        match &self.cached {
            Some((_, perm)) => perm.apply(p % count),
            None => p % count,
        }
    }

    /// The epoch training position `p` falls in.
    pub fn epoch(&self, p: u64) -> u64 {
        p / self.count.max(1)
    }
}
