//! Quality filters: the Gopher, C4 and FineWeb heuristics as datatrove implements them, a
//! unigram KL-divergence rule and a fastText-style classifier, applied in parallel, with a
//! report of the documents and words each rule removed.
//!
//! # Order
//! Rule families run in FineWeb's order (Penedo et al. 2024; datatrove's
//! `examples/fineweb.py`): Gopher repetition, Gopher quality, C4, FineWeb, then KL and the
//! classifier; within a family, in datatrove's order. The first rule a document fails removes
//! it and is charged with it. C4 rewrites the documents it keeps (their kept lines), and
//! later families judge the rewritten text, as in a datatrove pipeline.
//!
//! # Words
//! "Words" are datatrove's English words ([`words::split_into_words`], a port of spaCy's `en`
//! tokenizer): what the Gopher and FineWeb rules count, and what the report counts. A
//! report's `words_in` is the words of the input documents; `words_kept` the words of the
//! kept documents as written out.
//!
//! # Configuration
//! [`QualityConfig`] deserialises from the run plan: each family is an object of thresholds
//! whose missing fields take the published defaults, or `null` to turn the family off. By
//! default the two Gopher families are on and the others off. KL and the classifier need a
//! model ([`Models`]); asking for them without one is an error, not a silent pass.

pub mod c4;
pub mod classifier;
pub mod fineweb;
pub mod gopher;
pub mod kl;
#[rustfmt::skip]
// Generated, not hand-written: runtime/data/generated/filter_tables.rs, written by
// tests/reference/filters_gen_tables.py and kept current by tests/filters.rs.
#[path = "../../generated/filter_tables.rs"]
mod tables;
pub mod words;

use std::fmt;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use crate::ingest::Document;
use c4::{C4Config, C4Outcome, C4_LINE_RULES, C4_RULES};
use classifier::{Classifier, ClassifierFilterConfig, CLASSIFIER_RULES};
use fineweb::{FineWebConfig, FINEWEB_RULES};
use gopher::{GopherQualityConfig, GopherRepetitionConfig, QUALITY_RULES};
use kl::{KlConfig, UnigramReference, KL_RULES};

/// Documents judged per parallel batch by [`filter_stream`] (assumption: enough to keep
/// every core busy, few enough to bound the memory held at once).
pub const BATCH_DOCUMENTS: usize = 4096;

/// Which rules to apply, with their thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityConfig {
    pub gopher_repetition: Option<GopherRepetitionConfig>,
    pub gopher_quality: Option<GopherQualityConfig>,
    pub c4: Option<C4Config>,
    pub fineweb: Option<FineWebConfig>,
    pub kl: Option<KlConfig>,
    pub classifier: Option<ClassifierFilterConfig>,
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            gopher_repetition: Some(GopherRepetitionConfig::default()),
            gopher_quality: Some(GopherQualityConfig::default()),
            c4: None,
            fineweb: None,
            kl: None,
            classifier: None,
        }
    }
}

impl QualityConfig {
    /// Every family on, with its defaults (KL and the classifier need [`Models`]).
    pub fn all() -> Self {
        QualityConfig {
            gopher_repetition: Some(GopherRepetitionConfig::default()),
            gopher_quality: Some(GopherQualityConfig::default()),
            c4: Some(C4Config::default()),
            fineweb: Some(FineWebConfig::default()),
            kl: Some(KlConfig::default()),
            classifier: Some(ClassifierFilterConfig::default()),
        }
    }

    /// Every family off.
    pub fn none() -> Self {
        QualityConfig {
            gopher_repetition: None,
            gopher_quality: None,
            c4: None,
            fineweb: None,
            kl: None,
            classifier: None,
        }
    }

    /// `family` alone with this config's thresholds (`None` when it is off).
    pub fn only(&self, family: Family) -> Option<QualityConfig> {
        let mut one = QualityConfig::none();
        match family {
            Family::GopherRepetition => {
                one.gopher_repetition = Some(self.gopher_repetition.clone()?)
            }
            Family::GopherQuality => one.gopher_quality = Some(self.gopher_quality.clone()?),
            Family::C4 => one.c4 = Some(self.c4.clone()?),
            Family::Fineweb => one.fineweb = Some(self.fineweb.clone()?),
            Family::Kl => one.kl = Some(self.kl.clone()?),
            Family::Classifier => one.classifier = Some(self.classifier.clone()?),
        }
        Some(one)
    }

    /// Checks every threshold of every family that is on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(c) = &self.gopher_repetition {
            c.validate()?;
        }
        if let Some(c) = &self.gopher_quality {
            c.validate()?;
        }
        if let Some(c) = &self.c4 {
            c.validate()?;
        }
        if let Some(c) = &self.fineweb {
            c.validate()?;
        }
        if let Some(c) = &self.kl {
            c.validate()?;
        }
        if let Some(c) = &self.classifier {
            c.validate()?;
        }
        Ok(())
    }
}

/// A threshold or setting that cannot be used, with the field it is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: &'static str, reason: String) -> Self {
        ConfigError { field, reason }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Why filtering could not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterError {
    Config(ConfigError),
    /// A family that needs a model is on, and no model was given.
    MissingModel {
        family: Family,
    },
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterError::Config(e) => write!(f, "invalid quality filter setting: {e}"),
            FilterError::MissingModel { family } => write!(
                f,
                "the {} rule is on but no {} was given",
                family.name(),
                match family {
                    Family::Kl => "reference distribution",
                    _ => "trained classifier",
                }
            ),
        }
    }
}

impl std::error::Error for FilterError {}

impl From<ConfigError> for FilterError {
    fn from(e: ConfigError) -> Self {
        FilterError::Config(e)
    }
}

/// The trained or counted models some families need.
#[derive(Clone, Copy, Debug, Default)]
pub struct Models<'a> {
    pub kl_reference: Option<&'a UnigramReference>,
    pub classifier: Option<&'a Classifier>,
}

/// A rule family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    GopherRepetition,
    GopherQuality,
    C4,
    Fineweb,
    Kl,
    Classifier,
}

impl Family {
    /// The family's name in the config and the report.
    pub fn name(self) -> &'static str {
        match self {
            Family::GopherRepetition => "gopher_repetition",
            Family::GopherQuality => "gopher_quality",
            Family::C4 => "c4",
            Family::Fineweb => "fineweb",
            Family::Kl => "kl",
            Family::Classifier => "classifier",
        }
    }
}

/// The rule that removed a document: its family and its index in the family's rule list
/// (see [`QualityFilter::rule_name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleId {
    pub family: Family,
    pub index: usize,
}

/// What the filter made of one document.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    /// The first rule it failed; `None` if kept.
    pub removed_by: Option<RuleId>,
    /// Its words on input.
    pub words_in: u64,
    /// Its words as kept (after C4's rewriting); 0 if removed.
    pub words_kept: u64,
    /// The new text if C4 rewrote it and it was kept.
    pub rewritten: Option<String>,
    /// Lines C4 removed, per [`C4_LINE_RULES`] (zeros unless C4 kept it).
    pub c4_lines_removed: [u64; 5],
}

/// One rule's tally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleReport {
    pub family: Family,
    /// datatrove's reason name (`gopher_short_doc`, `top_2_gram`, …).
    pub rule: String,
    pub documents_removed: u64,
    pub words_removed: u64,
}

/// One C4 line rule's tally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineReport {
    pub rule: String,
    pub lines_removed: u64,
}

/// What a filtering step did: documents and words in and kept, and per rule what it removed
/// (every rule of every family that is on, in order, zeros included).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterReport {
    pub documents_in: u64,
    pub words_in: u64,
    pub documents_kept: u64,
    pub words_kept: u64,
    pub rules: Vec<RuleReport>,
    /// Lines C4 removed from the documents it kept (empty when C4 is off).
    pub c4_lines_removed: Vec<LineReport>,
}

impl FilterReport {
    /// Removals charged to the rule named `rule` of `family` (0 if absent).
    pub fn documents_removed(&self, family: Family, rule: &str) -> u64 {
        self.rules
            .iter()
            .find(|r| r.family == family && r.rule == rule)
            .map_or(0, |r| r.documents_removed)
    }
}

/// A validated config with its models, ready to judge documents.
pub struct QualityFilter<'a> {
    config: &'a QualityConfig,
    models: Models<'a>,
    /// The families that are on, in order, each with its rule names.
    rules: Vec<(Family, Vec<String>)>,
}

impl<'a> QualityFilter<'a> {
    /// Validates `config` and checks that the families that need a model have one.
    pub fn new(config: &'a QualityConfig, models: Models<'a>) -> Result<Self, FilterError> {
        config.validate()?;
        if config.kl.is_some() && models.kl_reference.is_none() {
            return Err(FilterError::MissingModel { family: Family::Kl });
        }
        if config.classifier.is_some() && models.classifier.is_none() {
            return Err(FilterError::MissingModel {
                family: Family::Classifier,
            });
        }
        let own = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let rules = Self::families_of(config)
            .into_iter()
            .map(|family| {
                let names = match family {
                    Family::GopherRepetition => config
                        .gopher_repetition
                        .as_ref()
                        .map(|c| c.rule_names())
                        .unwrap_or_default(),
                    Family::GopherQuality => own(&QUALITY_RULES),
                    Family::C4 => own(&C4_RULES),
                    Family::Fineweb => own(&FINEWEB_RULES),
                    Family::Kl => own(&KL_RULES),
                    Family::Classifier => own(&CLASSIFIER_RULES),
                };
                (family, names)
            })
            .collect();
        Ok(QualityFilter {
            config,
            models,
            rules,
        })
    }

    /// The families that are on, in the order they run.
    pub fn families(&self) -> Vec<Family> {
        self.rules.iter().map(|(f, _)| *f).collect()
    }

    fn families_of(c: &QualityConfig) -> Vec<Family> {
        let mut f = Vec::new();
        if c.gopher_repetition.is_some() {
            f.push(Family::GopherRepetition);
        }
        if c.gopher_quality.is_some() {
            f.push(Family::GopherQuality);
        }
        if c.c4.is_some() {
            f.push(Family::C4);
        }
        if c.fineweb.is_some() {
            f.push(Family::Fineweb);
        }
        if c.kl.is_some() {
            f.push(Family::Kl);
        }
        if c.classifier.is_some() {
            f.push(Family::Classifier);
        }
        f
    }

    /// The names of a family's rules, in check order (empty if the family is off).
    pub fn rule_names(&self, family: Family) -> &[String] {
        self.rules
            .iter()
            .find(|(f, _)| *f == family)
            .map_or(&[], |(_, names)| names.as_slice())
    }

    /// The name of a rule ("" if there is no such rule).
    pub fn rule_name(&self, id: RuleId) -> &str {
        self.rule_names(id.family)
            .get(id.index)
            .map_or("", String::as_str)
    }

    /// The position of a rule in the report's list.
    fn report_index(&self, id: RuleId) -> Option<usize> {
        let mut offset = 0;
        for (family, names) in &self.rules {
            if *family == id.family {
                return (id.index < names.len()).then_some(offset + id.index);
            }
            offset += names.len();
        }
        None
    }

    /// Judges one document's text.
    pub fn judge(&self, text: &str) -> Judgement {
        let c = self.config;
        let words = words::split_into_words(text);
        let words_in = words.len() as u64;
        let removed = |family, index| Judgement {
            removed_by: Some(RuleId { family, index }),
            words_in,
            words_kept: 0,
            rewritten: None,
            c4_lines_removed: [0; 5],
        };
        if let Some(r) = &c.gopher_repetition {
            if let Some(i) = r.check(text, &words) {
                return removed(Family::GopherRepetition, i);
            }
        }
        if let Some(q) = &c.gopher_quality {
            if let Some(i) = q.check(text, &words) {
                return removed(Family::GopherQuality, i);
            }
        }
        let mut rewritten = None;
        let mut c4_lines_removed = [0; 5];
        if let Some(c4) = &c.c4 {
            match c4.apply(text) {
                C4Outcome::Removed(i) => return removed(Family::C4, i),
                C4Outcome::Kept {
                    text: new,
                    lines_removed,
                } => {
                    c4_lines_removed = lines_removed;
                    if new != text {
                        rewritten = Some(new);
                    }
                }
            }
        }
        let current: &str = rewritten.as_deref().unwrap_or(text);
        let current_words = if rewritten.is_some() {
            words::split_into_words(current)
        } else {
            words
        };
        if let Some(f) = &c.fineweb {
            if let Some(i) = f.check(current, &current_words) {
                return removed(Family::Fineweb, i);
            }
        }
        if let (Some(k), Some(reference)) = (&c.kl, self.models.kl_reference) {
            if k.removes(&current_words, reference) {
                return removed(Family::Kl, 0);
            }
        }
        if let (Some(k), Some(model)) = (&c.classifier, self.models.classifier) {
            if model.score_words(&current_words) < k.min_score {
                return removed(Family::Classifier, 0);
            }
        }
        Judgement {
            removed_by: None,
            words_in,
            words_kept: current_words.len() as u64,
            rewritten,
            c4_lines_removed,
        }
    }

    /// An empty report listing every rule of every family that is on.
    pub fn empty_report(&self) -> FilterReport {
        let mut rules = Vec::new();
        for (family, names) in &self.rules {
            for rule in names {
                rules.push(RuleReport {
                    family: *family,
                    rule: rule.clone(),
                    documents_removed: 0,
                    words_removed: 0,
                });
            }
        }
        let c4_lines_removed = if self.config.c4.is_some() {
            C4_LINE_RULES
                .iter()
                .map(|r| LineReport {
                    rule: r.to_string(),
                    lines_removed: 0,
                })
                .collect()
        } else {
            Vec::new()
        };
        FilterReport {
            documents_in: 0,
            words_in: 0,
            documents_kept: 0,
            words_kept: 0,
            rules,
            c4_lines_removed,
        }
    }

    /// Adds one judgement to a report made by [`Self::empty_report`].
    pub fn tally(&self, report: &mut FilterReport, j: &Judgement) {
        report.documents_in += 1;
        report.words_in += j.words_in;
        match j.removed_by {
            None => {
                report.documents_kept += 1;
                report.words_kept += j.words_kept;
                for (line, n) in report.c4_lines_removed.iter_mut().zip(j.c4_lines_removed) {
                    line.lines_removed += n;
                }
            }
            Some(id) => {
                if let Some(r) = self.report_index(id).and_then(|i| report.rules.get_mut(i)) {
                    r.documents_removed += 1;
                    r.words_removed += j.words_in;
                }
            }
        }
    }
}

/// Filters documents with the rules of `config` (no KL or classifier: see
/// [`filter_documents_with`]); returns the kept documents, in input order, and the report.
pub fn filter_documents<I>(
    docs: I,
    config: &QualityConfig,
) -> Result<(Vec<Document>, FilterReport), FilterError>
where
    I: IntoIterator<Item = Document>,
{
    filter_documents_with(docs, config, Models::default())
}

/// [`filter_documents`] with the models the KL and classifier rules need.
pub fn filter_documents_with<I>(
    docs: I,
    config: &QualityConfig,
    models: Models<'_>,
) -> Result<(Vec<Document>, FilterReport), FilterError>
where
    I: IntoIterator<Item = Document>,
{
    let mut kept = Vec::new();
    let report = filter_stream(docs, config, models, |d| kept.push(d))?;
    Ok((kept, report))
}

/// Filters a stream of documents in batches of [`BATCH_DOCUMENTS`] (or fewer holding
/// `ingest::MAX_BATCH_BYTES` of text), judged in parallel on
/// rayon's pool, passing each kept document (rewritten by C4 if it was) to `keep` in input
/// order. Holds one batch at a time.
pub fn filter_stream<I, F>(
    docs: I,
    config: &QualityConfig,
    models: Models<'_>,
    mut keep: F,
) -> Result<FilterReport, FilterError>
where
    I: IntoIterator<Item = Document>,
    F: FnMut(Document),
{
    let filter = QualityFilter::new(config, models)?;
    let mut report = filter.empty_report();
    let mut iter = docs.into_iter();
    loop {
        // At most BATCH_DOCUMENTS documents and about MAX_BATCH_BYTES of text.
        let mut batch: Vec<Document> = Vec::new();
        let mut bytes = 0u64;
        while batch.len() < BATCH_DOCUMENTS && bytes < crate::ingest::MAX_BATCH_BYTES {
            let Some(doc) = iter.next() else { break };
            bytes += doc.text.len() as u64;
            batch.push(doc);
        }
        if batch.is_empty() {
            break;
        }
        let judged: Vec<Judgement> = batch.par_iter().map(|d| filter.judge(&d.text)).collect();
        for (mut doc, j) in batch.into_iter().zip(judged) {
            filter.tally(&mut report, &j);
            if j.removed_by.is_none() {
                if let Some(text) = j.rewritten {
                    doc.text = text;
                }
                keep(doc);
            }
        }
    }
    Ok(report)
}
