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

use crate::ingest::{Ingest, IngestConfig, JsonlWriter, Malformed, DEFAULT_MAX_DOCUMENT_BYTES};
use crate::mix::{self, MixConfig, MixSource};
use crate::near::{NearParams, MINHASH_SEED};
use crate::plan::{self, Plan, PlanError, Step, StepKind, StepParams};
use crate::progress::Progress;
use crate::shards::{self, IndexedDataset};
use crate::tokenize::{self, ModelKind, Pretokenize, TrainConfig};

use crate::ops::de;
use crate::ops::{
    apply_thresholds, dedup_documents, encode_documents, filter_documents, quality_config,
    train_tokenizer, DataError, ExactSettings,
};

/// The documents a text step writes.
pub use kiln_plan::run_dir::DOCS_FILE;
/// The mix step's held-out set (an indexed dataset prefix).
pub use kiln_plan::run_dir::HELD_OUT_PREFIX;
/// Every step's report.
pub use kiln_plan::run_dir::REPORT_FILE;
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
    /// The step's work failed (or could not read or write a file: `error.io`).
    Failed {
        step: String,
        error: DataError,
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
            StepError::Failed { step, error } => write!(f, "step `{step}` failed: {error}"),
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
    let failed = |error: DataError| StepError::Failed {
        step: step.name.clone(),
        error,
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
    let work = AtomicDir::create(&output).map_err(|e| failed(de(e)))?;
    let mut report = execute(plan, step, &inputs, work.path(), ctx).map_err(failed)?;
    if let Value::Object(map) = &mut report {
        let mut head = serde_json::Map::new();
        head.insert("step".into(), json!(step.name));
        head.insert("id".into(), json!(step.id));
        head.insert("kind".into(), json!(step.kind().name()));
        head.extend(std::mem::take(map));
        *map = head;
    }
    let text = serde_json::to_string_pretty(&report).map_err(|e| failed(de(e)))? + "\n";
    kiln_fsio::write(&work.path().join(REPORT_FILE), text.as_bytes()).map_err(|e| failed(de(e)))?;
    // Another worker finished the same step first: its output stands (dropping `work`
    // removes ours).
    if output.is_dir() {
        return Ok(StepOutcome::AlreadyDone { output });
    }
    work.commit().map_err(|e| failed(de(e)))?;
    Ok(StepOutcome::Done { output, report })
}

fn execute(
    plan: &Plan,
    step: &Step,
    inputs: &[(&Step, PathBuf)],
    out: &Path,
    ctx: &StepContext,
) -> Result<Value, DataError> {
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
            .map_err(de)?;
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
            .map_err(de)?;
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
            .map_err(de)?;
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
            let report = train_tokenizer(&config, train, out, ctx.progress).map_err(de)?;
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
            let tokenizer = tokenize::load(tok_dir).map_err(de)?;
            let (_, eod) = tokenize::eod_token(&tokenizer)
                .ok_or("the tokenizer has no end-of-document token")?;
            let report = encode_documents(
                &docs_config(plan, docs),
                &tokenizer,
                eod,
                &out.join(shards::DATA_PREFIX),
                ctx.progress,
            )
            .map_err(de)?;
            for file in [tokenize::TOKENIZER_FILE, tokenize::TOKENIZER_CONFIG_FILE] {
                let from = tok_dir.join(file);
                if from.exists() {
                    let bytes = fs::read(&from).map_err(|e| format!("{}: {e}", from.display()))?;
                    kiln_fsio::write(&out.join(file), &bytes).map_err(de)?;
                }
            }
            to_value(&report)
        }
        StepParams::Mix(p) => mix_step(plan, p, inputs, out, ctx),
        StepParams::Train(_) | StepParams::Evaluate(_) => Err(DataError::work(format!(
            "{} is not a data step",
            step.kind().name()
        ))),
    }
}

fn to_value<T: Serialize>(report: &T) -> Result<Value, DataError> {
    serde_json::to_value(report).map_err(de)
}

fn single_input<'a>(inputs: &'a [(&Step, PathBuf)]) -> Result<&'a (&'a Step, PathBuf), DataError> {
    match inputs {
        [one] => Ok(one),
        _ => Err(DataError::work(format!(
            "expected one input step, found {}",
            inputs.len()
        ))),
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

fn ingest_step(p: &plan::IngestParams, out: &Path, ctx: &StepContext) -> Result<Value, DataError> {
    let path = Path::new(&p.path);
    let resolved = if path.is_absolute() {
        path.to_path_buf()
    } else {
        ctx.source_root.join(path)
    };
    let mut config = IngestConfig::new(vec![resolved]);
    config.text_field = p.text_field.clone();
    config.max_document_bytes = p.max_document_bytes.unwrap_or(DEFAULT_MAX_DOCUMENT_BYTES);
    let mut ingest = Ingest::open(&config).map_err(de)?;
    let mut writer = JsonlWriter::create(&out.join(DOCS_FILE)).map_err(de)?;
    let bar = Progress::new(ctx.progress, None, &format!("ingest {}", p.source), "docs");
    // Ids are `PATH:LINE`; the source root is cut off so they do not depend on where the
    // project lives.
    let root = format!("{}/", ctx.source_root.display());
    for doc in ingest.by_ref() {
        let mut doc = doc.map_err(de)?;
        if let Some(rest) = doc.id.strip_prefix(&root) {
            doc.id = rest.to_string();
        }
        writer.write(&doc).map_err(de)?;
        bar.inc(1);
        bar.add_bytes(doc.text.len() as u64);
    }
    bar.finish_and_clear();
    writer.finish().map_err(de)?;
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

fn mix_step(
    plan: &Plan,
    p: &plan::MixParams,
    inputs: &[(&Step, PathBuf)],
    out: &Path,
    ctx: &StepContext,
) -> Result<Value, DataError> {
    let mut datasets = Vec::new();
    for (source, weight) in &p.mix {
        let dir = inputs
            .iter()
            .find(|(s, _)| matches!(&s.params, StepParams::Encode(e) if e.source == *source))
            .map(|(_, d)| d)
            .ok_or_else(|| format!("no encode step input for source `{source}`"))?;
        let dataset = IndexedDataset::open(&dir.join(shards::DATA_PREFIX)).map_err(de)?;
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
    .map_err(de)?;
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
