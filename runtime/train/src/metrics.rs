//! What a run reports: `metrics.jsonl`, a progress bar on a terminal, the peak resident memory.
//!
//! `metrics.jsonl` is appended and flushed after each step, so a killed run leaves every
//! step it finished. A resumed run first rewrites the file (atomically) without the lines
//! past its checkpoint, so the file holds each step exactly once.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomic;
use crate::error::{io_at, TrainError};

/// The metrics file in a train step's output directory.
pub use kiln_plan::run_dir::METRICS_FILE;
/// How often the progress bar redraws when nothing changes.
const PROGRESS_TICK: Duration = Duration::from_millis(500);

/// One optimizer step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// The global step (0-based, as the plan's `start_step`).
    pub step: u64,
    pub phase: String,
    pub lr: f64,
    /// Mean cross-entropy over the step's tokens (nats).
    pub loss: f64,
    /// Tokens trained in the whole run after this step.
    pub tokens: u64,
    /// This step's own tokens (its global batch × seq_len; under a batch ramp, the plan's
    /// batch for this step).
    pub step_tokens: u64,
    /// This step's tokens over its wall-clock time.
    pub tokens_per_s: f64,
    /// The global gradient norm before clipping (after unscaling under fp16); absent on
    /// a skipped step.
    pub grad_norm: Option<f64>,
    /// The loss scale the step ran with (fp16 only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub loss_scale: Option<f64>,
    /// The step found an inf or NaN gradient and did not update (fp16 only).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub skipped: bool,
    /// Held-out loss after this step, at evaluation steps.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub eval_loss: Option<f64>,
}

/// Appends metrics lines.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `dir/metrics.jsonl` for appending, after dropping lines of steps ≥ `next_step`
    /// (those a killed run finished past its last checkpoint).
    pub fn open(dir: &Path, next_step: u64) -> Result<MetricsLog, TrainError> {
        let path = dir.join(METRICS_FILE);
        if path.exists() {
            let f = File::open(&path).map_err(io_at(&path))?;
            let mut kept = String::new();
            let mut dropped = false;
            for line in BufReader::new(f).lines() {
                let line = line.map_err(io_at(&path))?;
                let step = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v.get("step").and_then(|s| s.as_u64()));
                match step {
                    Some(s) if s < next_step => {
                        kept.push_str(&line);
                        kept.push('\n');
                    }
                    // A later step, or a line cut short by the kill.
                    _ => dropped = true,
                }
            }
            if dropped {
                write_atomic(&path, kept.as_bytes())?;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_at(&path))?;
        Ok(MetricsLog { path, file })
    }

    pub fn append(&mut self, m: &StepMetrics) -> Result<(), TrainError> {
        let line = serde_json::to_string(m)
            .map_err(|e| TrainError::Plan(format!("cannot serialise metrics: {e}")))?;
        self.file
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(io_at(&self.path))
    }

    /// fsyncs the file (before a checkpoint, so the log is never behind it).
    pub fn sync(&self) -> Result<(), TrainError> {
        self.file.sync_all().map_err(io_at(&self.path))
    }
}

/// Reads every line of a metrics file.
pub fn read_metrics(path: &Path) -> Result<Vec<StepMetrics>, TrainError> {
    let text = fs::read_to_string(path).map_err(io_at(path))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| TrainError::Input(format!("{}: {e}", path.display())))
        })
        .collect()
}

/// The resident-set high-water mark of this process in bytes (`VmHWM` in
/// `/proc/self/status`; `None` where there is no procfs).
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM:")
}

/// This process's resident memory now (`VmRSS`), in bytes.
pub fn rss_bytes() -> Option<u64> {
    proc_status_bytes("VmRSS:")
}

/// A `kB` line of `/proc/self/status`, in bytes.
fn proc_status_bytes(key: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// A progress bar over `steps` on stderr, drawn only when `show` (or, with `None`, when
/// stderr is a terminal).
pub fn progress_bar(steps: u64, label: &str, show: Option<bool>) -> ProgressBar {
    let show = show.unwrap_or_else(|| std::io::stderr().is_terminal());
    let bar = ProgressBar::with_draw_target(
        Some(steps),
        if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} steps {msg} (eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_string());
    bar.enable_steady_tick(PROGRESS_TICK);
    bar
}
