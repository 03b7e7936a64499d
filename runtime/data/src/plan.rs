//! The run plan as the data steps read it: kiln-data's own serde structs over the plan JSON
//! (`kiln plan`), holding only the fields the data steps need; every other field is ignored.
//!
//! The plan is the only interface between the compiler and the runtime (DESIGN.md), so
//! these structs mirror the compiler's `plan::RunPlan` without depending on it. A plan of
//! another [`PLAN_VERSION`] is refused.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The plan version this runtime executes (the compiler's `plan::PLAN_VERSION`).
pub const PLAN_VERSION: u32 = 1;

/// The plan (the fields the data steps read).
#[derive(Clone, Debug, Deserialize)]
pub struct Plan {
    pub version: u32,
    pub experiment: Experiment,
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Experiment {
    pub name: String,
    pub seed: u64,
    pub sources: Vec<Source>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Source {
    pub name: String,
    pub path: String,
    pub text_field: String,
    /// Unique tokens the experiment declares for the source, if it does.
    pub unique_tokens: Option<f64>,
    /// How many times the source may be repeated before kiln warns.
    pub max_epochs: f64,
}

/// A step's kind; kinds this runtime does not know deserialise as `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Ingest,
    ExactDedup,
    NearDedup,
    QualityFilter,
    TrainTokenizer,
    Encode,
    Mix,
    Train,
    Evaluate,
    #[serde(other)]
    Other,
}

impl StepKind {
    /// Whether kiln-data runs it (the rest are training steps).
    pub fn is_data(self) -> bool {
        !matches!(self, StepKind::Train | StepKind::Evaluate | StepKind::Other)
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct Step {
    pub id: String,
    pub kind: StepKind,
    pub name: String,
    pub inputs: Vec<String>,
    /// Directories relative to the run directory; the first is the step's output.
    pub outputs: Vec<String>,
    pub params: serde_json::Value,
}

/// `ingest` parameters.
#[derive(Clone, Debug, Deserialize)]
pub struct IngestParams {
    pub source: String,
    pub path: String,
    pub text_field: String,
    /// Documents with more bytes of text are skipped and counted; absent: the runtime's
    /// default, `ingest::DEFAULT_MAX_DOCUMENT_BYTES` (the compiler does not write it yet).
    #[serde(default)]
    pub max_document_bytes: Option<u64>,
}

/// `exact_dedup` parameters.
#[derive(Clone, Debug, Deserialize)]
pub struct ExactDedupParams {
    pub false_positive: f64,
    pub expected_docs: Option<u64>,
}

/// `near_dedup` parameters.
#[derive(Clone, Debug, Deserialize)]
pub struct NearDedupParams {
    pub ngram: u64,
    pub bands: u64,
    pub rows: u64,
}

/// `quality_filter` parameters.
#[derive(Clone, Debug, Deserialize)]
pub struct QualityParams {
    pub heuristics: Vec<String>,
    pub classifier_threshold: Option<f64>,
    /// Declared thresholds by family, with the filters' field names; a family here is on.
    #[serde(default)]
    pub thresholds: std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

/// `train_tokenizer` parameters.
#[derive(Clone, Debug, Deserialize)]
pub struct TokenizerParams {
    /// `bpe` or `unigram`.
    pub kind: String,
    pub vocab: u64,
    pub seed: u64,
    /// `byte_level` or `metaspace`; absent: the kind's default (the compiler does not
    /// write it yet).
    #[serde(default)]
    pub pretokenize: Option<String>,
}

/// `encode` parameters.
#[derive(Clone, Debug, Deserialize)]
pub struct EncodeParams {
    pub source: String,
    pub seq_len: u64,
}

/// `mix` parameters.
#[derive(Clone, Debug, Deserialize)]
pub struct MixParams {
    pub phase: String,
    /// Tokens the phase trains on (the schedule's `tokens_trained`).
    pub tokens: f64,
    /// Source → weight (fractions summing to 1).
    pub mix: BTreeMap<String, f64>,
    pub seed: u64,
    pub held_out_tokens: f64,
}

/// A plan that cannot be used.
#[derive(Debug)]
pub enum PlanError {
    Read {
        path: String,
        source: std::io::Error,
    },
    Parse(String),
    Version(u32),
    NoStep(String),
    Params {
        step: String,
        why: String,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Read { path, source } => write!(f, "cannot read the plan {path}: {source}"),
            PlanError::Parse(why) => write!(f, "not a kiln run plan: {why}"),
            PlanError::Version(v) => write!(
                f,
                "plan version {v}, but this runtime executes version {PLAN_VERSION}: re-run `kiln plan` with the matching kiln"
            ),
            PlanError::NoStep(id) => write!(f, "the plan has no step `{id}`"),
            PlanError::Params { step, why } => write!(f, "step `{step}`: bad parameters: {why}"),
        }
    }
}

impl std::error::Error for PlanError {}

impl Plan {
    /// Parses a plan and checks its version.
    pub fn from_json(text: &str) -> Result<Plan, PlanError> {
        // The version first, so a plan of another version says so rather than failing on
        // a field that moved.
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_str(text).map_err(|e| PlanError::Parse(e.to_string()))?;
        if v.version != PLAN_VERSION {
            return Err(PlanError::Version(v.version));
        }
        serde_json::from_str(text).map_err(|e| PlanError::Parse(e.to_string()))
    }

    /// Reads and parses `plan.json`.
    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Plan::from_json(&text)
    }

    /// The step with this id (or, for convenience, this name: `encode.web`).
    pub fn step(&self, id_or_name: &str) -> Result<&Step, PlanError> {
        self.steps
            .iter()
            .find(|s| s.id == id_or_name)
            .or_else(|| self.steps.iter().find(|s| s.name == id_or_name))
            .ok_or_else(|| PlanError::NoStep(id_or_name.to_string()))
    }

    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.experiment.sources.iter().find(|s| s.name == name)
    }
}

impl Step {
    /// The step's parameters as `T`.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, PlanError> {
        serde_json::from_value(self.params.clone()).map_err(|e| PlanError::Params {
            step: self.name.clone(),
            why: e.to_string(),
        })
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
}
