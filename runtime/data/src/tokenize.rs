//! Tokenizer training (BPE or Unigram with Hugging Face's `tokenizers`), deterministic, over
//! byte-level words or SentencePiece-style raw text, saved as `tokenizer.json`.
//!
//! # Pre-tokenisation
//! - [`Pretokenize::ByteLevel`] (GPT-2's scheme; Radford et al. 2019, §2.2): the text is
//!   split into words by GPT-2's regular expression and every byte is mapped to one of 256
//!   printable characters, so the 256 of them are the initial alphabet and no input is ever
//!   unknown. Decoding maps the characters back to bytes.
//! - [`Pretokenize::Metaspace`] (SentencePiece; Kudo & Richardson 2018, §3.1): raw text,
//!   spaces replaced by `▁` (U+2581) with one prepended, split before each `▁` so no piece
//!   crosses a word boundary (SentencePiece's `split_by_whitespace`). Characters outside the
//!   alphabet fall back to byte tokens `<0x00>`…`<0xFF>` (SentencePiece's `byte_fallback`,
//!   as in Llama 2's tokenizer). Decoding is Llama 2's: `▁` to spaces, bytes joined, the
//!   prepended space removed (a text that itself starts with a space loses that one). For BPE the alphabet is the most frequent characters that
//!   cover [`CHARACTER_COVERAGE`] of the character occurrences (SentencePiece's
//!   `character_coverage` default); the Unigram trainer keeps every character it sees.
//!
//! # Vocabulary
//! Ids start with the special tokens: [`EOD_TOKEN`] (id 0, appended to every document by
//! the encoder), then [`UNK_TOKEN`] (Unigram, and Metaspace BPE), then for Metaspace the
//! 256 byte tokens; the learned pieces follow. The vocabulary size asked for counts all of
//! them; a corpus too small to learn that many pieces gives fewer (the report says how
//! many).
//!
//! # Determinism
//! The same documents in the same order give a byte-identical `tokenizer.json` whatever the
//! thread count. The `tokenizers` trainers iterate randomly seeded hash maps, so kiln
//! removes each place where that order reaches the result:
//! - Words are counted by kiln and sorted before the Unigram trainer sees them, and the
//!   Unigram EM runs on a one-thread pool (its E step sums floating-point expectations per
//!   thread chunk, which would make the scores depend on the thread count).
//! - The BPE alphabet is chosen by kiln (count, then code point) and passed as the initial
//!   alphabet with `limit_alphabet` equal to its size, so the trainer's unstable sort of
//!   tied counts never decides what is cut. BPE merges are then chosen by (count, pair) and
//!   do not depend on order.
//! - The Unigram trainer gives characters its EM pruned the model's lowest score plus
//!   1e-4 per character in hash order; kiln re-scores the single characters inside that band
//!   (the lowest score plus 1e-4 × the number of single characters) by code point, and
//!   sorts the pieces by (score, piece). Only the rarest characters' scores move, by less
//!   than the band.
//!
//! # Files
//! [`save`] writes `tokenizer.json` (Hugging Face's format; `tokenizers.Tokenizer.from_file`
//! and `AutoTokenizer` read it) and `tokenizer_config.json` (the class and the end-of-text
//! token, so `transformers.AutoTokenizer.from_pretrained(dir)` loads the directory, as
//! Megatron-LM's `HuggingFaceTokenizer` and torchtitan's `hf_assets_path` do), each through
//! `kiln_fsio::write` (a temporary file renamed into place).

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BpeTrainer, BpeTrainerBuilder, BPE};
use tokenizers::models::unigram::{Unigram, UnigramTrainer};
use tokenizers::models::ModelWrapper;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

pub use tokenizers::Tokenizer;

/// The end-of-document token (GPT-2's name for it), id 0 of every tokenizer kiln trains.
pub const EOD_TOKEN: &str = "<|endoftext|>";
/// The unknown token of Unigram and Metaspace BPE tokenizers (SentencePiece's name).
pub const UNK_TOKEN: &str = "<unk>";
/// End-of-document names looked for in a tokenizer kiln did not train, in this order.
pub const EOD_CANDIDATES: [&str; 4] = [EOD_TOKEN, "<|end_of_text|>", "</s>", "<eos>"];
/// The tokenizer file in a tokenizer or encode step's output directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// The `transformers` configuration beside it.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// SentencePiece's word-boundary marker (U+2581).
pub const METASPACE: char = '\u{2581}';
/// The share of character occurrences the Metaspace BPE alphabet covers; the rarest
/// characters beyond it are spelled with byte tokens (SentencePiece's
/// `character_coverage` default, `trainer_spec.proto`).
pub const CHARACTER_COVERAGE: f64 = 0.9995;
/// The longest Unigram piece in characters (SentencePiece's `max_sentencepiece_length`).
pub const MAX_PIECE_CHARS: usize = 16;
/// The largest vocabulary kiln trains (assumption: ids must fit the shards' `int32`, and no
/// published model uses more than a few hundred thousand).
pub const MAX_VOCAB: u64 = 1 << 24;
/// The most text pre-tokenised at once: a longer document is counted and encoded in pieces
/// (see [`pieces`]), so its cost in memory — `tokenizers` keeps about a hundred bytes per byte
/// of text being pre-tokenised — stays bounded whatever its length. Assumption: larger than
/// nearly every document (the pieces are then the documents), small enough that a piece in
/// flight per thread costs a few MB.
pub const PIECE_BYTES: usize = 64 << 10;
/// The longest piece: a run of text without a cut point (a space after a non-space) longer
/// than this is cut at a character boundary, which may split one word in two.
pub const MAX_PIECE_BYTES: usize = 1 << 20;
/// The Unigram trainer's penalty step for characters its EM pruned (`tokenizers`
/// `UnigramTrainer::finalize`, `min_score_penalty_delta`).
const UNIGRAM_PENALTY_DELTA: f64 = 1e-4;

/// The tokenizer model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Byte-pair encoding (Sennrich et al. 2016).
    Bpe,
    /// The Unigram language model (Kudo 2018).
    Unigram,
}

impl ModelKind {
    /// The pre-tokenisation when none is asked for: byte-level words for BPE (GPT-2,
    /// Llama 3), SentencePiece-style raw text for Unigram (T5).
    pub fn default_pretokenize(self) -> Pretokenize {
        match self {
            ModelKind::Bpe => Pretokenize::ByteLevel,
            ModelKind::Unigram => Pretokenize::Metaspace,
        }
    }

    /// Reads `bpe` or `unigram`.
    pub fn parse(name: &str) -> Option<ModelKind> {
        match name {
            "bpe" => Some(ModelKind::Bpe),
            "unigram" => Some(ModelKind::Unigram),
            _ => None,
        }
    }
}

/// How text is cut into words before the model sees it (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Pretokenize {
    /// GPT-2's byte-level words.
    ByteLevel,
    /// SentencePiece-style raw text with `▁` and byte fallback.
    Metaspace,
}

impl Pretokenize {
    /// Reads `byte_level` or `metaspace`.
    pub fn parse(name: &str) -> Option<Pretokenize> {
        match name {
            "byte_level" | "byte-level" => Some(Pretokenize::ByteLevel),
            "metaspace" | "sentencepiece" => Some(Pretokenize::Metaspace),
            _ => None,
        }
    }

    fn pre_tokenizer(self) -> PreTokenizerWrapper {
        match self {
            // No prefix space (GPT-2 and Llama 3 add none); offsets are not needed.
            Pretokenize::ByteLevel => ByteLevel::new(false, true, true).into(),
            Pretokenize::Metaspace => Metaspace::new(METASPACE, PrependScheme::Always, true).into(),
        }
    }
}

/// What to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TrainConfig {
    pub kind: ModelKind,
    /// Tokens in the vocabulary, special and byte tokens included.
    pub vocab_size: u64,
    pub pretokenize: Pretokenize,
}

impl TrainConfig {
    /// `kind` with its default pre-tokenisation.
    pub fn new(kind: ModelKind, vocab_size: u64) -> Self {
        TrainConfig {
            kind,
            vocab_size,
            pretokenize: kind.default_pretokenize(),
        }
    }

    /// The special tokens, in id order (see the module doc).
    fn special_tokens(&self) -> Vec<String> {
        let mut tokens = vec![EOD_TOKEN.to_string()];
        if self.kind == ModelKind::Unigram || self.pretokenize == Pretokenize::Metaspace {
            tokens.push(UNK_TOKEN.to_string());
        }
        if self.pretokenize == Pretokenize::Metaspace {
            tokens.extend((0..=255u8).map(byte_token));
        }
        tokens
    }

    /// The smallest vocabulary this configuration can hold: its special tokens and, for
    /// byte-level words, the 256 byte characters.
    pub fn min_vocab(&self) -> u64 {
        let base = self.special_tokens().len() as u64;
        match self.pretokenize {
            Pretokenize::ByteLevel => base + 256,
            Pretokenize::Metaspace => base + 1,
        }
    }
}

/// `<0xAB>`: SentencePiece's byte piece, which `tokenizers`' `ByteFallback` decodes.
fn byte_token(b: u8) -> String {
    format!("<0x{b:02X}>")
}

/// A tokenizer failure.
#[derive(Debug)]
pub enum TokenizeError {
    /// A configuration that cannot be trained (vocabulary too small or too large, …).
    Invalid(String),
    /// `tokenizers` reported an error.
    Tokenizers(String),
    /// Reading or writing a file.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Display for TokenizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenizeError::Invalid(why) => write!(f, "{why}"),
            TokenizeError::Tokenizers(why) => write!(f, "tokenizers: {why}"),
            TokenizeError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for TokenizeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TokenizeError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn tk_error(e: impl fmt::Display) -> TokenizeError {
    TokenizeError::Tokenizers(e.to_string())
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TokenizeError + '_ {
    move |source| TokenizeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn fsio_error(e: kiln_fsio::Error) -> TokenizeError {
    TokenizeError::Io {
        path: e.path.clone(),
        source: e.into(),
    }
}

/// What training did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainReport {
    pub kind: ModelKind,
    pub pretokenize: Pretokenize,
    /// The vocabulary asked for.
    pub vocab_requested: u64,
    /// The vocabulary trained (smaller when the corpus has too few distinct pieces).
    pub vocab_size: u64,
    pub docs: u64,
    /// Distinct words after pre-tokenisation.
    pub distinct_words: u64,
    /// Word occurrences after pre-tokenisation.
    pub words: u64,
    /// Distinct characters seen (after the byte-level mapping, where it applies).
    pub characters_seen: u64,
    /// Characters in the BPE alphabet (Metaspace: those within the coverage).
    pub alphabet: u64,
    pub eod_id: u32,
    pub byte_fallback: bool,
}

/// Counts the words of documents (after pre-tokenisation) for training; feed it batches in
/// input order, then [`WordCounter::train`].
pub struct WordCounter {
    config: TrainConfig,
    pre_tokenizer: PreTokenizerWrapper,
    counts: HashMap<String, u64>,
    docs: u64,
}

/// Cuts `text` into pieces of about [`PIECE_BYTES`] whose pre-tokenisations, joined, are the
/// whole text's: each cut is before a space that follows a non-space character. No word of
/// GPT-2's byte-level expression crosses such a point (a word never runs from a non-space
/// into a space, and the expression has no look-behind), and Metaspace starts a word at
/// every space (a piece that starts with a space gets no `▁` prepended). The last cut point
/// at most [`PIECE_BYTES`] in is used, else the first after it, else a character boundary
/// at [`MAX_PIECE_BYTES`].
pub fn pieces(text: &str) -> Pieces<'_> {
    Pieces::with_size(text, PIECE_BYTES, MAX_PIECE_BYTES)
}

/// The pieces of a text (see [`pieces`]).
pub struct Pieces<'t> {
    rest: &'t str,
    size: usize,
    max: usize,
}

impl<'t> Pieces<'t> {
    /// Pieces of about `size` bytes, at most `max` (for tests; [`pieces`] is the default).
    pub fn with_size(text: &'t str, size: usize, max: usize) -> Pieces<'t> {
        Pieces {
            rest: text,
            size: size.max(1),
            max: max.max(size.max(1)),
        }
    }
}

/// Whether a piece may start at byte `i` of `text`: a space after a non-space.
fn cut_point(text: &str, i: usize) -> bool {
    text.as_bytes()[i] == b' '
        && text[..i]
            .chars()
            .next_back()
            .is_some_and(|c| !c.is_whitespace())
}

impl<'t> Iterator for Pieces<'t> {
    type Item = &'t str;

    fn next(&mut self) -> Option<&'t str> {
        let rest = self.rest;
        if rest.is_empty() {
            return None;
        }
        if rest.len() <= self.size {
            self.rest = "";
            return Some(rest);
        }
        let bytes = rest.as_bytes();
        let before = (1..=self.size).rev().find(|&i| cut_point(rest, i));
        let end = before
            .or_else(|| {
                (self.size + 1..rest.len().min(self.max + 1))
                    .find(|&i| bytes[i] == b' ' && cut_point(rest, i))
            })
            .unwrap_or_else(|| {
                let mut i = self.max.min(rest.len());
                while !rest.is_char_boundary(i) {
                    i -= 1;
                }
                i
            });
        let (piece, tail) = rest.split_at(end);
        self.rest = tail;
        Some(piece)
    }
}

/// Whether encoding `tokenizer` piece by piece ([`pieces`]) gives the whole text's ids: true
/// for the tokenizers kiln trains (no normalizer, kiln's byte-level or Metaspace
/// pre-tokenizer, special tokens without spaces or stripping, no truncation or padding).
/// Other tokenizers encode each document whole.
pub fn encodes_in_pieces(tokenizer: &Tokenizer) -> bool {
    let kiln_pre = [
        Pretokenize::ByteLevel.pre_tokenizer(),
        Pretokenize::Metaspace.pre_tokenizer(),
    ];
    tokenizer.get_normalizer().is_none()
        && tokenizer
            .get_pre_tokenizer()
            .is_some_and(|p| kiln_pre.contains(p))
        && tokenizer.get_truncation().is_none()
        && tokenizer.get_padding().is_none()
        && tokenizer
            .get_added_tokens_decoder()
            .values()
            .all(|t| !t.lstrip && !t.rstrip && !t.content.chars().any(char::is_whitespace))
}

/// The words of one text after pre-tokenisation.
fn words_of(pre_tokenizer: &PreTokenizerWrapper, text: &str) -> Result<Vec<String>, String> {
    let mut pts = PreTokenizedString::from(text);
    pre_tokenizer
        .pre_tokenize(&mut pts)
        .map_err(|e| e.to_string())?;
    Ok(pts
        .get_splits(OffsetReferential::Original, OffsetType::None)
        .into_iter()
        .map(|(word, _, _)| word.to_owned())
        .collect())
}

impl WordCounter {
    /// Checks the configuration (the vocabulary must hold the special tokens and, for
    /// byte-level words, the 256 byte characters).
    pub fn new(config: TrainConfig) -> Result<Self, TokenizeError> {
        if config.vocab_size < config.min_vocab() {
            return Err(TokenizeError::Invalid(format!(
                "a vocabulary of {} cannot hold a {:?} tokenizer over {:?} words: it needs at least {}",
                config.vocab_size,
                config.kind,
                config.pretokenize,
                config.min_vocab()
            )));
        }
        if config.vocab_size > MAX_VOCAB {
            return Err(TokenizeError::Invalid(format!(
                "a vocabulary of {} is larger than kiln trains ({MAX_VOCAB})",
                config.vocab_size
            )));
        }
        Ok(WordCounter {
            config,
            pre_tokenizer: config.pretokenize.pre_tokenizer(),
            counts: HashMap::new(),
            docs: 0,
        })
    }

    /// Adds documents; they are pre-tokenised in parallel on the current rayon pool.
    pub fn add_batch<S: AsRef<str> + Sync>(&mut self, texts: &[S]) -> Result<(), TokenizeError> {
        let pre = &self.pre_tokenizer;
        let partial = texts
            .par_iter()
            .try_fold(HashMap::<String, u64>::new, |mut map, text| {
                for piece in pieces(text.as_ref()) {
                    for word in words_of(pre, piece)? {
                        *map.entry(word).or_default() += 1;
                    }
                }
                Ok::<_, String>(map)
            })
            .try_reduce(HashMap::new, |mut a, b| {
                for (word, n) in b {
                    *a.entry(word).or_default() += n;
                }
                Ok(a)
            })
            .map_err(TokenizeError::Tokenizers)?;
        for (word, n) in partial {
            *self.counts.entry(word).or_default() += n;
        }
        self.docs += texts.len() as u64;
        Ok(())
    }

    /// Trains the tokenizer on the words counted.
    pub fn train(self) -> Result<(Tokenizer, TrainReport), TokenizeError> {
        let config = self.config;
        if self.counts.is_empty() {
            return Err(TokenizeError::Invalid(
                "no words to train a tokenizer on (the inputs are empty)".into(),
            ));
        }
        // Sorted: the trainers below see the same words in the same order on every run.
        let mut words: Vec<(String, u64)> = self.counts.into_iter().collect();
        words.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut chars: HashMap<char, u64> = HashMap::new();
        for (word, n) in &words {
            for c in word.chars() {
                *chars.entry(c).or_default() += n;
            }
        }
        let mut by_count: Vec<(char, u64)> = chars.into_iter().collect();
        by_count.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let characters_seen = by_count.len() as u64;
        let alphabet: Vec<char> = match config.pretokenize {
            Pretokenize::ByteLevel => {
                let mut a: Vec<char> = ByteLevel::alphabet().into_iter().collect();
                a.sort_unstable();
                a
            }
            Pretokenize::Metaspace => {
                let total: u64 = by_count.iter().map(|(_, n)| n).sum();
                let mut covered = 0u64;
                let mut kept = Vec::new();
                for (c, n) in &by_count {
                    if covered as f64 >= CHARACTER_COVERAGE * total as f64 {
                        break;
                    }
                    kept.push(*c);
                    covered += n;
                }
                kept
            }
        };
        let specials: Vec<AddedToken> = config
            .special_tokens()
            .into_iter()
            .map(|t| AddedToken::from(t, true))
            .collect();
        let model: ModelWrapper = match config.kind {
            ModelKind::Bpe => {
                let trainer: BpeTrainer = BpeTrainerBuilder::new()
                    .show_progress(false)
                    .vocab_size(config.vocab_size as usize)
                    .special_tokens(specials.clone())
                    .initial_alphabet(alphabet.iter().copied().collect())
                    .limit_alphabet(alphabet.len())
                    .build();
                let counts: ahash::AHashMap<compact_str::CompactString, u64> = words
                    .iter()
                    .map(|(w, n)| (compact_str::CompactString::from(w.as_str()), *n))
                    .collect();
                let mut model = BPE::default();
                trainer.do_train(&counts, &mut model).map_err(tk_error)?;
                model.into()
            }
            ModelKind::Unigram => {
                let mut trainer = UnigramTrainer::builder()
                    .show_progress(false)
                    .vocab_size(config.vocab_size.min(u32::MAX as u64) as u32)
                    .special_tokens(specials.clone())
                    .unk_token(Some(UNK_TOKEN.to_string()))
                    .max_piece_length(MAX_PIECE_CHARS)
                    .build()
                    .map_err(tk_error)?;
                if config.pretokenize == Pretokenize::ByteLevel {
                    trainer.initial_alphabet = alphabet.iter().copied().collect();
                }
                let sentences: Vec<(String, u32)> = words
                    .iter()
                    .map(|(w, n)| (w.clone(), (*n).min(u32::MAX as u64) as u32))
                    .collect();
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .map_err(tk_error)?;
                let mut model = Unigram::default();
                pool.install(|| trainer.do_train(sentences, &mut model))
                    .map_err(tk_error)?;
                model.into()
            }
        };
        let mut tokenizer = Tokenizer::new(model);
        tokenizer.with_pre_tokenizer(Some(config.pretokenize.pre_tokenizer()));
        let decoder: DecoderWrapper = match config.pretokenize {
            Pretokenize::ByteLevel => ByteLevelDecoder::default().into(),
            // Llama 2's decoder: `▁` back to spaces, byte tokens back to bytes, one
            // string, the prepended space removed.
            Pretokenize::Metaspace => DecoderSequence::new(vec![
                Replace::new(METASPACE.to_string(), " ")
                    .map_err(tk_error)?
                    .into(),
                ByteFallback::new().into(),
                Fuse::new().into(),
                Strip::new(' ', 1, 0).into(),
            ])
            .into(),
        };
        tokenizer.with_decoder(Some(decoder));
        tokenizer
            .add_special_tokens(specials.clone())
            .map_err(tk_error)?;
        let tokenizer = canonicalise(tokenizer, &config)?;
        let eod_id = tokenizer
            .token_to_id(EOD_TOKEN)
            .ok_or_else(|| TokenizeError::Invalid("the trained tokenizer lacks its EOD".into()))?;
        let report = TrainReport {
            kind: config.kind,
            pretokenize: config.pretokenize,
            vocab_requested: config.vocab_size,
            vocab_size: tokenizer.get_vocab_size(true) as u64,
            docs: self.docs,
            distinct_words: words.len() as u64,
            words: words.iter().map(|(_, n)| n).sum(),
            characters_seen,
            alphabet: alphabet.len() as u64,
            eod_id,
            byte_fallback: config.pretokenize == Pretokenize::Metaspace,
        };
        Ok((tokenizer, report))
    }
}

/// The trained tokenizer's final form: byte tokens made fallback pieces rather than added
/// tokens, Unigram scores made independent of hash order (see the module doc).
fn canonicalise(tokenizer: Tokenizer, config: &TrainConfig) -> Result<Tokenizer, TokenizeError> {
    let mut doc: Value =
        serde_json::from_str(&tokenizer.to_string(false).map_err(tk_error)?).map_err(tk_error)?;
    let metaspace = config.pretokenize == Pretokenize::Metaspace;
    if metaspace {
        // The byte tokens stay in the vocabulary but are not matched in the input text.
        if let Some(Value::Array(added)) = doc.get_mut("added_tokens") {
            added.retain(|t| {
                let content = t.get("content").and_then(Value::as_str).unwrap_or("");
                !(content.len() == 6 && content.starts_with("<0x") && content.ends_with('>'))
            });
        }
    }
    let specials = config.special_tokens().len();
    let model = doc
        .get_mut("model")
        .ok_or_else(|| TokenizeError::Tokenizers("tokenizer.json without a model".into()))?;
    match config.kind {
        ModelKind::Bpe => {
            if metaspace {
                model["byte_fallback"] = json!(true);
                model["unk_token"] = json!(UNK_TOKEN);
                model["fuse_unk"] = json!(true);
            }
        }
        ModelKind::Unigram => {
            let vocab = model
                .get("vocab")
                .and_then(Value::as_array)
                .ok_or_else(|| TokenizeError::Tokenizers("a Unigram model without vocab".into()))?;
            let mut pieces: Vec<(String, f64)> = Vec::with_capacity(vocab.len());
            for entry in vocab {
                let piece = entry.get(0).and_then(Value::as_str);
                let score = entry.get(1).and_then(Value::as_f64);
                match (piece, score) {
                    (Some(p), Some(s)) => pieces.push((p.to_string(), s)),
                    _ => {
                        return Err(TokenizeError::Tokenizers(
                            "a Unigram vocabulary entry that is not [piece, score]".into(),
                        ))
                    }
                }
            }
            let specials = specials.min(pieces.len());
            let (head, rest) = pieces.split_at_mut(specials);
            let floor = rest.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let singles = rest.iter().filter(|p| p.0.chars().count() == 1).count();
            let band = floor + UNIGRAM_PENALTY_DELTA * singles as f64;
            let mut banded: Vec<usize> = (0..rest.len())
                .filter(|&i| rest[i].0.chars().count() == 1 && rest[i].1 < band)
                .collect();
            banded.sort_by(|&a, &b| rest[a].0.cmp(&rest[b].0));
            for (rank, &i) in banded.iter().enumerate() {
                rest[i].1 = floor + UNIGRAM_PENALTY_DELTA * rank as f64;
            }
            rest.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            // Byte tokens score far below every piece: they are used only as the fallback
            // for unknown characters, never to spell the literal text `<0x41>`.
            let byte_score = floor - 1000.0;
            for (piece, score) in head.iter_mut() {
                if piece.len() == 6 && piece.starts_with("<0x") {
                    *score = byte_score;
                } else {
                    *score = 0.0;
                }
            }
            model["vocab"] = Value::Array(pieces.iter().map(|(p, s)| json!([p, s])).collect());
            model["unk_id"] = json!(1);
            model["byte_fallback"] = json!(metaspace);
        }
    }
    serde_json::from_value(doc).map_err(tk_error)
}

/// Trains on texts held in memory (input order), on the current rayon pool.
pub fn train_texts<S: AsRef<str> + Sync>(
    texts: &[S],
    config: TrainConfig,
) -> Result<(Tokenizer, TrainReport), TokenizeError> {
    let mut counter = WordCounter::new(config)?;
    counter.add_batch(texts)?;
    counter.train()
}

/// Saves `tokenizer.json` and `tokenizer_config.json` into `dir` (created if missing).
pub fn save(tokenizer: &Tokenizer, dir: &Path) -> Result<(), TokenizeError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let json = tokenizer.to_string(true).map_err(tk_error)?;
    let path = dir.join(TOKENIZER_FILE);
    kiln_fsio::write(&path, json.as_bytes()).map_err(fsio_error)?;
    let eos = eod_token(tokenizer).map(|(t, _)| t);
    let unk = tokenizer.token_to_id(UNK_TOKEN).map(|_| UNK_TOKEN);
    let config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": eos,
        "unk_token": unk,
        "bos_token": null,
        "pad_token": null,
        "add_bos_token": false,
        "add_eos_token": false,
        "clean_up_tokenization_spaces": false,
    });
    let path = dir.join(TOKENIZER_CONFIG_FILE);
    let text = serde_json::to_string_pretty(&config).map_err(tk_error)? + "\n";
    kiln_fsio::write(&path, text.as_bytes()).map_err(fsio_error)
}

/// Loads a `tokenizer.json` (a file, or a directory holding one).
pub fn load(path: &Path) -> Result<Tokenizer, TokenizeError> {
    let file = if path.is_dir() {
        path.join(TOKENIZER_FILE)
    } else {
        path.to_path_buf()
    };
    let text = fs::read_to_string(&file).map_err(io_error(&file))?;
    serde_json::from_str(&text)
        .map_err(|e| TokenizeError::Tokenizers(format!("{}: {e}", file.display())))
}

/// The end-of-document token and its id: the first of [`EOD_CANDIDATES`] the tokenizer has.
pub fn eod_token(tokenizer: &Tokenizer) -> Option<(&'static str, u32)> {
    EOD_CANDIDATES
        .iter()
        .find_map(|t| tokenizer.token_to_id(t).map(|id| (*t, id)))
}
