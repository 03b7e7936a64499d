//! `kiln data …`: the data steps on files of the user's choosing, outside a plan (dedup,
//! quality filter, the quality classifier, tokenizer training and encoding), with text or
//! JSON summaries.
//!
//! The `kiln` binary nests [`DataCommand`] as its `data` subcommand and calls [`run`].
//! Exit codes follow `kiln`'s: 0 done; 1 the work failed (no document could be read, a
//! tokenizer could not be trained, …); 2 usage or IO errors: arguments, inputs or outputs
//! that cannot be used (checked before any work where they can be: inputs that are missing
//! or of unknown format, settings out of range, an output of the wrong kind or one that
//! would replace an input) and files that cannot be read or written during it.
//!
//! Outputs are written whole or not at all (`kiln_fsio`): a failed command leaves the old
//! output as it was. `dedup`, `filter` and `classify apply` refuse an output that is one of
//! their inputs unless `--in-place` is given (the input is then replaced once the new file
//! is complete); `tokenize` and `classify train` refuse an output directory that holds an
//! input, and replace the directory whole. A command that reads no document because every line was malformed or too large
//! fails (exit 1) naming the first such line, rather than writing an empty output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

use kiln_fsio::AtomicDir;

use crate::exact::BloomFilter;
use crate::filters::Models;
use crate::ingest::{
    expand_inputs, format_of, Format, IngestConfig, DEFAULT_MAX_DOCUMENT_BYTES, DEFAULT_TEXT_FIELD,
};
use crate::near::{
    MinHasher, NearParams, DEFAULT_BANDS, DEFAULT_NGRAM, DEFAULT_ROWS, MINHASH_SEED,
};
use crate::ops::{self, ExactSettings};
use crate::plan::{ClassifierLabels, KeepRule, TrainClassifierParams};
use crate::shards::DATA_PREFIX;
use crate::steps;
use crate::tokenize::{self, ModelKind, Pretokenize, TrainConfig, WordCounter};

/// The exact-dedup false-positive rate when none is given (the DESIGN.md example's
/// `bloom { false_positive = 1e-6 }`; assumption: one unique document lost per million).
pub const DEFAULT_FALSE_POSITIVE: f64 = 1e-6;

/// `kiln data` subcommands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Remove duplicate documents: exact copies (Bloom filter) and near copies (MinHash LSH).
    /// Without --exact or --near, both.
    Dedup(DedupArgs),
    /// Remove low-quality documents by heuristic rules (Gopher, C4, FineWeb).
    Filter(FilterArgs),
    /// Train a tokenizer (--vocab) or load one (--tokenizer), and encode the documents into
    /// Megatron-LM token shards (OUT/text_document.bin/.idx).
    Tokenize(TokenizeArgs),
    /// Train a quality classifier on a scorer's scores (`train`), or keep the documents it
    /// scores at least a threshold (`apply`).
    Classify(ClassifyArgs),
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[command(subcommand)]
    pub cmd: ClassifyCommand,
}

/// `kiln data classify` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClassifyCommand {
    /// Train a fastText-style classifier on scored documents: writes OUT/classifier.json and
    /// OUT/report.json (held-out Spearman and AUC, the resolved keep threshold).
    Train(ClassifyTrainArgs),
    /// Keep the documents a trained classifier scores at least the threshold.
    Apply(ClassifyApplyArgs),
}

#[derive(Debug, Args)]
pub struct ClassifyTrainArgs {
    /// Score files: `{"id", "text", "score", "tokens"}` lines (a score step's scores.jsonl;
    /// `score` null where the scorer could not grade the document).
    #[arg(long, required = true, num_args = 1..)]
    pub scores: Vec<PathBuf>,
    /// The output directory (classifier.json, report.json), replaced whole.
    #[arg(short = 'o', long)]
    pub out: PathBuf,
    /// `regression` (learn the standardised score by least squares) or `top:FRACTION` (the
    /// top fraction of the documents by score are good; logistic), e.g. `top:30%`.
    #[arg(long, default_value = "top:50%", value_parser = parse_labels)]
    pub labels: ClassifierLabels,
    /// Keep this fraction of documents (`70%` or `0.7`): the threshold is the classifier
    /// score that keeps it on the scored documents. Without --keep or --threshold: the top
    /// labels' fraction (half for regression).
    #[arg(long, value_parser = parse_fraction, conflicts_with = "threshold")]
    pub keep: Option<f64>,
    /// Keep documents whose classifier score is at least this (a probability for top labels,
    /// a predicted score for regression).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Scored documents held out to measure the classifier (`10%` or `0.1`).
    #[arg(long, default_value = "0.1", value_parser = parse_fraction)]
    pub held_out: f64,
    /// Seeds the held-out split and the training.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct ClassifyApplyArgs {
    /// The classifier: a `classify train` (or train_classifier step) directory, whose
    /// report.json holds the threshold, or a classifier.json file.
    #[arg(long)]
    pub classifier: PathBuf,
    /// Input files, directories or `*` patterns.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The output file (.jsonl or .jsonl.zst).
    #[arg(short = 'o', long)]
    pub out: PathBuf,
    /// Keep documents scoring at least this (default: the threshold of the classifier's
    /// report.json).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Allow --out to be one of the inputs (replaced once the output is complete).
    #[arg(long)]
    pub in_place: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// A fraction: `30%` or `0.3`, in [0, 1].
pub fn parse_fraction(s: &str) -> Result<f64, String> {
    let v = match s.trim().strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map(|v| v / 100.0),
        None => s.trim().parse::<f64>(),
    }
    .map_err(|_| format!("`{s}` is not a fraction (`30%` or `0.3`)"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("`{s}` is not between 0 and 100 %"))
    }
}

/// `regression`, `top` (half) or `top:FRACTION`.
pub fn parse_labels(s: &str) -> Result<ClassifierLabels, String> {
    match s.split_once(':') {
        None if s == "regression" => Ok(ClassifierLabels::Regression),
        None if s == "top" => Ok(ClassifierLabels::Top { fraction: 0.5 }),
        Some(("top", f)) => {
            let fraction = parse_fraction(f)?;
            if fraction > 0.0 {
                Ok(ClassifierLabels::Top { fraction })
            } else {
                Err("the top fraction must be above 0".into())
            }
        }
        _ => Err(format!(
            "`{s}`: the labels are `regression` or `top:FRACTION` (e.g. `top:30%`)"
        )),
    }
}

/// How the summary is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Options every `kiln data` command takes.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The JSONL field holding the text.
    #[arg(long, default_value = DEFAULT_TEXT_FIELD)]
    pub text_field: String,
    /// Worker threads (default: one per core; at most one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Skip (and count) documents whose text is longer than this many bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_DOCUMENT_BYTES, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_document_bytes: u64,
    /// The summary's format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Hide progress (a bar on a terminal, a line every few seconds otherwise).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct DedupArgs {
    /// Input files, directories or `*` patterns (.jsonl, .jsonl.zst, .txt, .txt.zst).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The output file (.jsonl or .jsonl.zst).
    #[arg(long)]
    pub out: PathBuf,
    /// Remove exact copies.
    #[arg(long)]
    pub exact: bool,
    /// The Bloom filter's false-positive rate.
    #[arg(long, default_value_t = DEFAULT_FALSE_POSITIVE)]
    pub false_positive: f64,
    /// Remove near copies.
    #[arg(long)]
    pub near: bool,
    /// Words per shingle.
    #[arg(long, default_value_t = DEFAULT_NGRAM)]
    pub ngram: usize,
    /// LSH bands.
    #[arg(long, default_value_t = DEFAULT_BANDS)]
    pub bands: usize,
    /// Hashes per band.
    #[arg(long, default_value_t = DEFAULT_ROWS)]
    pub rows: usize,
    /// Allow --out to be one of the inputs (replaced once the output is complete).
    #[arg(long)]
    pub in_place: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Input files, directories or `*` patterns.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The output file (.jsonl or .jsonl.zst).
    #[arg(long)]
    pub out: PathBuf,
    /// Rule families, comma-separated: gopher, gopher_repetition, gopher_quality, c4, fineweb.
    #[arg(long, value_delimiter = ',', default_value = "gopher")]
    pub rules: Vec<String>,
    /// Allow --out to be one of the inputs (replaced once the output is complete).
    #[arg(long)]
    pub in_place: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// Input files, directories or `*` patterns.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The output directory (tokenizer.json, text_document.bin/.idx, report.json), replaced
    /// whole.
    #[arg(long)]
    pub out: PathBuf,
    /// Train a tokenizer with this vocabulary size (special and byte tokens included).
    #[arg(
        long,
        conflicts_with = "tokenizer",
        required_unless_present = "tokenizer"
    )]
    pub vocab: Option<u64>,
    /// The model to train.
    #[arg(long, value_enum, default_value_t = ModelKind::Bpe)]
    pub kind: ModelKind,
    /// Pre-tokenisation (default: byte-level for BPE, metaspace for Unigram).
    #[arg(long, value_enum)]
    pub pretokenize: Option<Pretokenize>,
    /// Encode with this tokenizer.json instead of training one.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Only train; do not encode.
    #[arg(long, conflicts_with = "tokenizer")]
    pub no_encode: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// A failed command: its message and exit code (1 the work failed, 2 unusable inputs).
#[derive(Debug)]
pub struct Failure(pub String, pub u8);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

fn fail(e: impl std::fmt::Display) -> Failure {
    Failure(e.to_string(), 1)
}

/// A step's failure: 2 when a file could not be read or written, 1 when the work failed.
fn step_failure(e: ops::DataError) -> Failure {
    Failure(e.message, if e.io { 2 } else { 1 })
}

/// A usage or IO error (exit 2): arguments, inputs or outputs that cannot be used.
fn usage(e: impl std::fmt::Display) -> Failure {
    Failure(e.to_string(), 2)
}

/// Runs a `kiln data` command; prints the summary on stdout and errors on stderr.
pub fn run(cmd: DataCommand) -> ExitCode {
    let common = match &cmd {
        DataCommand::Dedup(a) => &a.common,
        DataCommand::Filter(a) => &a.common,
        DataCommand::Tokenize(a) => &a.common,
        DataCommand::Classify(c) => match &c.cmd {
            ClassifyCommand::Train(a) => &a.common,
            ClassifyCommand::Apply(a) => &a.common,
        },
    };
    let format = common.format;
    let result = match thread_count(common.threads) {
        Err(failure) => Err(failure),
        Ok(None) => execute(&cmd),
        Ok(Some(n)) => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
            Ok(pool) => pool.install(|| execute(&cmd)),
            Err(e) => Err(fail(e)),
        },
    };
    match result {
        Ok(summary) => {
            match format {
                OutputFormat::Json => match serde_json::to_string_pretty(&summary) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(1);
                    }
                },
                OutputFormat::Text => print!("{}", text_summary(&summary)),
            }
            ExitCode::SUCCESS
        }
        Err(Failure(message, code)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// The threads `--threads` asks for, at most one per core of this machine (more only
/// wait for a core, and a huge number stalls starting them): a note on stderr when capped.
pub fn thread_count(asked: Option<usize>) -> Result<Option<usize>, Failure> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match asked {
        None => Ok(None),
        Some(0) => Err(usage("--threads must be at least 1")),
        Some(n) if n > cores => {
            eprintln!("note: --threads {n} is more than the {cores} cores here; using {cores}");
            Ok(Some(cores))
        }
        Some(n) => Ok(Some(n)),
    }
}

/// What the commands read: kiln's ids carried through, the common options applied.
fn ingest_config(inputs: &[PathBuf], common: &CommonArgs) -> IngestConfig {
    let mut config = IngestConfig::new(inputs.to_vec()).with_ids();
    config.text_field = common.text_field.clone();
    config.max_document_bytes = common.max_document_bytes;
    config
}

/// The expanded input files (exit 2 when any cannot be used).
fn input_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, Failure> {
    Ok(expand_inputs(inputs)
        .map_err(usage)?
        .into_iter()
        .map(|f| f.path)
        .collect())
}

/// Checks a JSONL output file before any work: its name, that it is not a directory, and
/// that it is none of the inputs unless `in_place` (exit 2 otherwise).
fn check_output_file(out: &Path, inputs: &[PathBuf], in_place: bool) -> Result<(), Failure> {
    if !matches!(format_of(out), Some((Format::Jsonl, _))) {
        return Err(usage(format!(
            "output `{}` must end in .jsonl or .jsonl.zst",
            out.display()
        )));
    }
    if out.is_dir() {
        return Err(usage(format!(
            "`{}` is a directory; name a file to write instead",
            out.display()
        )));
    }
    if !in_place {
        let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
        kiln_fsio::refuse_inputs(out, &inputs, Some("--in-place")).map_err(usage)?;
    }
    Ok(())
}

/// Whether to show progress (a bar on a terminal, log lines otherwise).
fn progress(common: &CommonArgs) -> bool {
    !common.quiet
}

/// Runs a command (on the current rayon pool; `--threads` is [`run`]'s) and returns the
/// summary [`run`] prints: always `command`, `output`, `input_docs` and `kept_docs`.
pub fn execute(cmd: &DataCommand) -> Result<Value, Failure> {
    match cmd {
        DataCommand::Dedup(a) => {
            let files = input_files(&a.inputs)?;
            let config = ingest_config(&a.inputs, &a.common);
            check_output_file(&a.out, &files, a.in_place)?;
            let (exact, near) = if !a.exact && !a.near {
                (true, true)
            } else {
                (a.exact, a.near)
            };
            let exact = exact.then_some(ExactSettings {
                false_positive: a.false_positive,
                expected_docs: None,
            });
            if exact.is_some() {
                BloomFilter::for_items(1, a.false_positive).map_err(usage)?;
            }
            let near = near.then_some(NearParams {
                ngram: a.ngram,
                bands: a.bands,
                rows: a.rows,
                seed: MINHASH_SEED,
            });
            if let Some(p) = near {
                MinHasher::new(p).map_err(usage)?;
            }
            let report =
                ops::dedup_documents(&config, exact.as_ref(), near, &a.out, progress(&a.common))
                    .map_err(step_failure)?;
            let mut v = serde_json::to_value(&report).map_err(fail)?;
            annotate(&mut v, "dedup", &a.out);
            Ok(v)
        }
        DataCommand::Filter(a) => {
            let files = input_files(&a.inputs)?;
            let config = ingest_config(&a.inputs, &a.common);
            check_output_file(&a.out, &files, a.in_place)?;
            let quality = ops::quality_config(&a.rules).map_err(usage)?;
            let report = ops::filter_documents(
                &config,
                &quality,
                Models::default(),
                &a.out,
                progress(&a.common),
            )
            .map_err(step_failure)?;
            let mut v = serde_json::to_value(&report).map_err(fail)?;
            annotate(&mut v, "filter", &a.out);
            Ok(v)
        }
        DataCommand::Tokenize(a) => tokenize_command(a),
        DataCommand::Classify(c) => match &c.cmd {
            ClassifyCommand::Train(a) => classify_train(a),
            ClassifyCommand::Apply(a) => classify_apply(a),
        },
    }
}

/// `kiln data classify train`: `ops::train_quality_classifier` into a directory replaced
/// whole, with the summary as its report.json.
fn classify_train(a: &ClassifyTrainArgs) -> Result<Value, Failure> {
    for f in &a.scores {
        if !f.is_file() {
            return Err(usage(format!(
                "score file `{}` does not exist",
                f.display()
            )));
        }
    }
    let inputs: Vec<&Path> = a.scores.iter().map(PathBuf::as_path).collect();
    kiln_fsio::refuse_inputs(&a.out, &inputs, None).map_err(usage)?;
    if a.out.exists() && !a.out.is_dir() {
        return Err(usage(format!(
            "`{}` exists and is not a directory; name a directory",
            a.out.display()
        )));
    }
    if a.held_out >= 1.0 {
        return Err(usage("--held-out must be below 100 %"));
    }
    let keep = match (a.keep, a.threshold) {
        (Some(fraction), _) => KeepRule::Fraction { fraction },
        (None, Some(min_score)) if min_score.is_finite() => KeepRule::Threshold { min_score },
        (None, Some(t)) => return Err(usage(format!("--threshold {t} is not a number"))),
        (None, None) => KeepRule::Fraction {
            fraction: match a.labels {
                ClassifierLabels::Top { fraction } => fraction,
                ClassifierLabels::Regression => 0.5,
            },
        },
    };
    let params = TrainClassifierParams {
        labels: a.labels,
        keep,
        held_out_fraction: a.held_out,
        seed: a.seed,
    };
    let scores: Vec<ops::ScoreInput> = a
        .scores
        .iter()
        .map(|p| ops::ScoreInput {
            name: p.display().to_string(),
            path: p.clone(),
        })
        .collect();
    let work = AtomicDir::create(&a.out).map_err(usage)?;
    let report =
        ops::train_quality_classifier(&scores, &params, work.path()).map_err(step_failure)?;
    let mut v = serde_json::to_value(&report).map_err(fail)?;
    annotate(&mut v, "classify train", &a.out);
    let text = serde_json::to_string_pretty(&v).map_err(fail)? + "\n";
    kiln_fsio::write(&work.path().join(steps::REPORT_FILE), text.as_bytes()).map_err(usage)?;
    work.commit().map_err(usage)?;
    Ok(v)
}

/// `kiln data classify apply`: the quality filter with the classifier alone.
fn classify_apply(a: &ClassifyApplyArgs) -> Result<Value, Failure> {
    let files = input_files(&a.inputs)?;
    let config = ingest_config(&a.inputs, &a.common);
    check_output_file(&a.out, &files, a.in_place)?;
    let trained = ops::load_classifier(&a.classifier).map_err(usage)?;
    let threshold = match (a.threshold, trained.threshold) {
        (Some(t), _) if !t.is_finite() => {
            return Err(usage(format!("--threshold {t} is not a number")))
        }
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => {
            return Err(usage(format!(
                "`{}` has no report.json with a threshold: give --threshold",
                a.classifier.display()
            )))
        }
    };
    let quality = ops::classifier_only(threshold);
    let models = Models {
        classifier: Some(&trained.classifier),
        ..Default::default()
    };
    let report = ops::filter_documents(&config, &quality, models, &a.out, progress(&a.common))
        .map_err(step_failure)?;
    let mut v = serde_json::to_value(&report).map_err(fail)?;
    v["threshold"] = json!(threshold);
    v["objective"] = json!(trained.classifier.objective().name());
    annotate(&mut v, "classify apply", &a.out);
    Ok(v)
}

/// Adds the command and output path in front of a report.
fn annotate(v: &mut Value, command: &str, out: &Path) {
    if let Value::Object(map) = v {
        let mut head = serde_json::Map::new();
        head.insert("command".into(), json!(command));
        head.insert("output".into(), json!(out.display().to_string()));
        head.extend(std::mem::take(map));
        *map = head;
    }
}

fn tokenize_command(a: &TokenizeArgs) -> Result<Value, Failure> {
    let files = input_files(&a.inputs)?;
    let config = ingest_config(&a.inputs, &a.common);
    let inputs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    kiln_fsio::refuse_inputs(&a.out, &inputs, None).map_err(usage)?;
    if a.out.exists() && !a.out.is_dir() {
        return Err(usage(format!(
            "`{}` exists and is not a directory; name a directory",
            a.out.display()
        )));
    }
    let show = progress(&a.common);
    /// Where the tokenizer comes from.
    enum Source {
        Train(TrainConfig),
        Load(Box<tokenize::Tokenizer>),
    }
    let eod_of = |tokenizer: &tokenize::Tokenizer| {
        tokenize::eod_token(tokenizer)
            .map(|(_, id)| id)
            .ok_or_else(|| {
                format!(
                    "the tokenizer has none of the end-of-document tokens {:?}",
                    tokenize::EOD_CANDIDATES
                )
            })
    };
    let source = match (a.vocab, &a.tokenizer) {
        (Some(vocab), _) => {
            let train = TrainConfig {
                kind: a.kind,
                vocab_size: vocab,
                pretokenize: a.pretokenize.unwrap_or(a.kind.default_pretokenize()),
            };
            WordCounter::new(train).map_err(usage)?;
            Source::Train(train)
        }
        (None, Some(path)) => {
            let tokenizer = tokenize::load(path).map_err(usage)?;
            if !a.no_encode {
                eod_of(&tokenizer).map_err(usage)?;
            }
            Source::Load(Box::new(tokenizer))
        }
        (None, None) => {
            return Err(usage(
                "give --vocab N to train a tokenizer or --tokenizer FILE to use one",
            ))
        }
    };
    // The whole directory is built beside the old one and swapped in at the end: a failure
    // leaves the old directory as it was.
    let work = AtomicDir::create(&a.out).map_err(usage)?;
    let dir = work.path();
    let mut summary = serde_json::Map::new();
    let tokenizer = match source {
        Source::Train(train) => {
            let report = ops::train_tokenizer(&config, train, dir, show).map_err(step_failure)?;
            summary.insert("input_docs".into(), json!(report.input_docs));
            summary.insert("kept_docs".into(), json!(report.kept_docs));
            summary.insert("too_large_docs".into(), json!(report.too_large_docs));
            summary.insert("malformed_lines".into(), json!(report.malformed_lines));
            summary.insert("malformed".into(), json!(report.malformed));
            summary.insert("too_large".into(), json!(report.too_large));
            summary.insert(
                "tokenizer".into(),
                serde_json::to_value(&report.tokenizer).map_err(fail)?,
            );
            tokenize::load(dir).map_err(fail)?
        }
        Source::Load(tokenizer) => {
            tokenize::save(&tokenizer, dir).map_err(usage)?;
            *tokenizer
        }
    };
    if !a.no_encode {
        let eod = eod_of(&tokenizer).map_err(fail)?;
        let report = ops::encode_documents(&config, &tokenizer, eod, &dir.join(DATA_PREFIX), show)
            .map_err(step_failure)?;
        let encode = serde_json::to_value(&report).map_err(fail)?;
        summary.insert("input_docs".into(), json!(report.input_docs));
        summary.insert("kept_docs".into(), json!(report.kept_docs));
        summary.insert("too_large_docs".into(), json!(report.too_large_docs));
        summary.insert("malformed_lines".into(), json!(report.malformed_lines));
        summary.insert("malformed".into(), json!(report.malformed));
        summary.insert("too_large".into(), json!(report.too_large));
        summary.insert("tokens".into(), json!(report.tokens));
        summary.insert("encode".into(), encode);
    }
    let mut v = Value::Object(summary);
    annotate(&mut v, "tokenize", &a.out);
    let text = serde_json::to_string_pretty(&v).map_err(fail)? + "\n";
    kiln_fsio::write(&dir.join(steps::REPORT_FILE), text.as_bytes()).map_err(usage)?;
    work.commit().map_err(usage)?;
    Ok(v)
}

/// The text form of a summary: counts first, then what was removed.
fn text_summary(v: &Value) -> String {
    let get = |k: &str| v.get(k).and_then(Value::as_u64);
    let mut out = String::new();
    let command = v.get("command").and_then(Value::as_str).unwrap_or("data");
    let output = v.get("output").and_then(Value::as_str).unwrap_or("");
    if command == "classify train" {
        return classify_train_summary(v, output);
    }
    if let (Some(input), Some(kept)) = (get("input_docs"), get("kept_docs")) {
        let pct = if input == 0 {
            100.0
        } else {
            kept as f64 / input as f64 * 100.0
        };
        out += &format!("{command}: kept {kept} of {input} documents ({pct:.2} %) → {output}\n");
    }
    if let Some(Value::Object(removed)) = v.get("removed") {
        let removed: BTreeMap<&String, u64> = removed
            .iter()
            .filter_map(|(k, n)| n.as_u64().map(|n| (k, n)))
            .filter(|(_, n)| *n > 0)
            .collect();
        for (rule, n) in removed {
            out += &format!("  removed by {rule}: {n}\n");
        }
    }
    if let Some(t) = v.get("tokenizer") {
        out += &format!(
            "  tokenizer: {} {} words, vocabulary {} (asked {})\n",
            t.get("kind").and_then(Value::as_str).unwrap_or("?"),
            t.get("pretokenize").and_then(Value::as_str).unwrap_or("?"),
            t.get("vocab_size").and_then(Value::as_u64).unwrap_or(0),
            t.get("vocab_requested")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        );
    }
    if let Some(t) = v.get("threshold").and_then(Value::as_f64) {
        out += &format!("  threshold: classifier score ≥ {}\n", short_number(t));
    }
    if let Some(tokens) = get("tokens") {
        out += &format!("  tokens: {tokens} (end-of-document tokens included)\n");
    }
    if let Some(n) = get("malformed_lines").filter(|&n| n > 0) {
        out += &format!("  skipped {n} malformed lines");
        out += &first_of(v, "malformed");
    }
    if let Some(n) = get("too_large_docs").filter(|&n| n > 0) {
        out += &format!("  skipped {n} documents above --max-document-bytes");
        out += &first_of(v, "too_large");
    }
    out
}

/// A number for the text summaries: three decimals, or three significant digits in
/// scientific notation when smaller than 0.01 (a saturated classifier's thresholds).
fn short_number(x: f64) -> String {
    if x != 0.0 && x.abs() < 0.01 {
        format!("{x:.3e}")
    } else {
        format!("{x:.3}")
    }
}

/// The text summary of `classify train`.
fn classify_train_summary(v: &Value, output: &str) -> String {
    let u = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let f = |k: &str| {
        v.get(k)
            .and_then(Value::as_f64)
            .map_or("-".into(), short_number)
    };
    let mut out = format!(
        "classify train: {} documents trained on, {} held out ({} without a score) → {output}\n",
        u("train_docs"),
        u("held_out_docs"),
        u("null_score_docs")
    );
    out += &format!(
        "  labels: {} ({}), good = score ≥ {} ({} of {} documents)\n",
        v.get("labels").and_then(Value::as_str).unwrap_or("?"),
        v.get("objective").and_then(Value::as_str).unwrap_or("?"),
        f("label_cut"),
        u("good_docs"),
        u("kept_docs"),
    );
    out += &format!(
        "  held out: Spearman {}, AUC {}, accuracy {}\n",
        f("held_out_spearman"),
        f("held_out_auc"),
        f("held_out_accuracy")
    );
    out += &format!(
        "  threshold: classifier score ≥ {} keeps {:.1} % of the scored documents\n",
        f("threshold"),
        v.get("sample_kept_fraction")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
            * 100.0
    );
    out
}

/// `(the first: PATH:LINE: reason)` from a report's list of skipped lines, and a newline.
fn first_of(v: &Value, list: &str) -> String {
    match v
        .get(list)
        .and_then(Value::as_array)
        .and_then(|l| l.first())
    {
        Some(m) => format!(
            " (the first: {}:{}: {})\n",
            m.get("path").and_then(Value::as_str).unwrap_or("?"),
            m.get("line").and_then(Value::as_u64).unwrap_or(0),
            m.get("reason").and_then(Value::as_str).unwrap_or("?"),
        ),
        None => "\n".to_string(),
    }
}
