//! K-C020 job-time-limit and K-C021 job-time-checkpoints: the cluster's `max_job_time`
//! against Slurm's whole-minute limits, the predicted optimizer step and the checkpoints
//! (how the emitted sbatch scripts split a long step: compiler/src/emit/context.rs).

use crate::analyse::Analysis;
use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::ir::Record;
use crate::units::{self, Dim};
use kiln_plan::scheduler::{SchedulerSpec, MIN_JOB_SECONDS};

/// Jobs shorter than this spend much of their time starting and checkpointing (K-C021).
/// A judgement, named here.
pub const SHORT_JOB_SECONDS: f64 = 300.0;

/// The declared `max_job_time` and where it is written.
fn max_job_time(exp: &Record) -> Option<(f64, crate::span::Span)> {
    let cluster = exp.record("cluster")?;
    let seconds = cluster.num("max_job_time")?;
    Some((seconds, super::at(cluster, "max_job_time", exp)))
}

/// What needs no performance model: a limit Slurm cannot express (under a minute), or one
/// that leaves little room (under [`SHORT_JOB_SECONDS`]).
pub fn check(exp: &Record, out: &mut Vec<Diagnostic>) {
    let Some((seconds, at)) = max_job_time(exp) else {
        return;
    };
    if seconds < MIN_JOB_SECONDS {
        out.push(
            Diagnostic::new(
                codes::JOB_TIME_LIMIT,
                format!(
                    "max_job_time = {} is shorter than a minute, Slurm's shortest time limit",
                    units::show(seconds, Dim::Seconds)
                ),
            )
            .at(at, "the partition's longest job")
            .help("write the partition's limit (`sinfo -o %l`), at least `1min`; clusters usually allow 24h to 48h"),
        );
    } else if seconds < SHORT_JOB_SECONDS {
        out.push(
            Diagnostic::new(
                codes::JOB_TIME_CHECKPOINTS,
                format!(
                    "max_job_time = {}: jobs this short spend much of their time starting and checkpointing",
                    units::show(seconds, Dim::Seconds)
                ),
            )
            .at(at, "the partition's longest job")
            .help("use the partition's real limit (`sinfo -o %l`); a short test partition is fine for a smoke test"),
        );
    }
}

/// What needs the predicted step time: two steps must fit before the limit, and
/// checkpoints should come more often than once a job.
pub fn check_times(exp: &Record, a: &Analysis, out: &mut Vec<Diagnostic>) {
    let Some((seconds, at)) = max_job_time(exp) else {
        return;
    };
    let Some(step) = a.throughput.as_ref().map(|t| t.step_time_s) else {
        return;
    };
    if seconds < MIN_JOB_SECONDS || !step.is_finite() || step <= 0.0 {
        return;
    }
    let spec = SchedulerSpec {
        max_job_seconds: Some(seconds),
        ..Default::default()
    };
    let (Some(minutes), Some(lead)) = (spec.job_minutes(), spec.stop_lead_seconds(Some(step)))
    else {
        return;
    };
    let job = (minutes * 60) as f64;
    if 2.0 * step > job / 2.0 {
        out.push(
            Diagnostic::new(
                codes::JOB_TIME_LIMIT,
                format!(
                    "an optimizer step takes {} (predicted): two of them do not fit in half of a {}-minute job",
                    units::show(step, Dim::Seconds),
                    minutes
                ),
            )
            .at(at, "the partition's longest job")
            .help(format!(
                "raise max_job_time to at least {} or make the step shorter (a smaller batch per step, more GPUs)",
                units::show((4.0 * step / 60.0).ceil() * 60.0, Dim::Seconds)
            )),
        );
        return;
    }
    let Some(every) = exp.record("checkpoint").and_then(|c| c.num("every")) else {
        return;
    };
    let between = every * step;
    let usable = job - lead as f64;
    if every > 0.0 && between > usable {
        let fits = (usable / step).floor().max(1.0);
        out.push(
            Diagnostic::new(
                codes::JOB_TIME_CHECKPOINTS,
                format!(
                    "checkpoints every {} steps are {} apart (predicted), more than a {}-minute job",
                    units::trim(every),
                    units::show(between, Dim::Seconds),
                    minutes
                ),
            )
            .at(at, "the partition's longest job")
            .help(format!(
                "checkpoint at most every {} steps, so that a job ended without warning (or a torchtitan job) resumes from its own work",
                units::trim(fits)
            )),
        );
    }
}
