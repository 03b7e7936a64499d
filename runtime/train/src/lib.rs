//! kiln-train: runs a run plan's train, evaluate and score steps with libtorch (tch).
//!
//! It builds the decoder from the plan's model spec and trains it with AdamW on the plan's
//! schedule, in fp32 or mixed precision, with atomic checkpoints, exact resume and metrics;
//! and it measures the machine for `kiln calibrate`.
//!
//! Modules in the order a step uses them: [`spec`] (the plan's fields), [`model`],
//! [`optim`], [`collective`] (MPI, and [`nccl`]) and [`parallel`] (data parallelism with ZeRO across
//! processes), [`schedule`], [`data`], [`trainer`] (one optimizer step), [`checkpoint`],
//! [`metrics`], [`steps`] (the worker's entry points), [`score`] (documents scored by a
//! language model: the `score` step, with [`hf`] for Hugging Face scorers), [`calibrate`]
//! and [`bench`].

pub mod bench;
pub mod calibrate;
pub mod checkpoint;
pub mod collective;
pub mod data;
pub mod error;
pub mod hf;
pub mod metrics;
pub mod model;
pub mod nccl;
pub mod optim;
pub mod parallel;
pub use kiln_plan::schedule;
pub mod score;
pub mod spec;
pub mod steps;
pub mod trainer;

pub use calibrate::{calibrate, Calibration, CalibrationConfig};
pub use error::TrainError;
pub use spec::Plan;
pub use steps::{
    run_evaluate_step, run_step, run_train_step, StepOutcome, StopWhen, Summary, TrainOptions,
};
