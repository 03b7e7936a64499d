//! The run plan: every type that appears in `plan.json`, written by the compiler (`kiln
//! plan`) and read by the runtime (kiln-worker, kiln-train, kiln-data) — the only contract
//! between the two halves. [`PLAN_VERSION`] is declared here once and [`RunPlan::from_json`]
//! is the one loader that checks it; `CHANGELOG.md` beside this crate says what each version
//! changed. JSON Schema derivations are behind the `schema` feature (`kiln schema`).

pub mod launch;
pub mod run_dir;
pub mod schedule;
pub mod scheduler;
pub mod spec;
pub mod step;
pub mod topology;

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use schedule::{
    lr_for_step, ramp_batch, BatchSegment, BatchStage, LrSchedule, PhaseSchedule, Schedule,
};
pub use scheduler::{SchedulerSpec, EXIT_CHECKPOINTED, STOP_FILE_ENV};
pub use spec::*;
pub use step::{
    CheckpointParams, EncodeParams, EvaluateParams, IngestParams, MixParams, Resources, Step,
    StepKind, StepParams, TokenizerParams, TrainParams,
};
pub use topology::{Groups, Rank, Sizes, Topology};

/// Bumped whenever the plan's meaning or shape changes; the runtime refuses other versions.
/// 2: integer topology sizes in training steps, typed step parameters, `predictions`;
/// 3: the unit `usd_per_hour`; 4: `scheduler`; 5: model-based quality filtering; 6: the
/// batch per step (`batch`, `batch_ramp`) and the model's `rotary_fraction`, `block` and
/// `embedding_norm` (CHANGELOG.md).
pub const PLAN_VERSION: u32 = 7;

pub use run_dir::PLAN_FILE;

/// The program that executes one step of a plan for one rank.
pub const WORKER: &str = "kiln-worker";

/// Writes `bytes` to `path` by kiln's one safe-write rule: a temporary file in the same
/// directory, synced, renamed into place, and the directory synced (kiln-fsio).
pub use kiln_fsio::write as write_atomic;

/// A run plan. `A` is the compiler's analysis: the compiler writes (and describes) its own
/// typed report; the runtime reads it as JSON and compares against [`Predictions`] only.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunPlan<A = serde_json::Value> {
    pub version: u32,
    pub experiment: ExperimentSpec,
    /// What the runtime compares its measurements with.
    pub predictions: Predictions,
    /// Every number the compiler derived (`kiln explain --format json`), for people and tools.
    pub analysis: A,
    pub topology: Topology,
    pub schedule: Schedule,
    /// The cluster's scheduler limits and names (sbatch headers, long runs split into jobs).
    pub scheduler: SchedulerSpec,
    pub steps: Vec<Step>,
}

/// The compiler's predictions that the runtime measures and reports beside them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Predictions {
    /// Cluster-wide training tokens per second on the declared hardware.
    pub tokens_per_s: Option<f64>,
    /// Seconds per optimizer step.
    pub step_time_s: Option<f64>,
    /// Memory of the most loaded device (bytes): allocated, fragmentation and runtime.
    pub memory_per_gpu_bytes: Option<f64>,
    /// Model FLOPs over step time × GPUs × peak.
    pub mfu: Option<f64>,
    /// Bytes each GPU sends for data parallelism per optimizer step.
    pub data_bytes_per_step: Option<f64>,
    /// Model-state bytes on the most loaded device, as the plan's engine keeps them.
    pub state_bytes: Option<ModelStateBytes>,
}

/// Weights, gradients and optimizer states on one device (bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ModelStateBytes {
    pub weights: f64,
    pub gradients: f64,
    pub optimizer: f64,
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
            PlanError::Params { step, why } => write!(f, "step `{step}`: {why}"),
        }
    }
}

impl std::error::Error for PlanError {}

impl<A: DeserializeOwned> RunPlan<A> {
    /// Parses a plan, checking its version first so that a plan of another version says so
    /// rather than failing on a field that moved. A missing field is an error naming it:
    /// nothing in a plan has a default.
    pub fn from_json(text: &str) -> Result<Self, PlanError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| PlanError::Parse(e.to_string()))?;
        Self::from_value(value)
    }

    /// The same from an already parsed JSON value.
    pub fn from_value(value: serde_json::Value) -> Result<Self, PlanError> {
        let version = value
            .get("version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| PlanError::Parse("no `version`".into()))?;
        if version != u64::from(PLAN_VERSION) {
            return Err(PlanError::Version(
                u32::try_from(version).unwrap_or(u32::MAX),
            ));
        }
        serde_json::from_value(value).map_err(|e| PlanError::Parse(e.to_string()))
    }

    /// Reads and parses a plan file.
    pub fn load(path: &Path) -> Result<Self, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }
}

impl<A> RunPlan<A> {
    /// The step with this id (or, for convenience, this name: `train.main`).
    pub fn step(&self, id_or_name: &str) -> Result<&Step, PlanError> {
        self.steps
            .iter()
            .find(|s| s.id == id_or_name)
            .or_else(|| self.steps.iter().find(|s| s.name == id_or_name))
            .ok_or_else(|| PlanError::NoStep(id_or_name.to_string()))
    }

    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<&SourceSpec> {
        self.experiment.sources.iter().find(|s| s.name == name)
    }
}
