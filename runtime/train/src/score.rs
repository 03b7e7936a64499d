//! Scoring documents with a language model: the plan's `score` step and `kiln-worker score`.
//!
//! A scorer is a kiln-train [`Model`] with its tokenizer: a train step of the same plan
//! ([`ScorerModel::Trained`]), a Hugging Face Llama-family directory
//! ([`ScorerModel::HuggingFace`], loaded by [`crate::hf`]) or a finished kiln train step's
//! output directory from another run ([`ScorerModel::Checkpoint`], self-described by the
//! [`MODEL_SPEC_FILE`] and `tokenizer.json` the train step writes there when it finishes).
//!
//! # Methods (higher is better)
//! - `perplexity`: minus the mean next-token loss (nats) over the document's first tokens —
//!   CCNet's perplexity filter (Wenzek et al. 2020, "CCNet: Extracting High Quality
//!   Monolingual Datasets from Web Crawl Data": a language model trained on a high-quality
//!   target, Wikipedia, scores every document by its perplexity).
//! - `likelihood_ratio`: the general model's mean loss minus the scorer's — the
//!   cross-entropy difference of Moore & Lewis 2010 ("Intelligent Selection of Language
//!   Model Training Data": H_I(s) − H_N(s), in-domain minus general, lower is better; negated
//!   here so that in-domain text scores high), the log importance weight that DSIR (Xie et
//!   al. 2023, "Data Selection for Language Models via Importance Resampling") estimates
//!   with hashed n-gram models. Each model reads the document with its own tokenizer; the
//!   losses are per token of each.
//! - `rating`: an instruct model grades the document: the prompt with `{document}` replaced,
//!   greedy decoding, the first integer in 0..=scale of the reply (FineWeb-Edu: Penedo et al.
//!   2024, "The FineWeb Datasets: Decanting the Web for the Finest Text Data at Scale",
//!   whose classifier learns Llama-3-70B-Instruct's 0–5 educational-value annotations). A
//!   reply without one scores null. The prompt is used as written (put the model's chat
//!   template in it).
//!
//! # Tokens
//! A document is the tokenizer's encoding of its text, with the tokenizer's own special
//! tokens (a Llama tokenizer's BOS), cut to its first `max_tokens` tokens and to the model's
//! `seq_len`. The loss is over its next-token predictions (n − 1 of them): fewer than two
//! tokens score null. Batches of `batch_docs` documents run as one forward pass, right-padded
//! (the causal mask keeps padding out of every real position) with the padding's targets
//! ignored. On the CPU the model runs in fp32; on a GPU in the plan's precision (a Hugging
//! Face model in bf16).
//!
//! # Files
//! The output directory holds [`SCORES_FILE`], one `{"id", "text", "score", "tokens"}` line
//! per input document in input order (`score` null where there is none), and
//! [`REPORT_FILE`] ([`ScoreReport`]: counts and settings, no times or machine paths). The
//! work happens in `<output>.partial/` (locked with `flock`): each batch's lines are appended
//! to its `scores.jsonl` and fsynced. A run killed at any moment resumes from the whole
//! batches written (a torn tail is cut back to the last batch boundary) and, on the CPU with
//! the same thread count, writes the same bytes as one that was never interrupted: the
//! batches are the same documents whatever happened before. The lines kept are checked
//! against the input (a changed input is refused), and so are the settings (`settings.json`
//! in the partial directory; a finished output is "already done" only for its own). When
//! every document is scored the report is written and the directory renamed to `<output>`.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_data::ingest::{
    count_documents, Document, Ingest, IngestConfig, DEFAULT_MAX_DOCUMENT_BYTES,
};
use kiln_data::tokenize::{self, Tokenizer, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE};
use kiln_plan::run_dir::{CHECKPOINT_DIR, DOCS_FILE, REPORT_FILE, SUMMARY_FILE};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, Tensor};

use crate::checkpoint::{self, fsync_dir, write_atomic};
use crate::error::{catch_torch, io_at, TrainError};
use crate::model::Model;
use crate::spec::{self, ModelSpec, Plan, Precision, Step, StepKind, StepParams};
use crate::steps::{StepOutcome, StopWhen, TrainOptions};

pub use kiln_plan::spec::{ScoreMethod, ScorerModel};
pub use kiln_plan::step::ScoreParams;

/// The scores, one JSON line per document.
pub const SCORES_FILE: &str = "scores.jsonl";
/// The model shape a finished train step leaves in its output directory (a `ModelSpec`).
pub const MODEL_SPEC_FILE: &str = "model.json";
/// The settings a partial run was started with (in `<output>.partial/` only).
const SETTINGS_FILE: &str = "settings.json";
/// The target the loss ignores (padding).
const IGNORE_INDEX: i64 = -100;
/// The most logits held at once (elements): the output projection runs over the batch's
/// positions in chunks of this many logits (assumption: 128 MiB in fp32, far below any
/// device's memory, large enough that a chunk is a few hundred positions of a 128k vocabulary).
const LOGITS_BUDGET: i64 = 1 << 25;
/// The text the rating prompt's document replaces.
pub const DOCUMENT_PLACEHOLDER: &str = "{document}";

/// A scorer: a model and the tokenizer its tokens come from.
pub struct Scorer {
    pub model: Model,
    pub tokenizer: Tokenizer,
    /// The token ids that end a rating reply: the tokenizer's end-of-document token and a
    /// Hugging Face model's `eos_token_id`s.
    pub stop_ids: Vec<u32>,
    /// The scorer as the report names it (`hugging_face:PATH`, …).
    pub label: String,
    pub device: Device,
}

/// What a scorer's relative paths and trained steps are found from.
#[derive(Clone, Copy)]
pub struct ScorerContext<'a> {
    /// The plan and the score step, for a [`ScorerModel::Trained`] scorer.
    pub plan: Option<(&'a Plan, &'a Step)>,
    /// The run directory (the plan's output paths are relative to it).
    pub run_dir: &'a Path,
    /// Where `hugging_face` and `checkpoint` paths are relative to (the project).
    pub source_root: &'a Path,
    pub device: Device,
}

/// The scorer as the report and the settings name it: `trained:STEP`,
/// `hugging_face:PATH`, `checkpoint:PATH` (the path as written).
pub fn scorer_label(model: &ScorerModel) -> String {
    match model {
        ScorerModel::Trained { step } => format!("trained:{step}"),
        ScorerModel::HuggingFace { path } => format!("hugging_face:{path}"),
        ScorerModel::Checkpoint { path } => format!("checkpoint:{path}"),
    }
}

/// The precision a scorer runs in: fp32 on the CPU; on a GPU the declared one (fp8, which
/// kiln-train does not build, as bf16).
fn scoring_precision(device: Device, declared: Precision) -> Precision {
    match (device, declared) {
        (Device::Cpu, _) => Precision::Fp32,
        (_, Precision::Fp8Mixed) => Precision::Bf16Mixed,
        (_, p) => p,
    }
}

fn resolve(root: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    }
}

/// Loads a scorer (see the module doc); errors name the file or step and what to do.
pub fn load_scorer(which: &ScorerModel, ctx: &ScorerContext) -> Result<Scorer, TrainError> {
    let label = scorer_label(which);
    let device = ctx.device;
    let (model, tokenizer_path, mut stop_ids) = match which {
        ScorerModel::Trained { step: name } => {
            let Some((plan, step)) = ctx.plan else {
                return Err(TrainError::Plan(format!(
                    "scorer `{label}` is a train step of a plan; outside a plan, score with a Hugging Face directory or a checkpoint directory"
                )));
            };
            let train = step
                .inputs
                .iter()
                .filter_map(|id| plan.step(id).ok())
                .find(|s| s.name == *name || s.id == *name)
                .ok_or_else(|| {
                    TrainError::Plan(if plan.step(name).is_ok() {
                        format!(
                            "step `{}` scores with `{name}`, which is not among its inputs",
                            step.name
                        )
                    } else {
                        format!(
                            "step `{}` scores with `{name}`, and the plan has no step of that name",
                            step.name
                        )
                    })
                })?;
            let tp = spec::train_params(train)?;
            let dir = spec::output(train, ctx.run_dir)?;
            if !dir.is_dir() {
                return Err(TrainError::Input(format!(
                    "step `{}` needs `{}`, which is not done ({} does not exist): run it first",
                    step.name,
                    train.name,
                    dir.display()
                )));
            }
            let precision = scoring_precision(device, tp.precision);
            let model = model_from_checkpoints(&dir, &tp.model, precision, device)?;
            let tokenizer = plan_tokenizer(plan, train, ctx.run_dir)?;
            (model, tokenizer, Vec::new())
        }
        ScorerModel::HuggingFace { path } => {
            let dir = resolve(ctx.source_root, path);
            if !dir.is_dir() {
                return Err(TrainError::Input(format!(
                    "scorer `{label}`: {} is not a directory (a Hugging Face model directory: config.json, *.safetensors, tokenizer.json)",
                    dir.display()
                )));
            }
            let tokenizer = dir.join(TOKENIZER_FILE);
            if !tokenizer.is_file() {
                return Err(TrainError::Input(format!(
                    "scorer `{label}`: {} does not exist: a Hugging Face scorer needs its tokenizer.json beside config.json (transformers' `AutoTokenizer.from_pretrained(...).save_pretrained(dir)` writes it)",
                    tokenizer.display()
                )));
            }
            let precision = scoring_precision(device, Precision::Bf16Mixed);
            let model = crate::hf::load(&dir, precision, device)?;
            (model, tokenizer, hf_eos_ids(&dir))
        }
        ScorerModel::Checkpoint { path } => {
            let dir = resolve(ctx.source_root, path);
            if !dir.is_dir() {
                return Err(TrainError::Input(format!(
                    "scorer `{label}`: {} is not a directory (a finished kiln train step's output directory)",
                    dir.display()
                )));
            }
            let spec_path = dir.join(MODEL_SPEC_FILE);
            let text = fs::read_to_string(&spec_path).map_err(|e| {
                TrainError::Input(format!(
                    "scorer `{label}`: {}: {e}: a finished kiln train step writes its model shape there (train steps finished before issue 17 did not: rerun the step, or write the plan's train step `model` object there)",
                    spec_path.display()
                ))
            })?;
            let model_spec: ModelSpec = serde_json::from_str(&text).map_err(|e| {
                TrainError::Input(format!("{}: not a model spec: {e}", spec_path.display()))
            })?;
            let tokenizer = dir.join(TOKENIZER_FILE);
            if !tokenizer.is_file() {
                return Err(TrainError::Input(format!(
                    "scorer `{label}`: {} does not exist: the train step found no tokenizer among its encode steps; copy the tokenizer.json its data was encoded with there",
                    tokenizer.display()
                )));
            }
            let declared = read_summary_precision(&dir).unwrap_or(Precision::Fp32);
            let precision = scoring_precision(device, declared);
            let model = model_from_checkpoints(&dir, &model_spec, precision, device)?;
            (model, tokenizer, Vec::new())
        }
    };
    let tokenizer = tokenize::load(&tokenizer_path).map_err(|e| {
        TrainError::Input(format!(
            "scorer `{label}`: {e} (not a tokenizers `tokenizer.json`)"
        ))
    })?;
    let size = tokenizer.get_vocab_size(true) as u64;
    let vocab = model.spec().vocab;
    if size > vocab {
        return Err(TrainError::Input(format!(
            "scorer `{label}`: {} has {size} tokens, more than the model's vocabulary of {vocab}: it is not this model's tokenizer",
            tokenizer_path.display()
        )));
    }
    if let Some((_, eod)) = tokenize::eod_token(&tokenizer) {
        stop_ids.push(eod);
    }
    stop_ids.sort_unstable();
    stop_ids.dedup();
    Ok(Scorer {
        model,
        tokenizer,
        stop_ids,
        label,
        device,
    })
}

/// The model of a train step's output directory: `spec`, with the newest complete
/// checkpoint's weights.
fn model_from_checkpoints(
    dir: &Path,
    spec: &ModelSpec,
    precision: Precision,
    device: Device,
) -> Result<Model, TrainError> {
    let root = dir.join(CHECKPOINT_DIR);
    let found = checkpoint::latest(&root).ok_or_else(|| {
        TrainError::Input(format!(
            "{} holds no complete checkpoint (is {} a finished train step's output?)",
            root.display(),
            dir.display()
        ))
    })?;
    let model = Model::new(spec, precision, 0, device)?;
    checkpoint::restore_params(
        model.named_parameters(),
        &checkpoint::load_model(&found.dir)?,
    )
    .map_err(|e| TrainError::Input(format!("{}: {e}", found.dir.display())))?;
    Ok(model)
}

/// The precision a train step's summary records, if it can be read.
fn read_summary_precision(dir: &Path) -> Option<Precision> {
    let text = fs::read_to_string(dir.join(SUMMARY_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    serde_json::from_value(v.get("precision")?.clone()).ok()
}

/// A Hugging Face directory's end-of-sequence ids (`eos_token_id`, one or a list, in
/// `generation_config.json` and `config.json`).
fn hf_eos_ids(dir: &Path) -> Vec<u32> {
    let mut ids = Vec::new();
    for file in ["generation_config.json", "config.json"] {
        let Ok(text) = fs::read_to_string(dir.join(file)) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        match &v["eos_token_id"] {
            serde_json::Value::Number(n) => ids.extend(n.as_u64()),
            serde_json::Value::Array(a) => ids.extend(a.iter().filter_map(|x| x.as_u64())),
            _ => {}
        }
    }
    ids.into_iter()
        .filter_map(|i| u32::try_from(i).ok())
        .collect()
}

/// The `tokenizer.json` a plan's train step's data was encoded with: in the output of an
/// encode step its mix step read (or of that encode step's tokenizer step).
pub fn plan_tokenizer(plan: &Plan, train: &Step, run_dir: &Path) -> Result<PathBuf, TrainError> {
    let mut looked = Vec::new();
    for mix in train.inputs.iter().filter_map(|id| plan.step(id).ok()) {
        if mix.kind() != StepKind::Mix {
            continue;
        }
        for encode in mix.inputs.iter().filter_map(|id| plan.step(id).ok()) {
            if encode.kind() != StepKind::Encode {
                continue;
            }
            let mut dirs = vec![spec::output(encode, run_dir)?];
            for tok in encode.inputs.iter().filter_map(|id| plan.step(id).ok()) {
                if tok.kind() == StepKind::TrainTokenizer {
                    dirs.push(spec::output(tok, run_dir)?);
                }
            }
            for dir in dirs {
                let file = dir.join(TOKENIZER_FILE);
                if file.is_file() {
                    return Ok(file);
                }
                looked.push(file.display().to_string());
            }
        }
    }
    if looked.is_empty() {
        return Err(TrainError::Plan(format!(
            "train step `{}` reads no encode step through a mix step: its tokenizer is unknown",
            train.name
        )));
    }
    Err(TrainError::Input(format!(
        "the tokenizer of `{}` is missing: none of {} exists (run the tokenizer and encode steps first)",
        train.name,
        looked.join(", ")
    )))
}

/// Makes a finished train step's working directory self-describing for
/// [`ScorerModel::Checkpoint`]: [`MODEL_SPEC_FILE`] (the model's shape) and, where its mix
/// step's encode steps have one, a copy of `tokenizer.json` (and `tokenizer_config.json`).
/// Nothing the training computes changes.
pub fn describe_train_output(
    plan: &Plan,
    train: &Step,
    model: &ModelSpec,
    run_dir: &Path,
    work: &Path,
) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(model)
        .map_err(|e| TrainError::Plan(format!("cannot serialise the model spec: {e}")))?;
    write_atomic(&work.join(MODEL_SPEC_FILE), (text + "\n").as_bytes())?;
    if let Ok(tokenizer) = plan_tokenizer(plan, train, run_dir) {
        let dir = tokenizer.parent().unwrap_or(Path::new("."));
        for file in [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE] {
            let from = dir.join(file);
            if from.is_file() {
                let bytes = fs::read(&from).map_err(io_at(&from))?;
                write_atomic(&work.join(file), &bytes)?;
            }
        }
    }
    Ok(())
}

/// How documents are scored, with the models loaded.
pub enum Method {
    Perplexity,
    LikelihoodRatio {
        general: Box<Scorer>,
    },
    Rating {
        prompt: String,
        scale: u32,
        max_new_tokens: u32,
    },
}

/// What a run was started with: a partial run resumes only with the same settings, and a
/// finished output is "already done" only for them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// `perplexity`, `likelihood_ratio` or `rating`.
    pub method: String,
    /// [`scorer_label`] of the scorer.
    pub scorer: String,
    /// Of the general model (`likelihood_ratio`).
    pub general: Option<String>,
    /// The rating prompt, scale and reply length (`rating`).
    pub prompt: Option<String>,
    pub scale: Option<u32>,
    pub max_new_tokens: Option<u32>,
    /// Tokens read per document (at most the model's `seq_len`); `None`: the `seq_len`.
    pub max_tokens: Option<u64>,
    pub batch_docs: u64,
}

impl Settings {
    /// The settings of a method with a scorer.
    pub fn new(
        scorer: &ScorerModel,
        method: &ScoreMethod,
        max_tokens: Option<u64>,
        batch_docs: u64,
    ) -> Settings {
        let mut s = Settings {
            method: String::new(),
            scorer: scorer_label(scorer),
            general: None,
            prompt: None,
            scale: None,
            max_new_tokens: None,
            max_tokens,
            batch_docs,
        };
        match method {
            ScoreMethod::Perplexity => s.method = "perplexity".into(),
            ScoreMethod::LikelihoodRatio { general } => {
                s.method = "likelihood_ratio".into();
                s.general = Some(scorer_label(general));
            }
            ScoreMethod::Rating {
                prompt,
                scale,
                max_new_tokens,
            } => {
                s.method = "rating".into();
                s.prompt = Some(prompt.clone());
                s.scale = Some(*scale);
                s.max_new_tokens = Some(*max_new_tokens);
            }
        }
        s
    }
}

/// What a score run reports ([`REPORT_FILE`]); the same bytes whenever the same documents
/// are scored the same way (no times, no machine paths).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreReport {
    /// The plan step's name and id (`kiln-worker score`: `score`, no id).
    pub step: String,
    pub id: Option<String>,
    pub kind: String,
    /// The source the documents were sampled from (a plan step).
    pub source: Option<String>,
    #[serde(flatten)]
    pub settings: Settings,
    /// The scorer's sequence length and parameters.
    pub seq_len: u64,
    pub params: u64,
    /// Documents read and scored (one line each).
    pub input_docs: u64,
    /// Documents of the input skipped as longer than the document limit (not scored).
    pub skipped_docs: u64,
    /// Documents with a score.
    pub kept_docs: u64,
    /// Documents whose score is null (fewer than two tokens; a rating reply without a grade).
    pub null_scores: u64,
    /// Tokens the scorer read, over every document (the lines' `tokens`).
    pub scored_tokens: u64,
    pub mean_score: Option<f64>,
    pub min_score: Option<f64>,
    pub max_score: Option<f64>,
}

impl ScoreReport {
    /// A few lines for a terminal.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{}: {} documents, {} scored, {} null ({} with {}",
            self.step,
            self.input_docs,
            self.kept_docs,
            self.null_scores,
            self.settings.method,
            self.settings.scorer
        );
        if let Some(g) = &self.settings.general {
            s += &format!(" against {g}");
        }
        s += ")\n";
        s += &format!("  tokens read {}", self.scored_tokens);
        if let (Some(mean), Some(min), Some(max)) =
            (self.mean_score, self.min_score, self.max_score)
        {
            s += &format!("; score mean {mean:.4}, min {min:.4}, max {max:.4}");
        }
        s + "\n"
    }
}

/// One line of [`SCORES_FILE`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreLine {
    pub id: String,
    pub text: String,
    pub score: Option<f64>,
    pub tokens: u64,
}

/// How a score run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum ScoreOutcome {
    Done(ScoreReport),
    /// The output existed, made with the same settings.
    AlreadyDone(ScoreReport),
    /// Asked to stop ([`StopWhen`]) after this many documents; run again to continue.
    Stopped {
        docs: u64,
    },
}

/// A score run: documents in, scores out.
pub struct ScoreJob<'a> {
    /// For messages and the report: the step's name (`score` outside a plan).
    pub name: String,
    pub id: Option<String>,
    pub source: Option<String>,
    /// The documents (`.jsonl` or `.jsonl.zst`, `{"id", "text"}` lines).
    pub input: PathBuf,
    pub output: PathBuf,
    pub scorer: ScorerModel,
    pub method: ScoreMethod,
    pub max_tokens: Option<u64>,
    pub batch_docs: u64,
    /// Documents with more bytes of text are skipped and counted (kiln-data's limit:
    /// `ingest::DEFAULT_MAX_DOCUMENT_BYTES`, or the plan's).
    pub max_document_bytes: u64,
    pub context: ScorerContext<'a>,
    /// Show progress (a bar on a terminal, a line every few seconds otherwise).
    pub progress: bool,
    pub stop: StopWhen,
}

impl ScoreJob<'_> {
    fn settings(&self) -> Settings {
        Settings::new(&self.scorer, &self.method, self.max_tokens, self.batch_docs)
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// The finished output's report, if the output exists; an error when it was made with other
/// settings.
fn finished(output: &Path, settings: &Settings) -> Result<Option<ScoreReport>, TrainError> {
    if !output.is_dir() {
        return Ok(None);
    }
    let path = output.join(REPORT_FILE);
    let not_ours = |why: String| {
        TrainError::Input(format!(
            "{} exists and is not a finished score output ({}: {why}): remove it or choose another output",
            output.display(),
            path.display()
        ))
    };
    let text = fs::read_to_string(&path).map_err(|e| not_ours(e.to_string()))?;
    let report: ScoreReport = serde_json::from_str(&text).map_err(|e| not_ours(e.to_string()))?;
    if report.settings != *settings {
        return Err(TrainError::Input(format!(
            "{} holds scores made with other settings ({}): remove it or choose another output",
            output.display(),
            settings_difference(&report.settings, settings)
        )));
    }
    Ok(Some(report))
}

fn settings_difference(was: &Settings, now: &Settings) -> String {
    let (a, b) = (
        serde_json::to_value(was).unwrap_or_default(),
        serde_json::to_value(now).unwrap_or_default(),
    );
    let mut out = Vec::new();
    if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
        for (k, v) in a {
            let w = b.get(k).cloned().unwrap_or_default();
            if *v != w {
                out.push(format!("{k} was {v}, now {w}"));
            }
        }
    }
    out.join("; ")
}

/// Runs a score job (see the module doc).
pub fn score_documents(job: &ScoreJob) -> Result<ScoreOutcome, TrainError> {
    catch_torch(|| run_job(job))
}

fn read_failure(e: impl std::fmt::Display) -> TrainError {
    TrainError::Input(e.to_string())
}

/// How much of a partial `scores.jsonl` to keep: whole batches, or every line when the run
/// had written them all. Returns (lines kept, their bytes); read as a stream (the lines are
/// checked against the input afterwards, see [`check_kept`]).
fn kept_prefix(path: &Path, batch_docs: u64, total_docs: u64) -> Result<(u64, u64), TrainError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(io_at(path)(e)),
    };
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let (mut complete, mut offset) = (0u64, 0u64);
    let mut batch_end = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io_at(path))?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        complete += 1;
        offset += n as u64;
        if complete.is_multiple_of(batch_docs) {
            batch_end = offset;
        }
    }
    if complete == total_docs {
        return Ok((complete, offset));
    }
    Ok((complete / batch_docs * batch_docs, batch_end))
}

/// Checks that the `kept` lines of the partial `scores.jsonl` are the input's first
/// documents (reading them from `docs`), so a changed input is not resumed.
fn check_kept(
    path: &Path,
    kept: u64,
    docs: &mut Ingest,
    input: &Path,
    work: &Path,
) -> Result<(), TrainError> {
    if kept == 0 {
        return Ok(());
    }
    let lines = BufReader::new(File::open(path).map_err(io_at(path))?).lines();
    for (i, line) in lines.take(kept as usize).enumerate() {
        let line = line.map_err(io_at(path))?;
        let was: ScoreLine = serde_json::from_str(&line).map_err(|e| {
            TrainError::Input(format!(
                "{}: line {} is not a score line ({e}): remove {} to start again",
                path.display(),
                i + 1,
                work.display()
            ))
        })?;
        let doc = docs
            .next()
            .transpose()
            .map_err(read_failure)?
            .ok_or_else(|| changed_input(input, work, i))?;
        if doc.id != was.id || doc.text != was.text {
            return Err(changed_input(input, work, i));
        }
    }
    Ok(())
}

fn run_job(job: &ScoreJob) -> Result<ScoreOutcome, TrainError> {
    let wall = Instant::now();
    let settings = job.settings();
    if job.batch_docs == 0 {
        return Err(TrainError::Plan(
            "batch_docs = 0: score at least one document per batch".into(),
        ));
    }
    if job.max_tokens == Some(0) {
        return Err(TrainError::Plan(
            "max_tokens = 0: a document must be read to be scored".into(),
        ));
    }
    if let Some(report) = finished(&job.output, &settings)? {
        return Ok(ScoreOutcome::AlreadyDone(report));
    }
    let mut config = IngestConfig::new(vec![job.input.clone()]).with_ids();
    config.strict = true;
    config.max_document_bytes = job.max_document_bytes;
    if !job.input.is_file() {
        return Err(TrainError::Input(format!(
            "{}: no such file (the documents to score)",
            job.input.display()
        )));
    }
    let scorer = load_scorer(&job.scorer, &job.context)?;
    let method = match &job.method {
        ScoreMethod::Perplexity => Method::Perplexity,
        ScoreMethod::LikelihoodRatio { general } => Method::LikelihoodRatio {
            general: Box::new(load_scorer(general, &job.context)?),
        },
        ScoreMethod::Rating {
            prompt,
            scale,
            max_new_tokens,
        } => Method::Rating {
            prompt: prompt.clone(),
            scale: *scale,
            max_new_tokens: *max_new_tokens,
        },
    };
    let seq_len = scorer.model.spec().seq_len;
    let limit = job.max_tokens.unwrap_or(seq_len).min(seq_len) as usize;
    if let Method::Rating {
        prompt,
        max_new_tokens,
        ..
    } = &method
    {
        check_prompt(&scorer, prompt, *max_new_tokens)?;
    }

    let work = with_suffix(&job.output, crate::steps::PARTIAL_SUFFIX);
    fs::create_dir_all(&work).map_err(io_at(&work))?;
    let lock = crate::steps::lock_dir(&work)?;
    let settings_path = work.join(SETTINGS_FILE);
    match fs::read_to_string(&settings_path) {
        Ok(text) => {
            let was: Settings = serde_json::from_str(&text)
                .map_err(|e| TrainError::Input(format!("{}: {e}", settings_path.display())))?;
            if was != settings {
                return Err(TrainError::Input(format!(
                    "{} was started with other settings ({}): remove it to start again, or run with the same settings",
                    work.display(),
                    settings_difference(&was, &settings)
                )));
            }
        }
        Err(_) => {
            let text = serde_json::to_string_pretty(&settings)
                .map_err(|e| TrainError::Plan(format!("cannot serialise the settings: {e}")))?;
            write_atomic(&settings_path, (text + "\n").as_bytes())?;
        }
    }

    let total = count_documents(&config).map_err(read_failure)?;
    let scores_path = work.join(SCORES_FILE);
    let (kept, kept_bytes) = kept_prefix(&scores_path, job.batch_docs, total)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&scores_path)
        .map_err(io_at(&scores_path))?;
    file.set_len(kept_bytes).map_err(io_at(&scores_path))?;
    file.sync_all().map_err(io_at(&scores_path))?;
    let mut file = OpenOptions::new()
        .append(true)
        .open(&scores_path)
        .map_err(io_at(&scores_path))?;
    fsync_dir(&work)?;

    let progress = kiln_data::progress::Progress::new(
        job.progress,
        Some(total),
        &format!("{} ({})", job.name, settings.method),
        "docs",
    );
    progress.set_position(kept);
    let mut docs = Ingest::open(&config).map_err(read_failure)?;
    check_kept(&scores_path, kept, &mut docs, &job.input, &work)?;
    let started = Instant::now();
    let (mut done_docs, mut done_tokens) = (0u64, 0u64);
    let mut batch: Vec<Document> = Vec::with_capacity(job.batch_docs as usize);
    let mut position = kept;
    loop {
        batch.clear();
        for doc in docs.by_ref().take(job.batch_docs as usize) {
            batch.push(doc.map_err(read_failure)?);
        }
        if batch.is_empty() {
            break;
        }
        let scored = score_batch(&scorer, &method, &batch, limit)?;
        let mut text = String::new();
        for (doc, (score, tokens)) in batch.iter().zip(&scored) {
            let line = ScoreLine {
                id: doc.id.clone(),
                text: doc.text.clone(),
                score: score.filter(|s| s.is_finite()),
                tokens: *tokens,
            };
            text += &serde_json::to_string(&line)
                .map_err(|e| TrainError::Plan(format!("cannot serialise a score: {e}")))?;
            text.push('\n');
            done_tokens += tokens;
        }
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(io_at(&scores_path))?;
        done_docs += batch.len() as u64;
        position += batch.len() as u64;
        progress.inc(batch.len() as u64);
        if position < total && job.stop.requested(true) {
            progress.finish_and_clear();
            eprintln!(
                "{}: asked to stop; {position} of {total} documents scored, the rest resumes from there",
                job.name
            );
            drop(lock);
            return Ok(ScoreOutcome::Stopped { docs: position });
        }
    }
    progress.finish_and_clear();
    drop(file);
    let seconds = started.elapsed().as_secs_f64();
    let skipped = docs.report().too_large_docs;
    if skipped > 0 {
        eprintln!(
            "warning: {}: {skipped} documents of {} are longer than {} bytes and were skipped (not in {SCORES_FILE})",
            job.name,
            job.input.display(),
            job.max_document_bytes
        );
    }

    let mut report = summarise(job, settings, &scorer, &scores_path)?;
    report.skipped_docs = skipped;
    let text = serde_json::to_string_pretty(&report)
        .map_err(|e| TrainError::Plan(format!("cannot serialise the report: {e}")))?;
    write_atomic(&work.join(REPORT_FILE), (text + "\n").as_bytes())?;
    let _ = fs::remove_file(&settings_path);
    let _ = fs::remove_file(work.join(crate::steps::LOCK_FILE));
    fsync_dir(&work)?;
    fs::rename(&work, &job.output).map_err(io_at(&job.output))?;
    if let Some(parent) = job.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsync_dir(parent)?;
    }
    drop(lock);
    let rate = |n: u64| {
        if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        }
    };
    eprintln!(
        "{}: scored {done_docs} documents, {done_tokens} tokens in {seconds:.1} s ({:.1} docs/s, {:.0} tokens/s on {}, {} threads; {:.1} s in all)",
        job.name,
        rate(done_docs),
        rate(done_tokens),
        crate::steps::device_name(scorer.device),
        tch::get_num_threads(),
        wall.elapsed().as_secs_f64()
    );
    Ok(ScoreOutcome::Done(report))
}

fn changed_input(input: &Path, work: &Path, line: usize) -> TrainError {
    TrainError::Input(format!(
        "{}: document {} is not the one {} scored: the input changed since the partial run; remove {} to start again",
        input.display(),
        line + 1,
        work.display(),
        work.display()
    ))
}

/// The report, from the whole scores file (a resumed run counts what the killed one wrote).
fn summarise(
    job: &ScoreJob,
    settings: Settings,
    scorer: &Scorer,
    scores_path: &Path,
) -> Result<ScoreReport, TrainError> {
    let file = File::open(scores_path).map_err(io_at(scores_path))?;
    let (mut input_docs, mut kept_docs, mut tokens) = (0u64, 0u64, 0u64);
    let (mut sum, mut min, mut max) = (0.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for line in BufReader::new(file).lines() {
        let line = line.map_err(io_at(scores_path))?;
        let s: ScoreLine = serde_json::from_str(&line)
            .map_err(|e| TrainError::Input(format!("{}: {e}", scores_path.display())))?;
        input_docs += 1;
        tokens += s.tokens;
        if let Some(v) = s.score {
            kept_docs += 1;
            sum += v;
            min = min.min(v);
            max = max.max(v);
        }
    }
    let any = kept_docs > 0;
    Ok(ScoreReport {
        step: job.name.clone(),
        id: job.id.clone(),
        kind: "score".into(),
        source: job.source.clone(),
        settings,
        seq_len: scorer.model.spec().seq_len,
        params: scorer.model.param_count(),
        input_docs,
        skipped_docs: 0,
        kept_docs,
        null_scores: input_docs - kept_docs,
        scored_tokens: tokens,
        mean_score: any.then(|| sum / kept_docs as f64),
        min_score: any.then_some(min),
        max_score: any.then_some(max),
    })
}

/// The first `limit` token ids of `text`: the tokenizer's encoding with its special tokens
/// when `special`. A tokenizer kiln trained (no normalizer or post-processor) encodes piece
/// by piece (kiln-data's `tokenize::pieces`, identical to the whole text) and stops once it
/// has enough, so a long document is not encoded whole.
pub fn token_ids(
    tokenizer: &Tokenizer,
    text: &str,
    limit: usize,
    special: bool,
) -> Result<Vec<u32>, TrainError> {
    let encode = |t: &str| {
        tokenizer
            .encode(t, special)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TrainError::Input(format!("the tokenizer cannot encode a document: {e}")))
    };
    let mut ids =
        if tokenize::encodes_in_pieces(tokenizer) && tokenizer.get_post_processor().is_none() {
            let mut ids = Vec::new();
            for piece in tokenize::pieces(text) {
                ids.extend(encode(piece)?);
                if ids.len() >= limit {
                    break;
                }
            }
            ids
        } else {
            encode(text)?
        };
    ids.truncate(limit);
    Ok(ids)
}

/// Scores one batch: (score, tokens read) per document.
fn score_batch(
    scorer: &Scorer,
    method: &Method,
    docs: &[Document],
    limit: usize,
) -> Result<Vec<(Option<f64>, u64)>, TrainError> {
    match method {
        Method::Perplexity => {
            let ids = docs
                .iter()
                .map(|d| token_ids(&scorer.tokenizer, &d.text, limit, true))
                .collect::<Result<Vec<_>, _>>()?;
            let losses = mean_losses(&scorer.model, &ids, scorer.device)?;
            Ok(losses
                .into_iter()
                .zip(&ids)
                .map(|(l, ids)| (l.map(|l| -l), ids.len() as u64))
                .collect())
        }
        Method::LikelihoodRatio { general } => {
            let ids = docs
                .iter()
                .map(|d| token_ids(&scorer.tokenizer, &d.text, limit, true))
                .collect::<Result<Vec<_>, _>>()?;
            let general_limit = limit.min(general.model.spec().seq_len as usize);
            let general_ids = docs
                .iter()
                .map(|d| token_ids(&general.tokenizer, &d.text, general_limit, true))
                .collect::<Result<Vec<_>, _>>()?;
            let own = mean_losses(&scorer.model, &ids, scorer.device)?;
            let other = mean_losses(&general.model, &general_ids, general.device)?;
            Ok(own
                .into_iter()
                .zip(other)
                .zip(&ids)
                .map(|((s, g), ids)| (s.zip(g).map(|(s, g)| g - s), ids.len() as u64))
                .collect())
        }
        Method::Rating {
            prompt,
            scale,
            max_new_tokens,
        } => rate(scorer, docs, limit, prompt, *scale, *max_new_tokens),
    }
}

/// The residual stream after the last block for token ids `[batch, t]`.
fn hidden(model: &Model, tokens: &Tensor) -> Tensor {
    let mut x = model.embed(tokens, false);
    for i in 0..model.layers() {
        x = model.block(i, &x, false);
    }
    x
}

/// Each sequence's mean next-token loss (nats) under `model`, `None` for fewer than two
/// tokens: one forward pass over the batch, right-padded, padding's targets ignored, the
/// output projection in chunks of [`LOGITS_BUDGET`] logits, each row's losses summed in
/// fp64 in position order.
pub fn mean_losses(
    model: &Model,
    seqs: &[Vec<u32>],
    device: Device,
) -> Result<Vec<Option<f64>>, TrainError> {
    let rows: Vec<usize> = (0..seqs.len()).filter(|&i| seqs[i].len() >= 2).collect();
    let mut out = vec![None; seqs.len()];
    if rows.is_empty() {
        return Ok(out);
    }
    let t = rows.iter().map(|&i| seqs[i].len() - 1).max().unwrap_or(1);
    let b = rows.len();
    let mut inputs = vec![0i64; b * t];
    let mut targets = vec![IGNORE_INDEX; b * t];
    for (r, &i) in rows.iter().enumerate() {
        let s = &seqs[i];
        for j in 0..s.len() - 1 {
            inputs[r * t + j] = i64::from(s[j]);
            targets[r * t + j] = i64::from(s[j + 1]);
        }
    }
    let sums: Vec<f64> = tch::no_grad(|| -> Result<Vec<f64>, TrainError> {
        let (b, t) = (b as i64, t as i64);
        let x = Tensor::f_from_slice(&inputs)?
            .f_view([b, t])?
            .f_to_device(device)?;
        let y = Tensor::f_from_slice(&targets)?
            .f_view([b * t])?
            .f_to_device(device)?;
        let h = hidden(model, &x);
        let width = h.size()[2];
        let flat = h.reshape([b * t, width]);
        let vocab = model.spec().vocab as i64;
        let chunk = (LOGITS_BUDGET / vocab).max(1);
        let mut parts = Vec::new();
        let mut start = 0;
        while start < b * t {
            let n = chunk.min(b * t - start);
            let logits = model.head(&flat.narrow(0, start, n)).to_kind(Kind::Float);
            parts.push(logits.f_cross_entropy_loss::<Tensor>(
                &y.narrow(0, start, n),
                None,
                Reduction::None,
                IGNORE_INDEX,
                0.0,
            )?);
            start += n;
        }
        let losses = Tensor::f_cat(&parts, 0)?
            .f_view([b, t])?
            .f_to_kind(Kind::Double)?
            .f_sum_dim_intlist(1, false, Kind::Double)?
            .f_to_device(Device::Cpu)?;
        Ok(Vec::<f64>::try_from(&losses)?)
    })?;
    for (r, &i) in rows.iter().enumerate() {
        out[i] = Some(sums[r] / (seqs[i].len() - 1) as f64);
    }
    Ok(out)
}

/// The rating prompt must hold the document and, with an empty document and the longest
/// reply, fit the model.
fn check_prompt(scorer: &Scorer, prompt: &str, max_new_tokens: u32) -> Result<(), TrainError> {
    if !prompt.contains(DOCUMENT_PLACEHOLDER) {
        return Err(TrainError::Plan(format!(
            "the rating prompt has no `{DOCUMENT_PLACEHOLDER}`: write it where the document goes"
        )));
    }
    let seq_len = scorer.model.spec().seq_len as usize;
    let empty = prompt.replace(DOCUMENT_PLACEHOLDER, "");
    let n = token_ids(&scorer.tokenizer, &empty, usize::MAX, true)?.len();
    if n + max_new_tokens as usize > seq_len {
        return Err(TrainError::Plan(format!(
            "the rating prompt is {n} tokens without the document; with max_new_tokens = {max_new_tokens} it does not fit the scorer's seq_len of {seq_len}"
        )));
    }
    Ok(())
}

/// The prompt of one document: the document cut to its first `limit` tokens, and further
/// until prompt and reply fit `seq_len`. Returns the prompt's ids and the document tokens
/// in it.
fn rating_prompt(
    scorer: &Scorer,
    prompt: &str,
    text: &str,
    limit: usize,
    max_new_tokens: usize,
) -> Result<(Vec<u32>, u64), TrainError> {
    let seq_len = scorer.model.spec().seq_len as usize;
    let doc = token_ids(&scorer.tokenizer, text, limit, false)?;
    let mut k = doc.len();
    loop {
        let cut = scorer
            .tokenizer
            .decode(&doc[..k], true)
            .map_err(|e| TrainError::Input(format!("the tokenizer cannot decode: {e}")))?;
        let ids = token_ids(
            &scorer.tokenizer,
            &prompt.replace(DOCUMENT_PLACEHOLDER, &cut),
            usize::MAX,
            true,
        )?;
        let need = ids.len() + max_new_tokens;
        if need <= seq_len || k == 0 {
            // An empty document fits (`check_prompt`); re-encoding a cut can only be this
            // long with k > 0.
            return Ok((ids, k as u64));
        }
        k = k.saturating_sub(need - seq_len).min(k - 1);
    }
}

/// The first integer of `reply` in 0..=`scale` (runs of ASCII digits; one after a `-` is
/// negative and skipped, as are those above the scale).
pub fn parse_rating(reply: &str, scale: u32) -> Option<u32> {
    let bytes = reply.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let negative = start > 0 && bytes[start - 1] == b'-';
        if let Ok(v) = reply[start..i].parse::<u64>() {
            if !negative && v <= u64::from(scale) {
                return Some(v as u32);
            }
        }
    }
    None
}

/// Greedy replies to each document's rating prompt (batched, right-padded: each row's next
/// token is read at its own last position), parsed with [`parse_rating`].
fn rate(
    scorer: &Scorer,
    docs: &[Document],
    limit: usize,
    prompt: &str,
    scale: u32,
    max_new_tokens: u32,
) -> Result<Vec<(Option<f64>, u64)>, TrainError> {
    let model = &scorer.model;
    let seq_len = model.spec().seq_len as usize;
    let mut seqs = Vec::with_capacity(docs.len());
    let mut tokens = Vec::with_capacity(docs.len());
    for d in docs {
        let (ids, k) = rating_prompt(scorer, prompt, &d.text, limit, max_new_tokens as usize)?;
        seqs.push(ids);
        tokens.push(k);
    }
    let mut replies: Vec<Vec<u32>> = vec![Vec::new(); docs.len()];
    let mut active: Vec<bool> = seqs.iter().map(|s| !s.is_empty()).collect();
    for _ in 0..max_new_tokens {
        let rows: Vec<usize> = (0..docs.len()).filter(|&i| active[i]).collect();
        if rows.is_empty() {
            break;
        }
        let t = rows.iter().map(|&i| seqs[i].len()).max().unwrap_or(1);
        let b = rows.len();
        let mut inputs = vec![0i64; b * t];
        let mut last = Vec::with_capacity(b);
        for (r, &i) in rows.iter().enumerate() {
            for (j, &id) in seqs[i].iter().enumerate() {
                inputs[r * t + j] = i64::from(id);
            }
            last.push((seqs[i].len() - 1) as i64);
        }
        let next: Vec<i64> = tch::no_grad(|| -> Result<Vec<i64>, TrainError> {
            let x = Tensor::f_from_slice(&inputs)?
                .f_view([b as i64, t as i64])?
                .f_to_device(scorer.device)?;
            let h = hidden(model, &x);
            let width = h.size()[2];
            let index = Tensor::f_from_slice(&last)?
                .f_to_device(scorer.device)?
                .f_view([b as i64, 1, 1])?
                .f_expand([b as i64, 1, width], false)?;
            let at = h.f_gather(1, &index, false)?;
            let logits = model.head(&at).to_kind(Kind::Float);
            let next = logits
                .f_argmax(-1, false)?
                .f_view([b as i64])?
                .f_to_device(Device::Cpu)?;
            Ok(Vec::<i64>::try_from(&next)?)
        })?;
        for (&i, &id) in rows.iter().zip(&next) {
            let id = id as u32;
            if scorer.stop_ids.contains(&id) {
                active[i] = false;
                continue;
            }
            seqs[i].push(id);
            replies[i].push(id);
            if seqs[i].len() >= seq_len {
                active[i] = false;
            }
        }
    }
    let mut out = Vec::with_capacity(docs.len());
    for (reply, k) in replies.iter().zip(tokens) {
        let text = scorer.tokenizer.decode(reply, true).unwrap_or_default();
        out.push((parse_rating(&text, scale).map(f64::from), k));
    }
    Ok(out)
}

/// Runs a plan's `score` step (see the module doc): the sample step's documents scored,
/// into the step's output directory.
pub fn run_score_step(
    plan: &Plan,
    step_id: &str,
    run_dir: &Path,
    options: &TrainOptions,
) -> Result<StepOutcome, TrainError> {
    let step = plan.step(step_id)?;
    let p = match &step.params {
        StepParams::Score(p) => p,
        _ => return Err(step.not(StepKind::Score).into()),
    };
    let output = spec::output(step, run_dir)?;
    let samples = crate::steps::inputs_of(plan, step, StepKind::Sample, run_dir)?;
    let Some((_, sample_dir)) = samples.first() else {
        return Err(TrainError::Plan(format!(
            "score step `{}` has no sample step among its inputs",
            step.name
        )));
    };
    if let Some(n) = options.threads {
        tch::set_num_threads(n.clamp(1, i32::MAX as usize) as i32);
    }
    let job = ScoreJob {
        name: step.name.clone(),
        id: Some(step.id.clone()),
        source: Some(p.source.clone()),
        input: sample_dir.join(DOCS_FILE),
        output,
        scorer: p.scorer.clone(),
        method: p.method.clone(),
        max_tokens: Some(p.max_tokens),
        batch_docs: p.batch_docs,
        max_document_bytes: plan_document_limit(plan),
        context: ScorerContext {
            plan: Some((plan, step)),
            run_dir,
            source_root: options.source_root.as_deref().unwrap_or(run_dir),
            device: options.device,
        },
        progress: options.progress.unwrap_or(true),
        stop: options.stop.clone(),
    };
    Ok(match score_documents(&job)? {
        ScoreOutcome::Done(r) => StepOutcome::Scored(r),
        ScoreOutcome::AlreadyDone(r) => StepOutcome::AlreadyScored(r),
        ScoreOutcome::Stopped { docs } => StepOutcome::Checkpointed { next_step: docs },
    })
}

/// The largest `max_document_bytes` of the plan's ingest steps (kiln-data's default where a
/// step gives none): the limit the sample step's documents were read with.
fn plan_document_limit(plan: &Plan) -> u64 {
    plan.steps
        .iter()
        .filter_map(|s| match &s.params {
            StepParams::Ingest(p) => {
                Some(p.max_document_bytes.unwrap_or(DEFAULT_MAX_DOCUMENT_BYTES))
            }
            _ => None,
        })
        .max()
        .unwrap_or(DEFAULT_MAX_DOCUMENT_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings_are_the_first_integer_on_the_scale() {
        assert_eq!(parse_rating("Educational score: 3", 5), Some(3));
        assert_eq!(parse_rating("score 4/5", 5), Some(4));
        assert_eq!(parse_rating("7, no: 2", 5), Some(2));
        assert_eq!(parse_rating("-1 then 0", 5), Some(0));
        assert_eq!(parse_rating("none", 5), None);
        assert_eq!(parse_rating("", 5), None);
        assert_eq!(parse_rating("99999999999999999999999", 5), None);
        assert_eq!(parse_rating("3.5", 5), Some(3));
    }

    #[test]
    fn settings_differences_are_named() {
        let a = Settings::new(
            &ScorerModel::HuggingFace { path: "m".into() },
            &ScoreMethod::Perplexity,
            Some(10),
            4,
        );
        let mut b = a.clone();
        b.batch_docs = 8;
        assert_eq!(settings_difference(&a, &b), "batch_docs was 4, now 8");
    }
}
