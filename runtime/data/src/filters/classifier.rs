//! A model-based quality filter: a fastText-style linear classifier (Joulin et al. 2017, "Bag
//! of Tricks for Efficient Text Classification") trained on documents labelled by any
//! labelling function (kiln's own rules, [`label_with_rules`], or a language model's scores of
//! a sample, `ops::train_quality_classifier`), then used to keep documents whose score
//! reaches a threshold.
//!
//! # Objectives
//! - [`Objective::Logistic`]: good or not, the log loss; the score is the probability of good
//!   (DCLM, Li et al. 2024, "DataComp-LM", Sec. 4.3: a fastText classifier on the top of a
//!   ranking as positives).
//! - [`Objective::Regression`]: a linear output and the squared loss on the standardised
//!   score of a scorer (FineWeb-Edu, Penedo et al. 2024, "The FineWeb Datasets", Sec. 3.4:
//!   a regression head on an LLM's 0–5 ratings, documents kept above a threshold on the
//!   predicted score); the score is the prediction in the scorer's own units (the
//!   standardisation undone), so a threshold reads as a scorer's score.
//!
//! A model file records its objective; one without (written before regression existed)
//! reads as logistic.
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

/// What the output unit computes and which loss trains it (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// `sigmoid(z)`, the log loss on good/bad labels.
    #[default]
    Logistic,
    /// `z` (the standardised score), the squared loss.
    Regression,
}

impl Objective {
    pub fn name(self) -> &'static str {
        match self {
            Objective::Logistic => "logistic",
            Objective::Regression => "regression",
        }
    }
}

/// The filter's threshold on a trained classifier's score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierFilterConfig {
    /// Lowest score kept: a probability of "good" for a logistic classifier, a predicted
    /// scorer's score for a regression one.
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
    /// Rejects a threshold that is not a finite number (a logistic classifier's scores are in
    /// [0, 1]: a threshold above 1 keeps nothing, one at or below 0 everything).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.min_score.is_finite() {
            return Err(ConfigError::new(
                "classifier.min_score",
                format!("{} is not a finite number", self.min_score),
            ));
        }
        Ok(())
    }
}

/// A trained classifier. It deserialises only with consistent sizes (a model file is input).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ClassifierFile")]
pub struct Classifier {
    objective: Objective,
    dim: usize,
    buckets: usize,
    word_ngrams: usize,
    /// Regression: the training scores' mean and standard deviation (the model learns
    /// `(score − mean) / std`; [`Classifier::score`] returns `mean + std · z`). 0 and 1 for a
    /// logistic classifier.
    target_mean: f64,
    target_std: f64,
    output: Vec<f32>,
    bias: f32,
    /// `buckets × dim`, row-major.
    input: Vec<f32>,
}

/// The serialised form, checked before it becomes a [`Classifier`].
#[derive(Deserialize)]
struct ClassifierFile {
    /// Absent in files written before regression: logistic.
    #[serde(default)]
    objective: Objective,
    dim: usize,
    buckets: usize,
    word_ngrams: usize,
    #[serde(default)]
    target_mean: f64,
    #[serde(default = "one")]
    target_std: f64,
    input: Vec<f32>,
    output: Vec<f32>,
    bias: f32,
}

fn one() -> f64 {
    1.0
}

impl TryFrom<ClassifierFile> for Classifier {
    type Error = String;
    fn try_from(f: ClassifierFile) -> Result<Self, String> {
        let rows_ok = f.dim > 0
            && f.buckets > 0
            && f.buckets <= u32::MAX as usize
            && f.word_ngrams > 0
            && f.dim.checked_mul(f.buckets) == Some(f.input.len())
            && f.output.len() == f.dim
            && f.target_mean.is_finite()
            && f.target_std.is_finite()
            && f.target_std > 0.0;
        if !rows_ok {
            return Err(format!(
                "inconsistent classifier: dim {}, buckets {}, word_ngrams {}, {} input and {} \
                 output weights, target mean {} and standard deviation {}",
                f.dim,
                f.buckets,
                f.word_ngrams,
                f.input.len(),
                f.output.len(),
                f.target_mean,
                f.target_std
            ));
        }
        Ok(Classifier {
            objective: f.objective,
            target_mean: f.target_mean,
            target_std: f.target_std,
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

/// One byte of fastText's word hash: FNV-1a with the byte sign-extended (`int8_t` to
/// `uint32_t`, `Dictionary::hash`).
#[inline(always)]
fn fnv_byte(h: u32, b: u8) -> u32 {
    (h ^ b as i8 as i32 as u32).wrapping_mul(FNV_PRIME)
}

/// fastText's word hash of `word` lowercased exactly as `str::to_lowercase` does, without
/// building the lowercased word: ASCII bytes lowered in place, other characters through
/// `char::to_lowercase`, and std's own function for a word with a capital sigma (whose
/// lowercase depends on its place in the word, the one context-dependent mapping).
fn fnv1a_lowercase(word: &str) -> u32 {
    let mut h = FNV_OFFSET;
    if word.is_ascii() {
        for &b in word.as_bytes() {
            h = fnv_byte(h, b.to_ascii_lowercase());
        }
    } else if word.contains('Σ') {
        for &b in word.to_lowercase().as_bytes() {
            h = fnv_byte(h, b);
        }
    } else {
        let mut buf = [0u8; 4];
        for c in word.chars() {
            for l in c.to_lowercase() {
                for &b in l.encode_utf8(&mut buf).as_bytes() {
                    h = fnv_byte(h, b);
                }
            }
        }
    }
    h
}

/// Calls `f` with the hashed feature row of each of `words`' lowercased words and word
/// n-grams up to `ngrams`, in fastText's order (a word, then the n-grams starting at it;
/// `Dictionary::addWordNgrams`). `hashes` is scratch space.
#[inline(always)]
fn for_each_feature(
    words: &[&str],
    ngrams: usize,
    buckets: usize,
    hashes: &mut Vec<u32>,
    mut f: impl FnMut(u32),
) {
    hashes.clear();
    hashes.extend(words.iter().map(|w| fnv1a_lowercase(w)));
    let buckets = buckets as u64;
    // `h % buckets` is `h & (buckets − 1)` for a power of two (as the scored-sample
    // classifier's): no division per feature.
    let mask = buckets.is_power_of_two().then(|| buckets - 1);
    let row = |h: u64| match mask {
        Some(m) => (h & m) as u32,
        None => (h % buckets) as u32,
    };
    let extra = ngrams.saturating_sub(1);
    for i in 0..hashes.len() {
        let mut h = hashes[i] as i32 as u64;
        f(row(h));
        for &next in hashes[i + 1..].iter().take(extra) {
            h = h
                .wrapping_mul(NGRAM_MULTIPLIER)
                .wrapping_add(next as i32 as u64);
            f(row(h));
        }
    }
}

/// The hashed feature rows of a text: its lowercased words and word n-grams up to `ngrams`.
fn features(text: &str, ngrams: usize, buckets: usize) -> Vec<u32> {
    let words = split_into_words(text);
    let mut out = Vec::with_capacity(words.len() * ngrams);
    let mut hashes = Vec::with_capacity(words.len());
    for_each_feature(&words, ngrams, buckets, &mut hashes, |r| out.push(r));
    out
}

/// Asks the CPU to bring the start of `row` into its cache (a hint: no effect on results).
#[inline(always)]
fn prefetch(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing and cannot fault; the pointer is into a live slice.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Classifier {
    /// The objective it was trained with.
    pub fn objective(&self) -> Objective {
        self.objective
    }

    /// Regression: the training scores' mean (0 for a logistic classifier).
    pub fn target_mean(&self) -> f64 {
        self.target_mean
    }

    /// Regression: the training scores' standard deviation (1 for a logistic classifier).
    pub fn target_std(&self) -> f64 {
        self.target_std
    }

    fn row(&self, f: u32) -> &[f32] {
        let start = f as usize * self.dim;
        &self.input[start..start + self.dim]
    }

    fn hidden(&self, feats: &[u32], h: &mut [f32]) {
        h.iter_mut().for_each(|v| *v = 0.0);
        for &f in feats {
            for (a, b) in h.iter_mut().zip(self.row(f)) {
                *a += b;
            }
        }
        let scale = 1.0 / feats.len() as f32;
        h.iter_mut().for_each(|v| *v *= scale);
    }

    /// The linear unit's value for a mean embedding `h`.
    fn linear(&self, h: &[f32]) -> f32 {
        h.iter().zip(&self.output).map(|(a, b)| a * b).sum::<f32>() + self.bias
    }

    /// The score of the linear unit's value `z` (see [`Classifier::score`]).
    fn output_score(&self, z: f32) -> f64 {
        match self.objective {
            // In f64: an f32 logistic is exactly 1 from z ≈ 17, which would tie the most
            // confident documents and blur a threshold that keeps a fraction.
            Objective::Logistic => 1.0 / (1.0 + (-(z as f64)).exp()),
            Objective::Regression => self.target_mean + self.target_std * z as f64,
        }
    }

    fn score_features(&self, feats: &[u32]) -> f64 {
        if feats.is_empty() {
            return self.output_score(self.bias);
        }
        let mut h = vec![0.0f32; self.dim];
        self.hidden(feats, &mut h);
        self.output_score(self.linear(&h))
    }

    /// The score of `text`: the probability that it is good (logistic), or the predicted
    /// scorer's score (regression).
    pub fn score(&self, text: &str) -> f64 {
        self.score_words(&split_into_words(text))
    }

    /// [`Classifier::score`] of a text already split into words (`words::split_into_words`):
    /// the same number, without splitting again and without allocating per word.
    pub fn score_words(&self, words: &[&str]) -> f64 {
        thread_local! {
            /// The word hashes and feature rows of the document being scored (kept to save
            /// allocations).
            static SCRATCH: std::cell::RefCell<(Vec<u32>, Vec<u32>)> =
                const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
        }
        SCRATCH.with_borrow_mut(|(hashes, rows)| match self.dim {
            DEFAULT_DIM => self.score_fixed::<DEFAULT_DIM>(words, hashes, rows),
            _ => self.score_any(words, hashes),
        })
    }

    /// [`Classifier::score_words`] for a dimension known at compile time: the feature rows
    /// listed first, then summed as arrays (which the compiler vectorises) with the rows a
    /// few features ahead prefetched (a table of 2^18 rows is larger than a core's cache,
    /// and each row is a random access). The same sums in the same order as `hidden` over
    /// `features`, so the same number.
    fn score_fixed<const D: usize>(
        &self,
        words: &[&str],
        hashes: &mut Vec<u32>,
        rows: &mut Vec<u32>,
    ) -> f64 {
        /// Features ahead whose rows are prefetched (assumption: about a memory latency's
        /// worth of row sums).
        const AHEAD: usize = 8;
        rows.clear();
        for_each_feature(words, self.word_ngrams, self.buckets, hashes, |f| {
            rows.push(f)
        });
        if rows.is_empty() {
            return self.output_score(self.bias);
        }
        let mut h = [0.0f32; D];
        for (i, &f) in rows.iter().enumerate() {
            if let Some(&next) = rows.get(i + AHEAD) {
                prefetch(&self.input[next as usize * D..]);
            }
            let start = f as usize * D;
            if let Ok(row) = <&[f32; D]>::try_from(&self.input[start..start + D]) {
                for k in 0..D {
                    h[k] += row[k];
                }
            }
        }
        let scale = 1.0 / rows.len() as f32;
        h.iter_mut().for_each(|v| *v *= scale);
        self.output_score(self.linear(&h))
    }

    /// [`Classifier::score_words`] for any dimension.
    fn score_any(&self, words: &[&str], hashes: &mut Vec<u32>) -> f64 {
        let mut h = vec![0.0f32; self.dim];
        let mut n = 0usize;
        for_each_feature(words, self.word_ngrams, self.buckets, hashes, |f| {
            n += 1;
            for (a, b) in h.iter_mut().zip(self.row(f)) {
                *a += b;
            }
        });
        if n == 0 {
            return self.output_score(self.bias);
        }
        let scale = 1.0 / n as f32;
        h.iter_mut().for_each(|v| *v *= scale);
        self.output_score(self.linear(&h))
    }

    /// One SGD step on one example (fastText's `Model::update`): `target` is a logistic
    /// output's label (0 or 1) or a linear output's standardised score; both losses have the
    /// gradient `target − output` at the linear unit.
    fn update(&mut self, feats: &[u32], target: f32, lr: f32, h: &mut [f32], grad: &mut [f32]) {
        if feats.is_empty() {
            return;
        }
        self.hidden(feats, h);
        let z = self.linear(h);
        let out = match self.objective {
            Objective::Logistic => sigmoid(z),
            Objective::Regression => z,
        };
        let g = lr * (target - out);
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

/// Trains a model of `objective` on the examples `train` of `feats` with `targets` (see
/// [`Classifier::update`]): the input table drawn from `rng`, then `config.epochs` passes in
/// an order shuffled from `rng`, the learning rate decaying linearly to zero.
fn train_rows(
    feats: &[Vec<u32>],
    targets: &[f32],
    train: &[usize],
    objective: Objective,
    config: &ClassifierTrainConfig,
    rng: &mut SplitMix64,
) -> Classifier {
    let bound = 1.0 / config.dim as f64;
    let input: Vec<f32> = (0..config.buckets * config.dim)
        .map(|_| ((rng.unit() * 2.0 - 1.0) * bound) as f32)
        .collect();
    let mut model = Classifier {
        objective,
        dim: config.dim,
        buckets: config.buckets,
        word_ngrams: config.word_ngrams,
        target_mean: 0.0,
        target_std: 1.0,
        output: vec![0.0; config.dim],
        bias: 0.0,
        input,
    };
    let mut h = vec![0.0f32; config.dim];
    let mut grad = vec![0.0f32; config.dim];
    let total_steps = (train.len() as u64 * config.epochs as u64).max(1);
    let mut step = 0u64;
    let mut epoch_order: Vec<usize> = train.to_vec();
    for _ in 0..config.epochs {
        for i in (1..epoch_order.len()).rev() {
            let j = rng.below(i + 1);
            epoch_order.swap(i, j);
        }
        for &d in &epoch_order {
            let lr = config.learning_rate * (1.0 - step as f64 / total_steps as f64);
            model.update(&feats[d], targets[d], lr as f32, &mut h, &mut grad);
            step += 1;
        }
    }
    model
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
    let targets: Vec<f32> = labels.iter().map(|&l| l as u8 as f32).collect();
    let model = train_rows(
        &feats,
        &targets,
        train_idx,
        Objective::Logistic,
        config,
        &mut rng,
    );
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

/// What [`fit`] learns from.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// Good (true) or not: a logistic classifier.
    Labels(&'a [bool]),
    /// A scorer's scores (finite): a regression on their standardised values.
    Scores(&'a [f64]),
}

impl Targets<'_> {
    fn len(&self) -> usize {
        match self {
            Targets::Labels(l) => l.len(),
            Targets::Scores(s) => s.len(),
        }
    }
}

/// Trains a model on every one of `texts` (no held-out split: `config.held_out_fraction` is
/// not used; the caller holds documents out) with `targets`: logistic on labels, regression
/// on scores standardised by their mean and standard deviation (which the model keeps, so
/// its scores are in the scorer's units). Deterministic: features in parallel, training on
/// one thread with every draw from `config.seed`.
pub fn fit(
    texts: &[&str],
    targets: Targets<'_>,
    config: &ClassifierTrainConfig,
) -> Result<Classifier, ConfigError> {
    config.validate()?;
    if texts.len() != targets.len() {
        return Err(ConfigError::new(
            "classifier",
            format!("{} documents but {} targets", texts.len(), targets.len()),
        ));
    }
    if texts.is_empty() {
        return Err(ConfigError::new(
            "classifier",
            "no documents to train on".to_string(),
        ));
    }
    let (objective, ys, mean, std) = match targets {
        Targets::Labels(labels) => (
            Objective::Logistic,
            labels.iter().map(|&l| l as u8 as f32).collect::<Vec<_>>(),
            0.0,
            1.0,
        ),
        Targets::Scores(scores) => {
            if let Some(bad) = scores.iter().find(|s| !s.is_finite()) {
                return Err(ConfigError::new(
                    "classifier",
                    format!("a score of {bad} is not a finite number"),
                ));
            }
            let n = scores.len() as f64;
            let mean = scores.iter().sum::<f64>() / n;
            let std = (scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / n).sqrt();
            if !(std > 0.0 && std.is_finite()) {
                return Err(ConfigError::new(
                    "classifier",
                    format!("every training score is {mean}: a regression has nothing to learn"),
                ));
            }
            let ys = scores.iter().map(|s| ((s - mean) / std) as f32).collect();
            (Objective::Regression, ys, mean, std)
        }
    };
    let feats: Vec<Vec<u32>> = {
        use rayon::prelude::*;
        texts
            .par_iter()
            .map(|t| features(t, config.word_ngrams, config.buckets))
            .collect()
    };
    let all: Vec<usize> = (0..texts.len()).collect();
    let mut rng = SplitMix64(config.seed);
    let mut model = train_rows(&feats, &ys, &all, objective, config, &mut rng);
    model.target_mean = mean;
    model.target_std = std;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The features as first written: each word lowercased into a new string, `%` per
    /// feature.
    fn reference_features(text: &str, ngrams: usize, buckets: usize) -> Vec<u32> {
        let fnv = |word: &str| {
            let mut h = FNV_OFFSET;
            for &b in word.as_bytes() {
                h ^= b as i8 as i32 as u32;
                h = h.wrapping_mul(FNV_PRIME);
            }
            h
        };
        let hashes: Vec<u32> = split_into_words(text)
            .iter()
            .map(|w| fnv(&w.to_lowercase()))
            .collect();
        let mut out = Vec::new();
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

    #[test]
    fn fast_scoring_is_the_reference_scoring() {
        let texts = [
            "The Quick brown FOX jumps over the lazy dog. Don't stop!",
            "ΣΊΣΥΦΟΣ and ΟΔΥΣΣΕΥΣ: Greek capitals, final sigma; İstanbul, Straße, ǅemal",
            "",
            "   ",
            "naïve café résumé — ÉCOLE 123 4.5% $100 http://example.com/A?b=C",
        ];
        for (dim, buckets, ngrams) in [(10, 1 << 12, 2), (7, 1000, 3), (10, 999, 1)] {
            let config = ClassifierTrainConfig {
                dim,
                buckets,
                word_ngrams: ngrams,
                epochs: 1,
                ..Default::default()
            };
            let labels: Vec<bool> = (0..texts.len()).map(|i| i % 2 == 0).collect();
            let model = fit(&texts, Targets::Labels(&labels), &config).unwrap();
            for t in texts {
                let feats = reference_features(t, ngrams, buckets);
                assert_eq!(feats, features(t, ngrams, buckets), "{t}");
                let expected = model.score_features(&feats);
                assert_eq!(model.score(t).to_bits(), expected.to_bits(), "{t}");
            }
        }
    }
}
