//! The worker's entry points: a plan's `train` step (one phase) and its `evaluate` step
//! (its `score` steps are dispatched to [`crate::score`]).
//!
//! A train step resumes a killed run from its last checkpoint. Asked to stop
//! ([`TrainOptions::stop`]: a signal the worker caught, or the stop file a Slurm job's
//! script creates before its time limit), every rank finishes the optimizer step it is in,
//! the ranks agree (one all-reduce), write a checkpoint and return
//! [`StepOutcome::Checkpointed`]: the next process resumes there.
//!
//! # Directories (paths in the plan are relative to the run directory)
//! A train step reads its mix step's output (`text_document` to train on,
//! `held_out_document` to evaluate on) and, for a phase after the first, the previous train
//! step's output, whose newest checkpoint must be at the phase's `start_step`. It works in
//! `<output>.partial/` — `checkpoints/`, `metrics.jsonl` — which survives a kill, and when the
//! phase is done writes [`SUMMARY_FILE`] there (with the model's shape, `model.json`, and the
//! tokenizer its data was encoded with, `tokenizer.json`, so the output scores documents as
//! a checkpoint scorer) and renames the directory to `<output>`, so
//! an existing output means the step is done (`kiln run` skips it). A `.lock` file, held
//! with `flock` while the step runs, keeps a second process out of the same directory.
//!
//! An evaluate step reads the last train step's newest checkpoint and the last mix step's
//! held-out set, and writes [`SUMMARY_FILE`] into `<output>.tmp-PID/`, renamed to `<output>`.
//!
//! # One process
//! The plan's global batch (micro_batch × accumulation × data-parallel ranks sequences) runs
//! here as global_batch / micro_batch micro-batches; under a batch ramp each step takes its
//! own global batch from the phase's `batch` segments (more or fewer micro-batches of the
//! same size), its data position is the samples the phase trained before it, and its
//! learning rate moves with those samples (`PhaseSchedule::lr_at`); tensor, pipeline and context
//! parallelism and ZeRO do not change the arithmetic, so one process trains the same model
//! (the summary's notes say what was folded in).

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::checkpoint::{self, fsync_dir, write_atomic, RngState, TrainState, STATE_FORMAT};
use crate::collective::Collective;
use crate::data::{SampleOrder, Samples, TokenStream};
use crate::error::{catch_torch, io_at, TrainError};
use crate::metrics::{
    peak_rss_bytes, progress_bar, read_metrics, MetricsLog, StepMetrics, METRICS_FILE,
};
use crate::model::Model;
use crate::parallel::{DataParallel, StateBytes};
use crate::spec::{self, Plan, Precision, Recompute, Step, StepKind, TrainParams};
use crate::trainer::{evaluate, step_seed, to_batch, unigram_loss, Trainer};

/// The checkpoints' directory inside a train step's directory.
pub use kiln_plan::run_dir::CHECKPOINT_DIR;
/// The summary a finished step leaves in its output directory.
pub use kiln_plan::run_dir::SUMMARY_FILE;
/// The mix step's training stream (kiln-data's `shards::DATA_PREFIX`).
pub const TRAIN_PREFIX: &str = kiln_data::shards::DATA_PREFIX;
/// The mix step's held-out set (kiln-data's `steps::HELD_OUT_PREFIX`).
pub const HELD_OUT_PREFIX: &str = kiln_data::steps::HELD_OUT_PREFIX;
/// The suffix of a train step's working directory.
pub(crate) use kiln_plan::run_dir::PARTIAL_SUFFIX;
/// The lock file in a working directory.
pub(crate) const LOCK_FILE: &str = ".lock";

/// How a step runs on this machine (nothing here changes the numbers a step computes,
/// except `threads`, which fixes libtorch's reduction order).
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub device: Device,
    /// libtorch's intra-op threads; `None` keeps libtorch's default (one per core). Fix it
    /// for bit-identical resumes.
    pub threads: Option<usize>,
    /// Show the progress bar: `None` on a terminal only.
    pub progress: Option<bool>,
    /// The tokens/s the summary compares the measured rate with where the plan's batch
    /// segments carry no step time: the plan's analysis for the declared hardware (the
    /// segments' own, `PhaseSchedule::predicted_tokens_per_s`, count a ramp's batches).
    pub predicted_tokens_per_s: Option<f64>,
    /// The peak memory the summary compares the measured one with (the plan's
    /// `memory.per_gpu.total`).
    pub predicted_memory_bytes: Option<f64>,
    /// Stop after this many optimizer steps in this process, as a kill would (no checkpoint
    /// beyond the periodic ones, no output): tests of resume use it, and so can a
    /// time-boxed run.
    pub halt_after_steps: Option<u64>,
    /// At most this many held-out tokens per evaluation (default: the plan's).
    pub eval_max_tokens: Option<u64>,
    /// When to stop early with a checkpoint (a time limit is near).
    pub stop: StopWhen,
    /// Where a score step's scorer paths are relative to (the project); default: the run
    /// directory.
    pub source_root: Option<PathBuf>,
}

/// What asks a training run to stop early with a checkpoint: a flag a signal handler sets
/// (the worker's SIGUSR1 and SIGTERM) and a file whose existence asks the same (the emitted
/// sbatch scripts create it on Slurm's warning signal). Checked after every optimizer step;
/// any rank's request stops every rank at the same step.
#[derive(Clone, Debug, Default)]
pub struct StopWhen {
    pub flag: Option<&'static AtomicBool>,
    /// Looked at by rank 0 only (one `stat` per step, not one per rank on a shared
    /// file system).
    pub file: Option<PathBuf>,
}

impl StopWhen {
    /// Whether this rank has been asked to stop (`leader`: rank 0, which looks at the file).
    pub(crate) fn requested(&self, leader: bool) -> bool {
        self.flag.is_some_and(|f| f.load(Ordering::SeqCst))
            || (leader && self.file.as_deref().is_some_and(Path::exists))
    }

    /// Whether anything can ask at all (no collective per step otherwise).
    fn armed(&self) -> bool {
        self.flag.is_some() || self.file.is_some()
    }
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            device: Device::Cpu,
            threads: None,
            progress: None,
            predicted_tokens_per_s: None,
            predicted_memory_bytes: None,
            halt_after_steps: None,
            eval_max_tokens: None,
            stop: StopWhen::default(),
            source_root: None,
        }
    }
}

/// What a train or evaluate step reports (also [`SUMMARY_FILE`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The step's name and id in the plan.
    pub step: String,
    pub id: String,
    pub kind: String,
    pub phase: Option<String>,
    pub precision: String,
    pub device: String,
    pub threads: i64,
    pub params: u64,
    /// Global steps `[start_step, end_step)` of the phase.
    pub start_step: u64,
    pub end_step: u64,
    /// The step this process resumed from, when it did.
    pub resumed_at: Option<u64>,
    /// Optimizer steps this process ran (the last process, for a resumed run).
    pub steps_run: u64,
    pub tokens_per_step: u64,
    /// Tokens this process trained (or evaluated).
    pub tokens: u64,
    pub final_loss: Option<f64>,
    pub final_eval_loss: Option<f64>,
    /// The held-out loss of token frequencies alone (evaluate steps; `trainer::unigram_loss`).
    #[serde(default)]
    pub unigram_loss: Option<f64>,
    /// The learning rate of the phase's last step (0 at the end of an anneal to 0).
    pub final_lr: Option<f64>,
    /// Seconds in training steps (or evaluation), without evaluations and checkpoints.
    pub compute_seconds: f64,
    pub wall_seconds: f64,
    /// tokens / compute_seconds.
    pub measured_tokens_per_s: Option<f64>,
    pub predicted_tokens_per_s: Option<f64>,
    /// measured / predicted.
    pub measured_over_predicted: Option<f64>,
    /// The process's resident-set high-water mark (VmHWM).
    pub peak_rss_bytes: Option<u64>,
    /// The plan's predicted peak memory per rank.
    #[serde(default)]
    pub predicted_memory_bytes: Option<f64>,
    /// Data parallelism across processes: what each rank sent and keeps, beside kiln's
    /// prediction.
    #[serde(default)]
    pub data_parallel: Option<DataParallelReport>,
    /// The final checkpoint, relative to the step's output directory.
    pub checkpoint: Option<String>,
    /// What the run folded in or left out (one process for many ranks, …).
    pub notes: Vec<String>,
}

/// What a data-parallel train step measured against the plan's analysis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataParallelReport {
    pub ranks: u64,
    pub zero: u64,
    /// The plan's data-parallel degree, which its predictions are for.
    pub planned_data: f64,
    /// Gradient and parameter traffic each rank sent per optimizer step (`collective`).
    pub sent_bytes_per_step: Option<f64>,
    /// `communication.per_step.data` of the plan's analysis.
    pub predicted_bytes_per_step: Option<f64>,
    /// Weights, gradients and optimizer states this rank keeps.
    pub state_bytes: StateBytes,
    /// `memory.per_gpu.{weights, gradients, optimizer}` of the plan's analysis.
    pub predicted_state_bytes: [Option<f64>; 3],
}

impl DataParallelReport {
    fn render(&self) -> String {
        let ratio = |m: f64, p: Option<f64>| match p {
            Some(p) if p > 0.0 => format!("{:.1} MB predicted ({:.3}×)", p / 1e6, m / p),
            _ => "no prediction".into(),
        };
        let mut s = format!("  data parallel: {} ranks, ZeRO {}", self.ranks, self.zero);
        if self.planned_data != self.ranks as f64 {
            s += &format!(
                " (the plan's predictions are for data = {})",
                self.planned_data
            );
        }
        s += "\n";
        if let Some(sent) = self.sent_bytes_per_step {
            s += &format!(
                "  sent per rank per step {:.1} MB measured, {}\n",
                sent / 1e6,
                ratio(sent, self.predicted_bytes_per_step)
            );
        }
        let b = &self.state_bytes;
        for (name, m, p) in [
            ("weights", b.weights, self.predicted_state_bytes[0]),
            ("gradients", b.gradients, self.predicted_state_bytes[1]),
            (
                "optimizer states",
                b.optimizer,
                self.predicted_state_bytes[2],
            ),
        ] {
            s += &format!(
                "  {name} per rank {:.1} MB, {}\n",
                m as f64 / 1e6,
                ratio(m as f64, p)
            );
        }
        s
    }
}

impl Summary {
    /// The summary as a few lines for stderr.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{} ({}): {} steps, {} tokens in {:.1} s",
            self.step, self.kind, self.steps_run, self.tokens, self.wall_seconds
        );
        if let Some(l) = self.final_loss {
            s += &format!(", loss {l:.4}");
        }
        if let Some(l) = self.final_eval_loss {
            s += &format!(", held-out loss {l:.4}");
        }
        if let Some(u) = self.unigram_loss {
            s += &format!(" (unigram baseline {u:.4})");
        }
        s += "\n";
        match (self.measured_tokens_per_s, self.predicted_tokens_per_s) {
            (Some(m), Some(p)) => {
                s += &format!(
                    "  throughput {m:.0} tokens/s measured, {p:.0} predicted ({:.2}×)\n",
                    m / p
                )
            }
            (Some(m), None) => s += &format!("  throughput {m:.0} tokens/s measured\n"),
            _ => {}
        }
        match (self.peak_rss_bytes, self.predicted_memory_bytes) {
            (Some(b), Some(p)) => {
                s += &format!(
                    "  peak memory {:.1} MiB measured (VmHWM), {:.1} MiB predicted ({:.2}×)\n",
                    b as f64 / 1048576.0,
                    p / 1048576.0,
                    b as f64 / p
                )
            }
            (Some(b), None) => {
                s += &format!("  peak memory {:.1} MiB (VmHWM)\n", b as f64 / 1048576.0)
            }
            _ => {}
        }
        if let Some(dp) = &self.data_parallel {
            s += &dp.render();
        }
        for n in &self.notes {
            s += &format!("  note: {n}\n");
        }
        s
    }
}

/// How a step ended.
#[derive(Clone, Debug, PartialEq)]
pub enum StepOutcome {
    Done(Summary),
    /// Its output existed already (its summary).
    AlreadyDone(Summary),
    /// Stopped by [`TrainOptions::halt_after_steps`] before the phase's end.
    Halted {
        next_step: u64,
    },
    /// Asked to stop ([`TrainOptions::stop`]): every rank stopped after the same step and
    /// a checkpoint of it is written; the step resumes there (the worker exits with
    /// `kiln_plan::EXIT_CHECKPOINTED`).
    Checkpointed {
        next_step: u64,
    },
    /// Rank 0 of the world runs this step (an evaluation); this rank had nothing to do.
    OtherRank,
    /// A score step scored its documents (its report).
    Scored(crate::score::ScoreReport),
    /// A score step's output existed already (its report).
    AlreadyScored(crate::score::ScoreReport),
}

/// Runs a `train`, `evaluate` or `score` step of `plan` (by id or name).
pub fn run_step(
    plan: &Plan,
    step_id: &str,
    run_dir: &Path,
    options: &TrainOptions,
) -> Result<StepOutcome, TrainError> {
    run_step_on(plan, step_id, run_dir, options, Collective::single())
}

/// [`run_step`] as one rank of `comm`'s world: every rank trains; rank 0 alone evaluates
/// and scores (a score step that asked to stop returns [`StepOutcome::Checkpointed`] with
/// the documents done).
pub fn run_step_on(
    plan: &Plan,
    step_id: &str,
    run_dir: &Path,
    options: &TrainOptions,
    comm: Collective,
) -> Result<StepOutcome, TrainError> {
    let step = plan.step(step_id)?;
    match step.kind() {
        StepKind::Train => run_train_step_on(plan, step_id, run_dir, options, comm),
        StepKind::Evaluate if comm.rank() == 0 => {
            run_evaluate_step(plan, step_id, run_dir, options)
        }
        StepKind::Evaluate => Ok(StepOutcome::OtherRank),
        StepKind::Score if comm.rank() == 0 => {
            crate::score::run_score_step(plan, step_id, run_dir, options)
        }
        StepKind::Score => Ok(StepOutcome::OtherRank),
        other => Err(TrainError::Plan(format!(
            "step `{}` is a {} step, not a training step",
            step.name,
            other.name()
        ))),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn read_summary(output: &Path) -> Result<Summary, TrainError> {
    let path = output.join(SUMMARY_FILE);
    let text = fs::read_to_string(&path).map_err(io_at(&path))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Input(format!("{}: {e}", path.display())))
}

/// The output directories of a step's inputs of `kind`, checked to be done.
pub(crate) fn inputs_of<'p>(
    plan: &'p Plan,
    step: &Step,
    kind: StepKind,
    run_dir: &Path,
) -> Result<Vec<(&'p Step, PathBuf)>, TrainError> {
    let mut out = Vec::new();
    for id in &step.inputs {
        let input = plan.step(id)?;
        if input.kind() != kind {
            continue;
        }
        let dir = spec::output(input, run_dir)?;
        if !dir.is_dir() {
            return Err(TrainError::Input(format!(
                "step `{}` needs `{}`, which is not done ({} does not exist)",
                step.name,
                input.name,
                dir.display()
            )));
        }
        out.push((input, dir));
    }
    Ok(out)
}

/// Holds an exclusive `flock` on `dir/.lock` while alive.
pub(crate) struct DirLock {
    _file: File,
}

pub(crate) fn lock_dir(dir: &Path) -> Result<DirLock, TrainError> {
    use std::os::fd::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_at(&path))?;
    // SAFETY: flock on a descriptor this function owns; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(TrainError::Busy(dir.to_path_buf()));
    }
    Ok(DirLock { _file: file })
}

pub(crate) fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The sequences of one optimizer step and how they are split, with notes on what one
/// process folds in. `global_batch` and `tokens_per_step` are the full batch's;
/// [`BatchLayout::at`] gives each step's own.
struct BatchLayout {
    global_batch: u64,
    micro_batch: u64,
    tokens_per_step: u64,
    ranks: u64,
    seq_len: u64,
    notes: Vec<String>,
}

/// One optimizer step's batch: its global batch, this rank's share, micro-batches per rank,
/// tokens, and the phase's data position before it (samples).
#[derive(Clone, Copy, Debug, PartialEq)]
struct StepBatch {
    global_batch: u64,
    rank_batch: u64,
    micro_batches: u64,
    tokens: u64,
    samples_before: u64,
}

impl BatchLayout {
    /// The batch of `step_in_phase` (the phase's `batch` segments; checked to split in
    /// [`batch_layout`]).
    fn at(&self, p: &TrainParams, step_in_phase: u64) -> StepBatch {
        let global_batch = p
            .schedule
            .segment(step_in_phase)
            .map_or(self.global_batch, |s| s.global_batch);
        let rank_batch = global_batch / self.ranks;
        StepBatch {
            global_batch,
            rank_batch,
            micro_batches: rank_batch / self.micro_batch,
            tokens: global_batch * self.seq_len,
            samples_before: p.schedule.samples_before(step_in_phase),
        }
    }
}

fn batch_layout(p: &TrainParams, ranks: u64) -> Result<BatchLayout, TrainError> {
    let seq_len = p.model.seq_len;
    let sequences = p.batch_tokens / seq_len as f64;
    if !(sequences >= 1.0 && sequences.fract() == 0.0) {
        return Err(TrainError::Plan(format!(
            "batch_tokens = {} is not a whole number of {seq_len}-token sequences",
            p.batch_tokens
        )));
    }
    let global_batch = sequences as u64;
    let micro_batch = p.parallel.micro_batch.max(1);
    if !global_batch.is_multiple_of(micro_batch * ranks) {
        return Err(TrainError::Plan(format!(
            "the global batch of {global_batch} sequences does not split into {ranks} rank(s) × micro-batches of {micro_batch}: choose a world size and micro_batch whose product divides it"
        )));
    }
    for seg in &p.schedule.batch {
        if seg.global_batch == 0 || !seg.global_batch.is_multiple_of(micro_batch * ranks) {
            return Err(TrainError::Plan(format!(
                "from step {} the batch ramp trains {} sequences per step, which does not split into {ranks} rank(s) × micro-batches of {micro_batch}",
                seg.first_step, seg.global_batch
            )));
        }
    }
    let mut notes = Vec::new();
    let data = u64::from(p.topology.data.max(1));
    let declared = micro_batch * p.parallel.accumulation.max(1) * data;
    if declared != global_batch {
        notes.push(format!(
            "micro_batch × accumulation × data = {declared} sequences, but the step's batch is {global_batch}: the batch is used"
        ));
    }
    let planned = u64::from(p.topology.tensor)
        * u64::from(p.topology.pipeline)
        * u64::from(p.topology.context)
        * data;
    if planned > 1 && ranks == 1 {
        notes.push(format!(
            "the plan's {planned} ranks (tensor {}, pipeline {}, context {}, data {}) run as one process: {} micro-batches of {micro_batch} sequences per step",
            p.topology.tensor,
            p.topology.pipeline,
            p.topology.context,
            p.topology.data,
            global_batch / micro_batch
        ));
    }
    if ranks > 1 && (p.topology.tensor > 1 || p.topology.pipeline > 1 || p.topology.context > 1) {
        return Err(TrainError::Unsupported(format!(
            "the plan has tensor {}, pipeline {} and context {} parallelism; this runtime runs data parallelism across processes only",
            p.topology.tensor, p.topology.pipeline, p.topology.context
        )));
    }
    if p.parallel.zero > 0 && ranks == 1 {
        notes.push(format!(
            "ZeRO stage {} shards state across data-parallel ranks; one process holds it all",
            p.parallel.zero
        ));
    }
    if let Some(r) = Some(p.parallel.recompute).filter(|r| *r != Recompute::None) {
        notes.push(format!(
            "recompute = {r} saves activation memory only; this runtime keeps activations"
        ));
    }
    if let Some(k) = p.parallel.offload_layers {
        notes.push(format!(
            "offload_layers = {k} moves activations to host memory under Megatron-LM; this runtime keeps them on its device"
        ));
    }
    Ok(BatchLayout {
        global_batch,
        micro_batch,
        tokens_per_step: global_batch * seq_len,
        ranks,
        seq_len,
        notes,
    })
}

/// Runs a plan's `train` step (see the module doc).
pub fn run_train_step(
    plan: &Plan,
    step_id: &str,
    run_dir: &Path,
    options: &TrainOptions,
) -> Result<StepOutcome, TrainError> {
    run_train_step_on(plan, step_id, run_dir, options, Collective::single())
}

/// [`run_train_step`] as one rank of `comm`'s data-parallel world (every rank calls it).
pub fn run_train_step_on(
    plan: &Plan,
    step_id: &str,
    run_dir: &Path,
    options: &TrainOptions,
    comm: Collective,
) -> Result<StepOutcome, TrainError> {
    catch_torch(|| train(plan, step_id, run_dir, options, comm))
}

fn train(
    plan: &Plan,
    step_id: &str,
    run_dir: &Path,
    options: &TrainOptions,
    comm: Collective,
) -> Result<StepOutcome, TrainError> {
    let wall = Instant::now();
    let step = plan.step(step_id)?;
    let p = spec::train_params(step)?;
    let output = spec::output(step, run_dir)?;
    if output.is_dir() {
        return Ok(StepOutcome::AlreadyDone(read_summary(&output)?));
    }
    let mixes = inputs_of(plan, step, StepKind::Mix, run_dir)?;
    let Some((_, mix_dir)) = mixes.first() else {
        return Err(TrainError::Plan(format!(
            "train step `{}` has no mix step among its inputs",
            step.name
        )));
    };
    let previous = inputs_of(plan, step, StepKind::Train, run_dir)?;
    let (rank, ranks) = (comm.rank(), comm.size());
    let leader = rank == 0;
    let layout = batch_layout(p, ranks as u64)?;
    let mut notes = layout.notes.clone();
    if let Some(n) = options.threads {
        tch::set_num_threads(n.clamp(1, i32::MAX as usize) as i32);
    }
    let device = options.device;

    let work = with_suffix(&output, PARTIAL_SUFFIX);
    fs::create_dir_all(&work).map_err(io_at(&work))?;
    // One process owns the working directory: rank 0 of a data-parallel world.
    let lock = if leader { Some(lock_dir(&work)?) } else { None };
    comm.barrier();
    let ckpt_root = work.join(CHECKPOINT_DIR);

    let model = Model::new(&p.model, p.precision, p.seed, device)?;
    let mut trainer = if ranks > 1 {
        let dp = DataParallel::new(
            model.named_parameters(),
            u64::from(p.parallel.zero),
            &p.optimizer,
            comm,
        )?;
        Trainer::data_parallel(model, &p.optimizer, p.precision, p.seed, device, dp)?
    } else {
        Trainer::new(model, &p.optimizer, p.precision, p.seed, device)?
    };
    let phase_start = p.schedule.start_step;
    let phase_end = phase_start + p.schedule.steps;

    let Start {
        next_step,
        tokens_trained,
        resumed_at,
        mut last_loss,
        mut last_eval,
    } = start(&mut trainer, &ckpt_root, &previous, step, p)?;

    let (train_samples, held_out) = open_mix(mix_dir, p, &mut notes)?;
    let eval_tokens = options
        .eval_max_tokens
        .or_else(|| spec::eval_tokens(plan))
        .unwrap_or(u64::MAX);
    let mut order = SampleOrder::new(p.seed, &p.phase, train_samples.count());
    let mut log = if leader {
        Some(MetricsLog::open(&work, next_step)?)
    } else {
        None
    };
    let bar = progress_bar(
        phase_end.saturating_sub(next_step),
        &step.name,
        if leader {
            options.progress
        } else {
            Some(false)
        },
    );
    let sent_before = trainer.dp.as_ref().map(|dp| dp.comm.sent);

    let phase = PhaseRun {
        p,
        step,
        layout: &layout,
        rank,
        ranks,
        leader,
        device,
        eval_tokens,
        train_samples: &train_samples,
        held_out: held_out.as_ref(),
        ckpt_root: &ckpt_root,
        halt_after_steps: options.halt_after_steps,
        stop: &options.stop,
    };
    let ran = phase.run(
        &mut trainer,
        &mut order,
        &mut log,
        &bar,
        next_step,
        tokens_trained,
    )?;
    if let Some(next_step) = ran.halted_at {
        bar.finish_and_clear();
        return Ok(StepOutcome::Halted { next_step });
    }
    if let Some(next_step) = ran.stopped_at {
        bar.finish_and_clear();
        // The checkpoint is renamed into place (rank 0, after a barrier in
        // `write_sharded`); no rank leaves before it is, so a launcher that ends the job
        // on the first rank's exit cannot cut it short.
        if let Some(dp) = &trainer.dp {
            dp.comm.barrier();
        }
        if leader {
            eprintln!(
                "{}: asked to stop; checkpointed at step {next_step}, resumes there",
                step.name
            );
        }
        drop(lock);
        return Ok(StepOutcome::Checkpointed { next_step });
    }
    let Ran {
        steps_run,
        tokens_run,
        compute_seconds,
        final_checkpoint,
        ..
    } = ran;
    last_loss = ran.last_loss.or(last_loss);
    last_eval = ran.last_eval.or(last_eval);
    bar.finish_and_clear();
    let phase_samples = p.schedule.samples_before(p.schedule.steps);
    let epochs = order.epoch(phase_samples);
    if epochs > 0 {
        notes.push(format!(
            "the phase read its {} samples {:.2} times",
            train_samples.count(),
            phase_samples as f64 / train_samples.count() as f64
        ));
    }
    let data_parallel = data_parallel_report(&trainer, plan, p, ranks, steps_run, sent_before);
    // The phase's last loss and evaluation, from the log (a resumed run that found its
    // last step done runs none itself).
    let logged = read_metrics(&work.join(METRICS_FILE))?;
    if let Some(last) = logged.last() {
        last_loss = Some(last.loss);
    }
    if let Some(e) = logged.iter().rev().find_map(|m| m.eval_loss) {
        last_eval = Some(e);
    }
    // A resumed run whose checkpoint was already the last step writes no new one.
    let final_checkpoint = match final_checkpoint {
        Some(d) => Some(d),
        None => checkpoint::latest(&ckpt_root).map(|f| f.dir),
    };
    let summary = summarise(Finished {
        step,
        p,
        layout: &layout,
        device,
        trainer: &trainer,
        resumed_at,
        steps_run,
        tokens_run,
        compute_seconds,
        last_loss,
        last_eval,
        checkpoint: final_checkpoint.and_then(|d| {
            d.strip_prefix(&work)
                .ok()
                .map(|r| r.to_string_lossy().into_owned())
        }),
        notes,
        data_parallel,
        wall,
        options,
    });
    // Every rank has read the working directory before rank 0 renames it.
    if let Some(dp) = &trainer.dp {
        dp.comm.barrier();
    }
    if !leader {
        // Rank 0 writes the summary and renames the output.
        return Ok(StepOutcome::Done(summary));
    }
    // The model's shape and tokenizer beside its checkpoints: a scorer for other runs.
    crate::score::describe_train_output(plan, step, &p.model, run_dir, &work)?;
    finish(&work, &output, &summary)?;
    drop(lock);
    eprint!("{}", summary.render());
    Ok(StepOutcome::Done(summary))
}

/// What a phase's summary is made from.
struct Finished<'a> {
    step: &'a Step,
    p: &'a TrainParams,
    layout: &'a BatchLayout,
    device: Device,
    trainer: &'a Trainer,
    resumed_at: Option<u64>,
    steps_run: u64,
    /// Tokens of the steps this process ran.
    tokens_run: u64,
    compute_seconds: f64,
    last_loss: Option<f64>,
    last_eval: Option<f64>,
    /// The last checkpoint, relative to the step's directory.
    checkpoint: Option<String>,
    notes: Vec<String>,
    data_parallel: Option<DataParallelReport>,
    wall: Instant,
    options: &'a TrainOptions,
}

/// The summary of a phase: what ran, its last loss and evaluation, measured against the
/// plan's predictions.
fn summarise(f: Finished) -> Summary {
    let Finished {
        step,
        p,
        layout,
        device,
        trainer,
        resumed_at,
        steps_run,
        tokens_run,
        compute_seconds,
        last_loss,
        last_eval,
        checkpoint,
        notes,
        data_parallel,
        wall,
        options,
    } = f;
    let phase_start = p.schedule.start_step;
    let phase_end = phase_start + p.schedule.steps;
    let tokens = tokens_run;
    let measured = (compute_seconds > 0.0).then(|| tokens as f64 / compute_seconds);
    // The prediction for the steps this process ran: under a ramp, at their batches.
    let first = resumed_at
        .unwrap_or(phase_start)
        .saturating_sub(phase_start);
    let predicted = p
        .schedule
        .predicted_tokens_per_s(first, first + steps_run)
        .or(options.predicted_tokens_per_s);
    Summary {
        step: step.name.clone(),
        id: step.id.clone(),
        kind: "train".into(),
        phase: Some(p.phase.clone()),
        precision: p.precision.as_str().into(),
        device: device_name(device),
        threads: tch::get_num_threads() as i64,
        params: trainer.model.param_count(),
        start_step: phase_start,
        end_step: phase_end,
        resumed_at,
        steps_run,
        tokens_per_step: layout.tokens_per_step,
        tokens,
        final_loss: last_loss,
        final_eval_loss: last_eval,
        unigram_loss: None,
        final_lr: Some(p.schedule.lr_at(p.schedule.steps.saturating_sub(1))),
        compute_seconds,
        wall_seconds: wall.elapsed().as_secs_f64(),
        measured_tokens_per_s: measured,
        predicted_tokens_per_s: predicted,
        measured_over_predicted: measured.zip(predicted).map(|(m, p)| m / p),
        peak_rss_bytes: peak_rss_bytes(),
        predicted_memory_bytes: options.predicted_memory_bytes,
        data_parallel,
        checkpoint,
        notes,
    }
}

/// One phase's steps as a rank runs them: what stays fixed while they run.
struct PhaseRun<'a> {
    p: &'a TrainParams,
    step: &'a Step,
    layout: &'a BatchLayout,
    rank: usize,
    ranks: usize,
    leader: bool,
    device: Device,
    eval_tokens: u64,
    train_samples: &'a Samples,
    held_out: Option<&'a Samples>,
    ckpt_root: &'a Path,
    halt_after_steps: Option<u64>,
    stop: &'a StopWhen,
}

/// What running a phase's steps did.
struct Ran {
    /// Where a run asked to halt early stopped (`TrainOptions::halt_after_steps`).
    halted_at: Option<u64>,
    /// The step after the checkpoint a run asked to stop wrote (`TrainOptions::stop`).
    stopped_at: Option<u64>,
    steps_run: u64,
    /// Tokens of the steps this process ran.
    tokens_run: u64,
    compute_seconds: f64,
    final_checkpoint: Option<PathBuf>,
    last_loss: Option<f64>,
    last_eval: Option<f64>,
}

impl PhaseRun<'_> {
    /// The step loop from `next_step` to the phase's end: each optimizer step on this rank's
    /// slice of the global batch, the held-out evaluation and the metrics line where due, and
    /// a checkpoint every `checkpoint.every_steps` and at the end.
    fn run(
        &self,
        trainer: &mut Trainer,
        order: &mut SampleOrder,
        log: &mut Option<MetricsLog>,
        bar: &indicatif::ProgressBar,
        next_step: u64,
        tokens_before: u64,
    ) -> Result<Ran, TrainError> {
        let PhaseRun {
            p,
            step,
            layout,
            rank,
            ranks,
            leader,
            device,
            eval_tokens,
            train_samples,
            held_out,
            ckpt_root,
            halt_after_steps,
            stop,
        } = *self;
        let phase_start = p.schedule.start_step;
        let phase_end = phase_start + p.schedule.steps;
        let mut last_loss = None;
        let mut last_eval = None;
        let seq_len = p.model.seq_len;
        let mut ids: Vec<i64> = Vec::with_capacity((layout.micro_batch * (seq_len + 1)) as usize);
        let mut compute_seconds = 0.0;
        let mut steps_run = 0u64;
        let mut tokens_run = 0u64;
        let mut final_checkpoint = None;
        for global in next_step..phase_end {
            if halt_after_steps.is_some_and(|h| steps_run >= h) {
                return Ok(Ran {
                    halted_at: Some(global),
                    stopped_at: None,
                    steps_run,
                    tokens_run,
                    compute_seconds,
                    final_checkpoint,
                    last_loss,
                    last_eval,
                });
            }
            let in_phase = global - phase_start;
            let lr = p.schedule.lr_at(in_phase);
            let batch = layout.at(p, in_phase);
            let started = Instant::now();
            let report = trainer.step(global, batch.micro_batches as usize, lr, |i| {
                ids.clear();
                // This rank's contiguous slice of the step's global batch (the order is the
                // ranks'), after the samples the phase's earlier steps read.
                let first = batch.samples_before
                    + rank as u64 * batch.rank_batch
                    + i as u64 * layout.micro_batch;
                for position in first..first + layout.micro_batch {
                    train_samples.read(order.sample(position), &mut ids)?;
                }
                to_batch(&ids, layout.micro_batch as i64, seq_len as i64, device)
            })?;
            let seconds = started.elapsed().as_secs_f64();
            compute_seconds += seconds;
            steps_run += 1;
            tokens_run += batch.tokens;
            last_loss = Some(report.loss);
            let done = global + 1;
            let eval_now =
                done == phase_end || (p.eval_every_steps > 0 && done % p.eval_every_steps == 0);
            // ZeRO 3 gathers the whole model on every rank for rank 0's evaluation.
            let gather = eval_now && held_out.is_some();
            if let (Some(dp), true) = (&mut trainer.dp, gather) {
                dp.gather_all()?;
            }
            let eval_loss = match (&held_out, eval_now && leader) {
                (Some(h), true) => {
                    evaluate(&trainer.model, h, eval_tokens, layout.micro_batch, device)?
                        .map(|r| r.loss)
                }
                _ => None,
            };
            if let (Some(dp), true) = (&mut trainer.dp, gather) {
                dp.release_all(false);
            }
            if eval_loss.is_some() {
                last_eval = eval_loss;
            }
            if let Some(log) = log.as_mut() {
                log.append(&StepMetrics {
                    step: global,
                    phase: p.phase.clone(),
                    lr,
                    loss: report.loss,
                    tokens: tokens_before + tokens_run,
                    step_tokens: batch.tokens,
                    tokens_per_s: batch.tokens as f64 / seconds.max(f64::MIN_POSITIVE),
                    grad_norm: report.grad_norm,
                    loss_scale: report.loss_scale,
                    skipped: report.skipped,
                    eval_loss,
                })?;
            }
            bar.set_message(format!(
                "loss {:.4} {:.0} tokens/s",
                report.loss,
                batch.tokens as f64 / seconds.max(f64::MIN_POSITIVE)
            ));
            bar.inc(1);
            let every = p.checkpoint.every_steps;
            let periodic = done == phase_end || (every > 0 && done % every == 0);
            // A stop request, agreed by every rank: all stop after the same step (the
            // checkpoint is collective). Not after the last step: that one finishes the phase.
            let stopping = done < phase_end && stop.armed() && {
                let asked = f64::from(u8::from(stop.requested(leader)));
                match &mut trainer.dp {
                    Some(dp) => dp.comm.all_reduce_scalar(asked) > 0.0,
                    None => asked > 0.0,
                }
            };
            if periodic || stopping {
                if let Some(log) = log.as_mut() {
                    log.sync()?;
                }
                let state = train_state(
                    trainer,
                    step,
                    p,
                    done,
                    tokens_before + tokens_run,
                    lr,
                    report.loss,
                    ranks,
                );
                final_checkpoint = Some(save(trainer, ckpt_root, &state, p.checkpoint.keep)?);
            }
            if stopping {
                return Ok(Ran {
                    halted_at: None,
                    stopped_at: Some(done),
                    steps_run,
                    tokens_run,
                    compute_seconds,
                    final_checkpoint,
                    last_loss,
                    last_eval,
                });
            }
        }
        Ok(Ran {
            halted_at: None,
            stopped_at: None,
            steps_run,
            tokens_run,
            compute_seconds,
            final_checkpoint,
            last_loss,
            last_eval,
        })
    }
}

/// The phase's training samples and, where the mix wrote one, its held-out set (a note
/// says when there is none).
fn open_mix(
    mix_dir: &Path,
    p: &TrainParams,
    notes: &mut Vec<String>,
) -> Result<(Samples, Option<Samples>), TrainError> {
    let train_samples = Samples::open(&mix_dir.join(TRAIN_PREFIX), p.model.seq_len, p.model.vocab)?;
    if train_samples.count() == 0 {
        return Err(TrainError::Input(format!(
            "the mix output {} has {} tokens, fewer than one {}-token sample",
            mix_dir.display(),
            train_samples.tokens(),
            p.model.seq_len + 1
        )));
    }
    let held_out_prefix = mix_dir.join(HELD_OUT_PREFIX);
    let held_out = if kiln_data::shards::dataset_paths(&held_out_prefix)
        .1
        .exists()
    {
        Some(Samples::open(
            &held_out_prefix,
            p.model.seq_len,
            p.model.vocab,
        )?)
    } else {
        notes.push(format!(
            "{} has no held-out set: no eval_loss",
            mix_dir.display()
        ));
        None
    };
    Ok((train_samples, held_out))
}

/// What the data-parallel ranks sent and keep, beside the plan's predictions.
fn data_parallel_report(
    trainer: &Trainer,
    plan: &Plan,
    p: &TrainParams,
    ranks: usize,
    steps_run: u64,
    sent_before: Option<crate::collective::SentBytes>,
) -> Option<DataParallelReport> {
    let states = plan.predictions.state_bytes;
    trainer.dp.as_ref().map(|dp| {
        let sent = dp.comm.sent;
        let before = sent_before.unwrap_or_default();
        let training = sent.training() - before.training();
        DataParallelReport {
            ranks: ranks as u64,
            zero: dp.zero,
            planned_data: f64::from(p.topology.data),
            sent_bytes_per_step: (steps_run > 0).then(|| training as f64 / steps_run as f64),
            predicted_bytes_per_step: plan.predictions.data_bytes_per_step,
            state_bytes: dp.state_bytes(),
            predicted_state_bytes: [
                states.map(|s| s.weights),
                states.map(|s| s.gradients),
                states.map(|s| s.optimizer),
            ],
        }
    })
}

/// Where a phase starts and what the log already says.
struct Start {
    next_step: u64,
    /// Tokens the whole run has trained before `next_step` (from the checkpoint resumed).
    tokens_trained: u64,
    /// The step a resumed run started from (its own checkpoint).
    resumed_at: Option<u64>,
    last_loss: Option<f64>,
    last_eval: Option<f64>,
}

/// The resume decision: this step's own latest checkpoint (a killed run), else the previous
/// phase's final one (which must end where this phase starts), else step 0 for a first phase.
fn start(
    trainer: &mut Trainer,
    ckpt_root: &Path,
    previous: &[(&Step, PathBuf)],
    step: &Step,
    p: &TrainParams,
) -> Result<Start, TrainError> {
    let phase_start = p.schedule.start_step;
    if let Some(found) = checkpoint::latest(ckpt_root).filter(|f| f.state.step_id == step.id) {
        let s = found.state.global_step;
        // The data position is a function of the plan's batches; a checkpoint whose position
        // is not the plan's was written under another schedule.
        let in_phase = s.saturating_sub(phase_start);
        let planned = p.schedule.samples_before(in_phase);
        if found.state.samples_consumed != planned {
            return Err(TrainError::Input(format!(
                "the checkpoint at step {s} has read {} samples of phase `{}`, but the plan's batches read {planned} before that step: it was written under another batch schedule",
                found.state.samples_consumed, p.phase
            )));
        }
        restore(trainer, &found, p.precision)?;
        return Ok(Start {
            next_step: s,
            tokens_trained: found.state.tokens_trained,
            resumed_at: Some(s),
            last_loss: Some(found.state.loss),
            last_eval: None,
        });
    }
    if let Some((prev, prev_dir)) = previous.last() {
        let root = prev_dir.join(CHECKPOINT_DIR);
        let found = checkpoint::latest(&root).ok_or_else(|| {
            TrainError::Input(format!(
                "the previous phase `{}` left no checkpoint in {}",
                prev.name,
                root.display()
            ))
        })?;
        if found.state.global_step != phase_start {
            return Err(TrainError::Input(format!(
                "the previous phase's last checkpoint is at step {}, but phase `{}` starts at step {phase_start}",
                found.state.global_step, p.phase
            )));
        }
        restore(trainer, &found, p.precision)?;
        return Ok(Start {
            next_step: phase_start,
            tokens_trained: found.state.tokens_trained,
            resumed_at: None,
            last_loss: None,
            last_eval: None,
        });
    } else if phase_start > 0 {
        return Err(TrainError::Plan(format!(
            "phase `{}` starts at step {phase_start} but step `{}` has no previous train step to continue from",
            p.phase, step.name
        )));
    }
    Ok(Start {
        next_step: phase_start,
        tokens_trained: 0,
        resumed_at: None,
        last_loss: None,
        last_eval: None,
    })
}

/// The state a checkpoint records after global step `done`.
#[allow(clippy::too_many_arguments)]
fn train_state(
    trainer: &Trainer,
    step: &Step,
    p: &TrainParams,
    done: u64,
    tokens_trained: u64,
    lr: f64,
    loss: f64,
    ranks: usize,
) -> TrainState {
    let phase_start = p.schedule.start_step;
    TrainState {
        format: STATE_FORMAT,
        step_id: step.id.clone(),
        phase: p.phase.clone(),
        global_step: done,
        phase_step: done - phase_start,
        samples_consumed: p.schedule.samples_before(done - phase_start),
        tokens_trained,
        adam_step: trainer
            .dp
            .as_ref()
            .map_or(trainer.optimizer.step, |dp| dp.adam_step),
        rng: RngState {
            rule: "libtorch's generator reseeded before each step from (seed, global step)".into(),
            seed: p.seed,
            next_step_seed: step_seed(p.seed, done),
        },
        loss_scale: trainer.scaler.clone(),
        precision: p.precision.as_str().into(),
        lr,
        loss,
        files: Vec::new(),
        world: ranks as u64,
        zero: if ranks > 1 {
            u64::from(p.parallel.zero)
        } else {
            0
        },
    }
}

/// Writes a checkpoint of the trainer (sharded across data-parallel ranks, the whole model
/// gathered for it), keeping the last `keep`; its directory.
fn save(
    trainer: &mut Trainer,
    ckpt_root: &Path,
    state: &TrainState,
    keep: u64,
) -> Result<PathBuf, TrainError> {
    let params = trainer.model.named_parameters();
    match &mut trainer.dp {
        Some(dp) => {
            dp.gather_all()?;
            let dir = checkpoint::write_sharded(
                ckpt_root,
                params,
                &dp.optimizer_state(),
                state,
                keep,
                &dp.comm,
            )?;
            dp.release_all(false);
            Ok(dir)
        }
        None => checkpoint::write(
            ckpt_root,
            params,
            &trainer.optimizer.named_state(params),
            state,
            keep,
        ),
    }
}

/// Loads a checkpoint into the trainer.
fn restore(
    trainer: &mut Trainer,
    found: &checkpoint::Found,
    precision: Precision,
) -> Result<(), TrainError> {
    let names: Vec<String> = trainer
        .model
        .named_parameters()
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    let adam_step = found.state.adam_step;
    // ZeRO 3 frees the parameters between steps: their sizes come from its layout.
    let numels: Vec<usize> = match &trainer.dp {
        Some(dp) => dp.layout.numels().to_vec(),
        None => trainer
            .model
            .named_parameters()
            .iter()
            .map(|(_, p)| p.numel())
            .collect(),
    };
    if precision == Precision::Fp16Mixed {
        // A phase after an fp32 or bf16 one starts a fresh scale.
        trainer.scaler = Some(found.state.loss_scale.clone().unwrap_or_default());
    }
    if let Some(dp) = &mut trainer.dp {
        let (rank, world) = (dp.comm.rank(), dp.comm.size());
        // Under ZeRO 3 the parameters are whole only while gathered: restored into the
        // gathered buffers, each rank keeps its shards of them.
        dp.gather_all()?;
        checkpoint::restore_params(
            trainer.model.named_parameters(),
            &checkpoint::load_model(&found.dir)?,
        )?;
        dp.release_all(true);
        if found.state.world == world as u64 && found.state.zero == dp.zero {
            let loaded = checkpoint::load_sharded(&found.dir, &found.state, rank, world)?;
            return dp.load_optimizer_state(&loaded.optimizer, adam_step);
        }
        // Another world size or stage: this rank's part of the whole state.
        let (m, v) = checkpoint::load_full_optimizer(&found.dir, &found.state, &names, &numels)?;
        return dp.load_full_optimizer_state(&m, &v, adam_step);
    }
    let params = trainer.model.named_parameters();
    if found.state.world > 1 {
        // A sharded checkpoint resumed by one process: the whole state, split by parameter.
        checkpoint::restore_params(params, &checkpoint::load_model(&found.dir)?)?;
        let (m, v) = checkpoint::load_full_optimizer(&found.dir, &found.state, &names, &numels)?;
        let mut state = Vec::with_capacity(2 * params.len());
        let mut off = 0i64;
        for (name, p) in params {
            let n = p.numel() as i64;
            state.push((
                format!("exp_avg.{name}"),
                m.narrow(0, off, n).view(p.size().as_slice()),
            ));
            state.push((
                format!("exp_avg_sq.{name}"),
                v.narrow(0, off, n).view(p.size().as_slice()),
            ));
            off += n;
        }
        trainer.optimizer.load_state(params, &state, adam_step)?;
    } else {
        let loaded = checkpoint::load(&found.dir)?;
        checkpoint::restore_params(params, &loaded.model)?;
        trainer
            .optimizer
            .load_state(params, &loaded.optimizer, adam_step)?;
    }
    Ok(())
}

/// Writes the summary into the working directory and renames it to the output.
fn finish(work: &Path, output: &Path, summary: &Summary) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(summary)
        .map_err(|e| TrainError::Plan(format!("cannot serialise the summary: {e}")))?;
    write_atomic(&work.join(SUMMARY_FILE), (text + "\n").as_bytes())?;
    let _ = fs::remove_file(work.join(LOCK_FILE));
    fsync_dir(work)?;
    fs::rename(work, output).map_err(io_at(output))?;
    if let Some(parent) = output.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// Runs a plan's `evaluate` step (see the module doc).
pub fn run_evaluate_step(
    plan: &Plan,
    step_id: &str,
    run_dir: &Path,
    options: &TrainOptions,
) -> Result<StepOutcome, TrainError> {
    catch_torch(|| evaluate_step(plan, step_id, run_dir, options))
}

fn evaluate_step(
    plan: &Plan,
    step_id: &str,
    run_dir: &Path,
    options: &TrainOptions,
) -> Result<StepOutcome, TrainError> {
    let wall = Instant::now();
    let step = plan.step(step_id)?;
    let params = spec::evaluate_params(step)?;
    let output = spec::output(step, run_dir)?;
    if output.is_dir() {
        return Ok(StepOutcome::AlreadyDone(read_summary(&output)?));
    }
    let trains = inputs_of(plan, step, StepKind::Train, run_dir)?;
    let mixes = inputs_of(plan, step, StepKind::Mix, run_dir)?;
    let (Some((train_step, train_dir)), Some((_, mix_dir))) = (trains.last(), mixes.last()) else {
        return Err(TrainError::Plan(format!(
            "evaluate step `{}` needs a train step and a mix step among its inputs",
            step.name
        )));
    };
    let tp = spec::train_params(train_step)?;
    if let Some(n) = options.threads {
        tch::set_num_threads(n.clamp(1, i32::MAX as usize) as i32);
    }
    let device = options.device;
    let root = train_dir.join(CHECKPOINT_DIR);
    let found = checkpoint::latest(&root)
        .ok_or_else(|| TrainError::Input(format!("{} holds no checkpoint", root.display())))?;
    let model = Model::new(&tp.model, tp.precision, tp.seed, device)?;
    checkpoint::restore_params(
        model.named_parameters(),
        &checkpoint::load_model(&found.dir)?,
    )?;
    let samples = Samples::open(
        &mix_dir.join(HELD_OUT_PREFIX),
        tp.model.seq_len,
        tp.model.vocab,
    )?;
    let max_tokens = options
        .eval_max_tokens
        .unwrap_or_else(|| params.held_out_tokens.max(1.0) as u64);
    let started = Instant::now();
    let result = evaluate(
        &model,
        &samples,
        max_tokens,
        tp.parallel.micro_batch,
        device,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let train_stream = TokenStream::open(&mix_dir.join(TRAIN_PREFIX))?;
    let unigram = unigram_loss(&train_stream, &samples, max_tokens, tp.model.vocab)?;
    let tokens = result.map_or(0, |r| r.tokens);
    let mut notes = vec![format!(
        "checkpoint at global step {} of `{}`",
        found.state.global_step, train_step.name
    )];
    if result.is_none() {
        notes.push("the held-out set is shorter than one sample: no loss".into());
    }
    let measured = (seconds > 0.0 && tokens > 0).then(|| tokens as f64 / seconds);
    let summary = Summary {
        step: step.name.clone(),
        id: step.id.clone(),
        kind: "evaluate".into(),
        phase: Some(found.state.phase.clone()),
        precision: tp.precision.as_str().into(),
        device: device_name(device),
        threads: tch::get_num_threads() as i64,
        params: model.param_count(),
        start_step: found.state.global_step,
        end_step: found.state.global_step,
        resumed_at: None,
        steps_run: 0,
        tokens_per_step: 0,
        tokens,
        final_loss: None,
        final_eval_loss: result.map(|r| r.loss),
        unigram_loss: unigram,
        final_lr: None,
        compute_seconds: seconds,
        wall_seconds: wall.elapsed().as_secs_f64(),
        measured_tokens_per_s: measured,
        // The plan predicts training, not evaluation.
        predicted_tokens_per_s: None,
        measured_over_predicted: None,
        peak_rss_bytes: peak_rss_bytes(),
        predicted_memory_bytes: None,
        data_parallel: None,
        checkpoint: None,
        notes,
    };
    let tmp = with_suffix(&output, &format!(".tmp-{}", std::process::id()));
    fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
    let result = finish(&tmp, &output, &summary);
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result?;
    eprint!("{}", summary.render());
    Ok(StepOutcome::Done(summary))
}
