//! Per-step schedules in optimizer steps: phase boundaries, mix weights, the learning rate
//! of each phase (the only copy of its formulas), checkpoint and evaluation intervals.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The learning rate over one phase, in steps counted from the phase's first step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    /// Linear warm-up from 0 to `value`, then constant.
    Constant { value: f64, warmup_steps: u64 },
    /// Linear warm-up to `peak`, then half a cosine down to `final_lr` at the phase's end
    /// (Loshchilov & Hutter 2017, SGDR Eq. 5, without restarts).
    Cosine {
        peak: f64,
        warmup_steps: u64,
        final_lr: f64,
    },
    /// Warm-up, stable at `peak`, then linear decay to 0 over the last `decay_steps`
    /// (warmup-stable-decay; Hu et al. 2024, MiniCPM Sec. 4).
    Wsd {
        peak: f64,
        warmup_steps: u64,
        decay_steps: u64,
    },
    /// Linear from `from` to `to` over the phase.
    Linear { from: f64, to: f64 },
}

impl LrSchedule {
    /// The learning rate at `step` of a phase of `steps` steps (0-based; the value after
    /// the last step is the schedule's end). The one implementation: `kiln explain`, the
    /// emitted engine configs and kiln-train all evaluate it here.
    pub fn at(&self, step: u64, steps: u64) -> f64 {
        let frac = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        match *self {
            LrSchedule::Constant {
                value,
                warmup_steps,
            } => {
                if step < warmup_steps {
                    value * frac(step + 1, warmup_steps)
                } else {
                    value
                }
            }
            LrSchedule::Cosine {
                peak,
                warmup_steps,
                final_lr,
            } => {
                if step < warmup_steps {
                    peak * frac(step + 1, warmup_steps)
                } else {
                    let progress =
                        frac(step - warmup_steps, steps.saturating_sub(warmup_steps)).min(1.0);
                    final_lr
                        + 0.5 * (peak - final_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
                }
            }
            LrSchedule::Wsd {
                peak,
                warmup_steps,
                decay_steps,
            } => {
                let decay_start = steps.saturating_sub(decay_steps);
                if step < warmup_steps {
                    peak * frac(step + 1, warmup_steps)
                } else if step < decay_start {
                    peak
                } else {
                    peak * (1.0 - frac(step - decay_start, decay_steps).min(1.0))
                }
            }
            LrSchedule::Linear { from, to } => from + (to - from) * frac(step, steps).min(1.0),
        }
    }

    /// Where the phase ends.
    pub fn end(&self) -> f64 {
        match *self {
            LrSchedule::Constant { value, .. } => value,
            LrSchedule::Cosine { final_lr, .. } => final_lr,
            LrSchedule::Wsd { .. } => 0.0,
            LrSchedule::Linear { to, .. } => to,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PhaseSchedule {
    pub name: String,
    /// First optimizer step of the phase (0-based, global).
    pub start_step: u64,
    pub steps: u64,
    /// Tokens the experiment declares for the phase.
    pub tokens: f64,
    /// steps × batch: whole steps, so at most one batch more than declared.
    pub tokens_trained: f64,
    pub anneal: bool,
    /// Source → weight (fractions summing to 1).
    pub mix: BTreeMap<String, f64>,
    pub lr: LrSchedule,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Schedule {
    pub batch_tokens: f64,
    pub seq_len: u64,
    /// Sequences per optimizer step.
    pub global_batch: u64,
    pub micro_batch: u64,
    pub accumulation: u64,
    pub total_steps: u64,
    pub phases: Vec<PhaseSchedule>,
    pub checkpoint_every_steps: u64,
    pub checkpoint_keep: u64,
    pub eval_every_steps: u64,
    /// Held-out tokens evaluated at each evaluation.
    pub eval_tokens: f64,
    pub predicted_step_time_s: Option<f64>,
}

/// The learning rate the optimizer applies at `step_in_phase` (0-based) of a phase of `steps`
/// steps. For an anneal phase the last update uses the schedule's end (0 for a decay to 0):
/// [`LrSchedule::at`] gives the value *before* each step, so a linear anneal from `from` to 0
/// over n steps would otherwise stop at `from / n`; with this the phase ends at exactly the
/// learning rate the experiment declares.
pub fn lr_for_step(schedule: &LrSchedule, step_in_phase: u64, steps: u64, anneal: bool) -> f64 {
    if anneal && steps > 0 && step_in_phase + 1 >= steps {
        schedule.end()
    } else {
        schedule.at(step_in_phase, steps)
    }
}
