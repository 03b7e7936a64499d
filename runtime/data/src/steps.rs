//! Runs one data step of a run plan (ingest, exact and near dedup, quality filter, tokenizer
//! training, encoding, mixing): inputs from the input steps' output directories, the output
//! directory written whole or not at all, a JSON report in it.
//!
//! # Directories
//! Paths in the plan are relative to the run directory ([`StepContext::run_dir`]); source
//! paths in `ingest` steps that are relative are read from [`StepContext::source_root`]
//! (the project the experiment came from). A step fills a hidden temporary directory beside
//! `<output>` (`kiln_fsio::AtomicDir`: `.NAME.kiln-PID-RANDOM.tmp`) and renames it to
//! `<output>` when everything in it is complete, so an existing output means the step is
//! done ([`StepOutcome::AlreadyDone`]) and a killed step leaves only a temporary directory,
//! which the next run of the step removes (when the process that made it is gone) before
//! starting again.
//!
//! # What each step leaves in its output directory
//! | step | files |
//! | --- | --- |
//! | ingest, exact_dedup, near_dedup, quality_filter | [`DOCS_FILE`]: `{"id", "text"}` lines (the ids of the source's lines carried through) |
//! | train_tokenizer | `tokenizer.json`, `tokenizer_config.json` (see `tokenize`) |
//! | encode | `text_document.bin/.idx` (see `shards`) and a copy of the tokenizer files |
//! | mix | `text_document.bin/.idx` (the phase's training stream), `held_out_document.bin/.idx` |
//!
//! and [`REPORT_FILE`], whose fields always include `step`, `kind`, `input_docs` and
//! `kept_docs`, plus what the step counted (`removed` per rule, `tokens`, epochs, …; the
//! steps that read documents also `malformed_lines` and `too_large_docs`, with the first of
//! each listed). Reports hold no times or machine paths, so a re-run writes the same bytes.
//!
//! # Document size
//! The ingest step skips documents above its `max_document_bytes` parameter (the default
//! `ingest::DEFAULT_MAX_DOCUMENT_BYTES` when the plan gives none) and counts them; the
//! steps after it read with the plan's largest such limit, so they drop nothing ingest
//! kept. Parallel batches hold at most `ingest::MAX_BATCH_BYTES` of text besides one
//! document, and the tokenizer steps work on pieces of a long document (`tokenize::pieces`),
//! so a step's memory stays bounded whatever the documents.
//!
//! # Progress
//! Every step that reads documents or draws tokens shows its progress on stderr when
//! [`StepContext::progress`] is on (by default): an indicatif bar on a terminal, a line
//! every few seconds otherwise (see `progress`).

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Value};

use kiln_fsio::AtomicDir;

use crate::exact::{BloomFilter, ExactDedup, ExactKey};
use crate::filters::{self, classifier::ClassifierFilterConfig, FilterReport, QualityConfig};
use crate::ingest::{
    Document, Ingest, IngestConfig, IngestError, JsonlWriter, Malformed,
    DEFAULT_MAX_DOCUMENT_BYTES, MAX_BATCH_BYTES,
};
use crate::mix::{self, MixConfig, MixSource};
use crate::near::{NearDedup, NearParams, BATCH_DOCS, MINHASH_SEED};
use crate::plan::{self, Plan, PlanError, Step, StepKind, StepParams};
use crate::progress::Progress;
use crate::shards::{self, IndexedDataset, ShardEncoder, ENCODE_BATCH_DOCS};
use crate::tokenize::{self, ModelKind, Pretokenize, TrainConfig, WordCounter};

/// The documents a text step writes.
pub const DOCS_FILE: &str = "docs.jsonl.zst";
/// Every step's report.
pub const REPORT_FILE: &str = "report.json";
/// The mix step's held-out set (an indexed dataset prefix).
pub const HELD_OUT_PREFIX: &str = "held_out_document";
/// Documents read per batch by the steps that work in parallel batches.
pub const READ_BATCH_DOCS: usize = 4096;

/// Where a step runs.
#[derive(Clone, Debug)]
pub struct StepContext {
    /// The run directory: the plan's output paths are relative to it.
    pub run_dir: PathBuf,
    /// Where relative source paths are read from.
    pub source_root: PathBuf,
    /// Whether to show progress on stderr (a bar on a terminal, log lines otherwise).
    pub progress: bool,
}

impl StepContext {
    /// Runs in `run_dir`, reading relative sources from `source_root`, with progress shown.
    pub fn new(run_dir: PathBuf, source_root: PathBuf) -> Self {
        StepContext {
            run_dir,
            source_root,
            progress: true,
        }
    }
}

/// What running a step did.
#[derive(Clone, Debug, PartialEq)]
pub enum StepOutcome {
    /// The step ran; its output directory and report.
    Done { output: PathBuf, report: Value },
    /// The output directory already existed: nothing was done.
    AlreadyDone { output: PathBuf },
}

/// A step failure.
#[derive(Debug)]
pub enum StepError {
    Plan(PlanError),
    /// A training or unknown step: not kiln-data's to run.
    NotData {
        step: String,
        kind: StepKind,
    },
    /// An input step whose output directory does not exist yet.
    InputNotDone {
        step: String,
        input: String,
    },
    /// Anything else, in words (the source error's message).
    Failed {
        step: String,
        why: String,
    },
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Plan(e) => e.fmt(f),
            StepError::NotData { step, kind } => {
                write!(
                    f,
                    "step `{step}` is a {} step, not a data step",
                    kind.name()
                )
            }
            StepError::InputNotDone { step, input } => write!(
                f,
                "step `{step}` reads the output of `{input}`, which has not run yet"
            ),
            StepError::Failed { step, why } => write!(f, "step `{step}` failed: {why}"),
        }
    }
}

impl std::error::Error for StepError {}

impl From<PlanError> for StepError {
    fn from(e: PlanError) -> Self {
        StepError::Plan(e)
    }
}

/// Runs the step `id` (or name) of `plan` (see the module doc).
pub fn run_step(plan: &Plan, id: &str, ctx: &StepContext) -> Result<StepOutcome, StepError> {
    let step = plan.step(id)?;
    if step.kind().is_training() {
        return Err(StepError::NotData {
            step: step.name.clone(),
            kind: step.kind(),
        });
    }
    let output = ctx.run_dir.join(step.output()?);
    if output.is_dir() {
        return Ok(StepOutcome::AlreadyDone { output });
    }
    let failed = |why: String| StepError::Failed {
        step: step.name.clone(),
        why,
    };
    let mut inputs = Vec::with_capacity(step.inputs.len());
    for input_id in &step.inputs {
        let input = plan.step(input_id)?;
        let dir = ctx.run_dir.join(input.output()?);
        if !dir.is_dir() {
            return Err(StepError::InputNotDone {
                step: step.name.clone(),
                input: input.name.clone(),
            });
        }
        inputs.push((input, dir));
    }
    // Stale temporaries of killed runs of this step are removed here.
    let work = AtomicDir::create(&output).map_err(|e| failed(e.to_string()))?;
    let mut report = execute(plan, step, &inputs, work.path(), ctx).map_err(failed)?;
    if let Value::Object(map) = &mut report {
        let mut head = serde_json::Map::new();
        head.insert("step".into(), json!(step.name));
        head.insert("id".into(), json!(step.id));
        head.insert("kind".into(), json!(step.kind().name()));
        head.extend(std::mem::take(map));
        *map = head;
    }
    let text = serde_json::to_string_pretty(&report).map_err(|e| failed(e.to_string()))? + "\n";
    kiln_fsio::write(&work.path().join(REPORT_FILE), text.as_bytes())
        .map_err(|e| failed(e.to_string()))?;
    // Another worker finished the same step first: its output stands (dropping `work`
    // removes ours).
    if output.is_dir() {
        return Ok(StepOutcome::AlreadyDone { output });
    }
    work.commit().map_err(|e| failed(e.to_string()))?;
    Ok(StepOutcome::Done { output, report })
}

fn execute(
    plan: &Plan,
    step: &Step,
    inputs: &[(&Step, PathBuf)],
    out: &Path,
    ctx: &StepContext,
) -> Result<Value, String> {
    match &step.params {
        StepParams::Ingest(p) => ingest_step(p, out, ctx),
        StepParams::ExactDedup(p) => {
            let input = single_input(inputs)?;
            let expected = p.expected_docs.or_else(|| report_count(input, "kept_docs"));
            let exact = ExactSettings {
                false_positive: p.false_positive,
                expected_docs: expected,
            };
            let report = dedup_documents(
                &docs_config(plan, input),
                Some(&exact),
                None,
                &out.join(DOCS_FILE),
                ctx.progress,
            )
            .map_err(|e| e.to_string())?;
            to_value(&report)
        }
        StepParams::NearDedup(p) => {
            let input = single_input(inputs)?;
            let near = NearParams {
                ngram: p.ngram as usize,
                bands: p.bands as usize,
                rows: p.rows as usize,
                seed: MINHASH_SEED,
            };
            let report = dedup_documents(
                &docs_config(plan, input),
                None,
                Some(near),
                &out.join(DOCS_FILE),
                ctx.progress,
            )
            .map_err(|e| e.to_string())?;
            to_value(&report)
        }
        StepParams::QualityFilter(p) => {
            let mut config = quality_config(&p.heuristics, p.classifier_threshold)?;
            apply_thresholds(&mut config, &p.thresholds)?;
            let input = single_input(inputs)?;
            let report = filter_documents(
                &docs_config(plan, input),
                &config,
                &out.join(DOCS_FILE),
                ctx.progress,
            )
            .map_err(|e| e.to_string())?;
            to_value(&report)
        }
        StepParams::TrainTokenizer(p) => {
            let kind = ModelKind::parse(p.kind.as_str()).ok_or_else(|| {
                format!("tokenizer kind `{}`; kiln trains bpe or unigram", p.kind)
            })?;
            let pretokenize = match &p.pretokenize {
                None => kind.default_pretokenize(),
                Some(name) => Pretokenize::parse(name).ok_or_else(|| {
                    format!("pre-tokenisation `{name}`; kiln knows byte_level and metaspace")
                })?,
            };
            let dirs: Vec<PathBuf> = inputs.iter().map(|(_, d)| d.join(DOCS_FILE)).collect();
            let train = TrainConfig {
                kind,
                vocab_size: p.vocab,
                pretokenize,
            };
            let mut config = IngestConfig::new(dirs).with_ids();
            config.max_document_bytes = plan_document_limit(plan);
            let report =
                train_tokenizer(&config, train, out, ctx.progress).map_err(|e| e.to_string())?;
            to_value(&report)
        }
        StepParams::Encode(_) => {
            let tok_dir = inputs
                .iter()
                .find(|(s, _)| s.kind() == StepKind::TrainTokenizer)
                .map(|(_, d)| d)
                .ok_or("an encode step needs a train_tokenizer input")?;
            let docs = inputs
                .iter()
                .find(|(s, _)| s.kind() != StepKind::TrainTokenizer)
                .ok_or("an encode step needs a documents input")?;
            let tokenizer = tokenize::load(tok_dir).map_err(|e| e.to_string())?;
            let (_, eod) = tokenize::eod_token(&tokenizer)
                .ok_or("the tokenizer has no end-of-document token")?;
            let report = encode_documents(
                &docs_config(plan, docs),
                &tokenizer,
                eod,
                &out.join(shards::DATA_PREFIX),
                ctx.progress,
            )
            .map_err(|e| e.to_string())?;
            for file in [tokenize::TOKENIZER_FILE, tokenize::TOKENIZER_CONFIG_FILE] {
                let from = tok_dir.join(file);
                if from.exists() {
                    let bytes = fs::read(&from).map_err(|e| format!("{}: {e}", from.display()))?;
                    kiln_fsio::write(&out.join(file), &bytes).map_err(|e| e.to_string())?;
                }
            }
            to_value(&report)
        }
        StepParams::Mix(p) => mix_step(plan, p, inputs, out, ctx),
        StepParams::Train(_) | StepParams::Evaluate(_) => {
            Err(format!("{} is not a data step", step.kind().name()))
        }
    }
}

fn to_value<T: Serialize>(report: &T) -> Result<Value, String> {
    serde_json::to_value(report).map_err(|e| e.to_string())
}

fn single_input<'a>(inputs: &'a [(&Step, PathBuf)]) -> Result<&'a (&'a Step, PathBuf), String> {
    match inputs {
        [one] => Ok(one),
        _ => Err(format!("expected one input step, found {}", inputs.len())),
    }
}

/// Reads the documents a text step wrote (ids carried through), with the plan's largest
/// document limit, so no step drops a document its ingest step kept.
fn docs_config(plan: &Plan, input: &(&Step, PathBuf)) -> IngestConfig {
    let mut config = IngestConfig::new(vec![input.1.join(DOCS_FILE)]).with_ids();
    config.max_document_bytes = plan_document_limit(plan);
    config
}

/// The largest `max_document_bytes` of the plan's ingest steps (the default where a step
/// gives none).
fn plan_document_limit(plan: &Plan) -> u64 {
    plan.steps
        .iter()
        .filter_map(|s| match &s.params {
            StepParams::Ingest(p) => Some(p),
            _ => None,
        })
        .map(|p| p.max_document_bytes.unwrap_or(DEFAULT_MAX_DOCUMENT_BYTES))
        .max()
        .unwrap_or(DEFAULT_MAX_DOCUMENT_BYTES)
}

/// A count from an input step's report, if it has one.
fn report_count(input: &(&Step, PathBuf), field: &str) -> Option<u64> {
    let text = fs::read_to_string(input.1.join(REPORT_FILE)).ok()?;
    serde_json::from_str::<Value>(&text)
        .ok()?
        .get(field)?
        .as_u64()
}

/// The first `limit` lines of `list` (an ingest report's malformed or too-large lines), for
/// the step's report, their paths relative to the source root.
fn malformed_json(list: &[Malformed], source_root: &Path, limit: usize) -> Value {
    Value::Array(
        list.iter()
            .take(limit)
            .map(|m| {
                let path = m.path.strip_prefix(source_root).unwrap_or(&m.path);
                json!({ "path": path.display().to_string(), "line": m.line, "reason": m.reason })
            })
            .collect(),
    )
}

fn ingest_step(p: &plan::IngestParams, out: &Path, ctx: &StepContext) -> Result<Value, String> {
    let path = Path::new(&p.path);
    let resolved = if path.is_absolute() {
        path.to_path_buf()
    } else {
        ctx.source_root.join(path)
    };
    let mut config = IngestConfig::new(vec![resolved]);
    config.text_field = p.text_field.clone();
    config.max_document_bytes = p.max_document_bytes.unwrap_or(DEFAULT_MAX_DOCUMENT_BYTES);
    let mut ingest = Ingest::open(&config).map_err(|e| e.to_string())?;
    let mut writer = JsonlWriter::create(&out.join(DOCS_FILE)).map_err(|e| e.to_string())?;
    let bar = Progress::new(ctx.progress, None, &format!("ingest {}", p.source), "docs");
    // Ids are `PATH:LINE`; the source root is cut off so they do not depend on where the
    // project lives.
    let root = format!("{}/", ctx.source_root.display());
    for doc in ingest.by_ref() {
        let mut doc = doc.map_err(|e| e.to_string())?;
        if let Some(rest) = doc.id.strip_prefix(&root) {
            doc.id = rest.to_string();
        }
        writer.write(&doc).map_err(|e| e.to_string())?;
        bar.inc(1);
        bar.add_bytes(doc.text.len() as u64);
    }
    bar.finish_and_clear();
    writer.finish().map_err(|e| e.to_string())?;
    let report = ingest.into_report();
    Ok(json!({
        "source": p.source,
        "files": report.files,
        "input_docs": report.docs,
        "kept_docs": report.docs,
        "removed": {
            "malformed_lines": report.malformed_lines,
            "too_large_docs": report.too_large_docs,
        },
        "max_document_bytes": config.max_document_bytes,
        "malformed": malformed_json(&report.malformed, &ctx.source_root, 100),
        "too_large": malformed_json(&report.too_large, &ctx.source_root, 100),
    }))
}

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

fn de<E: std::error::Error + 'static>(e: E) -> DataError {
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
) -> Result<QualityConfig, String> {
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
                return Err(format!(
                    "quality heuristic `{other}`; kiln knows gopher, gopher_repetition, gopher_quality, c4 and fineweb"
                ))
            }
        }
    }
    if let Some(t) = classifier_threshold {
        config.classifier = Some(ClassifierFilterConfig { min_score: t });
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// Turns on each family the experiment gives thresholds for, with those thresholds over
/// its defaults. Field names are checked by the configs' `deny_unknown_fields`.
pub fn apply_thresholds(
    config: &mut QualityConfig,
    thresholds: &std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
) -> Result<(), String> {
    fn merged<T: serde::Serialize + serde::de::DeserializeOwned + Default>(
        current: &Option<T>,
        overrides: &serde_json::Map<String, serde_json::Value>,
        family: &str,
    ) -> Result<T, String> {
        let base = current
            .as_ref()
            .map(serde_json::to_value)
            .unwrap_or_else(|| serde_json::to_value(T::default()));
        let mut value = base.map_err(|e| e.to_string())?;
        for (k, v) in overrides {
            value[k] = v.clone();
        }
        serde_json::from_value(value).map_err(|e| format!("quality thresholds of `{family}`: {e}"))
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
                return Err(format!(
                    "quality thresholds for an unknown family `{other}`"
                ))
            }
        }
    }
    config.validate().map_err(|e| e.to_string())
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

fn mix_step(
    plan: &Plan,
    p: &plan::MixParams,
    inputs: &[(&Step, PathBuf)],
    out: &Path,
    ctx: &StepContext,
) -> Result<Value, String> {
    let mut datasets = Vec::new();
    for (source, weight) in &p.mix {
        let dir = inputs
            .iter()
            .find(|(s, _)| matches!(&s.params, StepParams::Encode(e) if e.source == *source))
            .map(|(_, d)| d)
            .ok_or_else(|| format!("no encode step input for source `{source}`"))?;
        let dataset =
            IndexedDataset::open(&dir.join(shards::DATA_PREFIX)).map_err(|e| e.to_string())?;
        let max_epochs = plan
            .source(source)
            .map(|s| s.max_epochs)
            .unwrap_or(f64::INFINITY);
        datasets.push((source.clone(), *weight, dataset, max_epochs));
    }
    let sources: Vec<MixSource> = datasets
        .iter()
        .map(|(name, weight, dataset, max_epochs)| MixSource {
            name: name.clone(),
            weight: *weight,
            dataset,
            max_epochs: *max_epochs,
        })
        .collect();
    let config = MixConfig {
        phase: p.phase.clone(),
        train_tokens: p.tokens.max(0.0).ceil() as u64,
        held_out_tokens: p.held_out_tokens.max(0.0).ceil() as u64,
        seed: p.seed,
    };
    let bar = Progress::new(
        ctx.progress,
        Some(config.train_tokens),
        &format!("mix {}", p.phase),
        "tokens",
    );
    let report = mix::mix(
        &sources,
        &config,
        &out.join(shards::DATA_PREFIX),
        &out.join(HELD_OUT_PREFIX),
        |drawn| bar.set_position(drawn.min(config.train_tokens)),
    )
    .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    let mut value = to_value(&report)?;
    if let Value::Object(map) = &mut value {
        let input_docs: u64 = report.sources.iter().map(|s| s.docs).sum();
        map.insert("input_docs".into(), json!(input_docs));
        map.insert("kept_docs".into(), json!(report.train_docs));
        map.insert("tokens".into(), json!(report.train_tokens));
    }
    Ok(value)
}
