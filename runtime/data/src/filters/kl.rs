//! A KL-divergence rule on word unigrams: a document is removed when its word distribution is
//! too far from a reference corpus's, `KL(p_doc ‖ p_ref) > max_kl_nats`.
//!
//! The idea is the reference-corpus selection of Moore & Lewis 2010 ("Intelligent Selection
//! of Language Model Training Data", cross-entropy difference against an in-domain model)
//! and of Xie et al. 2023 ("Data Selection for Language Models via Importance Resampling",
//! Sec. 4, whose "KL reduction" compares n-gram feature distributions with a target's); here
//! it is applied document by document with unigram features.
//!
//! # Definition
//! Words are datatrove's (`words::split_into_words`), lowercased when the reference was built
//! lowercased. Over the reference vocabulary `V` plus one bucket for every word outside it:
//! - `p_doc(x) = n_x / n`, the document's empirical distribution (its out-of-vocabulary words
//!   all counted in the bucket);
//! - `p_ref(w) = (c_w + α) / (N + α (|V| + 1))` and `p_ref(bucket) = α / (N + α (|V| + 1))`:
//!   additive (Lidstone) smoothing with `α = smoothing` (1 = Laplace; Chen & Goodman 1999,
//!   "An Empirical Study of Smoothing Techniques for Language Modeling", Sec. 2.1), so every
//!   outcome has positive probability and the divergence is finite;
//! - `KL = Σ_x p_doc(x) ln(p_doc(x) / p_ref(x))`, in nats.
//!
//! A document without words has no distribution: the rule removes it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::words::{split_into_words, FxBuild};
use super::ConfigError;

/// The default largest divergence, in nats (assumption, calibrated on this project's test
/// corpus against a reference of half of Debian's license paragraphs: the other half sit at
/// a median of 2.2 nats (90th percentile 3.2), Python modules at a median of 4.4 (10th
/// percentile 4.0), man pages at 3.9). The divergence of an empirical distribution falls as
/// the document grows, so set it per corpus and document length.
pub const DEFAULT_MAX_KL_NATS: f64 = 3.5;

/// Laplace smoothing (α = 1; Chen & Goodman 1999, Sec. 2.1).
pub const DEFAULT_SMOOTHING: f64 = 1.0;

/// The KL rule's thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KlConfig {
    /// Largest `KL(p_doc ‖ p_ref)` kept, in nats (for documents of any length when
    /// `by_length` is empty).
    pub max_kl_nats: f64,
    /// The additive smoothing constant α of the reference distribution (> 0).
    pub smoothing: f64,
    /// Thresholds by document length, shortest first: a document of n words is judged by
    /// the entry with the most words ≤ n (the first entry below it). The divergence of an
    /// empirical distribution falls as the document grows (it is biased upwards by about
    /// (|V_doc| − 1)/(2n) nats: Miller 1955, "Note on the bias of information estimates"),
    /// so one threshold cannot suit documents of every length; a `kl_reference` step
    /// measures one per length on windows of its held-out reference documents.
    pub by_length: Vec<LengthThreshold>,
}

/// The threshold for documents of at least `words` words.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthThreshold {
    pub words: u64,
    pub max_kl_nats: f64,
}

impl Default for KlConfig {
    fn default() -> Self {
        KlConfig {
            max_kl_nats: DEFAULT_MAX_KL_NATS,
            smoothing: DEFAULT_SMOOTHING,
            by_length: Vec::new(),
        }
    }
}

/// The rule's reason name.
pub const KL_RULES: [&str; 1] = ["kl_divergence"];

impl KlConfig {
    /// Rejects thresholds no document could be judged by.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.max_kl_nats.is_finite() && self.max_kl_nats >= 0.0) {
            return Err(ConfigError::new(
                "kl.max_kl_nats",
                format!("{} is not a finite number ≥ 0", self.max_kl_nats),
            ));
        }
        if !(self.smoothing.is_finite() && self.smoothing > 0.0) {
            return Err(ConfigError::new(
                "kl.smoothing",
                format!("{} is not a finite number > 0", self.smoothing),
            ));
        }
        for (i, t) in self.by_length.iter().enumerate() {
            if !(t.max_kl_nats.is_finite() && t.max_kl_nats >= 0.0) {
                return Err(ConfigError::new(
                    "kl.by_length",
                    format!("{} nats is not a finite number ≥ 0", t.max_kl_nats),
                ));
            }
            if i > 0 && t.words <= self.by_length[i - 1].words {
                return Err(ConfigError::new(
                    "kl.by_length",
                    "the lengths are not strictly increasing".into(),
                ));
            }
        }
        Ok(())
    }

    /// The threshold for a document of `words` words.
    pub fn max_for(&self, words: usize) -> f64 {
        match self
            .by_length
            .iter()
            .rev()
            .find(|t| t.words <= words as u64)
            .or(self.by_length.first())
        {
            Some(t) => t.max_kl_nats,
            None => self.max_kl_nats,
        }
    }

    /// Whether the rule removes a document with these words.
    pub fn removes(&self, words: &[&str], reference: &UnigramReference) -> bool {
        match reference.kl_divergence_nats(words, self.smoothing) {
            Some(kl) => kl > self.max_for(words.len()),
            None => true,
        }
    }
}

/// Word counts of a reference corpus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "ReferenceFile", into = "ReferenceFile")]
pub struct UnigramReference {
    lowercase: bool,
    counts: HashMap<String, u64, FxBuild>,
    total_words: u64,
}

/// The serialised form: words in byte order, so equal references serialise equally.
#[derive(Serialize, Deserialize)]
struct ReferenceFile {
    lowercase: bool,
    words: Vec<(String, u64)>,
}

impl From<ReferenceFile> for UnigramReference {
    fn from(f: ReferenceFile) -> Self {
        let mut counts: HashMap<String, u64, FxBuild> = HashMap::default();
        for (w, c) in f.words {
            let n = counts.entry(w).or_insert(0);
            *n = n.saturating_add(c);
        }
        let total_words = counts.values().fold(0u64, |a, &c| a.saturating_add(c));
        UnigramReference {
            lowercase: f.lowercase,
            counts,
            total_words,
        }
    }
}

impl From<UnigramReference> for ReferenceFile {
    fn from(r: UnigramReference) -> Self {
        let mut words: Vec<(String, u64)> = r.counts.into_iter().collect();
        words.sort();
        ReferenceFile {
            lowercase: r.lowercase,
            words,
        }
    }
}

impl UnigramReference {
    /// Counts the words of `texts` (lowercased if `lowercase`).
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>, lowercase: bool) -> Self {
        let mut r = UnigramReference {
            lowercase,
            counts: HashMap::default(),
            total_words: 0,
        };
        for t in texts {
            r.add_text(t);
        }
        r
    }

    /// Adds one text's words.
    pub fn add_text(&mut self, text: &str) {
        for w in split_into_words(text) {
            let key = if self.lowercase {
                w.to_lowercase()
            } else {
                w.to_string()
            };
            *self.counts.entry(key).or_insert(0) += 1;
            self.total_words += 1;
        }
    }

    /// Adds the counts of `other` (built with the same lowercasing), so a corpus can be
    /// counted in parallel parts; the result does not depend on how it was split.
    pub fn merge(&mut self, other: UnigramReference) {
        for (w, c) in other.counts {
            let n = self.counts.entry(w).or_insert(0);
            *n = n.saturating_add(c);
        }
        self.total_words = self.total_words.saturating_add(other.total_words);
    }

    /// Whether words are lowercased before counting and lookup.
    pub fn lowercase(&self) -> bool {
        self.lowercase
    }

    /// Distinct words `|V|`.
    pub fn vocabulary_words(&self) -> usize {
        self.counts.len()
    }

    /// Words counted `N`.
    pub fn total_words(&self) -> u64 {
        self.total_words
    }

    /// `KL(p_doc ‖ p_ref)` in nats for a document's words (see the module doc); `None` for a
    /// document without words.
    pub fn kl_divergence_nats(&self, words: &[&str], smoothing: f64) -> Option<f64> {
        if words.is_empty() {
            return None;
        }
        let mut doc: HashMap<std::borrow::Cow<'_, str>, u64, FxBuild> = HashMap::default();
        for w in words {
            let key = if self.lowercase {
                std::borrow::Cow::Owned(w.to_lowercase())
            } else {
                std::borrow::Cow::Borrowed(*w)
            };
            *doc.entry(key).or_insert(0) += 1;
        }
        let n = words.len() as f64;
        let denom = self.total_words as f64 + smoothing * (self.counts.len() as f64 + 1.0);
        let mut kl = 0.0;
        let mut oov = 0u64;
        for (w, &c) in &doc {
            match self.counts.get(w.as_ref()) {
                Some(&ref_count) => {
                    let p = c as f64 / n;
                    let q = (ref_count as f64 + smoothing) / denom;
                    kl += p * (p / q).ln();
                }
                None => oov += c,
            }
        }
        if oov > 0 {
            let p = oov as f64 / n;
            let q = smoothing / denom;
            kl += p * (p / q).ln();
        }
        Some(kl)
    }
}
