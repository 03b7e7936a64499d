//! Per-step schedules in optimizer steps: phase boundaries, mix weights, learning-rate
//! segments, checkpoint and evaluation intervals.

use crate::analyse::setup::Setup;
use crate::analyse::Analysis;
use crate::ir::{Record, Value};
use crate::resolve::MAX_COUNT;
use schemars::JsonSchema;
use serde::Serialize;
use std::collections::BTreeMap;

/// The learning rate over one phase, in steps counted from the phase's first step.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
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
    /// the last step is the schedule's end).
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

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
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

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
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

/// A count of the experiment as a whole number of the plan: `None` unless it is finite,
/// whole, and between 0 and 2^53 ([`MAX_COUNT`], where f64 counts exactly). The checks
/// report anything else before lowering (K-U004, K-U005), so `None` here is a bug, never a
/// silently saturated or wrapped count.
pub fn whole(v: f64) -> Option<u64> {
    (v.is_finite() && v.fract() == 0.0 && (0.0..=MAX_COUNT).contains(&v)).then_some(v as u64)
}

pub fn build(exp: &Record, setup: &Setup, analysis: &Analysis) -> Option<Schedule> {
    let batch = setup.batch_tokens;
    let mut start = 0u64;
    let mut phases = Vec::new();
    for (name, p, _) in exp.entries("phase") {
        let tokens = p.num("tokens")?;
        let steps = whole((tokens / batch).ceil())?;
        let lr_record = p.record("lr")?;
        let n = |f: &str| lr_record.num(f);
        let lr = match lr_record.kind.as_str() {
            "constant" => LrSchedule::Constant {
                value: n("value")?,
                warmup_steps: whole(n("warmup")?)?,
            },
            "cosine" => LrSchedule::Cosine {
                peak: n("peak")?,
                warmup_steps: whole(n("warmup")?)?,
                final_lr: n("final")?,
            },
            "wsd" => LrSchedule::Wsd {
                peak: n("peak")?,
                warmup_steps: whole(n("warmup")?)?,
                decay_steps: whole((n("decay")? * steps as f64).round())?,
            },
            _ => LrSchedule::Linear {
                from: n("from")?,
                to: n("to")?,
            },
        };
        let mix = p
            .record("mix")?
            .fields
            .iter()
            .filter_map(|(k, s)| {
                if let Value::Num(w, _) = s.value {
                    Some((k.clone(), w))
                } else {
                    None
                }
            })
            .collect();
        phases.push(PhaseSchedule {
            name: name.clone(),
            start_step: start,
            steps,
            tokens,
            tokens_trained: steps as f64 * batch,
            anneal: p.bool("anneal")?,
            mix,
            lr,
        });
        start = start
            .checked_add(steps)
            .filter(|s| *s as f64 <= MAX_COUNT)?;
    }
    let checkpoint = exp.record("checkpoint")?;
    let eval = exp.record("eval")?;
    Some(Schedule {
        batch_tokens: batch,
        seq_len: whole(setup.seq_len())?,
        global_batch: whole(batch / setup.seq_len())?,
        micro_batch: whole(setup.parallel.micro_batch)?,
        accumulation: whole(setup.parallel.accumulation)?,
        total_steps: start,
        phases,
        checkpoint_every_steps: whole(checkpoint.num("every")?)?,
        checkpoint_keep: whole(checkpoint.num("keep")?)?,
        eval_every_steps: whole(eval.num("every")?)?,
        eval_tokens: eval.num("tokens")?,
        predicted_step_time_s: analysis.throughput.as_ref().map(|t| t.step_time_s),
    })
}
