//! The run plan as training reads it: the plan crate's types (kiln-plan), the one contract
//! between the compiler and the runtime. A plan of another version is refused by its loader.

use std::path::{Path, PathBuf};

pub use kiln_plan::schedule::PhaseSchedule as PhaseSpec;
pub use kiln_plan::spec::{
    Activation, Block, ModelSpec, Norm, OptimizerSpec, ParallelSpec, Position, Precision, Recompute,
};
pub use kiln_plan::step::{
    CheckpointParams as CheckpointSpec, EvaluateParams, Resources, Step, StepKind, StepParams,
    TrainParams,
};
pub use kiln_plan::topology::Sizes as TopologySpec;
pub use kiln_plan::{PlanError, PLAN_VERSION};

use crate::error::TrainError;

/// The plan, its analysis read as JSON (training compares against `predictions`).
pub type Plan = kiln_plan::RunPlan;

impl From<PlanError> for TrainError {
    fn from(e: PlanError) -> Self {
        TrainError::Plan(e.to_string())
    }
}

/// Reads and parses a plan file (its version checked).
pub fn load(path: &Path) -> Result<Plan, TrainError> {
    Ok(Plan::load(path)?)
}

/// Held-out tokens per evaluation (`schedule.eval_tokens`), when there are any.
pub fn eval_tokens(plan: &Plan) -> Option<u64> {
    Some(plan.schedule.eval_tokens)
        .filter(|v| *v >= 1.0)
        .map(|v| v as u64)
}

/// The step's output directory under `run_dir`.
pub fn output(step: &Step, run_dir: &Path) -> Result<PathBuf, TrainError> {
    Ok(run_dir.join(step.output()?))
}

/// A `train` step's parameters, or an error naming the step.
pub fn train_params(step: &Step) -> Result<&TrainParams, TrainError> {
    match &step.params {
        StepParams::Train(p) => Ok(p),
        _ => Err(step.not(StepKind::Train).into()),
    }
}

/// An `evaluate` step's parameters, or an error naming the step.
pub fn evaluate_params(step: &Step) -> Result<&EvaluateParams, TrainError> {
    match &step.params {
        StepParams::Evaluate(p) => Ok(p),
        _ => Err(step.not(StepKind::Evaluate).into()),
    }
}
