//! Per-step schedules in optimizer steps: phase boundaries, mix weights, learning-rate
//! segments, checkpoint and evaluation intervals.

use crate::analyse::setup::Setup;
use crate::analyse::Analysis;
use crate::ir::{Record, Value};
use crate::resolve::MAX_COUNT;

pub use kiln_plan::schedule::{LrSchedule, PhaseSchedule, Schedule};

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
    let mut start = 0u64;
    let mut phases = Vec::new();
    for (name, p, _) in exp.entries("phase") {
        let tokens = p.num("tokens")?;
        let steps = whole((tokens / batch).ceil())?;
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
