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
        self.at_clock(step, steps, |k| k)
    }

    /// [`LrSchedule::at`] with progress measured on a clock: `clock(k)` is the position after
    /// the phase's first `k` steps (`k` itself for steps; the samples those steps trained
    /// under a batch ramp). The schedule's marks stay in steps (warm-up ends after step
    /// `warmup_steps`, the WSD decay starts `decay_steps` before the end); between them the
    /// learning rate moves in proportion to the clock, as Megatron-LM's sample-based
    /// schedule does (`OptimizerParamScheduler` stepped by the global batch,
    /// megatron/core/optimizer_param_scheduler.py). With `clock(k) = k` this is exactly the
    /// step schedule.
    pub fn at_clock(&self, step: u64, steps: u64, clock: impl Fn(u64) -> u64) -> f64 {
        let frac = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        // Clock units from mark `a` to mark `b` (steps), 0 when `b` ≤ `a`.
        let span = |a: u64, b: u64| clock(b).saturating_sub(clock(a));
        match *self {
            LrSchedule::Constant {
                value,
                warmup_steps,
            } => {
                if step < warmup_steps {
                    value * frac(clock(step + 1), clock(warmup_steps))
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
                    peak * frac(clock(step + 1), clock(warmup_steps))
                } else {
                    let progress =
                        frac(span(warmup_steps, step), span(warmup_steps, steps)).min(1.0);
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
                    peak * frac(clock(step + 1), clock(warmup_steps))
                } else if step < decay_start {
                    peak
                } else {
                    let decay = span(decay_start, decay_start + decay_steps);
                    peak * (1.0 - frac(span(decay_start, step), decay).min(1.0))
                }
            }
            LrSchedule::Linear { from, to } => {
                from + (to - from) * frac(clock(step), clock(steps)).min(1.0)
            }
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

/// From the optimizer step whose consumed samples (sequences trained before it, counted
/// from the run's start) reach `from_samples`, `global_batch` sequences per step: one
/// stage of a batch ramp, in the form Megatron-LM's `--step-batch-size-schedule` takes
/// (`StepBatchsizeNumMicroBatchesCalculator`, megatron/core/num_microbatches_calculator.py:
/// the last stage whose threshold is ≤ the consumed samples).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BatchStage {
    pub from_samples: u64,
    pub global_batch: u64,
}

/// Steps from `first_step` (global, 0-based) to the next segment's first step (or the
/// phase's end) each train `global_batch` sequences, `batch_tokens` tokens, in
/// `accumulation` micro-batches per data-parallel rank.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BatchSegment {
    pub first_step: u64,
    pub global_batch: u64,
    pub batch_tokens: u64,
    pub accumulation: u64,
    /// The compiler's predicted seconds per step at this batch on the declared hardware
    /// (under a ramp a smaller batch's step is shorter); `None` without a time model.
    pub predicted_step_time_s: Option<f64>,
}

/// The batch stage that applies after `consumed_samples` samples: the last whose threshold
/// is ≤ them (Megatron-LM's `_get_batch_size_for_samples`); `full` without stages.
pub fn ramp_batch(stages: &[BatchStage], full: u64, consumed_samples: u64) -> u64 {
    stages
        .iter()
        .take_while(|s| s.from_samples <= consumed_samples)
        .last()
        .map_or(full, |s| s.global_batch)
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
    /// The tokens of its steps (steps × batch without a ramp): whole steps, so at most one
    /// batch more than declared.
    pub tokens_trained: f64,
    /// The batch of each of its steps: one segment without a ramp, in step order, the first
    /// at `start_step`.
    pub batch: Vec<BatchSegment>,
    pub anneal: bool,
    /// Source → weight (fractions summing to 1).
    pub mix: BTreeMap<String, f64>,
    pub lr: LrSchedule,
}

impl PhaseSchedule {
    /// The segment `step_in_phase` (0-based) trains in; `None` for a step past the phase.
    pub fn segment(&self, step_in_phase: u64) -> Option<&BatchSegment> {
        if step_in_phase >= self.steps {
            return None;
        }
        let global = self.start_step + step_in_phase;
        self.batch.iter().rev().find(|s| s.first_step <= global)
    }

    /// Sequences the phase trains before `step_in_phase` (0-based; `steps` gives the
    /// phase's total): the data position of that step's first sample. Past the phase's end
    /// the steps continue at its last batch (where a warm-up longer than the phase ends); a
    /// count beyond u64 (a warm-up of 2^53 steps) saturates at `u64::MAX`.
    pub fn samples_before(&self, step_in_phase: u64) -> u64 {
        let end = self.start_step + step_in_phase.min(self.steps);
        let past = step_in_phase.saturating_sub(self.steps);
        let mut samples = past.saturating_mul(self.batch.last().map_or(0, |s| s.global_batch));
        for (i, seg) in self.batch.iter().enumerate() {
            let next = self
                .batch
                .get(i + 1)
                .map_or(self.start_step + self.steps, |n| n.first_step);
            let (a, b) = (seg.first_step.max(self.start_step), next.min(end));
            if b > a {
                samples = samples.saturating_add((b - a).saturating_mul(seg.global_batch));
            }
        }
        samples
    }

    /// The predicted tokens per second over steps `from..to` of the phase (0-based, clamped
    /// to it): their tokens over the sum of their segments' predicted step times, so under a
    /// ramp the smaller batches' shorter steps count as they run. `None` for no steps, or
    /// where a segment has no prediction.
    pub fn predicted_tokens_per_s(&self, from: u64, to: u64) -> Option<f64> {
        let (from, to) = (
            self.start_step + from.min(self.steps),
            self.start_step + to.min(self.steps),
        );
        let (mut tokens, mut seconds) = (0.0, 0.0);
        for (i, seg) in self.batch.iter().enumerate() {
            let next = self
                .batch
                .get(i + 1)
                .map_or(self.start_step + self.steps, |n| n.first_step);
            let (a, b) = (seg.first_step.max(from), next.min(to));
            if b > a {
                let n = (b - a) as f64;
                tokens += n * seg.batch_tokens as f64;
                seconds += n * seg.predicted_step_time_s?;
            }
        }
        (seconds > 0.0).then(|| tokens / seconds)
    }

    /// Whether the batch changes within the phase (a ramp): the learning rate then moves
    /// with the samples trained ([`LrSchedule::at_clock`]).
    pub fn ramps(&self) -> bool {
        self.batch
            .windows(2)
            .any(|w| w[0].global_batch != w[1].global_batch)
    }

    /// The learning rate the optimizer applies at `step_in_phase` ([`lr_for_step`] on the
    /// phase's clock: steps, or samples when the batch ramps within the phase).
    pub fn lr_at(&self, step_in_phase: u64) -> f64 {
        if !self.ramps() {
            return lr_for_step(&self.lr, step_in_phase, self.steps, self.anneal);
        }
        if self.anneal && self.steps > 0 && step_in_phase + 1 >= self.steps {
            return self.lr.end();
        }
        self.lr
            .at_clock(step_in_phase, self.steps, |k| self.samples_before(k))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Schedule {
    /// The full batch (the last stage of a ramp).
    pub batch_tokens: f64,
    pub seq_len: u64,
    /// Sequences per optimizer step.
    pub global_batch: u64,
    pub micro_batch: u64,
    /// Micro-batches per data-parallel rank at the full batch.
    pub accumulation: u64,
    /// The batch ramp as stages from the run's first sample (empty without one): the first
    /// from 0 samples, the last at `global_batch`.
    pub batch_ramp: Vec<BatchStage>,
    pub total_steps: u64,
    pub phases: Vec<PhaseSchedule>,
    pub checkpoint_every_steps: u64,
    pub checkpoint_keep: u64,
    pub eval_every_steps: u64,
    /// Held-out tokens evaluated at each evaluation.
    pub eval_tokens: f64,
    pub predicted_step_time_s: Option<f64>,
}

impl Schedule {
    /// Optimizer steps that train less than the full batch (those of a batch ramp; 0
    /// without one).
    pub fn ramp_steps(&self) -> u64 {
        self.phases
            .iter()
            .flat_map(|p| {
                let end = p.start_step + p.steps;
                p.batch.iter().enumerate().map(move |(i, s)| {
                    let next = p.batch.get(i + 1).map_or(end, |n| n.first_step);
                    if s.global_batch < self.global_batch {
                        next - s.first_step
                    } else {
                        0
                    }
                })
            })
            .sum()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(batch: &[(u64, u64)], start_step: u64, steps: u64) -> PhaseSchedule {
        PhaseSchedule {
            name: "main".into(),
            start_step,
            steps,
            tokens: 0.0,
            tokens_trained: 0.0,
            batch: batch
                .iter()
                .map(|&(first_step, global_batch)| BatchSegment {
                    first_step,
                    global_batch,
                    batch_tokens: global_batch,
                    accumulation: global_batch,
                    // A step's time proportional to its batch, plus a fixed second.
                    predicted_step_time_s: Some(1.0 + global_batch as f64),
                })
                .collect(),
            anneal: false,
            mix: BTreeMap::new(),
            lr: LrSchedule::Cosine {
                peak: 1.0,
                warmup_steps: 4,
                final_lr: 0.1,
            },
        }
    }

    #[test]
    fn without_a_ramp_the_clock_is_the_steps() {
        let p = phase(&[(10, 8)], 10, 20);
        assert!(!p.ramps());
        for k in 0..20 {
            assert_eq!(p.lr_at(k).to_bits(), p.lr.at(k, 20).to_bits());
            assert_eq!(p.samples_before(k), 8 * k);
        }
    }

    #[test]
    fn under_a_ramp_the_rate_moves_with_the_samples() {
        // Steps 10-13 of 2 sequences, then 8: the warm-up (4 steps) ends at the peak; its
        // steps rise by the samples they add; the decay runs over the samples after it.
        let p = phase(&[(10, 2), (14, 8)], 10, 20);
        assert!(p.ramps());
        assert_eq!(p.segment(3).unwrap().global_batch, 2);
        assert_eq!(p.segment(4).unwrap().global_batch, 8);
        assert!(p.segment(20).is_none());
        assert_eq!(p.samples_before(4), 8);
        assert_eq!(p.samples_before(6), 24);
        assert_eq!(p.samples_before(20), 8 + 16 * 8);
        // Past the end, at the last batch.
        assert_eq!(p.samples_before(22), 8 + 18 * 8);
        assert_eq!(p.lr_at(0), 2.0 / 8.0);
        assert_eq!(p.lr_at(3), 1.0);
        // Cosine progress at step 12: (samples 8 + 8·8 − 8) / (136 − 8) = 0.5.
        let half = 0.1 + 0.5 * 0.9 * (1.0 + (std::f64::consts::PI * 0.5).cos());
        assert!((p.lr_at(12) - half).abs() < 1e-15);
        assert_eq!(ramp_batch(&[], 7, 100), 7);
        let stages = [
            BatchStage {
                from_samples: 0,
                global_batch: 2,
            },
            BatchStage {
                from_samples: 8,
                global_batch: 8,
            },
        ];
        assert_eq!(ramp_batch(&stages, 8, 7), 2);
        assert_eq!(ramp_batch(&stages, 8, 8), 8);
    }

    #[test]
    fn the_predicted_rate_counts_the_batches_of_the_steps_run() {
        // Steps 10-13 of 2 sequences (3 s each), then 8 (9 s each).
        let p = phase(&[(10, 2), (14, 8)], 10, 20);
        assert_eq!(p.predicted_tokens_per_s(0, 4), Some(2.0 / 3.0));
        assert_eq!(p.predicted_tokens_per_s(4, 20), Some(8.0 / 9.0));
        // The whole phase: 4·2 + 16·8 tokens in 4·3 + 16·9 s; clamped past its end.
        let whole = (4.0 * 2.0 + 16.0 * 8.0) / (4.0 * 3.0 + 16.0 * 9.0);
        assert_eq!(p.predicted_tokens_per_s(0, 20), Some(whole));
        assert_eq!(p.predicted_tokens_per_s(0, 99), Some(whole));
        // Two ramp steps and two full ones, as a resumed process runs them.
        assert_eq!(
            p.predicted_tokens_per_s(2, 6),
            Some((2.0 * 2.0 + 2.0 * 8.0) / (2.0 * 3.0 + 2.0 * 9.0))
        );
        assert_eq!(p.predicted_tokens_per_s(5, 5), None);
        let mut unknown = p.clone();
        unknown.batch[1].predicted_step_time_s = None;
        assert_eq!(unknown.predicted_tokens_per_s(0, 4), Some(2.0 / 3.0));
        assert_eq!(unknown.predicted_tokens_per_s(0, 5), None);
    }
}
