//! The batch scheduler's limits and names the cluster declares (`max_job_time`, `account`,
//! `partition`, `qos`): what `kiln emit` writes into sbatch headers and how it splits a long
//! training step into jobs that each resume from the last checkpoint.

use serde::{Deserialize, Serialize};

/// The exit status of a rank (and so of its launcher) that stopped on request — a stop
/// signal or the stop file — after writing a checkpoint, with the step not yet finished:
/// BSD's `EX_TEMPFAIL` ("try again later", sysexits.h). The emitted sbatch scripts requeue
/// the job on it; any other non-zero status is a failure.
pub const EXIT_CHECKPOINTED: u8 = 75;

/// The environment variable that names the stop file: when it names a file that exists, the
/// training ranks finish the optimizer step they are in, checkpoint and exit with
/// [`EXIT_CHECKPOINTED`] (the emitted sbatch scripts create it on Slurm's warning signal).
pub const STOP_FILE_ENV: &str = "KILN_STOP_FILE";

/// The cluster's scheduler fields; every one optional (absent: the scheduler's default).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SchedulerSpec {
    /// The longest job the partition runs (`cluster.max_job_time`), in seconds.
    pub max_job_seconds: Option<f64>,
    /// `#SBATCH --account`.
    pub account: Option<String>,
    /// `#SBATCH --partition`.
    pub partition: Option<String>,
    /// `#SBATCH --qos`.
    pub qos: Option<String>,
}

/// Slurm's shortest time limit: limits are whole minutes (sbatch(1), `--time`).
pub const MIN_JOB_SECONDS: f64 = 60.0;

/// The longest warning before the limit: five minutes, time for a step and a checkpoint of
/// a large model on a parallel file system. A judgement, named here.
pub const MAX_STOP_LEAD_SECONDS: u64 = 300;

/// The shortest warning: Slurm signals up to 60 s earlier than asked (sbatch(1),
/// `--signal`), so a shorter one buys nothing. A judgement, named here.
pub const MIN_STOP_LEAD_SECONDS: u64 = 20;

impl SchedulerSpec {
    /// The job's time limit in whole minutes (`--time=M`): `max_job_seconds` rounded down,
    /// since Slurm rounds a limit with seconds up to the next minute, past the partition's;
    /// at least one. `None` without `max_job_seconds`.
    pub fn job_minutes(&self) -> Option<u64> {
        self.max_job_seconds
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| ((s / 60.0).floor() as u64).clamp(1, 365 * 24 * 60))
    }

    /// Seconds before the limit at which Slurm warns a training job (`--signal=B:USR1@lead`):
    /// a quarter of the job, between [`MIN_STOP_LEAD_SECONDS`] and
    /// [`MAX_STOP_LEAD_SECONDS`], and at least two optimizer steps of `step_seconds` (the
    /// step in progress finishes, then the checkpoint is written), but never more than half
    /// the job. `None` without `max_job_seconds`.
    pub fn stop_lead_seconds(&self, step_seconds: Option<f64>) -> Option<u64> {
        let job = self.job_minutes()? * 60;
        let quarter = (job / 4).clamp(MIN_STOP_LEAD_SECONDS, MAX_STOP_LEAD_SECONDS);
        let steps = step_seconds
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(0, |s| (2.0 * s).ceil().min(1e9) as u64);
        Some(quarter.max(steps).min(job / 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(seconds: f64) -> SchedulerSpec {
        SchedulerSpec {
            max_job_seconds: Some(seconds),
            ..Default::default()
        }
    }

    #[test]
    fn job_limits_are_whole_minutes_rounded_down() {
        assert_eq!(limit(90.0).job_minutes(), Some(1));
        assert_eq!(limit(48.0 * 3600.0).job_minutes(), Some(2880));
        assert_eq!(limit(10.0).job_minutes(), Some(1));
        assert_eq!(SchedulerSpec::default().job_minutes(), None);
    }

    #[test]
    fn the_warning_scales_with_the_job_and_the_step() {
        assert_eq!(limit(60.0).stop_lead_seconds(None), Some(20));
        assert_eq!(limit(120.0).stop_lead_seconds(Some(1.0)), Some(30));
        assert_eq!(
            limit(48.0 * 3600.0).stop_lead_seconds(Some(10.0)),
            Some(300)
        );
        // A slow step: two of them, capped at half the job.
        assert_eq!(
            limit(48.0 * 3600.0).stop_lead_seconds(Some(400.0)),
            Some(800)
        );
        assert_eq!(limit(60.0).stop_lead_seconds(Some(100.0)), Some(30));
    }
}
