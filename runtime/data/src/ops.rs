//! The data operations a plan's steps and the `kiln data` commands share: exact and near
//! deduplication, the quality filters, tokenizer training and encoding, each over documents
//! read with an `IngestConfig` and written whole (kiln-fsio), with the one failure type
//! [`DataError`] (whether a file could not be read or written, or the work failed).

use std::path::Path;

use serde::Serialize;

use crate::exact::{BloomFilter, ExactDedup, ExactKey};
use crate::filters::{self, classifier::ClassifierFilterConfig, FilterReport, QualityConfig};
use crate::ingest::{
    Document, Ingest, IngestConfig, IngestError, JsonlWriter, Malformed, MAX_BATCH_BYTES,
};
use crate::near::{NearDedup, NearParams, BATCH_DOCS};
use crate::progress::Progress;
use crate::shards::{self, ShardEncoder, ENCODE_BATCH_DOCS};
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
/// `gopher_repetition` and `gopher_quality` name Gopher's two families alone) and
/// classifier threshold.
pub fn quality_config(
    heuristics: &[String],
    classifier_threshold: Option<f64>,
) -> Result<QualityConfig, DataError> {
    let mut config = QualityConfig {
        gopher_repetition: None,
        gopher_quality: None,
        c4: None,
        fineweb: None,
        kl: None,
        classifier: None,
    };
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
    if let Some(t) = classifier_threshold {
        config.classifier = Some(ClassifierFilterConfig { min_score: t });
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

/// Quality-filters the documents of `config` into `output` (atomically).
pub fn filter_documents(
    config: &IngestConfig,
    quality: &QualityConfig,
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
    let report = filters::filter_stream(
        docs,
        quality,
        filters::Models::default(),
        |doc: Document| {
            if write_error.is_none() {
                if let Err(e) = writer.write(&doc) {
                    write_error = Some(e);
                }
            }
        },
    )
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
