//! The steps of a plan: each with its kind's typed parameters, the resources it runs on and
//! the command that runs one rank of it. Step ids are content hashes of the kind, the
//! parameters and the input ids (the compiler's `plan::graph`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::schedule::PhaseSchedule;
use crate::spec::{
    ClassifierLabels, ExactDedupSpec, KeepRule, KlMax, ModelSpec, NearDedupSpec, OptimizerSpec,
    ParallelSpec, Precision, QualitySpec, ScoreMethod, ScorerModel, TokenizerKind,
};
use crate::topology::Sizes;
use crate::PlanError;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Step {
    /// sha256 of the kind, the parameters and the input ids, first 16 hex digits.
    pub id: String,
    /// The step's kind and its parameters (`"kind"` and `"params"` in the JSON).
    #[serde(flatten)]
    pub params: StepParams,
    /// A readable name: `ingest.web`, `train.main`.
    pub name: String,
    /// Ids of the steps whose outputs this step reads.
    pub inputs: Vec<String>,
    /// Paths, relative to the run directory, that the step writes (a directory each,
    /// renamed into place when complete: its existence means the step is done).
    pub outputs: Vec<String>,
    pub resources: Resources,
    /// The command that runs the step (one rank of it), as an argument vector; the runtime
    /// runs exactly this.
    pub command: Vec<String>,
}

/// Each kind of step with everything its result depends on besides its inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", content = "params", rename_all = "snake_case")]
pub enum StepParams {
    Ingest(IngestParams),
    ExactDedup(ExactDedupSpec),
    NearDedup(NearDedupSpec),
    QualityFilter(QualitySpec),
    Sample(SampleParams),
    Score(ScoreParams),
    TrainClassifier(TrainClassifierParams),
    KlReference(KlReferenceParams),
    TrainTokenizer(TokenizerParams),
    Encode(EncodeParams),
    Mix(MixParams),
    Train(Box<TrainParams>),
    Evaluate(EvaluateParams),
}

/// A step's kind without its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StepKind {
    Ingest,
    ExactDedup,
    NearDedup,
    QualityFilter,
    Sample,
    Score,
    TrainClassifier,
    KlReference,
    TrainTokenizer,
    Encode,
    Mix,
    Train,
    Evaluate,
}

impl StepKind {
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Ingest => "ingest",
            StepKind::ExactDedup => "exact_dedup",
            StepKind::NearDedup => "near_dedup",
            StepKind::QualityFilter => "quality_filter",
            StepKind::Sample => "sample",
            StepKind::Score => "score",
            StepKind::TrainClassifier => "train_classifier",
            StepKind::KlReference => "kl_reference",
            StepKind::TrainTokenizer => "train_tokenizer",
            StepKind::Encode => "encode",
            StepKind::Mix => "mix",
            StepKind::Train => "train",
            StepKind::Evaluate => "evaluate",
        }
    }

    /// The steps that run a language model (kiln-train: training, evaluation, scoring);
    /// the rest are data steps (kiln-data).
    pub fn is_training(self) -> bool {
        matches!(self, StepKind::Train | StepKind::Evaluate | StepKind::Score)
    }
}

impl StepParams {
    pub fn kind(&self) -> StepKind {
        match self {
            StepParams::Ingest(_) => StepKind::Ingest,
            StepParams::ExactDedup(_) => StepKind::ExactDedup,
            StepParams::NearDedup(_) => StepKind::NearDedup,
            StepParams::QualityFilter(_) => StepKind::QualityFilter,
            StepParams::Sample(_) => StepKind::Sample,
            StepParams::Score(_) => StepKind::Score,
            StepParams::TrainClassifier(_) => StepKind::TrainClassifier,
            StepParams::KlReference(_) => StepKind::KlReference,
            StepParams::TrainTokenizer(_) => StepKind::TrainTokenizer,
            StepParams::Encode(_) => StepKind::Encode,
            StepParams::Mix(_) => StepKind::Mix,
            StepParams::Train(_) => StepKind::Train,
            StepParams::Evaluate(_) => StepKind::Evaluate,
        }
    }

    /// The parameters alone, as JSON (what the step id hashes).
    pub fn params_json(&self) -> serde_json::Value {
        serde_json::to_value(self)
            .ok()
            .and_then(|mut v| v.get_mut("params").map(serde_json::Value::take))
            .unwrap_or(serde_json::Value::Null)
    }
}

impl Step {
    pub fn kind(&self) -> StepKind {
        self.params.kind()
    }

    /// The step's output directory, relative to the run directory.
    pub fn output(&self) -> Result<&str, PlanError> {
        self.outputs
            .first()
            .map(String::as_str)
            .ok_or_else(|| PlanError::Params {
                step: self.name.clone(),
                why: "no output directory".into(),
            })
    }

    /// A wrong-kind error for a runner handed this step.
    pub fn not(&self, expected: StepKind) -> PlanError {
        PlanError::Params {
            step: self.name.clone(),
            why: format!(
                "a {} step, not a {} step",
                self.kind().name(),
                expected.name()
            ),
        }
    }
}

/// What a step needs to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Resources {
    /// Processes (ranks) the step runs as.
    pub ranks: u32,
    pub nodes: u32,
    /// Accelerators per rank: 1 for training and evaluation on GPUs (kiln-worker then runs
    /// them on CUDA, its ranks' collectives through NCCL); 0 for data steps and for every
    /// step on a CPU device (`arch = cpu`).
    pub gpus_per_rank: u32,
    /// Predicted duration in seconds, where kiln predicts one (training steps).
    pub predicted_seconds: Option<f64>,
}

/// `ingest`: read a source's JSON lines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct IngestParams {
    pub source: String,
    pub path: String,
    pub text_field: String,
    /// Documents with more bytes of text are skipped and counted; absent: the runtime's
    /// default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_document_bytes: Option<u64>,
}

/// `sample`: a seeded sample of a source's documents (after dedup), the same documents
/// whatever the order or number of workers: the `docs` documents with the smallest
/// `xxh3(seed, id)`, written in input order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SampleParams {
    pub source: String,
    pub docs: u64,
    pub seed: u64,
}

/// `score`: every sampled document of a source scored by a language model. Output:
/// `scores.jsonl`, one `{"id", "text", "score", "tokens"}` line per document in sample
/// order (`score` null where a rating reply held no grade); resumable batch by batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ScoreParams {
    pub source: String,
    pub scorer: ScorerModel,
    pub method: ScoreMethod,
    /// Tokens of each document read (its first window; the rating prompt's document is cut
    /// to it).
    pub max_tokens: u64,
    /// Documents per forward batch (and per resumable unit).
    pub batch_docs: u64,
}

/// `train_classifier`: the fastText-style classifier trained on every source's scored
/// sample. Output: `classifier.json` and the resolved keep threshold in the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TrainClassifierParams {
    pub labels: ClassifierLabels,
    pub keep: KeepRule,
    pub held_out_fraction: f64,
    pub seed: u64,
}

/// `kl_reference`: the word-unigram distribution of a reference source and, for a quantile
/// threshold, the KL of its held-out documents. Output: `reference.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct KlReferenceParams {
    pub source: String,
    pub max: KlMax,
    pub smoothing: f64,
    /// Documents held out of the distribution to measure the quantile.
    pub held_out_fraction: f64,
    pub seed: u64,
}

/// `train_tokenizer`: a tokenizer trained on every filtered source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenizerParams {
    pub kind: TokenizerKind,
    pub vocab: u64,
    pub seed: u64,
    /// `byte_level` or `metaspace`; absent: the kind's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretokenize: Option<String>,
}

/// `encode`: a source's documents as token sequences.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EncodeParams {
    pub source: String,
    pub seq_len: u64,
}

/// `mix`: one phase's training stream, drawn from the encoded sources by weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MixParams {
    pub phase: String,
    /// Tokens the phase trains on (the schedule's `tokens_trained`).
    pub tokens: f64,
    /// Source → weight (fractions summing to 1).
    pub mix: BTreeMap<String, f64>,
    pub seed: u64,
    pub held_out_tokens: f64,
}

/// `train`: one phase of training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TrainParams {
    pub phase: String,
    pub model: ModelSpec,
    pub optimizer: OptimizerSpec,
    pub precision: Precision,
    pub parallel: ParallelSpec,
    pub topology: Sizes,
    /// Tokens per optimizer step (global batch × seq_len).
    pub batch_tokens: f64,
    pub schedule: PhaseSchedule,
    pub checkpoint: CheckpointParams,
    pub eval_every_steps: u64,
    pub seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CheckpointParams {
    pub every_steps: u64,
    pub keep: u64,
}

/// `evaluate`: held-out loss of the last phase's model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EvaluateParams {
    pub held_out_tokens: f64,
    pub seed: u64,
}
