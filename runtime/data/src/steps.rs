//! Runs one data step of a run plan (ingest, exact and near dedup, sample, quality filter
//! with its model steps — train_classifier, kl_reference —, tokenizer training, encoding,
//! mixing): inputs from the input steps' output directories, the output directory written
//! whole or not at all, a JSON report in it. `score` is kiln-train's (it runs a model);
//! its `scores.jsonl` is read here ([`crate::scores`]).
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
//! | ingest, exact_dedup, near_dedup, sample, quality_filter | [`DOCS_FILE`]: `{"id", "text"}` lines (the ids of the source's lines carried through) |
//! | train_classifier | [`CLASSIFIER_FILE`] (the classifier; its resolved `threshold` and `label_cut` are in the report) |
//! | kl_reference | [`REFERENCE_FILE`] (the reference distribution, `smoothing`, the resolved `max_kl_nats`) |
//! | train_tokenizer | `tokenizer.json`, `tokenizer_config.json` (see `tokenize`) |
//! | encode | `text_document.bin/.idx` (see `shards`) and a copy of the tokenizer files |
//! | mix | `text_document.bin/.idx` (the phase's training stream), `held_out_document.bin/.idx` |
//!
//! and [`REPORT_FILE`], whose fields always include `step`, `kind`, `input_docs` and
//! `kept_docs`, plus what the step counted (`removed` per rule, `tokens`, epochs, …; the
//! steps that read documents also `malformed_lines` and `too_large_docs`, with the first of
//! each listed). Reports hold no times or machine paths, so a re-run writes the same bytes.
//!
//! # The quality filter's inputs
//! Found by kind: one documents step (ingest, exact_dedup or near_dedup); a train_classifier
//! step when `quality.classifier` is on and a kl_reference step when `quality.kl` is on (a
//! family on without its step, or a step without its family, is an error); and optionally
//! the source's score step, whose scored sample gives the report's `good_tokens_lost` (the
//! good tokens each heuristic family removes, `ops::good_tokens_lost`).
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

use crate::filters::Models;
use crate::ops::de;
use crate::ops::{
    apply_thresholds, build_kl_reference, dedup_documents, encode_documents, filter_documents,
    good_tokens_lost, load_classifier, load_kl_reference, quality_config, train_quality_classifier,
    train_tokenizer, DataError, ExactSettings, ScoreInput,
};
use crate::sample::sample_documents;
use crate::scores::{read_scores, SCORES_FILE};

/// The classifier a `train_classifier` step writes.
pub use crate::ops::CLASSIFIER_FILE;
/// The reference distribution a `kl_reference` step writes.
pub use crate::ops::REFERENCE_FILE;
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
        StepParams::QualityFilter(p) => quality_step(plan, step, p, inputs, out, ctx),
        StepParams::Sample(p) => {
            let input = single_input(inputs)?;
            let report = sample_documents(
                &docs_config(plan, input),
                p.docs,
                p.seed,
                &out.join(DOCS_FILE),
                ctx.progress,
            )?;
            if report.short_by > 0 {
                eprintln!(
                    "warning: {}: the source has {} documents, {} fewer than the {} asked for; \
                     every one is in the sample",
                    step.name, report.input_docs, report.short_by, report.requested_docs
                );
            }
            let mut value = to_value(&report)?;
            value["source"] = json!(p.source);
            Ok(value)
        }
        StepParams::TrainClassifier(p) => {
            let mut scores = Vec::new();
            for (input, dir) in inputs {
                if input.kind() != StepKind::Score {
                    return Err(DataError::work(format!(
                        "a train_classifier step reads score steps, not the {} step `{}`",
                        input.kind().name(),
                        input.name
                    )));
                }
                scores.push(ScoreInput {
                    name: input.name.clone(),
                    path: dir.join(SCORES_FILE),
                });
            }
            to_value(&train_quality_classifier(&scores, p, out)?)
        }
        StepParams::KlReference(p) => {
            let input = single_input(inputs)?;
            let report = build_kl_reference(&docs_config(plan, input), p, out, ctx.progress)?;
            let mut value = to_value(&report)?;
            value["source"] = json!(p.source);
            Ok(value)
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
        StepParams::Train(_) | StepParams::Evaluate(_) | StepParams::Score(_) => Err(
            DataError::work(format!("{} is not a data step", step.kind().name())),
        ),
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

/// The one input of a kind, if any (more than one is an error).
fn at_most_one<'a, 'b>(
    found: &[&'a (&'b Step, PathBuf)],
    kind: &str,
    step: &str,
) -> Result<Option<&'a (&'b Step, PathBuf)>, DataError> {
    match found {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(DataError::work(format!(
            "`{step}` has {} {kind} inputs; it reads at most one",
            found.len()
        ))),
    }
}

/// The source a step's documents come from: the `source` of the first ingest or sample step
/// up its chain of first inputs.
fn source_of(plan: &Plan, step: &Step) -> Option<String> {
    let mut s = step;
    for _ in 0..64 {
        match &s.params {
            StepParams::Ingest(p) => return Some(p.source.clone()),
            StepParams::Sample(p) => return Some(p.source.clone()),
            _ => s = plan.step(s.inputs.first()?).ok()?,
        }
    }
    None
}

/// The quality filter: its inputs found by kind — the documents (one ingest, exact_dedup or
/// near_dedup step), a `train_classifier` step (its classifier and resolved threshold) when
/// `quality.classifier` is on, a `kl_reference` step (its distribution, smoothing and
/// threshold) when `quality.kl` is on, and optionally the source's `score` step, whose
/// scored sample measures the good tokens the heuristics lose (with the classifier's
/// `label_cut`).
fn quality_step(
    plan: &Plan,
    step: &Step,
    p: &plan::QualityParams,
    inputs: &[(&Step, PathBuf)],
    out: &Path,
    ctx: &StepContext,
) -> Result<Value, DataError> {
    let of_kind = |kinds: &[StepKind]| -> Vec<&(&Step, PathBuf)> {
        inputs
            .iter()
            .filter(|(s, _)| kinds.contains(&s.kind()))
            .collect()
    };
    let docs = of_kind(&[StepKind::Ingest, StepKind::ExactDedup, StepKind::NearDedup]);
    let classifiers = of_kind(&[StepKind::TrainClassifier]);
    let references = of_kind(&[StepKind::KlReference]);
    let score_steps = of_kind(&[StepKind::Score]);
    if let Some((other, _)) = inputs.iter().find(|(s, _)| {
        !matches!(
            s.kind(),
            StepKind::Ingest
                | StepKind::ExactDedup
                | StepKind::NearDedup
                | StepKind::TrainClassifier
                | StepKind::KlReference
                | StepKind::Score
        )
    }) {
        return Err(DataError::work(format!(
            "a quality_filter step does not read a {} step (`{}`)",
            other.kind().name(),
            other.name
        )));
    }
    let docs = match docs.as_slice() {
        [one] => *one,
        _ => {
            return Err(DataError::work(format!(
                "a quality_filter step reads one documents step (ingest, exact_dedup or \
                 near_dedup); `{}` has {}",
                step.name,
                docs.len()
            )))
        }
    };
    let classifier_input = at_most_one(&classifiers, "train_classifier", &step.name)?;
    let reference_input = at_most_one(&references, "kl_reference", &step.name)?;
    let mut config = quality_config(&p.heuristics)?;
    apply_thresholds(&mut config, &p.thresholds)?;
    let mut used = serde_json::Map::new();
    let trained = match (&p.classifier, &classifier_input) {
        (Some(_), Some((s, dir))) => {
            let trained = load_classifier(dir)?;
            let threshold = trained
                .threshold
                .ok_or_else(|| format!("the report of `{}` has no resolved `threshold`", s.name))?;
            config.classifier = Some(crate::filters::classifier::ClassifierFilterConfig {
                min_score: threshold,
            });
            used.insert(
                "classifier".into(),
                json!({ "step": s.name, "threshold": threshold,
                        "objective": trained.classifier.objective().name(),
                        "label_cut": trained.label_cut }),
            );
            Some((s, trained))
        }
        (Some(_), None) => {
            return Err(DataError::work(format!(
                "quality.classifier is on but `{}` has no train_classifier input to read \
                 the classifier from",
                step.name
            )))
        }
        (None, Some((s, _))) => {
            return Err(DataError::work(format!(
                "`{}` reads the train_classifier step `{}` but quality.classifier is off",
                step.name, s.name
            )))
        }
        (None, None) => None,
    };
    let reference = match (&p.kl, &reference_input) {
        (Some(_), Some((s, dir))) => {
            let file = load_kl_reference(dir)?;
            config.kl = Some(file.config());
            used.insert(
                "kl".into(),
                json!({ "step": s.name, "max_kl_nats": file.max_kl_nats,
                        "smoothing": file.smoothing }),
            );
            Some(file)
        }
        (Some(_), None) => {
            return Err(DataError::work(format!(
                "quality.kl is on but `{}` has no kl_reference input to read the reference \
                 distribution from",
                step.name
            )))
        }
        (None, Some((s, _))) => {
            return Err(DataError::work(format!(
                "`{}` reads the kl_reference step `{}` but quality.kl is off",
                step.name, s.name
            )))
        }
        (None, None) => None,
    };
    config.validate().map_err(de)?;
    let models = Models {
        kl_reference: reference.as_ref().map(|r| &r.reference),
        classifier: trained.as_ref().map(|(_, t)| &t.classifier),
    };
    // The source's score step: the one whose source is this step's (the only one when the
    // source cannot be told).
    let source = source_of(plan, docs.0);
    let score_input = match (&source, score_steps.as_slice()) {
        (_, []) => None,
        (None, [one]) => Some(*one),
        (Some(name), several) => several
            .iter()
            .find(|(s, _)| matches!(&s.params, StepParams::Score(q) if q.source == *name))
            .copied(),
        (None, _) => None,
    };
    let good = match (score_input, &trained) {
        (Some((score_step, dir)), Some((classifier_step, t))) => {
            let label_cut = t.label_cut.ok_or_else(|| {
                format!(
                    "the report of `{}` has no `label_cut`",
                    classifier_step.name
                )
            })?;
            let scored = read_scores(&dir.join(SCORES_FILE))?;
            let mut lost = to_value(&good_tokens_lost(&scored, label_cut, &config, models)?)?;
            lost["score_step"] = json!(score_step.name);
            Some(lost)
        }
        _ => None,
    };
    let report = filter_documents(
        &docs_config(plan, docs),
        &config,
        models,
        &out.join(DOCS_FILE),
        ctx.progress,
    )?;
    let mut value = to_value(&report)?;
    if let Some(s) = source {
        value["source"] = json!(s);
    }
    if !used.is_empty() {
        value["models"] = Value::Object(used);
    }
    if let Some(good) = good {
        value["good_tokens_lost"] = good;
    }
    Ok(value)
}
