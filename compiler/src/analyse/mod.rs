//! Analyses: the numbers kiln tells before a run starts. Pure functions of a derived
//! experiment: model arithmetic, scaling laws, memory, communication, time and cost.

pub mod comm;
pub mod engine;
pub mod flops;
pub mod memory;
pub mod ops;
pub mod scaling;
pub mod setup;
pub mod time;

use crate::ir::Record;
use serde::Serialize;
use setup::Setup;

#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ModelNumbers {
    pub params: f64,
    pub params_non_embedding: f64,
    pub params_embedding: f64,
    /// Model FLOPs per training token: 6N-style matmuls plus attention (flops.rs).
    pub flops_per_token: f64,
    /// With recomputation.
    pub hardware_flops_per_token: f64,
    /// The shape the numbers were computed from (derived values filled in).
    pub shape: crate::model::ModelShape,
}

/// Everything `kiln explain` reports, with the field paths its JSON promises.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Analysis {
    pub model: ModelNumbers,
    pub scaling: scaling::Scaling,
    pub memory: memory::Memory,
    pub communication: CommunicationReport,
    /// Absent when the GPU has no peak for the run's precision (a diagnostic says so).
    pub throughput: Option<time::Throughput>,
    pub cost: Option<time::Cost>,
}

/// `communication.per_step.{data,tensor,pipeline,context}` in bytes, and the detail per dimension.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct CommunicationReport {
    pub per_step: PerStep,
    pub detail: comm::Communication,
}

#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PerStep {
    pub data: f64,
    pub tensor: f64,
    pub pipeline: f64,
    pub context: f64,
}

/// Analyses a derived experiment; `None` when an input is missing (already reported).
pub fn analyse(exp: &Record) -> Option<(Setup, Analysis)> {
    let setup = Setup::from_record(exp)?;
    let analysis = analyse_setup(&setup);
    Some((setup, analysis))
}

pub fn analyse_setup(setup: &Setup) -> Analysis {
    let layout = analyse_layout(setup);
    Analysis {
        model: ModelNumbers {
            shape: setup.shape.clone(),
            params: setup.params.total,
            params_non_embedding: setup.params.non_embedding,
            params_embedding: setup.params.embedding,
            flops_per_token: layout.flops.model_per_token,
            hardware_flops_per_token: layout.flops.hardware_per_token,
        },
        scaling: scaling::analyse(setup),
        memory: layout.memory,
        communication: CommunicationReport {
            per_step: PerStep {
                data: layout.communication.data.bytes,
                tensor: layout.communication.tensor.bytes,
                pipeline: layout.communication.pipeline.bytes,
                context: layout.communication.context.bytes,
            },
            detail: layout.communication,
        },
        throughput: layout.timed.as_ref().map(|t| t.0.clone()),
        cost: layout.timed.map(|(full, cost)| {
            time::ramped(setup, cost, |batch| {
                if batch as f64 * setup.seq_len() == setup.batch_tokens {
                    return Some(full.step_time_s);
                }
                // The same layout at a ramp's batch: fewer micro-batches per rank.
                let mut at = setup.clone();
                at.batch_tokens = batch as f64 * setup.seq_len();
                at.parallel.accumulation =
                    batch as f64 / (setup.parallel.micro_batch * setup.parallel.data);
                at.batch_ramp.clear();
                analyse_layout(&at).timed.map(|t| t.0.step_time_s)
            })
        }),
    }
}

/// What depends on the parallel layout: FLOPs (recompute), memory, communication, time.
pub struct Layout {
    pub flops: flops::TrainingFlops,
    pub memory: memory::Memory,
    pub communication: comm::Communication,
    pub timed: Option<(time::Throughput, time::Cost)>,
}

/// The analyses a layout search re-runs per candidate (the scaling laws do not depend on
/// the layout).
pub fn analyse_layout(setup: &Setup) -> Layout {
    let flops = flops::training(setup);
    let memory = memory::analyse(setup);
    let communication = comm::analyse(setup);
    let timed = time::analyse(setup, &flops, &communication, &memory.layer_activations);
    Layout {
        flops,
        memory,
        communication,
        timed,
    }
}
