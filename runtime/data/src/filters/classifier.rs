//! A model-based quality filter: a fastText-style linear classifier (Joulin et al. 2017, "Bag
//! of Tricks for Efficient Text Classification") trained on documents labelled by any
//! labelling function (kiln's own rules, [`label_with_rules`], by default), then used to keep
//! documents whose score reaches a threshold.
//!
//! # Model (Joulin et al. 2017, Sec. 2)
//! A document is its word unigrams and n-grams up to `word_ngrams` (datatrove's words,
//! lowercased), each hashed into one of `buckets` rows of an embedding table (the hashing
//! trick, Sec. 2.2; fastText's 32-bit FNV-1a word hash and its n-gram combination, from
//! `src/dictionary.cc`). The document vector is the mean of its rows; one linear unit and a
//! logistic output give the probability that the document is good (two classes, so the
//! softmax of Eq. 1 is a logistic). Training is plain SGD on the log loss with fastText's
//! schedule: the learning rate decays linearly to zero over all updates, the input rows
//! receive the hidden gradient divided by the number of features, the input table starts
//! uniform in ±1/dim and the output at zero (fastText `src/fasttext.cc`, `src/model.cc`).
//!
//! # Determinism
//! One thread, and every random draw (initialisation, example order, the held-out split) from
//! SplitMix64 seeded with `seed`: the same documents, labels and config give the same model,
//! bit for bit.

use serde::{Deserialize, Serialize};

use super::words::split_into_words;
use super::{ConfigError, Document};

/// Joulin et al. 2017 use 10 hidden units (Sec. 3.1).
pub const DEFAULT_DIM: usize = 10;
/// fastText's default number of hash buckets (`-bucket 2000000`).
pub const DEFAULT_BUCKETS: usize = 2_000_000;
/// Bigrams, as Joulin et al. 2017's best sentiment models (Sec. 3.1, "bigrams").
pub const DEFAULT_WORD_NGRAMS: usize = 2;
/// Epochs, from fastText's supervised tutorial (fasttext.cc, "Text classification": `-epoch
/// 25`); its built-in default of 5 barely moves the rows of long documents, whose gradient
/// is split over thousands of features.
pub const DEFAULT_EPOCHS: u32 = 25;
/// Learning rate, from the same tutorial (`-lr 1.0`; the built-in default is 0.1).
pub const DEFAULT_LEARNING_RATE: f64 = 1.0;
/// Documents held out to measure accuracy (assumption: a tenth, the usual split).
pub const DEFAULT_HELD_OUT_FRACTION: f64 = 0.1;
/// The score at which a document is kept: the more likely class (a logistic output's
/// decision boundary).
pub const DEFAULT_MIN_SCORE: f64 = 0.5;

/// fastText's FNV-1a offset basis and prime (`Dictionary::hash`).
const FNV_OFFSET: u32 = 2_166_136_261;
const FNV_PRIME: u32 = 16_777_619;
/// fastText's multiplier for combining word hashes into an n-gram hash
/// (`Dictionary::addWordNgrams`).
const NGRAM_MULTIPLIER: u64 = 116_049_371;

/// How to train the classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierTrainConfig {
    /// Embedding dimension.
    pub dim: usize,
    /// Rows of the hashed embedding table.
    pub buckets: usize,
    /// Longest word n-gram used as a feature (1 = words only).
    pub word_ngrams: usize,
    pub epochs: u32,
    /// The starting learning rate (decays linearly to zero).
    pub learning_rate: f64,
    /// Fraction of documents held out to measure accuracy.
    pub held_out_fraction: f64,
    pub seed: u64,
}

impl Default for ClassifierTrainConfig {
    fn default() -> Self {
        ClassifierTrainConfig {
            dim: DEFAULT_DIM,
            buckets: DEFAULT_BUCKETS,
            word_ngrams: DEFAULT_WORD_NGRAMS,
            epochs: DEFAULT_EPOCHS,
            learning_rate: DEFAULT_LEARNING_RATE,
            held_out_fraction: DEFAULT_HELD_OUT_FRACTION,
            seed: 0,
        }
    }
}

impl ClassifierTrainConfig {
    /// Rejects settings that cannot train a model.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dim == 0 {
            return Err(ConfigError::new(
                "classifier.dim",
                "must be at least 1".into(),
            ));
        }
        if self.buckets == 0 || self.buckets > u32::MAX as usize {
            return Err(ConfigError::new(
                "classifier.buckets",
                format!("{} is not in 1..=2^32-1", self.buckets),
            ));
        }
        if self.word_ngrams == 0 {
            return Err(ConfigError::new(
                "classifier.word_ngrams",
                "must be at least 1".into(),
            ));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(ConfigError::new(
                "classifier.learning_rate",
                format!("{} is not a finite number > 0", self.learning_rate),
            ));
        }
        if !(0.0..1.0).contains(&self.held_out_fraction) {
            return Err(ConfigError::new(
                "classifier.held_out_fraction",
                format!("{} is not in [0, 1)", self.held_out_fraction),
            ));
        }
        Ok(())
    }
}

/// The filter's threshold on a trained classifier's score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierFilterConfig {
    /// Lowest probability of "good" kept.
    pub min_score: f64,
}

impl Default for ClassifierFilterConfig {
    fn default() -> Self {
        ClassifierFilterConfig {
            min_score: DEFAULT_MIN_SCORE,
        }
    }
}

/// The rule's reason name.
pub const CLASSIFIER_RULES: [&str; 1] = ["classifier_score"];

impl ClassifierFilterConfig {
    /// Rejects a threshold outside [0, 1].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.min_score) {
            return Err(ConfigError::new(
                "classifier.min_score",
                format!("{} is not in [0, 1]", self.min_score),
            ));
        }
        Ok(())
    }
}

/// A trained classifier. It deserialises only with consistent sizes (a model file is input).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ClassifierFile")]
pub struct Classifier {
    dim: usize,
    buckets: usize,
    word_ngrams: usize,
    /// `buckets × dim`, row-major.
    input: Vec<f32>,
    output: Vec<f32>,
    bias: f32,
}

/// The serialised form, checked before it becomes a [`Classifier`].
#[derive(Deserialize)]
struct ClassifierFile {
    dim: usize,
    buckets: usize,
    word_ngrams: usize,
    input: Vec<f32>,
    output: Vec<f32>,
    bias: f32,
}

impl TryFrom<ClassifierFile> for Classifier {
    type Error = String;
    fn try_from(f: ClassifierFile) -> Result<Self, String> {
        let rows_ok = f.dim > 0
            && f.buckets > 0
            && f.buckets <= u32::MAX as usize
            && f.word_ngrams > 0
            && f.dim.checked_mul(f.buckets) == Some(f.input.len())
            && f.output.len() == f.dim;
        if !rows_ok {
            return Err(format!(
                "inconsistent classifier: dim {}, buckets {}, word_ngrams {}, {} input and {} \
                 output weights",
                f.dim,
                f.buckets,
                f.word_ngrams,
                f.input.len(),
                f.output.len()
            ));
        }
        Ok(Classifier {
            dim: f.dim,
            buckets: f.buckets,
            word_ngrams: f.word_ngrams,
            input: f.input,
            output: f.output,
            bias: f.bias,
        })
    }
}

/// What training measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub train_documents: u64,
    pub held_out_documents: u64,
    /// Fraction of training documents labelled good.
    pub train_positive_fraction: f64,
    /// Fraction of held-out documents labelled good (the majority-class baseline is the
    /// larger of this and one minus it).
    pub held_out_positive_fraction: f64,
    /// Fraction of training documents classified as labelled, after training.
    pub train_accuracy: f64,
    /// Fraction of held-out documents classified as labelled (`NaN` without held-out ones).
    pub held_out_accuracy: f64,
}

/// SplitMix64 (Steele, Lea & Flood 2014): a small deterministic generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [0, n); n ≥ 1.
    fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// fastText's word hash: FNV-1a over the bytes, each sign-extended (`int8_t` to `uint32_t`).
fn fnv1a(word: &str) -> u32 {
    let mut h = FNV_OFFSET;
    for &b in word.as_bytes() {
        h ^= b as i8 as i32 as u32;
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The hashed feature rows of a text: its lowercased words and word n-grams up to `ngrams`.
fn features(text: &str, ngrams: usize, buckets: usize) -> Vec<u32> {
    let hashes: Vec<u32> = split_into_words(text)
        .iter()
        .map(|w| fnv1a(&w.to_lowercase()))
        .collect();
    let mut out = Vec::with_capacity(hashes.len() * ngrams);
    for i in 0..hashes.len() {
        let mut h = hashes[i] as i32 as u64;
        out.push((h % buckets as u64) as u32);
        for &next in hashes.iter().skip(i + 1).take(ngrams.saturating_sub(1)) {
            h = h
                .wrapping_mul(NGRAM_MULTIPLIER)
                .wrapping_add(next as i32 as u64);
            out.push((h % buckets as u64) as u32);
        }
    }
    out
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Classifier {
    fn hidden(&self, feats: &[u32], h: &mut [f32]) {
        h.iter_mut().for_each(|v| *v = 0.0);
        for &f in feats {
            let row = &self.input[f as usize * self.dim..(f as usize + 1) * self.dim];
            for (a, b) in h.iter_mut().zip(row) {
                *a += b;
            }
        }
        let scale = 1.0 / feats.len() as f32;
        h.iter_mut().for_each(|v| *v *= scale);
    }

    fn score_features(&self, feats: &[u32]) -> f64 {
        if feats.is_empty() {
            return sigmoid(self.bias) as f64;
        }
        let mut h = vec![0.0f32; self.dim];
        self.hidden(feats, &mut h);
        let z: f32 = h.iter().zip(&self.output).map(|(a, b)| a * b).sum::<f32>() + self.bias;
        sigmoid(z) as f64
    }

    /// The probability that `text` is good.
    pub fn score(&self, text: &str) -> f64 {
        self.score_features(&features(text, self.word_ngrams, self.buckets))
    }

    /// One SGD step on one example (fastText's `Model::update` for a logistic output).
    fn update(&mut self, feats: &[u32], label: bool, lr: f32, h: &mut [f32], grad: &mut [f32]) {
        if feats.is_empty() {
            return;
        }
        self.hidden(feats, h);
        let z: f32 = h.iter().zip(&self.output).map(|(a, b)| a * b).sum::<f32>() + self.bias;
        let g = lr * ((label as u8 as f32) - sigmoid(z));
        for i in 0..self.dim {
            grad[i] = g * self.output[i];
            self.output[i] += g * h[i];
        }
        self.bias += g;
        let scale = 1.0 / feats.len() as f32;
        for &f in feats {
            let row = &mut self.input[f as usize * self.dim..(f as usize + 1) * self.dim];
            for (a, b) in row.iter_mut().zip(grad.iter()) {
                *a += b * scale;
            }
        }
    }
}

/// Labels documents with kiln's rules: good if the rules of `config` keep it.
pub fn label_with_rules(
    docs: &[Document],
    config: &super::QualityConfig,
) -> Result<Vec<bool>, super::FilterError> {
    let filter = super::QualityFilter::new(config, super::Models::default())?;
    use rayon::prelude::*;
    Ok(docs
        .par_iter()
        .map(|d| filter.judge(&d.text).removed_by.is_none())
        .collect())
}

/// Trains a classifier on `docs` labelled `labels` (true = good), holding out
/// `held_out_fraction` of them (chosen at random from `seed`) to measure accuracy.
pub fn train_classifier(
    docs: &[Document],
    labels: &[bool],
    config: &ClassifierTrainConfig,
) -> Result<(Classifier, TrainReport), ConfigError> {
    config.validate()?;
    if docs.len() != labels.len() {
        return Err(ConfigError::new(
            "classifier",
            format!("{} documents but {} labels", docs.len(), labels.len()),
        ));
    }
    let mut rng = SplitMix64(config.seed);
    // The held-out split: a seeded Fisher–Yates shuffle; the first part is held out.
    let mut order: Vec<usize> = (0..docs.len()).collect();
    for i in (1..order.len()).rev() {
        let j = rng.below(i + 1);
        order.swap(i, j);
    }
    let held = (docs.len() as f64 * config.held_out_fraction).round() as usize;
    let (held_idx, train_idx) = order.split_at(held.min(docs.len()));
    if train_idx.is_empty() {
        return Err(ConfigError::new(
            "classifier",
            "no documents left to train on".to_string(),
        ));
    }
    let feats: Vec<Vec<u32>> = {
        use rayon::prelude::*;
        docs.par_iter()
            .map(|d| features(&d.text, config.word_ngrams, config.buckets))
            .collect()
    };
    let bound = 1.0 / config.dim as f64;
    let input: Vec<f32> = (0..config.buckets * config.dim)
        .map(|_| ((rng.unit() * 2.0 - 1.0) * bound) as f32)
        .collect();
    let mut model = Classifier {
        dim: config.dim,
        buckets: config.buckets,
        word_ngrams: config.word_ngrams,
        input,
        output: vec![0.0; config.dim],
        bias: 0.0,
    };
    let mut h = vec![0.0f32; config.dim];
    let mut grad = vec![0.0f32; config.dim];
    let total_steps = (train_idx.len() as u64 * config.epochs as u64).max(1);
    let mut step = 0u64;
    let mut epoch_order: Vec<usize> = train_idx.to_vec();
    for _ in 0..config.epochs {
        for i in (1..epoch_order.len()).rev() {
            let j = rng.below(i + 1);
            epoch_order.swap(i, j);
        }
        for &d in &epoch_order {
            let lr = config.learning_rate * (1.0 - step as f64 / total_steps as f64);
            model.update(&feats[d], labels[d], lr as f32, &mut h, &mut grad);
            step += 1;
        }
    }
    let accuracy = |idx: &[usize]| -> f64 {
        let right = idx
            .iter()
            .filter(|&&d| (model.score_features(&feats[d]) >= DEFAULT_MIN_SCORE) == labels[d])
            .count();
        right as f64 / idx.len() as f64
    };
    let positive = |idx: &[usize]| -> f64 {
        idx.iter().filter(|&&d| labels[d]).count() as f64 / idx.len() as f64
    };
    let report = TrainReport {
        train_documents: train_idx.len() as u64,
        held_out_documents: held_idx.len() as u64,
        train_positive_fraction: positive(train_idx),
        held_out_positive_fraction: positive(held_idx),
        train_accuracy: accuracy(train_idx),
        held_out_accuracy: accuracy(held_idx),
    };
    Ok((model, report))
}
