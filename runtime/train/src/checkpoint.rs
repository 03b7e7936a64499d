//! Atomic checkpoints: weights and optimizer moments as safetensors, training state as JSON.
//!
//! Each is written whole or not at all, and the last K are kept.
//!
//! # Layout
//! `checkpoints/step-NNNNNNNNN/` (the global step count reached, zero-padded) holds
//! [`MODEL_FILE`] (the fp32 parameters under their model names), [`OPTIMIZER_FILE`]
//! (`exp_avg.NAME`, `exp_avg_sq.NAME`) and [`STATE_FILE`] ([`TrainState`]: step, phase,
//! data position, the RNG's rule, the loss scale, the files' sizes).
//!
//! # Atomicity
//! A checkpoint is written into `checkpoints/.step-N.tmp-PID/`: each file written, flushed
//! and fsynced, the state last, the directory fsynced, then renamed to `step-N` and the
//! parent fsynced (the rename is atomic on POSIX file systems; the fsyncs order it after
//! the data, as in ext4's and XFS's documented rename semantics). A process killed at any
//! moment leaves either the previous checkpoints alone or the new one complete, plus at
//! most a temporary directory, which [`latest`] ignores and the next write removes. Older
//! checkpoints are deleted only after the new one is durable.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::{io_at, TrainError};
use crate::optim::LossScaler;
use crate::parallel::ShardLayout;

/// The weights' file in a checkpoint.
pub const MODEL_FILE: &str = "model.safetensors";
/// The optimizer moments' file.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The training state's file, written last.
pub const STATE_FILE: &str = "state.json";
/// The version of [`TrainState`]'s layout.
pub const STATE_FORMAT: u32 = 1;
/// The checkpoint directories' name prefix.
const STEP_PREFIX: &str = "step-";

/// How the random number generator is set: reseeded at every step from (seed, step), so
/// the step is the whole of its state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RngState {
    /// "reseeded per step from (seed, global step)".
    pub rule: String,
    pub seed: u64,
    /// The generator's seed for the next step.
    pub next_step_seed: u64,
}

/// What a checkpoint records besides the tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub format: u32,
    /// The plan step that wrote it (its id).
    pub step_id: String,
    pub phase: String,
    /// Optimizer steps done in the whole run (the next global step to run).
    pub global_step: u64,
    /// Optimizer steps done in this phase.
    pub phase_step: u64,
    /// Training samples the phase has read (the data position; the order is a function of
    /// it, see `data`).
    pub samples_consumed: u64,
    /// Tokens trained in the whole run.
    pub tokens_trained: u64,
    /// AdamW's update count (its bias corrections' t).
    pub adam_step: u64,
    pub rng: RngState,
    /// Present under fp16 mixed precision.
    pub loss_scale: Option<LossScaler>,
    pub precision: String,
    /// The learning rate of the last step.
    pub lr: f64,
    /// The loss of the last step.
    pub loss: f64,
    /// File name → bytes, checked when the checkpoint is read.
    pub files: Vec<(String, u64)>,
    /// Data-parallel ranks that wrote it (1: one process, `optimizer.safetensors`; more:
    /// one optimizer file per rank, see [`write_sharded`]).
    #[serde(default = "one")]
    pub world: u64,
    /// The ZeRO stage of a sharded checkpoint (0: one replicated optimizer file).
    #[serde(default)]
    pub zero: u64,
}

fn one() -> u64 {
    1
}

/// The optimizer file of data-parallel rank `rank` of `world` (ZeRO 0 writes rank 0's only:
/// every rank's states are the same).
pub fn shard_file(rank: usize, world: usize) -> String {
    format!("optimizer-rank-{rank:05}-of-{world:05}.safetensors")
}

/// Writes a checkpoint of a data-parallel run under `root`, every rank calling it: rank 0
/// writes the weights (every rank holds them whole) and the state, each rank its optimizer
/// shard (`shard_file`; rank 0's alone under ZeRO 0), into one temporary directory that
/// rank 0 renames into place when every rank has written and fsynced its file — the same
/// all-or-nothing rule as [`write`], with the ranks' barriers between the phases.
#[allow(clippy::too_many_arguments)]
pub fn write_sharded(
    root: &Path,
    model: &[(String, Tensor)],
    shard: &[(String, Tensor)],
    state: &TrainState,
    keep: u64,
    comm: &crate::collective::Collective,
) -> Result<PathBuf, TrainError> {
    let (rank, world) = (comm.rank(), comm.size());
    let name = step_dir_name(state.global_step);
    let dest = root.join(&name);
    let tmp = root.join(format!(".{name}.tmp-ranks"));
    if rank == 0 {
        fs::create_dir_all(root).map_err(io_at(root))?;
        remove_temporaries(root);
        fs::create_dir(&tmp).map_err(io_at(&tmp))?;
    }
    comm.barrier();
    let mut files = Vec::new();
    if rank == 0 || state.zero > 0 {
        let file = shard_file(rank, world);
        let path = tmp.join(&file);
        Tensor::write_safetensors(shard, &path)?;
        fsync_file(&path)?;
    }
    if rank == 0 {
        let path = tmp.join(MODEL_FILE);
        Tensor::write_safetensors(model, &path)?;
        fsync_file(&path)?;
    }
    comm.barrier();
    if rank == 0 {
        let writers = if state.zero > 0 { world } else { 1 };
        for file in std::iter::once(MODEL_FILE.to_string())
            .chain((0..writers).map(|r| shard_file(r, world)))
        {
            let path = tmp.join(&file);
            let len = fs::metadata(&path).map_err(io_at(&path))?.len();
            files.push((file, len));
        }
        let mut state = state.clone();
        state.files = files;
        state.world = world as u64;
        let text = serde_json::to_string_pretty(&state)
            .map_err(|e| TrainError::Plan(format!("cannot serialise the training state: {e}")))?;
        let state_path = tmp.join(STATE_FILE);
        fs::write(&state_path, text + "\n").map_err(io_at(&state_path))?;
        fsync_file(&state_path)?;
        fsync_dir(&tmp)?;
        publish(root, &tmp, &dest, &format!(".{name}.old-ranks"), keep)?;
    }
    comm.barrier();
    Ok(dest)
}

/// AdamW's two moments of every parameter, as flat fp32 tensors over the whole model in the
/// parameters' order (`names`, of `numels` elements each), from a checkpoint of any world
/// size and ZeRO stage: one process's per-parameter `optimizer.safetensors`, rank 0's
/// replicated file (ZeRO 0), or every rank's part put back in place by the writer's
/// [`ShardLayout`] (ZeRO 1–3). What resuming with another world size or stage starts from.
pub fn load_full_optimizer(
    dir: &Path,
    state: &TrainState,
    names: &[String],
    numels: &[usize],
) -> Result<(Tensor, Tensor), TrainError> {
    let read = |file: &str| {
        let p = dir.join(file);
        Tensor::read_safetensors(&p).map_err(|e| TrainError::Input(format!("{}: {e}", p.display())))
    };
    let find = |tensors: &[(String, Tensor)], key: &str, file: &str| {
        tensors
            .iter()
            .find(|(n, _)| n == key)
            .map(|(_, t)| t.reshape([-1]))
            .ok_or_else(|| TrainError::Input(format!("{}: no `{key}` in {file}", dir.display())))
    };
    let layout = ShardLayout::new(names, numels, state.zero, state.world as usize);
    let mut moments = Vec::with_capacity(2);
    for moment in ["exp_avg", "exp_avg_sq"] {
        let full = if state.world <= 1 {
            let tensors = read(OPTIMIZER_FILE)?;
            let parts: Vec<Tensor> = names
                .iter()
                .map(|n| find(&tensors, &format!("{moment}.{n}"), OPTIMIZER_FILE))
                .collect::<Result<_, _>>()?;
            Tensor::cat(&parts, 0)
        } else {
            let writers = if state.zero > 0 { state.world } else { 1 };
            let parts: Vec<Tensor> = (0..writers as usize)
                .map(|r| {
                    let file = shard_file(r, state.world as usize);
                    find(&read(&file)?, moment, &file)
                })
                .collect::<Result<_, _>>()?;
            layout
                .whole(&parts)
                .map_err(|e| TrainError::Input(format!("{}: {e}", dir.display())))?
        };
        let numel: usize = numels.iter().sum();
        if full.numel() != numel {
            return Err(TrainError::Input(format!(
                "{}: the optimizer state holds {} elements, the model {numel}",
                dir.display(),
                full.numel()
            )));
        }
        moments.push(full);
    }
    let v = moments.pop().expect("two moments");
    let m = moments.pop().expect("two moments");
    Ok((m, v))
}

/// Reads the weights and this rank's optimizer shard of a checkpoint written by
/// [`write_sharded`] with the same world size.
pub fn load_sharded(
    dir: &Path,
    state: &TrainState,
    rank: usize,
    world: usize,
) -> Result<Loaded, TrainError> {
    if state.world != world as u64 {
        return Err(TrainError::Input(format!(
            "{}: written by {} data-parallel ranks, resumed with {world}: resume with {} ranks (`kiln run --ranks {}`)",
            dir.display(),
            state.world,
            state.world,
            state.world
        )));
    }
    let read = |file: &str| {
        let p = dir.join(file);
        Tensor::read_safetensors(&p).map_err(|e| TrainError::Input(format!("{}: {e}", p.display())))
    };
    let shard_rank = if state.zero > 0 { rank } else { 0 };
    Ok(Loaded {
        model: read(MODEL_FILE)?,
        optimizer: read(&shard_file(shard_rank, world))?,
    })
}

/// A checkpoint that was found and checked.
#[derive(Debug)]
pub struct Found {
    pub dir: PathBuf,
    pub state: TrainState,
}

/// The tensors of a checkpoint.
pub struct Loaded {
    pub model: Vec<(String, Tensor)>,
    pub optimizer: Vec<(String, Tensor)>,
}

/// Where in the write a test may stop it (see [`write_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WritePoint {
    ModelWritten,
    OptimizerWritten,
    StateWritten,
    BeforeRename,
}

fn step_dir_name(global_step: u64) -> String {
    format!("{STEP_PREFIX}{global_step:09}")
}

fn fsync_file(path: &Path) -> Result<(), TrainError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_at(path))
}

/// fsyncs a directory so the entries made in it survive a crash.
pub fn fsync_dir(dir: &Path) -> Result<(), TrainError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_at(dir))
}

/// Writes a file whole through kiln's safe-write rule (kiln-fsio): an exclusive temporary
/// name beside it, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    kiln_fsio::write(path, bytes).map_err(|e| TrainError::Io {
        path: e.path.clone(),
        source: std::io::Error::from(e),
    })
}

/// Writes a checkpoint under `root` (see the module doc) and keeps the newest `keep`
/// (at least one). Returns its directory.
pub fn write(
    root: &Path,
    model: &[(String, Tensor)],
    optimizer: &[(String, Tensor)],
    state: &TrainState,
    keep: u64,
) -> Result<PathBuf, TrainError> {
    write_with(root, model, optimizer, state, keep, &mut |_| Ok(()))
}

/// [`write`], calling `at` at each point of the write; an error from it abandons the write
/// there, as a crash would (tests use it to check that the previous checkpoint survives).
pub fn write_with(
    root: &Path,
    model: &[(String, Tensor)],
    optimizer: &[(String, Tensor)],
    state: &TrainState,
    keep: u64,
    at: &mut dyn FnMut(WritePoint) -> Result<(), TrainError>,
) -> Result<PathBuf, TrainError> {
    fs::create_dir_all(root).map_err(io_at(root))?;
    remove_temporaries(root);
    let name = step_dir_name(state.global_step);
    let dest = root.join(&name);
    let tmp = root.join(format!(".{name}.tmp-{}", std::process::id()));
    // Exclusive: the temporaries were just removed, so one that exists now was planted.
    fs::create_dir(&tmp).map_err(io_at(&tmp))?;

    let model_path = tmp.join(MODEL_FILE);
    Tensor::write_safetensors(model, &model_path)?;
    fsync_file(&model_path)?;
    at(WritePoint::ModelWritten)?;
    let optimizer_path = tmp.join(OPTIMIZER_FILE);
    Tensor::write_safetensors(optimizer, &optimizer_path)?;
    fsync_file(&optimizer_path)?;
    at(WritePoint::OptimizerWritten)?;

    let mut state = state.clone();
    state.files = Vec::new();
    for (file, path) in [(MODEL_FILE, &model_path), (OPTIMIZER_FILE, &optimizer_path)] {
        let len = fs::metadata(path).map_err(io_at(path))?.len();
        state.files.push((file.to_string(), len));
    }
    let text = serde_json::to_string_pretty(&state)
        .map_err(|e| TrainError::Plan(format!("cannot serialise the training state: {e}")))?;
    let state_path = tmp.join(STATE_FILE);
    fs::write(&state_path, text + "\n").map_err(io_at(&state_path))?;
    fsync_file(&state_path)?;
    at(WritePoint::StateWritten)?;
    fsync_dir(&tmp)?;
    at(WritePoint::BeforeRename)?;

    publish(
        root,
        &tmp,
        &dest,
        &format!(".{name}.old-{}", std::process::id()),
        keep,
    )?;
    Ok(dest)
}

/// Renames the complete temporary directory `tmp` to `dest` (the same step written again,
/// by a resumed run that reached it, replaces the older one through `old`), fsyncs `root`
/// and keeps the newest `keep` checkpoints.
fn publish(root: &Path, tmp: &Path, dest: &Path, old: &str, keep: u64) -> Result<(), TrainError> {
    if dest.exists() {
        let old = root.join(old);
        fs::rename(dest, &old).map_err(io_at(dest))?;
        fs::rename(tmp, dest).map_err(io_at(dest))?;
        let _ = fs::remove_dir_all(&old);
    } else {
        fs::rename(tmp, dest).map_err(io_at(dest))?;
    }
    fsync_dir(root)?;
    prune(root, keep.max(1))
}

/// Removes temporary directories of writes that did not finish, except this process's
/// current one (it has none between writes).
fn remove_temporaries(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && (name.contains(".tmp-") || name.contains(".old-")) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The checkpoint directories under `root`, newest first (by step), complete or not.
fn candidates(root: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix(STEP_PREFIX)?.parse::<u64>().ok()?;
            Some((step, e.path()))
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.0));
    out
}

/// Reads and checks a checkpoint's state: it parses, has this layout, and its files exist
/// with the sizes it records.
pub fn check(dir: &Path) -> Result<TrainState, TrainError> {
    let path = dir.join(STATE_FILE);
    let text = fs::read_to_string(&path).map_err(io_at(&path))?;
    let state: TrainState = serde_json::from_str(&text)
        .map_err(|e| TrainError::Input(format!("{}: {e}", path.display())))?;
    if state.format != STATE_FORMAT {
        return Err(TrainError::Input(format!(
            "{}: checkpoint format {}, this runtime reads {STATE_FORMAT}",
            path.display(),
            state.format
        )));
    }
    for (file, len) in &state.files {
        let p = dir.join(file);
        let actual = fs::metadata(&p).map_err(io_at(&p))?.len();
        if actual != *len {
            return Err(TrainError::Input(format!(
                "{}: {actual} bytes, the checkpoint recorded {len}",
                p.display()
            )));
        }
    }
    Ok(state)
}

/// The newest complete checkpoint under `root`, if any (damaged ones are passed over).
pub fn latest(root: &Path) -> Option<Found> {
    candidates(root)
        .into_iter()
        .find_map(|(_, dir)| check(&dir).ok().map(|state| Found { dir, state }))
}

/// Reads a checkpoint's weights only (one process or sharded: rank 0 wrote them whole).
pub fn load_model(dir: &Path) -> Result<Vec<(String, Tensor)>, TrainError> {
    let p = dir.join(MODEL_FILE);
    Tensor::read_safetensors(&p).map_err(|e| TrainError::Input(format!("{}: {e}", p.display())))
}

/// Reads a checkpoint's tensors.
pub fn load(dir: &Path) -> Result<Loaded, TrainError> {
    let read = |file: &str| {
        let p = dir.join(file);
        Tensor::read_safetensors(&p).map_err(|e| TrainError::Input(format!("{}: {e}", p.display())))
    };
    Ok(Loaded {
        model: read(MODEL_FILE)?,
        optimizer: read(OPTIMIZER_FILE)?,
    })
}

/// Keeps the newest `keep` complete checkpoints under `root` and removes the rest.
fn prune(root: &Path, keep: u64) -> Result<(), TrainError> {
    let complete: Vec<PathBuf> = candidates(root)
        .into_iter()
        .filter(|(_, dir)| check(dir).is_ok())
        .map(|(_, dir)| dir)
        .collect();
    for dir in complete.into_iter().skip(keep as usize) {
        fs::remove_dir_all(&dir).map_err(io_at(&dir))?;
    }
    Ok(())
}

/// Copies `src`'s tensors into the parameters of the same names (every parameter must be
/// there, with its shape).
pub fn restore_params(
    params: &[(String, Tensor)],
    src: &[(String, Tensor)],
) -> Result<(), TrainError> {
    for (name, p) in params {
        let t = src
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| TrainError::Input(format!("the checkpoint has no `{name}`")))?;
        if t.size() != p.size() {
            return Err(TrainError::Input(format!(
                "the checkpoint's `{name}` has shape {:?}, the model {:?}",
                t.size(),
                p.size()
            )));
        }
        let mut dest = p.shallow_clone();
        tch::no_grad(|| dest.f_copy_(t))?;
    }
    Ok(())
}
