//! Batch ramps (`batch = ramp { … }`): the ramp lowered to stages in samples, and a run's
//! optimizer steps under it (each phase's steps and the batch of each).
//!
//! Both forms become stages "from the step whose consumed samples reach S, B sequences per
//! step", the form of Megatron-LM's `--step-batch-size-schedule`
//! (`StepBatchsizeNumMicroBatchesCalculator`, megatron/core/num_microbatches_calculator.py):
//!
//! - linear (`from`, `to`, `over`, `increment`), GPT-3's ramp (Brown et al. 2020, Appendix
//!   B: "gradually increase the batch size linearly from a small value (32k tokens) to the
//!   full value over the first 4-12 billion tokens") as Megatron-LM's `--rampup-batch-size
//!   <start> <increment> <ramp-up samples>` ran it (`RampupBatchsizeNumMicroBatchesCalculator`
//!   before its deprecation: n = (to − from) / increment increments, R / n samples each, the
//!   batch `from + ⌊consumed / (R / n)⌋ · increment` until R samples, then `to`). Stage j
//!   therefore starts at ⌈j · R / n⌉ samples (stages that would start at the same sample
//!   collapse into the last of them, as the floor skips them);
//! - staged (`stages = [{ batch, until }, …]`, then `to`), Llama 3 405B's (Dubey et al.
//!   2024, Sec. 3.4.1): each stage's batch while fewer than ⌊until / seq_len⌋ samples have
//!   been trained (Megatron-LM converts token thresholds to samples with the same floor).
//!
//! The check that the ramp is well formed and that every batch splits into the layout is
//! check/ramp.rs; these functions assume it passed and return `None` otherwise.

use crate::ir::{Record, Value};
use crate::plan::schedule::whole;
use kiln_plan::{ramp_batch, BatchStage};

/// The most stages a ramp may have (a linear ramp's increments): beyond it the plan's
/// stage list is no longer compact, and no published ramp comes near (GPT-3's has 96).
pub const MAX_RAMP_STAGES: u64 = 1 << 16;

/// The stages of a ramp record for sequences of `seq_len` tokens; `None` where the ramp is
/// not well formed (check/ramp.rs reports it).
pub fn stages(ramp: &Record, seq_len: f64) -> Option<Vec<BatchStage>> {
    let seqs = |tokens: f64| whole(tokens / seq_len);
    let full = seqs(ramp.num("to")?)?;
    let mut out: Vec<BatchStage> = Vec::new();
    // A stage that starts where the last one does replaces its batch.
    fn push(out: &mut Vec<BatchStage>, from_samples: u64, global_batch: u64) {
        match out.last_mut() {
            Some(last) if last.from_samples == from_samples => last.global_batch = global_batch,
            _ => out.push(BatchStage {
                from_samples,
                global_batch,
            }),
        }
    }
    if let Some(Value::List(list)) = ramp.slot("stages").map(|s| &s.value) {
        push(&mut out, 0, 0);
        for item in list {
            let Value::Record(stage) = item else {
                return None;
            };
            let batch = seqs(stage.num("batch")?)?;
            // This stage's batch applies from the previous stage's end (the first from
            // sample 0) to its own `until`, where the next stage (or `to`) starts.
            out.last_mut()?.global_batch = batch;
            push(
                &mut out,
                (stage.num("until")? / seq_len).floor() as u64,
                full,
            );
        }
    } else {
        let from = seqs(ramp.num("from")?)?;
        let increment = match ramp.num("increment") {
            Some(t) => seqs(t)?,
            None => from,
        };
        let ramp_samples = (ramp.num("over")? / seq_len).floor() as u64;
        if increment == 0 || full <= from || (full - from) % increment != 0 {
            return None;
        }
        let n = (full - from) / increment;
        if n > MAX_RAMP_STAGES {
            return None;
        }
        for j in 0..=n {
            let from_samples = (j * ramp_samples).div_ceil(n);
            push(&mut out, from_samples, from + j * increment);
        }
    }
    (out.len() > 1).then_some(out)
}

/// One phase's optimizer steps under a ramp: how many, the tokens they train, and the
/// global batch (sequences) from each step where it changes (global step numbers).
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseSteps {
    pub steps: u64,
    pub samples: u64,
    pub batch: Vec<(u64, u64)>,
}

/// The steps of each phase, in order, for phases of `phase_tokens` tokens: each phase runs
/// until it has trained at least its tokens (whole steps, as without a ramp), and the ramp
/// counts samples from the run's first step across phases. `None` beyond `max_steps`.
pub fn phase_steps(
    stages: &[BatchStage],
    full: u64,
    seq_len: u64,
    phase_tokens: &[f64],
    max_steps: u64,
) -> Option<Vec<PhaseSteps>> {
    let mut consumed = 0u64;
    let mut step = 0u64;
    let mut out = Vec::new();
    for &tokens in phase_tokens {
        let need = whole((tokens / seq_len as f64).ceil())?;
        let mut phase = PhaseSteps {
            steps: 0,
            samples: 0,
            batch: Vec::new(),
        };
        while phase.samples < need || phase.steps == 0 {
            let b = ramp_batch(stages, full, consumed);
            if b == 0 {
                return None;
            }
            let next = stages
                .iter()
                .map(|s| s.from_samples)
                .find(|&s| s > consumed);
            let to_end = (need.saturating_sub(phase.samples)).div_ceil(b).max(1);
            let n = match next {
                Some(t) => to_end.min((t - consumed).div_ceil(b)),
                None => to_end,
            };
            if phase.batch.last().is_none_or(|&(_, last)| last != b) {
                phase.batch.push((step, b));
            }
            step = step.checked_add(n).filter(|s| *s <= max_steps)?;
            consumed = consumed.checked_add(n.checked_mul(b)?)?;
            phase.steps += n;
            phase.samples += n * b;
        }
        out.push(phase);
    }
    Some(out)
}

/// Optimizer steps at each global batch over phases of `phase_tokens` tokens, in the order
/// they run (a batch that continues across a phase boundary is one entry): what the time
/// model sums, with each phase's whole steps as the plan's schedule counts them.
pub fn steps_by_batch(
    stages: &[BatchStage],
    full: u64,
    seq_len: u64,
    phase_tokens: &[f64],
    max_steps: u64,
) -> Option<Vec<(u64, u64)>> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for phase in phase_steps(stages, full, seq_len, phase_tokens, max_steps)? {
        let start = phase.batch.first()?.0;
        for (i, &(first, b)) in phase.batch.iter().enumerate() {
            let end = phase.batch.get(i + 1).map_or(start + phase.steps, |n| n.0);
            match out.last_mut() {
                Some((last, n)) if *last == b => *n += end - first,
                _ => out.push((b, end - first)),
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(v: &[(u64, u64)]) -> Vec<BatchStage> {
        v.iter()
            .map(|&(from_samples, global_batch)| BatchStage {
                from_samples,
                global_batch,
            })
            .collect()
    }

    /// Megatron-LM's deprecated RampupBatchsizeNumMicroBatchesCalculator, transcribed: the
    /// batch after `consumed` samples (Python's float division and int()).
    fn megatron_rampup(start: u64, inc: u64, ramp: u64, full: u64, consumed: u64) -> u64 {
        let n = (full - start) / inc;
        let per = ramp as f64 / n as f64;
        if consumed > ramp {
            full
        } else {
            start + (consumed as f64 / per) as u64 * inc
        }
    }

    #[test]
    fn linear_stages_match_megatron_rampup_at_every_sample() {
        // Megatron-LM's GPT-3 175B example: --rampup-batch-size 16 16 5859375, global 1536,
        // but over fewer samples so every sample can be compared.
        for (start, inc, ramp, full) in [(16, 16, 58_593, 1536), (8, 4, 1000, 64), (2, 2, 7, 10)] {
            let mut r = Record {
                kind: "ramp".into(),
                ..Record::default()
            };
            let seq = 4.0;
            for (k, v) in [("from", start), ("increment", inc), ("to", full)] {
                r.fields.insert(
                    k.into(),
                    crate::ir::Slot {
                        value: Value::Num((v as f64) * seq, crate::units::Dim::Tokens),
                        provenance: crate::ir::Provenance::Declared,
                        span: None,
                    },
                );
            }
            r.fields.insert(
                "over".into(),
                crate::ir::Slot {
                    value: Value::Num(ramp as f64 * seq, crate::units::Dim::Tokens),
                    provenance: crate::ir::Provenance::Declared,
                    span: None,
                },
            );
            let stages = stages(&r, seq).unwrap();
            assert_eq!(stages[0].from_samples, 0);
            for consumed in 0..ramp + 3 * full {
                assert_eq!(
                    ramp_batch(&stages, full, consumed),
                    megatron_rampup(start, inc, ramp, full, consumed),
                    "{start} {inc} {ramp} {full} at {consumed}"
                );
            }
        }
    }

    #[test]
    fn phases_train_at_least_their_tokens_and_the_ramp_spans_phases() {
        // 2 sequences until sample 6, then 4; full 8 from sample 20; seq_len 10.
        let s = st(&[(0, 2), (6, 4), (20, 8)]);
        let p = phase_steps(&s, 8, 10, &[100.0, 200.0], 1 << 40).unwrap();
        // Phase 1: 10 samples: 3 steps of 2 (6), then 1 of 4 (10).
        assert_eq!(p[0].steps, 4);
        assert_eq!(p[0].samples, 10);
        assert_eq!(p[0].batch, vec![(0, 2), (3, 4)]);
        // Phase 2: 20 samples from consumed 10: 3 steps of 4 (to 22 ≥ 20), then one of 8.
        assert_eq!(p[1].batch, vec![(4, 4), (7, 8)]);
        assert_eq!(p[1].steps, 4);
        assert_eq!(p[1].samples, 20);
        // 30 samples as one phase: 3 of 2 (6), 4 of 4 (22), 1 of 8 (30).
        let by = steps_by_batch(&s, 8, 10, &[300.0], 1 << 40).unwrap();
        assert_eq!(by, vec![(2, 3), (4, 4), (8, 1)]);
    }
}
