//! The data operations a plan's steps and the `kiln data` commands share: exact and near
//! deduplication, the quality filters (with the model-based ones: the classifier trained on
//! a scorer's scores, the KL reference, and the good tokens the heuristics lose), tokenizer
//! training and encoding, each over documents read with an `IngestConfig` and written whole
//! (kiln-fsio), with the one failure type [`DataError`] (whether a file could not be read or
//! written, or the work failed).

use std::path::Path;

use serde::Serialize;

use crate::exact::{BloomFilter, ExactDedup, ExactKey};
use serde::Deserialize;

use crate::filters::classifier::{
    self, Classifier, ClassifierFilterConfig, ClassifierTrainConfig, Objective, Targets,
};
use crate::filters::kl::{KlConfig, LengthThreshold, UnigramReference};
use crate::filters::{self, Family, FilterReport, Models, QualityConfig};
use crate::ingest::{
    Document, Ingest, IngestConfig, IngestError, JsonlWriter, Malformed, MAX_BATCH_BYTES,
};
use crate::near::{NearDedup, NearParams, BATCH_DOCS};
use crate::plan::{ClassifierLabels, KeepRule, KlMax, KlReferenceParams, TrainClassifierParams};
use crate::progress::Progress;
use crate::scores::{read_scores, ScoredDocument};
use crate::shards::{self, ShardEncoder, ENCODE_BATCH_DOCS};
use crate::stats;
use crate::steps::READ_BATCH_DOCS;
use crate::tokenize::{self, TrainConfig, WordCounter};

/// Exact-dedup settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ExactSettings {
    pub false_positive: f64,
    /// Documents the Bloom filter is sized for; `None`: counted in a first pass.
    pub expected_docs: Option<u64>,
}

/// What [`dedup_documents`] did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DedupReport {
    pub input_docs: u64,
    pub kept_docs: u64,
    /// Documents removed by each stage that ran: `exact`, `near`.
    pub removed: std::collections::BTreeMap<String, u64>,
    pub malformed_lines: u64,
    /// Documents skipped for being longer than the limit.
    pub too_large_docs: u64,
    /// Near dedup: clusters of two or more documents, and documents too short to shingle.
    pub near_clusters: Option<u64>,
    pub near_unshingled_docs: Option<u64>,
    /// Near dedup: the Jaccard similarity at which a pair becomes a candidate half the
    /// time, `(1/bands)^(1/rows)`.
    pub near_threshold: Option<f64>,
    /// Exact dedup: the Bloom filter's false-positive probability at the end.
    pub exact_false_positive_rate: Option<f64>,
    /// The first [`REPORTED_PROBLEMS`] malformed lines and too-large documents.
    pub malformed: Vec<Malformed>,
    pub too_large: Vec<Malformed>,
}

/// How many malformed lines and too-large documents a step's report lists (the counts
/// cover them all; assumption: enough to see what is wrong with an input).
pub const REPORTED_PROBLEMS: usize = 10;

fn first_problems(list: &[Malformed]) -> Vec<Malformed> {
    list.iter().take(REPORTED_PROBLEMS).cloned().collect()
}

/// Batches of documents for the parallel steps: at most `docs` documents and about
/// [`MAX_BATCH_BYTES`] of text (a larger document is a batch of its own).
struct Batcher {
    docs: usize,
    texts: Vec<String>,
    bytes: u64,
}

impl Batcher {
    fn new(docs: usize) -> Batcher {
        Batcher {
            docs,
            texts: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds a text; true when the batch is full and should be processed and cleared.
    fn push(&mut self, text: String) -> bool {
        self.bytes += text.len() as u64;
        self.texts.push(text);
        self.texts.len() >= self.docs || self.bytes >= MAX_BATCH_BYTES
    }

    fn clear(&mut self) {
        self.texts.clear();
        self.bytes = 0;
    }
}

/// A data step failure outside the plan (the `kiln data` commands share these).
#[derive(Debug)]
pub struct DataError {
    /// What went wrong, in words.
    pub message: String,
    /// Whether a file could not be read or written (`kiln data` exits 2), rather than the
    /// work failing (1).
    pub io: bool,
}

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DataError {}

impl DataError {
    /// The work failed (not a file that could not be read or written).
    pub fn work(message: impl Into<String>) -> DataError {
        DataError {
            message: message.into(),
            io: false,
        }
    }
}

impl From<String> for DataError {
    fn from(message: String) -> Self {
        DataError::work(message)
    }
}

impl From<&str> for DataError {
    fn from(message: &str) -> Self {
        DataError::work(message)
    }
}

/// A typed error as a [`DataError`], file errors told apart ([`is_io`]).
pub(crate) fn de<E: std::error::Error + 'static>(e: E) -> DataError {
    DataError {
        message: e.to_string(),
        io: is_io(&e),
    }
}

/// Whether an error, or one it was caused by, is a file that could not be read or written
/// (an operating-system error, a refused output, unusable inputs).
pub fn is_io(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        let unusable_inputs = e.downcast_ref::<IngestError>().is_some_and(|e| {
            matches!(
                e,
                IngestError::Inputs(_) | IngestError::NoInputs | IngestError::OutputFormat(_)
            )
        });
        if unusable_inputs || e.is::<std::io::Error>() || e.is::<kiln_fsio::Error>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Exact and/or near dedup of the documents of `config`, kept documents written to
/// `output` (`.jsonl` or `.jsonl.zst`, atomically). Exact runs first (first occurrence
/// kept); near dedup then clusters the documents exact kept (the first of each cluster
/// kept). Reads the inputs once for exact alone, twice when near dedup runs.
pub fn dedup_documents(
    config: &IngestConfig,
    exact: Option<&ExactSettings>,
    near: Option<NearParams>,
    output: &Path,
    progress: bool,
) -> Result<DedupReport, DataError> {
    let mut exact_dedup = match exact {
        Some(s) => {
            let n = match s.expected_docs {
                Some(n) => n,
                None => crate::ingest::count_documents(config).map_err(de)?,
            };
            Some(ExactDedup::new(
                BloomFilter::for_items(n.max(1), s.false_positive).map_err(de)?,
                ExactKey::Text,
            ))
        }
        None => None,
    };
    let mut near_index = match near {
        Some(p) => Some(NearDedup::new(p).map_err(de)?),
        None => None,
    };
    let mut ingest = Ingest::open(config).map_err(de)?;
    let bar = Progress::new(progress, None, "dedup", "docs");
    let mut input_docs = 0u64;
    let mut exact_kept: Vec<bool> = Vec::new();
    let mut writer = None;
    if near_index.is_none() {
        writer = Some(JsonlWriter::create(output).map_err(de)?);
    }
    let mut batch = Batcher::new(BATCH_DOCS);
    for doc in ingest.by_ref() {
        let doc = doc.map_err(de)?;
        input_docs += 1;
        bar.inc(1);
        bar.add_bytes(doc.text.len() as u64);
        let keep = exact_dedup.as_mut().is_none_or(|x| x.keep(&doc.text));
        match (&mut near_index, &mut writer) {
            (Some(index), _) => {
                exact_kept.push(keep);
                if keep && batch.push(doc.text) {
                    index.add_batch(&batch.texts).map_err(de)?;
                    batch.clear();
                }
            }
            (None, Some(w)) => {
                if keep {
                    w.write(&doc).map_err(de)?;
                }
            }
            (None, None) => {}
        }
    }
    bar.finish_and_clear();
    let read = ingest.into_report();
    let exact_report = exact_dedup.map(|x| x.into_parts().1);
    let mut removed = std::collections::BTreeMap::new();
    if let Some(r) = &exact_report {
        removed.insert("exact".to_string(), r.removed);
    }
    let mut report = DedupReport {
        input_docs,
        kept_docs: 0,
        removed,
        malformed_lines: read.malformed_lines,
        too_large_docs: read.too_large_docs,
        near_clusters: None,
        near_unshingled_docs: None,
        near_threshold: None,
        exact_false_positive_rate: exact_report.map(|r| r.filter_false_positive_rate),
        malformed: first_problems(&read.malformed),
        too_large: first_problems(&read.too_large),
    };
    match near_index {
        None => {
            let w = writer.ok_or_else(|| DataError {
                message: "no writer".into(),
                io: false,
            })?;
            report.kept_docs = w.finish().map_err(de)?;
        }
        Some(mut index) => {
            index.add_batch(&batch.texts).map_err(de)?;
            drop(batch);
            let threshold = index.hasher().threshold();
            let clusters = index.finish();
            let mut w = JsonlWriter::create(output).map_err(de)?;
            let bar = Progress::new(progress, Some(input_docs), "dedup: writing", "docs");
            let mut second = Ingest::open(config).map_err(de)?;
            let mut near_index_of = 0u64;
            let mut near_removed = 0u64;
            for (i, doc) in second.by_ref().enumerate() {
                let doc = doc.map_err(de)?;
                bar.inc(1);
                bar.add_bytes(doc.text.len() as u64);
                if !exact_kept.get(i).copied().unwrap_or(false) {
                    continue;
                }
                if clusters.is_kept(near_index_of) {
                    w.write(&doc).map_err(de)?;
                } else {
                    near_removed += 1;
                }
                near_index_of += 1;
            }
            bar.finish_and_clear();
            report.kept_docs = w.finish().map_err(de)?;
            report.removed.insert("near".to_string(), near_removed);
            report.near_clusters = Some(clusters.report().clusters);
            report.near_unshingled_docs = Some(clusters.report().unshingled_docs);
            report.near_threshold = Some(threshold);
        }
    }
    Ok(report)
}

/// The quality-filter configuration for the plan's heuristics (`gopher`, `c4`, `fineweb`;
/// `gopher_repetition` and `gopher_quality` name Gopher's two families alone). The
/// model-based families (the classifier, KL) come from their steps' outputs, not from here.
pub fn quality_config(heuristics: &[String]) -> Result<QualityConfig, DataError> {
    let mut config = QualityConfig::none();
    for h in heuristics {
        match h.as_str() {
            "gopher" => {
                config.gopher_repetition = Some(Default::default());
                config.gopher_quality = Some(Default::default());
            }
            "gopher_repetition" => config.gopher_repetition = Some(Default::default()),
            "gopher_quality" => config.gopher_quality = Some(Default::default()),
            "c4" => config.c4 = Some(Default::default()),
            "fineweb" => config.fineweb = Some(Default::default()),
            other => {
                return Err(DataError::work(format!(
                    "quality heuristic `{other}`; kiln knows gopher, gopher_repetition, gopher_quality, c4 and fineweb"
                )))
            }
        }
    }
    config.validate().map_err(de)?;
    Ok(config)
}

/// Turns on each family the experiment gives thresholds for, with those thresholds over
/// its defaults. Field names are checked by the configs' `deny_unknown_fields`.
pub fn apply_thresholds(
    config: &mut QualityConfig,
    thresholds: &std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
) -> Result<(), DataError> {
    fn merged<T: serde::Serialize + serde::de::DeserializeOwned + Default>(
        current: &Option<T>,
        overrides: &serde_json::Map<String, serde_json::Value>,
        family: &str,
    ) -> Result<T, DataError> {
        let base = current
            .as_ref()
            .map(serde_json::to_value)
            .unwrap_or_else(|| serde_json::to_value(T::default()));
        let mut value = base.map_err(de)?;
        for (k, v) in overrides {
            value[k] = v.clone();
        }
        serde_json::from_value(value)
            .map_err(|e| DataError::work(format!("quality thresholds of `{family}`: {e}")))
    }
    for (family, overrides) in thresholds {
        match family.as_str() {
            "gopher_quality" => {
                config.gopher_quality = Some(merged(&config.gopher_quality, overrides, family)?)
            }
            "gopher_repetition" => {
                config.gopher_repetition =
                    Some(merged(&config.gopher_repetition, overrides, family)?)
            }
            "c4" => config.c4 = Some(merged(&config.c4, overrides, family)?),
            "fineweb" => config.fineweb = Some(merged(&config.fineweb, overrides, family)?),
            other => {
                return Err(DataError::work(format!(
                    "quality thresholds for an unknown family `{other}`"
                )))
            }
        }
    }
    config.validate().map_err(de)
}

/// What [`filter_documents`] did: the filters' report plus the step's common counts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QualityStepReport {
    pub input_docs: u64,
    pub kept_docs: u64,
    /// Documents removed per rule (`family.rule`), zeros included.
    pub removed: std::collections::BTreeMap<String, u64>,
    pub malformed_lines: u64,
    /// Documents skipped for being longer than the limit.
    pub too_large_docs: u64,
    pub filters: FilterReport,
    /// The first [`REPORTED_PROBLEMS`] malformed lines and too-large documents.
    pub malformed: Vec<Malformed>,
    pub too_large: Vec<Malformed>,
}

/// Quality-filters the documents of `config` into `output` (atomically), with the models
/// the KL and classifier families need when they are on.
pub fn filter_documents(
    config: &IngestConfig,
    quality: &QualityConfig,
    models: Models<'_>,
    output: &Path,
    progress: bool,
) -> Result<QualityStepReport, DataError> {
    let mut ingest = Ingest::open(config).map_err(de)?;
    let mut writer = JsonlWriter::create(output).map_err(de)?;
    let bar = Progress::new(progress, None, "quality filter", "docs");
    let mut read_error: Option<IngestError> = None;
    let mut write_error: Option<IngestError> = None;
    let docs = ingest.by_ref().map_while(|d| match d {
        Ok(doc) => {
            bar.inc(1);
            bar.add_bytes(doc.text.len() as u64);
            Some(doc)
        }
        Err(e) => {
            read_error = Some(e);
            None
        }
    });
    let report = filters::filter_stream(docs, quality, models, |doc: Document| {
        if write_error.is_none() {
            if let Err(e) = writer.write(&doc) {
                write_error = Some(e);
            }
        }
    })
    .map_err(de)?;
    bar.finish_and_clear();
    if let Some(e) = read_error.or(write_error) {
        return Err(de(e));
    }
    let kept = writer.finish().map_err(de)?;
    let removed = report
        .rules
        .iter()
        .map(|r| {
            (
                format!("{}.{}", r.family.name(), r.rule),
                r.documents_removed,
            )
        })
        .collect();
    let read = ingest.into_report();
    Ok(QualityStepReport {
        input_docs: report.documents_in,
        kept_docs: kept,
        removed,
        malformed_lines: read.malformed_lines,
        too_large_docs: read.too_large_docs,
        filters: report,
        malformed: first_problems(&read.malformed),
        too_large: first_problems(&read.too_large),
    })
}

/// What [`train_tokenizer`] did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokenizerStepReport {
    pub input_docs: u64,
    pub kept_docs: u64,
    pub malformed_lines: u64,
    /// Documents skipped for being longer than the limit.
    pub too_large_docs: u64,
    pub tokenizer: tokenize::TrainReport,
    /// The first [`REPORTED_PROBLEMS`] malformed lines and too-large documents.
    pub malformed: Vec<Malformed>,
    pub too_large: Vec<Malformed>,
}

/// Trains a tokenizer on the documents of `config` and saves it into `out_dir`.
pub fn train_tokenizer(
    config: &IngestConfig,
    train: TrainConfig,
    out_dir: &Path,
    progress: bool,
) -> Result<TokenizerStepReport, DataError> {
    let mut counter = WordCounter::new(train).map_err(de)?;
    let mut ingest = Ingest::open(config).map_err(de)?;
    let bar = Progress::new(progress, None, "tokenizer: counting words", "docs");
    let mut batch = Batcher::new(READ_BATCH_DOCS);
    for doc in ingest.by_ref() {
        let text = doc.map_err(de)?.text;
        bar.add_bytes(text.len() as u64);
        if batch.push(text) {
            counter.add_batch(&batch.texts).map_err(de)?;
            bar.inc(batch.texts.len() as u64);
            batch.clear();
        }
    }
    counter.add_batch(&batch.texts).map_err(de)?;
    drop(batch);
    bar.finish_and_clear();
    let spinner = Progress::new(progress, None, "tokenizer: training", "");
    let (tokenizer, report) = counter.train().map_err(de)?;
    spinner.finish_and_clear();
    tokenize::save(&tokenizer, out_dir).map_err(de)?;
    let read = ingest.into_report();
    Ok(TokenizerStepReport {
        input_docs: report.docs,
        kept_docs: report.docs,
        malformed_lines: read.malformed_lines,
        too_large_docs: read.too_large_docs,
        tokenizer: report,
        malformed: first_problems(&read.malformed),
        too_large: first_problems(&read.too_large),
    })
}

/// What [`encode_documents`] did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EncodeReport {
    pub input_docs: u64,
    pub kept_docs: u64,
    /// Tokens written, end-of-document tokens included.
    pub tokens: u64,
    pub eod_id: u32,
    pub vocab_size: u64,
    pub dtype: shards::TokenDtype,
    pub tokens_per_doc: f64,
    pub malformed_lines: u64,
    /// Documents skipped for being longer than the limit.
    pub too_large_docs: u64,
    /// The first [`REPORTED_PROBLEMS`] malformed lines and too-large documents.
    pub malformed: Vec<Malformed>,
    pub too_large: Vec<Malformed>,
}

/// Encodes the documents of `config` into the indexed dataset `prefix` (`.bin/.idx`), in
/// parallel batches on the current rayon pool; byte-identical for any thread count.
pub fn encode_documents(
    config: &IngestConfig,
    tokenizer: &tokenize::Tokenizer,
    eod: u32,
    prefix: &Path,
    progress: bool,
) -> Result<EncodeReport, DataError> {
    let mut ingest = Ingest::open(config).map_err(de)?;
    let mut encoder = ShardEncoder::create(tokenizer, eod, prefix).map_err(de)?;
    let bar = Progress::new(progress, None, "encode", "docs");
    let mut batch = Batcher::new(ENCODE_BATCH_DOCS);
    for doc in ingest.by_ref() {
        let text = doc.map_err(de)?.text;
        bar.add_bytes(text.len() as u64);
        if batch.push(text) {
            encoder.add_batch(&batch.texts).map_err(de)?;
            bar.inc(batch.texts.len() as u64);
            batch.clear();
        }
    }
    encoder.add_batch(&batch.texts).map_err(de)?;
    drop(batch);
    bar.finish_and_clear();
    let summary = encoder.finish().map_err(de)?;
    let read = ingest.into_report();
    Ok(EncodeReport {
        input_docs: summary.documents,
        kept_docs: summary.documents,
        tokens: summary.tokens,
        eod_id: eod,
        vocab_size: tokenizer.get_vocab_size(true) as u64,
        dtype: summary.dtype,
        tokens_per_doc: if summary.documents == 0 {
            0.0
        } else {
            summary.tokens as f64 / summary.documents as f64
        },
        malformed_lines: read.malformed_lines,
        too_large_docs: read.too_large_docs,
        malformed: first_problems(&read.malformed),
        too_large: first_problems(&read.too_large),
    })
}

// ---------------------------------------------------------------------------------------
// The model-based filters: a classifier trained on a scorer's scores of a sample, the KL
// reference distribution, and the good tokens the heuristics remove.

/// The classifier a `train_classifier` step (or `kiln data classify train`) writes: a
/// serialised `filters::classifier::Classifier`.
pub const CLASSIFIER_FILE: &str = "classifier.json";
/// The reference distribution and threshold a `kl_reference` step writes
/// ([`KlReferenceFile`]).
pub const REFERENCE_FILE: &str = "reference.json";

/// Hash buckets of a classifier trained on a scored sample (assumption: a sample of a few
/// thousand documents per source holds a few hundred thousand distinct words and bigrams;
/// fastText's 2M rows would write a ~240 MB JSON file of mostly untrained rows, 2^18 rows
/// write ~30 MB).
pub const SAMPLE_CLASSIFIER_BUCKETS: usize = 1 << 18;

/// A score file and the name it is reported under (the score step's name, or the path).
#[derive(Clone, Debug)]
pub struct ScoreInput {
    pub name: String,
    pub path: std::path::PathBuf,
}

/// One score file's documents.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScoreSourceReport {
    pub name: String,
    pub docs: u64,
    pub null_score_docs: u64,
}

/// What [`train_quality_classifier`] did (a `train_classifier` step's report).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassifierStepReport {
    /// Documents in the score files.
    pub input_docs: u64,
    /// Documents with a score (trained on or held out).
    pub kept_docs: u64,
    /// Documents the scorer could not grade (no score): excluded from training and metrics.
    pub null_score_docs: u64,
    pub sources: Vec<ScoreSourceReport>,
    /// `top` or `regression`.
    pub labels: String,
    /// Top labels: the fraction of the scored documents labelled good.
    pub top_fraction: Option<f64>,
    pub objective: Objective,
    /// The scorer's score from which a document is rated good: the (1 − fraction) quantile
    /// of every score (top labels), or their median (regression). Good documents are those
    /// scoring at least this.
    pub label_cut: f64,
    /// Scored documents rated good (score ≥ `label_cut`).
    pub good_docs: u64,
    /// Regression: the training scores' mean and standard deviation (the model learns the
    /// standardised score).
    pub target_mean: Option<f64>,
    pub target_std: Option<f64>,
    pub train_docs: u64,
    pub held_out_docs: u64,
    /// Spearman's ρ of the classifier's and the scorer's scores of the held-out documents.
    pub held_out_spearman: Option<f64>,
    /// The area under the ROC curve of the classifier's score for the held-out documents'
    /// good rating (score ≥ `label_cut`).
    pub held_out_auc: Option<f64>,
    /// Top labels: held-out documents classified as labelled (probability ≥ 0.5 ⇔ good).
    pub held_out_accuracy: Option<f64>,
    /// `threshold` or `fraction`.
    pub keep: String,
    /// Fraction keep rule: the fraction of documents to keep.
    pub keep_fraction: Option<f64>,
    /// The resolved threshold on the classifier's score: documents scoring at least it are
    /// kept (a fraction rule's is the score that keeps that fraction of every document in
    /// the score files, null scores included).
    pub threshold: f64,
    /// The fraction of the score files' documents the threshold keeps.
    pub sample_kept_fraction: f64,
    pub classifier: ClassifierTrainConfig,
}

/// The held-out documents among `ids` (by position): the `round(n · fraction)` with the
/// smallest `xxh3(seed, id)`, ties by position; the same whatever order the files are in.
pub fn held_out_by_rank(ids: &[&str], fraction: f64, seed: u64) -> Vec<bool> {
    let mut order: Vec<(u64, usize)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (crate::sample::sample_key(id, seed), i))
        .collect();
    order.sort_unstable();
    let held = ((ids.len() as f64 * fraction).round() as usize).min(ids.len());
    let mut out = vec![false; ids.len()];
    for &(_, i) in &order[..held] {
        out[i] = true;
    }
    out
}

/// The threshold that keeps `fraction` of `scores`: with `k = round(fraction · n)`, halfway
/// between the k-th and the (k+1)-th largest score (ties keep more); every score kept when
/// `k = n`, none (a threshold above the largest) when `k = 0`.
pub fn fraction_threshold(scores: &[f64], fraction: f64) -> Option<f64> {
    let mut desc = scores.to_vec();
    desc.sort_by(|a, b| b.total_cmp(a));
    let n = desc.len();
    let first = *desc.first()?;
    let k = ((fraction * n as f64).round() as usize).min(n);
    Some(match k {
        0 => first + first.abs().max(1.0),
        k if k == n => desc[n - 1],
        k => (desc[k - 1] + desc[k]) / 2.0,
    })
}

fn check_fraction(what: &str, v: f64, zero_ok: bool) -> Result<(), DataError> {
    let ok = v.is_finite() && v <= 1.0 && if zero_ok { v >= 0.0 } else { v > 0.0 };
    if ok {
        Ok(())
    } else {
        Err(DataError::work(format!(
            "{what} {v} is not in {}",
            if zero_ok { "[0, 1]" } else { "(0, 1]" }
        )))
    }
}

/// Trains the quality classifier on the scored documents of `inputs` (a `train_classifier`
/// step, `kiln data classify train`) and writes it to `out_dir`/[`CLASSIFIER_FILE`]:
/// - labels: `Top { fraction }` rates good the documents scoring at least the (1 − fraction)
///   quantile of every non-null score (DCLM, Li et al. 2024: top-ranked documents as a
///   fastText classifier's positives), a logistic classifier; `Regression` learns the
///   standardised score by least squares (FineWeb-Edu, Penedo et al. 2024), its label cut
///   (for the AUC and the good-token counts) the median score;
/// - held out: the `round(n · held_out_fraction)` scored documents with the smallest
///   `xxh3(seed, id)` ([`held_out_by_rank`]), on which Spearman's ρ, the AUC and (top) the
///   accuracy are measured;
/// - the keep threshold: `Threshold { min_score }` as given, `Fraction { fraction }` the
///   classifier score keeping that fraction of every document of the score files
///   ([`fraction_threshold`]; FineWeb-Edu's threshold on the classifier's score).
///
/// Deterministic: the same files and parameters write the same bytes.
pub fn train_quality_classifier(
    inputs: &[ScoreInput],
    params: &TrainClassifierParams,
    out_dir: &Path,
) -> Result<ClassifierStepReport, DataError> {
    if !(params.held_out_fraction.is_finite() && (0.0..1.0).contains(&params.held_out_fraction)) {
        return Err(DataError::work(format!(
            "held_out_fraction {} is not in [0, 1)",
            params.held_out_fraction
        )));
    }
    if let ClassifierLabels::Top { fraction } = params.labels {
        check_fraction("the top labels' fraction", fraction, false)?;
    }
    match params.keep {
        KeepRule::Fraction { fraction } => check_fraction("the kept fraction", fraction, true)?,
        KeepRule::Threshold { min_score } if !min_score.is_finite() => {
            return Err(DataError::work(format!(
                "the keep threshold {min_score} is not a finite number"
            )))
        }
        KeepRule::Threshold { .. } => {}
    }
    if inputs.is_empty() {
        return Err(DataError::work("no score files to train the classifier on"));
    }
    let mut docs: Vec<ScoredDocument> = Vec::new();
    let mut sources = Vec::new();
    for input in inputs {
        let read = read_scores(&input.path)?;
        sources.push(ScoreSourceReport {
            name: input.name.clone(),
            docs: read.len() as u64,
            null_score_docs: read.iter().filter(|d| d.score.is_none()).count() as u64,
        });
        docs.extend(read);
    }
    let scored: Vec<usize> = (0..docs.len())
        .filter(|&i| docs[i].score.is_some())
        .collect();
    let score_of = |i: usize| docs[i].score.unwrap_or(f64::NAN);
    if scored.is_empty() {
        return Err(DataError::work(format!(
            "none of the {} documents of the score files has a score",
            docs.len()
        )));
    }
    let mut sorted: Vec<f64> = scored.iter().map(|&i| score_of(i)).collect();
    sorted.sort_by(f64::total_cmp);
    let (label_cut, top_fraction) = match params.labels {
        ClassifierLabels::Top { fraction } => (
            stats::quantile_sorted(&sorted, 1.0 - fraction).unwrap_or(f64::NAN),
            Some(fraction),
        ),
        ClassifierLabels::Regression => (
            stats::quantile_sorted(&sorted, 0.5).unwrap_or(f64::NAN),
            None,
        ),
    };
    let good = |i: usize| score_of(i) >= label_cut;
    let ids: Vec<&str> = scored.iter().map(|&i| docs[i].id.as_str()).collect();
    let held = held_out_by_rank(&ids, params.held_out_fraction, params.seed);
    let (mut held_idx, mut train_idx) = (Vec::new(), Vec::new());
    for (&i, &h) in scored.iter().zip(&held) {
        if h {
            held_idx.push(i);
        } else {
            train_idx.push(i);
        }
    }
    if train_idx.is_empty() {
        return Err(DataError::work(format!(
            "held_out_fraction {} leaves none of the {} scored documents to train on",
            params.held_out_fraction,
            scored.len()
        )));
    }
    let config = ClassifierTrainConfig {
        buckets: SAMPLE_CLASSIFIER_BUCKETS,
        held_out_fraction: params.held_out_fraction,
        seed: params.seed,
        ..Default::default()
    };
    let texts: Vec<&str> = train_idx.iter().map(|&i| docs[i].text.as_str()).collect();
    let model = match params.labels {
        ClassifierLabels::Top { .. } => {
            let labels: Vec<bool> = train_idx.iter().map(|&i| good(i)).collect();
            classifier::fit(&texts, Targets::Labels(&labels), &config)
        }
        ClassifierLabels::Regression => {
            let scores: Vec<f64> = train_idx.iter().map(|&i| score_of(i)).collect();
            classifier::fit(&texts, Targets::Scores(&scores), &config)
        }
    }
    .map_err(de)?;
    let all_scores: Vec<f64> = {
        use rayon::prelude::*;
        docs.par_iter().map(|d| model.score(&d.text)).collect()
    };
    let held_model: Vec<f64> = held_idx.iter().map(|&i| all_scores[i]).collect();
    let held_scorer: Vec<f64> = held_idx.iter().map(|&i| score_of(i)).collect();
    let held_good: Vec<bool> = held_idx.iter().map(|&i| good(i)).collect();
    let held_out_accuracy = match (params.labels, held_idx.is_empty()) {
        (ClassifierLabels::Top { .. }, false) => Some(
            held_model
                .iter()
                .zip(&held_good)
                .filter(|(s, g)| (**s >= classifier::DEFAULT_MIN_SCORE) == **g)
                .count() as f64
                / held_idx.len() as f64,
        ),
        _ => None,
    };
    let (keep, keep_fraction, threshold) = match params.keep {
        KeepRule::Threshold { min_score } => ("threshold", None, min_score),
        KeepRule::Fraction { fraction } => (
            "fraction",
            Some(fraction),
            fraction_threshold(&all_scores, fraction).unwrap_or(f64::NAN),
        ),
    };
    let kept = all_scores.iter().filter(|&&s| s >= threshold).count();
    let text = serde_json::to_string(&model).map_err(de)? + "\n";
    kiln_fsio::write(&out_dir.join(CLASSIFIER_FILE), text.as_bytes()).map_err(de)?;
    let regression = model.objective() == Objective::Regression;
    Ok(ClassifierStepReport {
        input_docs: docs.len() as u64,
        kept_docs: scored.len() as u64,
        null_score_docs: (docs.len() - scored.len()) as u64,
        sources,
        labels: match params.labels {
            ClassifierLabels::Top { .. } => "top".into(),
            ClassifierLabels::Regression => "regression".into(),
        },
        top_fraction,
        objective: model.objective(),
        label_cut,
        good_docs: scored.iter().filter(|&&i| good(i)).count() as u64,
        target_mean: regression.then(|| model.target_mean()),
        target_std: regression.then(|| model.target_std()),
        train_docs: train_idx.len() as u64,
        held_out_docs: held_idx.len() as u64,
        held_out_spearman: stats::spearman(&held_model, &held_scorer),
        held_out_auc: stats::auc(&held_model, &held_good),
        held_out_accuracy,
        keep: keep.into(),
        keep_fraction,
        threshold,
        sample_kept_fraction: if docs.is_empty() {
            0.0
        } else {
            kept as f64 / docs.len() as f64
        },
        classifier: config,
    })
}

/// A classifier directory's model and what its report resolved.
#[derive(Clone, Debug)]
pub struct TrainedClassifier {
    pub classifier: Classifier,
    /// The report's `threshold` (absent when the directory has no report).
    pub threshold: Option<f64>,
    /// The report's `label_cut`.
    pub label_cut: Option<f64>,
}

/// Reads `dir`/[`CLASSIFIER_FILE`] and, where there is one, the threshold and label cut of
/// `dir`/report.json; `dir` may also name a classifier file itself (no report then).
pub fn load_classifier(dir: &Path) -> Result<TrainedClassifier, DataError> {
    let (file, report) = if dir.is_dir() {
        (
            dir.join(CLASSIFIER_FILE),
            Some(dir.join(crate::steps::REPORT_FILE)),
        )
    } else {
        (dir.to_path_buf(), None)
    };
    let bytes = std::fs::read(&file).map_err(|e| DataError {
        message: format!("{}: {e}", file.display()),
        io: true,
    })?;
    let classifier: Classifier = serde_json::from_slice(&bytes)
        .map_err(|e| DataError::work(format!("{}: not a classifier: {e}", file.display())))?;
    let mut threshold = None;
    let mut label_cut = None;
    if let Some(report) = report.filter(|r| r.exists()) {
        let text = std::fs::read_to_string(&report).map_err(|e| DataError {
            message: format!("{}: {e}", report.display()),
            io: true,
        })?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| DataError::work(format!("{}: {e}", report.display())))?;
        threshold = v.get("threshold").and_then(serde_json::Value::as_f64);
        label_cut = v.get("label_cut").and_then(serde_json::Value::as_f64);
    }
    Ok(TrainedClassifier {
        classifier,
        threshold,
        label_cut,
    })
}

/// The quality config of the classifier alone, keeping documents scoring at least
/// `min_score`.
pub fn classifier_only(min_score: f64) -> QualityConfig {
    QualityConfig {
        classifier: Some(ClassifierFilterConfig { min_score }),
        ..QualityConfig::none()
    }
}

/// What a `kl_reference` step writes: the reference distribution, its smoothing and the
/// resolved threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KlReferenceFile {
    pub max_kl_nats: f64,
    pub smoothing: f64,
    /// A quantile rule's thresholds by document length (empty for a threshold in nats).
    #[serde(default)]
    pub by_length: Vec<LengthThreshold>,
    pub reference: UnigramReference,
}

impl KlReferenceFile {
    /// The KL rule it defines.
    pub fn config(&self) -> KlConfig {
        KlConfig {
            max_kl_nats: self.max_kl_nats,
            smoothing: self.smoothing,
            by_length: self.by_length.clone(),
        }
    }
}

/// The shortest window of a length-matched quantile, in words (assumption: below this a
/// word distribution says little), doubling up to the longest held-out document.
pub const KL_WINDOW_MIN_WORDS: usize = 16;
/// Windows a length needs for its quantile to be used (assumption: enough for a p99 to
/// rest on more than one window); longer documents take the longest length that has them.
pub const KL_WINDOW_MIN_COUNT: usize = 100;
/// At most this many windows of one length from one document (bounds the work on long
/// reference documents; assumption).
pub const KL_WINDOWS_PER_DOC: usize = 64;

/// The KL of consecutive windows of `words` at every doubling length from
/// [`KL_WINDOW_MIN_WORDS`]: `(length, kl)` pairs.
fn window_kls(reference: &UnigramReference, words: &[&str], smoothing: f64) -> Vec<(usize, f64)> {
    let mut out = Vec::new();
    let mut length = KL_WINDOW_MIN_WORDS;
    while length <= words.len() {
        for window in words.chunks_exact(length).take(KL_WINDOWS_PER_DOC) {
            if let Some(kl) = reference.kl_divergence_nats(window, smoothing) {
                out.push((length, kl));
            }
        }
        length *= 2;
    }
    out
}

/// The `quantile` of each window length's KLs, for the lengths with at least
/// [`KL_WINDOW_MIN_COUNT`] windows.
fn length_thresholds(mut windows: Vec<(usize, f64)>, quantile: f64) -> Vec<LengthThreshold> {
    windows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    windows
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|group| group.len() >= KL_WINDOW_MIN_COUNT)
        .filter_map(|group| {
            let kls: Vec<f64> = group.iter().map(|w| w.1).collect();
            Some(LengthThreshold {
                words: group[0].0 as u64,
                max_kl_nats: stats::quantile_sorted(&kls, quantile)?,
            })
        })
        .collect()
}

/// Quantiles of the held-out reference documents' KL, in nats.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KlQuantiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

/// What [`build_kl_reference`] did (a `kl_reference` step's report).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KlReferenceReport {
    pub input_docs: u64,
    /// Documents counted into the reference distribution.
    pub kept_docs: u64,
    pub held_out_docs: u64,
    /// Held-out documents without words (no KL; the rule removes them).
    pub held_out_no_words_docs: u64,
    pub reference_words: u64,
    pub vocabulary_words: u64,
    pub smoothing: f64,
    /// The held-out documents' KL quantiles (null without held-out documents with words).
    pub held_out_kl: Option<KlQuantiles>,
    /// `nats` or `quantile`.
    pub max: String,
    /// Quantile rule: the quantile asked for.
    pub quantile: Option<f64>,
    /// The resolved threshold over whole held-out documents (the rule's threshold for a
    /// threshold in nats).
    pub max_kl_nats: f64,
    /// A quantile rule's thresholds by document length: the quantile of the KL of windows
    /// of that many words of the held-out documents (what the rule applies).
    pub by_length: Vec<LengthThreshold>,
    /// The fraction of the held-out documents the rule removes at that threshold.
    pub held_out_removed_fraction: Option<f64>,
    pub malformed_lines: u64,
    pub too_large_docs: u64,
    pub malformed: Vec<Malformed>,
    pub too_large: Vec<Malformed>,
}

/// Whether a reference document is held out: `xxh3(seed, id) / 2^64 < fraction` (streaming,
/// the same whatever the order).
fn kl_held_out(id: &str, fraction: f64, seed: u64) -> bool {
    (crate::sample::sample_key(id, seed) as f64 / 18_446_744_073_709_551_616.0) < fraction
}

/// Builds the KL rule's reference from the documents of `config` (a `kl_reference` step):
/// the documents with `xxh3(seed, id)` in the lowest `held_out_fraction` are held out, the
/// word unigrams of the rest (lowercased) make the distribution, the held-out documents' KL
/// (with `smoothing`) is measured, and the threshold is `Nats { nats }` or the `Quantile
/// { quantile }` of the held-out KLs. Writes `out_dir`/[`REFERENCE_FILE`]. Reads the input
/// twice; the counting runs in parallel batches (the same counts for any thread count).
pub fn build_kl_reference(
    config: &IngestConfig,
    params: &KlReferenceParams,
    out_dir: &Path,
    progress: bool,
) -> Result<KlReferenceReport, DataError> {
    use rayon::prelude::*;
    if !(0.0..1.0).contains(&params.held_out_fraction) {
        return Err(DataError::work(format!(
            "held_out_fraction {} is not in [0, 1): the reference needs documents",
            params.held_out_fraction
        )));
    }
    let quantile = match params.max {
        KlMax::Quantile { quantile } => {
            check_fraction("the KL quantile", quantile, true)?;
            Some(quantile)
        }
        KlMax::Nats { .. } => None,
    };
    KlConfig {
        max_kl_nats: match params.max {
            KlMax::Nats { nats } => nats,
            KlMax::Quantile { .. } => 0.0,
        },
        smoothing: params.smoothing,
        by_length: Vec::new(),
    }
    .validate()
    .map_err(de)?;
    let (fraction, seed) = (params.held_out_fraction, params.seed);

    // Pass 1: the reference from the documents not held out.
    let mut reference = UnigramReference::from_texts([], true);
    let mut ingest = Ingest::open(config).map_err(de)?;
    let bar = Progress::new(progress, None, "kl reference: counting words", "docs");
    let (mut input_docs, mut held_out_docs) = (0u64, 0u64);
    let mut batch = Batcher::new(READ_BATCH_DOCS);
    let count = |reference: &mut UnigramReference, texts: &[String]| {
        let part = texts
            .par_chunks(64)
            .map(|c| UnigramReference::from_texts(c.iter().map(String::as_str), true))
            .reduce(
                || UnigramReference::from_texts([], true),
                |mut a, b| {
                    a.merge(b);
                    a
                },
            );
        reference.merge(part);
    };
    for doc in ingest.by_ref() {
        let doc = doc.map_err(de)?;
        input_docs += 1;
        bar.inc(1);
        bar.add_bytes(doc.text.len() as u64);
        if kl_held_out(&doc.id, fraction, seed) {
            held_out_docs += 1;
        } else if batch.push(doc.text) {
            count(&mut reference, &batch.texts);
            batch.clear();
        }
    }
    count(&mut reference, &batch.texts);
    batch.clear();
    bar.finish_and_clear();
    let read = ingest.into_report();

    if reference.total_words() == 0 {
        return Err(DataError::work(format!(
            "the reference documents ({} of {input_docs} not held out) have no words",
            input_docs - held_out_docs
        )));
    }

    // Pass 2: the held-out documents' KL.
    let mut doc_kls: Vec<(usize, f64)> = Vec::new();
    let mut windows: Vec<(usize, f64)> = Vec::new();
    let mut no_words = 0u64;
    if held_out_docs > 0 {
        let bar = Progress::new(progress, Some(input_docs), "kl reference: held out", "docs");
        let mut second = Ingest::open(config).map_err(de)?;
        let measure = |texts: &[String],
                       kls: &mut Vec<(usize, f64)>,
                       windows: &mut Vec<(usize, f64)>,
                       no_words: &mut u64| {
            type Measured = (usize, Option<f64>, Vec<(usize, f64)>);
            let part: Vec<Measured> = texts
                .par_iter()
                .map(|t| {
                    let words = filters::words::split_into_words(t);
                    (
                        words.len(),
                        reference.kl_divergence_nats(&words, params.smoothing),
                        window_kls(&reference, &words, params.smoothing),
                    )
                })
                .collect();
            for (n, kl, w) in part {
                match kl {
                    Some(kl) => kls.push((n, kl)),
                    None => *no_words += 1,
                }
                windows.extend(w);
            }
        };
        for doc in second.by_ref() {
            let doc = doc.map_err(de)?;
            bar.inc(1);
            if kl_held_out(&doc.id, fraction, seed) && batch.push(doc.text) {
                measure(&batch.texts, &mut doc_kls, &mut windows, &mut no_words);
                batch.clear();
            }
        }
        measure(&batch.texts, &mut doc_kls, &mut windows, &mut no_words);
        bar.finish_and_clear();
    }
    let mut kls: Vec<f64> = doc_kls.iter().map(|d| d.1).collect();
    kls.sort_by(f64::total_cmp);
    let q = |p: f64| stats::quantile_sorted(&kls, p);
    let held_out_kl = match (q(0.5), q(0.9), q(0.99)) {
        (Some(p50), Some(p90), Some(p99)) => Some(KlQuantiles { p50, p90, p99 }),
        _ => None,
    };
    let max_kl_nats = match params.max {
        KlMax::Nats { nats } => nats,
        KlMax::Quantile { quantile } => q(quantile).ok_or_else(|| {
            DataError::work(format!(
                "the KL threshold is the {quantile} quantile of the held-out reference \
                 documents' KL, but none of the {input_docs} documents was held out with \
                 words (held_out_fraction {fraction}); hold more out or give the threshold \
                 in nats"
            ))
        })?,
    };
    let by_length = match params.max {
        KlMax::Quantile { quantile } => length_thresholds(windows, quantile),
        KlMax::Nats { .. } => Vec::new(),
    };
    let rule = KlConfig {
        max_kl_nats,
        smoothing: params.smoothing,
        by_length: by_length.clone(),
    };
    let held_out_removed_fraction = (held_out_docs > 0).then(|| {
        let removed = doc_kls
            .iter()
            .filter(|(n, k)| *k > rule.max_for(*n))
            .count() as u64;
        (removed + no_words) as f64 / held_out_docs as f64
    });
    let file = KlReferenceFile {
        max_kl_nats,
        smoothing: params.smoothing,
        by_length: by_length.clone(),
        reference,
    };
    let text = serde_json::to_string(&file).map_err(de)? + "\n";
    kiln_fsio::write(&out_dir.join(REFERENCE_FILE), text.as_bytes()).map_err(de)?;
    Ok(KlReferenceReport {
        input_docs,
        kept_docs: input_docs - held_out_docs,
        held_out_docs,
        held_out_no_words_docs: no_words,
        reference_words: file.reference.total_words(),
        vocabulary_words: file.reference.vocabulary_words() as u64,
        smoothing: params.smoothing,
        held_out_kl,
        max: match params.max {
            KlMax::Nats { .. } => "nats".into(),
            KlMax::Quantile { .. } => "quantile".into(),
        },
        quantile,
        max_kl_nats,
        by_length,
        held_out_removed_fraction,
        malformed_lines: read.malformed_lines,
        too_large_docs: read.too_large_docs,
        malformed: first_problems(&read.malformed),
        too_large: first_problems(&read.too_large),
    })
}

/// Reads a `kl_reference` step's `dir`/[`REFERENCE_FILE`].
pub fn load_kl_reference(dir: &Path) -> Result<KlReferenceFile, DataError> {
    let file = dir.join(REFERENCE_FILE);
    let bytes = std::fs::read(&file).map_err(|e| DataError {
        message: format!("{}: {e}", file.display()),
        io: true,
    })?;
    let reference: KlReferenceFile = serde_json::from_slice(&bytes)
        .map_err(|e| DataError::work(format!("{}: not a KL reference: {e}", file.display())))?;
    reference.config().validate().map_err(de)?;
    Ok(reference)
}

/// Documents and tokens removed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokensLost {
    pub docs: u64,
    pub tokens: u64,
    /// `tokens` over the good tokens (null without good tokens).
    pub fraction: Option<f64>,
}

/// The good tokens the heuristics remove, measured on a source's scored sample: over the
/// documents rated good (scorer's score ≥ the classifier's `label_cut`), with the scorer's
/// token counts, what each heuristic family that is on removes alone and what they remove
/// together (the classifier excluded). A document counts when it is removed whole (lines C4
/// drops from a kept document are not counted).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GoodTokensLost {
    pub label_cut: f64,
    /// Sample documents with a score.
    pub scored_docs: u64,
    pub good_docs: u64,
    pub good_tokens: u64,
    /// Per family that is on (`gopher_repetition`, `gopher_quality`, `c4`, `fineweb`, `kl`),
    /// alone.
    pub families: std::collections::BTreeMap<String, TokensLost>,
    /// Every family that is on, together.
    pub all: TokensLost,
}

/// Measures [`GoodTokensLost`] of `scored` under the families of `quality` (its classifier
/// ignored) with `models`.
pub fn good_tokens_lost(
    scored: &[ScoredDocument],
    label_cut: f64,
    quality: &QualityConfig,
    models: Models<'_>,
) -> Result<GoodTokensLost, DataError> {
    use rayon::prelude::*;
    let good: Vec<&ScoredDocument> = scored
        .iter()
        .filter(|d| d.score.is_some_and(|s| s >= label_cut))
        .collect();
    if let Some(d) = good.iter().find(|d| d.tokens.is_none()) {
        return Err(DataError::work(format!(
            "scored document `{}` has no token count (`tokens`)",
            d.id
        )));
    }
    // Each heuristic family that is on, alone (the classifier is not a heuristic).
    let configs: Vec<(String, QualityConfig)> = [
        Family::GopherRepetition,
        Family::GopherQuality,
        Family::C4,
        Family::Fineweb,
        Family::Kl,
    ]
    .into_iter()
    .filter_map(|f| Some((f.name().to_string(), quality.only(f)?)))
    .collect();
    let all = QualityConfig {
        classifier: None,
        ..quality.clone()
    };
    let family_filters = configs
        .iter()
        .map(|(_, c)| filters::QualityFilter::new(c, models))
        .collect::<Result<Vec<_>, _>>()
        .map_err(de)?;
    let all_filter = filters::QualityFilter::new(&all, models).map_err(de)?;
    // Per good document: removed by each family alone, and by all together.
    let removed: Vec<(Vec<bool>, bool)> = good
        .par_iter()
        .map(|d| {
            let alone = family_filters
                .iter()
                .map(|f| f.judge(&d.text).removed_by.is_some())
                .collect();
            (alone, all_filter.judge(&d.text).removed_by.is_some())
        })
        .collect();
    let tokens = |d: &ScoredDocument| d.tokens.unwrap_or(0);
    let good_tokens: u64 = good.iter().map(|d| tokens(d)).sum();
    let lost = |hit: &dyn Fn(usize) -> bool| {
        let (mut docs, mut toks) = (0u64, 0u64);
        for (i, d) in good.iter().enumerate() {
            if hit(i) {
                docs += 1;
                toks += tokens(d);
            }
        }
        TokensLost {
            docs,
            tokens: toks,
            fraction: (good_tokens > 0).then(|| toks as f64 / good_tokens as f64),
        }
    };
    let families = configs
        .iter()
        .enumerate()
        .map(|(f, (name, _))| (name.clone(), lost(&|i| removed[i].0[f])))
        .collect();
    Ok(GoodTokensLost {
        label_cut,
        scored_docs: scored.iter().filter(|d| d.score.is_some()).count() as u64,
        good_docs: good.len() as u64,
        good_tokens,
        families,
        all: lost(&|i| removed[i].1),
    })
}
