//! The run plan as training reads it: kiln-train's own serde structs over the plan JSON.
//!
//! They hold only the fields the train and evaluate steps need.
//!
//! The plan is the only interface between the compiler and the runtime (DESIGN.md), so these
//! structs mirror the compiler's `plan::RunPlan` and `plan::graph` step parameters without
//! depending on them. A plan of another [`PLAN_VERSION`] is refused. Counts that the plan
//! writes as JSON numbers are read whether they are written as integers or as floats with an
//! integral value.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::error::TrainError;

/// The plan version this runtime executes (the compiler's `plan::PLAN_VERSION`).
pub const PLAN_VERSION: u32 = 1;

/// The plan (the fields training reads).
#[derive(Clone, Debug, Deserialize)]
pub struct Plan {
    pub version: u32,
    pub experiment: Experiment,
    pub steps: Vec<Step>,
    /// The compiler's analyses (read for the throughput it predicts, when present).
    #[serde(default)]
    pub analysis: serde_json::Value,
    /// The run's schedule (read for `eval_tokens`).
    #[serde(default)]
    pub schedule: serde_json::Value,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Experiment {
    pub name: String,
    pub seed: u64,
}

/// One step of the graph.
#[derive(Clone, Debug, Deserialize)]
pub struct Step {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub inputs: Vec<String>,
    /// Directories relative to the run directory; the first is the step's output.
    pub outputs: Vec<String>,
    pub params: serde_json::Value,
    #[serde(default)]
    pub resources: Resources,
}

/// What a step runs on (the compiler's `Resources`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Resources {
    /// Accelerators per rank: 1 for training and evaluation on GPUs, 0 on CPUs.
    #[serde(default)]
    pub gpus_per_rank: u32,
}

/// A `train` step's parameters (one phase).
#[derive(Clone, Debug, Deserialize)]
pub struct TrainParams {
    /// Tokens per optimizer step (global batch × seq_len).
    pub batch_tokens: f64,
    pub checkpoint: CheckpointSpec,
    #[serde(deserialize_with = "count")]
    pub eval_every_steps: u64,
    pub model: ModelSpec,
    pub optimizer: OptimizerSpec,
    pub parallel: ParallelSpec,
    pub phase: String,
    pub precision: Precision,
    pub schedule: PhaseSpec,
    pub seed: u64,
    pub topology: TopologySpec,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CheckpointSpec {
    #[serde(deserialize_with = "count")]
    pub every_steps: u64,
    #[serde(deserialize_with = "count")]
    pub keep: u64,
}

/// The decoder's shape (the compiler's `model` record, derived).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ModelSpec {
    pub activation: Activation,
    pub bias: bool,
    pub dropout: f64,
    #[serde(deserialize_with = "count")]
    pub ffn_hidden: u64,
    #[serde(deserialize_with = "count")]
    pub head_dim: u64,
    #[serde(deserialize_with = "count")]
    pub heads: u64,
    #[serde(deserialize_with = "count")]
    pub hidden: u64,
    #[serde(deserialize_with = "count")]
    pub kv_heads: u64,
    #[serde(deserialize_with = "count")]
    pub layers: u64,
    pub norm: Norm,
    /// The compiler's parameter count (`model.rs`), which the built model must equal.
    #[serde(deserialize_with = "count")]
    pub params: u64,
    pub position: Position,
    #[serde(deserialize_with = "count")]
    pub seq_len: u64,
    pub tied_embeddings: bool,
    #[serde(deserialize_with = "count")]
    pub vocab: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Swiglu,
    Gelu,
    Relu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    Rmsnorm,
    Layernorm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    Rope,
    Learned,
    Relative,
    Alibi,
}

#[derive(Clone, Debug, Deserialize)]
pub struct OptimizerSpec {
    pub kind: String,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Global gradient-norm clip; 0 turns clipping off.
    pub grad_clip: f64,
    pub weight_decay: f64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ParallelSpec {
    #[serde(deserialize_with = "count")]
    pub accumulation: u64,
    #[serde(deserialize_with = "count")]
    pub micro_batch: u64,
    #[serde(default, deserialize_with = "count_or_zero")]
    pub zero: u64,
    #[serde(default)]
    pub recompute: Option<String>,
    /// Layers whose activations the plan offloads to host memory (Megatron-LM's CPU offload).
    #[serde(default)]
    pub offload_layers: Option<u64>,
}

/// Numerical precision of a training step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    Fp32,
    Bf16Mixed,
    Fp16Mixed,
    Fp8Mixed,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16Mixed => "bf16_mixed",
            Precision::Fp16Mixed => "fp16_mixed",
            Precision::Fp8Mixed => "fp8_mixed",
        }
    }
}

/// One phase of the schedule (the compiler's `plan::schedule::PhaseSchedule`).
#[derive(Clone, Debug, Deserialize)]
pub struct PhaseSpec {
    pub name: String,
    /// First optimizer step of the phase (0-based, global).
    #[serde(deserialize_with = "count")]
    pub start_step: u64,
    #[serde(deserialize_with = "count")]
    pub steps: u64,
    pub tokens_trained: f64,
    pub anneal: bool,
    pub lr: crate::schedule::LrSchedule,
}

/// The parallel layout the plan declares (sizes as the plan writes them).
#[derive(Clone, Debug, Deserialize)]
pub struct TopologySpec {
    pub tensor: f64,
    pub pipeline: f64,
    pub context: f64,
    pub data: f64,
}

/// An `evaluate` step's parameters.
#[derive(Clone, Debug, Deserialize)]
pub struct EvaluateParams {
    pub held_out_tokens: f64,
    pub seed: u64,
}

/// A count written as an integer or as a float with an integral, non-negative value.
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = serde_json::Number::deserialize(d)?;
    if let Some(n) = v.as_u64() {
        return Ok(n);
    }
    match v.as_f64() {
        Some(x) if x >= 0.0 && x.fract() == 0.0 && x <= u64::MAX as f64 => Ok(x as u64),
        _ => Err(serde::de::Error::custom(format!(
            "expected a non-negative whole number, found {v}"
        ))),
    }
}

fn count_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Option::<serde_json::Number>::deserialize(d)?
        .map(|n| {
            n.as_u64()
                .or_else(|| n.as_f64().filter(|x| *x >= 0.0).map(|x| x as u64))
                .unwrap_or(0)
        })
        .map_or(Ok(0), Ok)
}

impl Plan {
    /// Parses a plan and checks its version first, so a plan of another version says so
    /// rather than failing on a field that moved.
    pub fn from_json(text: &str) -> Result<Plan, TrainError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_str(text)
            .map_err(|e| TrainError::Plan(format!("not a kiln run plan: {e}")))?;
        Plan::check_version(v.version)?;
        serde_json::from_str(text)
            .map_err(|e| TrainError::Plan(format!("not a kiln run plan: {e}")))
    }

    /// The same from an already parsed JSON value.
    pub fn from_value(value: &serde_json::Value) -> Result<Plan, TrainError> {
        let version = value
            .get("version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| TrainError::Plan("not a kiln run plan: no `version`".into()))?;
        Plan::check_version(u32::try_from(version).unwrap_or(u32::MAX))?;
        Plan::deserialize(value).map_err(|e| TrainError::Plan(format!("not a kiln run plan: {e}")))
    }

    /// Reads and parses `plan.json`.
    pub fn load(path: &Path) -> Result<Plan, TrainError> {
        let text = std::fs::read_to_string(path).map_err(crate::error::io_at(path))?;
        Plan::from_json(&text)
    }

    fn check_version(version: u32) -> Result<(), TrainError> {
        if version == PLAN_VERSION {
            Ok(())
        } else {
            Err(TrainError::Plan(format!(
                "plan version {version}, but this runtime executes version {PLAN_VERSION}: re-run `kiln plan` with the matching kiln"
            )))
        }
    }

    /// The step with this id (or, for convenience, this name: `train.main`).
    pub fn step(&self, id_or_name: &str) -> Result<&Step, TrainError> {
        self.steps
            .iter()
            .find(|s| s.id == id_or_name)
            .or_else(|| self.steps.iter().find(|s| s.name == id_or_name))
            .ok_or_else(|| TrainError::Plan(format!("the plan has no step `{id_or_name}`")))
    }

    /// Held-out tokens per evaluation (`schedule.eval_tokens`), when the plan has them.
    pub fn eval_tokens(&self) -> Option<u64> {
        self.schedule
            .get("eval_tokens")
            .and_then(|v| v.as_f64())
            .filter(|v| *v >= 1.0)
            .map(|v| v as u64)
    }

    /// The cluster-wide tokens/s the compiler predicts for the declared hardware
    /// (`analysis.throughput.tokens_per_s`), when the plan has it.
    pub fn predicted_memory_bytes(&self) -> Option<f64> {
        self.analysis
            .get("memory")
            .and_then(|m| m.get("per_gpu"))
            .and_then(|m| m.get("total"))
            .and_then(|v| v.as_f64())
    }

    pub fn predicted_tokens_per_s(&self) -> Option<f64> {
        self.analysis
            .get("throughput")
            .and_then(|t| t.get("tokens_per_s"))
            .and_then(|v| v.as_f64())
    }
}

impl Step {
    /// The step's parameters as `T`.
    pub fn params<T: serde::de::DeserializeOwned>(&self) -> Result<T, TrainError> {
        serde_json::from_value(self.params.clone())
            .map_err(|e| TrainError::Plan(format!("step `{}`: bad parameters: {e}", self.name)))
    }

    /// The step's output directory under `run_dir`.
    pub fn output(&self, run_dir: &Path) -> Result<PathBuf, TrainError> {
        self.outputs
            .first()
            .map(|o| run_dir.join(o))
            .ok_or_else(|| {
                TrainError::Plan(format!("step `{}` has no output directory", self.name))
            })
    }
}
