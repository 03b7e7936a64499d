//! Per-step schedules in optimizer steps: phase boundaries, the batch of every step (a
//! ramp's segments), mix weights, learning-rate segments, checkpoint and evaluation
//! intervals.

use crate::analyse::setup::Setup;
use crate::analyse::Analysis;
use crate::ir::{Record, Value};
use crate::resolve::MAX_COUNT;

pub use kiln_plan::schedule::{BatchSegment, LrSchedule, PhaseSchedule, Schedule};

/// A count of the experiment as a whole number of the plan: `None` unless it is finite,
/// whole, and between 0 and 2^53 ([`MAX_COUNT`], where f64 counts exactly). The checks
/// report anything else before lowering (K-U004, K-U005), so `None` here is a bug, never a
/// silently saturated or wrapped count.
pub fn whole(v: f64) -> Option<u64> {
    (v.is_finite() && v.fract() == 0.0 && (0.0..=MAX_COUNT).contains(&v)).then_some(v as u64)
}

/// A phase's (or a scorer's) `lr` record over `steps` optimizer steps.
pub fn lr_schedule(lr_record: &Record, steps: u64) -> Option<LrSchedule> {
    let n = |f: &str| lr_record.num(f);
    Some(match lr_record.kind.as_str() {
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
    })
}

pub fn build(exp: &Record, setup: &Setup, analysis: &Analysis) -> Option<Schedule> {
    let batch = setup.batch_tokens;
    let seq_len = whole(setup.seq_len())?;
    let global_batch = whole(batch / setup.seq_len())?;
    let per_rank = whole(setup.parallel.micro_batch * setup.parallel.data)?.max(1);
    // Each batch's predicted step time: the ramp's (analyse/time.rs) or the full batch's.
    let full_step_s = analysis.throughput.as_ref().map(|t| t.step_time_s);
    let ramp_times = analysis.cost.as_ref().and_then(|c| c.ramp.as_ref());
    let step_time_s = |global: u64| match ramp_times {
        Some(r) => r
            .batches
            .iter()
            .find(|b| b.global_batch == global)
            .map(|b| b.step_time_s),
        None => full_step_s,
    };
    let segment = |first_step: u64, global_batch: u64| BatchSegment {
        first_step,
        global_batch,
        batch_tokens: global_batch * seq_len,
        accumulation: global_batch / per_rank,
        predicted_step_time_s: step_time_s(global_batch),
    };
    // The analysis's phase tokens (empty where one is unknown: then no schedule).
    let phase_tokens = &setup.phase_tokens;
    if phase_tokens.len() != exp.entries("phase").count() {
        return None;
    }
    // Under a ramp, each phase's steps and batches (ramp.rs); without one, whole steps of
    // the batch.
    let ramped = if setup.batch_ramp.is_empty() {
        None
    } else {
        Some(crate::ramp::phase_steps(
            &setup.batch_ramp,
            global_batch,
            seq_len,
            phase_tokens,
            MAX_COUNT as u64,
        )?)
    };
    let mut start = 0u64;
    let mut phases = Vec::new();
    for (i, (name, p, _)) in exp.entries("phase").enumerate() {
        let tokens = phase_tokens[i];
        let (steps, tokens_trained, segments) = match &ramped {
            Some(r) => (
                r[i].steps,
                (r[i].samples * seq_len) as f64,
                r[i].batch.iter().map(|&(f, b)| segment(f, b)).collect(),
            ),
            None => {
                let steps = whole((tokens / batch).ceil())?;
                (
                    steps,
                    steps as f64 * batch,
                    vec![segment(start, global_batch)],
                )
            }
        };
        let lr = lr_schedule(p.record("lr")?, steps)?;
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
            tokens_trained,
            batch: segments,
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
        seq_len,
        global_batch,
        micro_batch: whole(setup.parallel.micro_batch)?,
        accumulation: whole(setup.parallel.accumulation)?,
        batch_ramp: setup.batch_ramp.clone(),
        total_steps: start,
        phases,
        checkpoint_every_steps: whole(checkpoint.num("every")?)?,
        checkpoint_keep: whole(checkpoint.num("keep")?)?,
        eval_every_steps: whole(eval.num("every")?)?,
        eval_tokens: eval.num("tokens")?,
        predicted_step_time_s: analysis.throughput.as_ref().map(|t| t.step_time_s),
    })
}
