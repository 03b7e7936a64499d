//! Data parallelism with ZeRO stages 0 to 3 over the collective layer.
//!
//! The parameters are grouped into **units**, each one flat fp32 buffer padded to a multiple
//! of the world size n and split into n equal shards, rank r owning shard r (PyTorch FSDP's
//! flat parameters; Zhao et al. 2023, "PyTorch FSDP", Sec. 3.2). Stages 0–2 use one unit of
//! every parameter; stage 3 a root unit of everything outside the blocks (embeddings, final
//! norm, output projection) and one unit per block, as torchtitan wraps each transformer
//! block in its own FSDP unit. Per stage (Rajbhandari et al. 2020, "ZeRO", Sec. 5 and 7):
//! - **ZeRO 0**: each micro-batch's gradients are added into a full flat gradient; after the
//!   last micro-batch one all-reduce (2(n−1)/n·Φ sent) sums it; every rank runs AdamW on
//!   every parameter with full optimizer states (as DDP with `no_sync` over accumulation).
//! - **ZeRO 1** (optimizer states partitioned): the full flat gradient is reduce-scattered
//!   once per step ((n−1)/n·Φ), each rank updates its shard with its shard of the states,
//!   and the updated shards are all-gathered ((n−1)/n·Φ).
//! - **ZeRO 2** (gradients partitioned as well): only the rank's shard of the accumulated
//!   gradient is kept; each micro-batch's gradient is reduce-scattered as soon as its
//!   backward ends and added to it (m·(n−1)/n·Φ for m micro-batches, as DeepSpeed's stage 2
//!   reduces in every backward), then the same update and all-gather as stage 1.
//! - **ZeRO 3** (parameters partitioned too): a rank keeps only its shard of each unit's
//!   parameters, and that shard is what AdamW updates. For each micro-batch
//!   ([`DataParallel::micro_batch_zero3`]) the root unit is all-gathered for the forward and
//!   kept until its backward ends (FSDP's root unit is not resharded after the forward);
//!   each block's unit is all-gathered for its forward and freed, gathered again for its
//!   backward and freed, the next block's gathered before this one's backward runs (FSDP's
//!   `BACKWARD_PRE` prefetch), so at most the root and two blocks are whole at once; every
//!   unit's gradient is reduce-scattered when its backward ends. Sent per micro-batch:
//!   (n−1)/n·(2·Φ_root + 3·Φ_blocks). The forward runs without autograd and keeps only each
//!   block's input; the backward recomputes each block from it (as full activation
//!   recomputation does) and back-propagates the block's output gradient, so no graph holds
//!   a freed parameter. Dropout masks are redrawn identically by reseeding libtorch's
//!   generator from (step seed, micro-batch, unit) before a unit's forward and its
//!   recomputation.
//!
//! Each rank's micro-batch loss is scaled by 1/(m·n), so the sum over ranks and micro-batches
//! is the gradient of the mean loss over the global batch, as on one rank. The update is
//! AdamW element by element over flat buffers, with a mask for weight decay (none on 1-D
//! parameters), the same arithmetic as [`crate::optim::AdamW`], so n ranks follow one
//! rank's loss curve up to the order of floating-point sums.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::collective::Collective;
use crate::data::derive_key;
use crate::error::TrainError;
use crate::model::Model;
use crate::optim::CLIP_EPS;
use crate::spec::OptimizerSpec;

/// Bytes per rank of what the stage keeps between steps (fp32): the numbers kiln's memory
/// analysis predicts as `weights`, `gradients` and `optimizer`. Under ZeRO 3 `weights` is
/// the parameter shards plus the most parameters gathered whole at once during training.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateBytes {
    pub weights: u64,
    pub gradients: u64,
    pub optimizer: u64,
}

/// Parameters sharded together as one flat buffer.
#[derive(Clone, Debug)]
pub struct Unit {
    /// Indices of its parameters in the model's parameter order.
    pub params: Vec<usize>,
    /// Where each of them starts in the unit's flat buffer.
    pub offsets: Vec<usize>,
    /// Elements of its parameters.
    pub numel: usize,
    /// `numel` padded to a multiple of the world size.
    pub padded: usize,
    /// Elements per shard, `padded / world`.
    pub shard: usize,
}

/// How a ZeRO stage groups the parameters into units over `world` ranks (see the module
/// doc); also what reads a sharded checkpoint back into the whole model's order.
#[derive(Clone, Debug)]
pub struct ShardLayout {
    pub zero: u64,
    pub world: usize,
    pub units: Vec<Unit>,
    /// Each parameter's elements, in the model's order.
    numels: Vec<usize>,
}

/// The block a parameter belongs to, from its name (`model.layers.{i}.…`).
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("model.layers.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

impl ShardLayout {
    /// The units of stage `zero` for parameters `names` of `numels` elements each.
    pub fn new(names: &[String], numels: &[usize], zero: u64, world: usize) -> ShardLayout {
        let groups: Vec<Vec<usize>> = if zero < 3 {
            vec![(0..names.len()).collect()]
        } else {
            let mut root = Vec::new();
            let mut layers: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (i, name) in names.iter().enumerate() {
                match layer_of(name) {
                    Some(l) => layers.entry(l).or_default().push(i),
                    None => root.push(i),
                }
            }
            std::iter::once(root).chain(layers.into_values()).collect()
        };
        let world = world.max(1);
        let units = groups
            .into_iter()
            .map(|params| {
                let mut offsets = Vec::with_capacity(params.len());
                let mut numel = 0;
                for &i in &params {
                    offsets.push(numel);
                    numel += numels[i];
                }
                let padded = numel.div_ceil(world) * world;
                Unit {
                    params,
                    offsets,
                    numel,
                    padded,
                    shard: padded / world,
                }
            })
            .collect();
        ShardLayout {
            zero,
            world,
            units,
            numels: numels.to_vec(),
        }
    }

    /// Each parameter's elements, in the model's order.
    pub fn numels(&self) -> &[usize] {
        &self.numels
    }

    /// The elements of unit `u` that `rank` updates and keeps optimizer states for: the
    /// whole unit under ZeRO 0, its shard otherwise.
    pub fn owned(&self, u: usize, rank: usize) -> Range<usize> {
        let unit = &self.units[u];
        if self.zero == 0 {
            0..unit.padded
        } else {
            rank * unit.shard..(rank + 1) * unit.shard
        }
    }

    /// Elements `rank` keeps optimizer states for, over every unit.
    pub fn part_len(&self, rank: usize) -> usize {
        (0..self.units.len())
            .map(|u| self.owned(u, rank).len())
            .sum()
    }

    /// Where each parameter starts in the whole model's flat order.
    fn starts(&self) -> Vec<usize> {
        let mut starts = Vec::with_capacity(self.numels.len());
        let mut off = 0;
        for n in &self.numels {
            starts.push(off);
            off += n;
        }
        starts
    }

    /// `rank`'s part (its owned range of every unit, in unit order) of `full`, a flat
    /// tensor over the whole model in parameter order.
    pub fn part_of(&self, full: &Tensor, rank: usize) -> Tensor {
        let starts = self.starts();
        let pieces: Vec<Tensor> = tch::no_grad(|| {
            self.units
                .iter()
                .enumerate()
                .map(|(u, unit)| {
                    let flat = Tensor::zeros([unit.padded as i64], (Kind::Float, tch::Device::Cpu));
                    for (k, &i) in unit.params.iter().enumerate() {
                        flat.narrow(0, unit.offsets[k] as i64, self.numels[i] as i64)
                            .shallow_clone()
                            .copy_(&full.narrow(0, starts[i] as i64, self.numels[i] as i64));
                    }
                    let r = self.owned(u, rank);
                    flat.narrow(0, r.start as i64, r.len() as i64)
                })
                .collect()
        });
        Tensor::cat(&pieces, 0)
    }

    /// The whole model's flat tensor in parameter order from the ranks' parts (rank 0's
    /// alone under ZeRO 0, whose ranks hold the same states).
    pub fn whole(&self, parts: &[Tensor]) -> Result<Tensor, TrainError> {
        let ranks = if self.zero == 0 { 1 } else { self.world };
        if parts.len() != ranks {
            return Err(TrainError::Input(format!(
                "{} optimizer parts for {ranks} ranks",
                parts.len()
            )));
        }
        for (r, part) in parts.iter().enumerate() {
            if part.numel() != self.part_len(r) {
                return Err(TrainError::Input(format!(
                    "rank {r}'s optimizer part holds {} elements, ZeRO {} on {} ranks gives it {}",
                    part.numel(),
                    self.zero,
                    self.world,
                    self.part_len(r)
                )));
            }
        }
        let starts = self.starts();
        let total: usize = self.numels.iter().sum();
        let full = Tensor::zeros([total as i64], (Kind::Float, tch::Device::Cpu));
        let mut at = 0usize;
        tch::no_grad(|| {
            for (u, unit) in self.units.iter().enumerate() {
                let len = self.owned(u, 0).len();
                let pieces: Vec<Tensor> = parts
                    .iter()
                    .map(|p| p.narrow(0, at as i64, len as i64))
                    .collect();
                at += len;
                let flat = Tensor::cat(&pieces, 0);
                for (k, &i) in unit.params.iter().enumerate() {
                    full.narrow(0, starts[i] as i64, self.numels[i] as i64)
                        .shallow_clone()
                        .copy_(&flat.narrow(0, unit.offsets[k] as i64, self.numels[i] as i64));
                }
            }
        });
        Ok(full)
    }
}

/// The data-parallel state of one rank (see the module doc).
pub struct DataParallel {
    pub comm: Collective,
    pub zero: u64,
    pub layout: ShardLayout,
    /// Where the parameters and every buffer live (the collectives' device).
    device: Device,
    /// Handles to the model's parameters, in its order, and their shapes.
    params: Vec<Tensor>,
    shapes: Vec<Vec<i64>>,
    /// Per unit, the whole flat parameters: always present under ZeRO 0–2 (the parameters
    /// are views into it), only while gathered under ZeRO 3.
    full: Vec<Option<Tensor>>,
    /// ZeRO 3, per unit: this rank's shard of the parameters, the master copy AdamW updates.
    shards: Vec<Option<Tensor>>,
    /// ZeRO 0 and 1, per unit: the whole accumulated gradient.
    flat_grad: Vec<Option<Tensor>>,
    /// ZeRO 2 and 3, per unit: this rank's shard of the accumulated, reduced gradient.
    grad_shard: Vec<Option<Tensor>>,
    /// Per unit, over the elements this rank owns: AdamW's moments and the weight-decay mask
    /// (1 where weight decay applies).
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    decay_mask: Vec<Tensor>,
    /// ZeRO 3: elements gathered for training now, and the most at any moment.
    gathered: usize,
    gathered_peak: usize,
    pub adam_step: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    grad_clip: f64,
}

fn zeros(n: usize, device: Device) -> Tensor {
    Tensor::zeros([n as i64], (Kind::Float, device))
}

/// The generator's seed for unit `unit`'s forward (and its recomputation) in the
/// micro-batch seeded `seed` under ZeRO 3: unit 0 the embeddings, unit i + 1 block i.
pub fn unit_seed(seed: u64, unit: usize) -> u64 {
    derive_key(seed, &[b"zero3-unit", &(unit as u64).to_le_bytes()])
}

/// An empty stand-in for a freed parameter's storage.
fn freed(device: Device) -> Tensor {
    Tensor::empty([0], (Kind::Float, device))
}

/// `a + b` where either may be undefined (a parameter that a backward did not reach).
fn add_defined(a: Tensor, b: Tensor) -> Tensor {
    match (a.defined(), b.defined()) {
        (true, true) => a + b,
        (true, false) => a,
        _ => b,
    }
}

impl DataParallel {
    /// Groups the parameters into the stage's units, broadcasts rank 0's values, and makes
    /// every parameter a view into its unit's buffer (ZeRO 0–2) or keeps only this rank's
    /// shard of it and frees the parameter (ZeRO 3).
    pub fn new(
        params: &[(String, Tensor)],
        zero: u64,
        optimizer: &OptimizerSpec,
        mut comm: Collective,
    ) -> Result<DataParallel, TrainError> {
        if zero > 3 {
            return Err(TrainError::Plan(format!(
                "ZeRO stage {zero}: the stages are 0 to 3"
            )));
        }
        if optimizer.kind.as_str() != "adamw" {
            return Err(TrainError::Unsupported(format!(
                "optimizer `{}`: this runtime builds adamw",
                optimizer.kind
            )));
        }
        let names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
        let numels: Vec<usize> = params.iter().map(|(_, p)| p.numel()).collect();
        let layout = ShardLayout::new(&names, &numels, zero, comm.size());
        let rank = comm.rank();
        let device = params.first().map_or(Device::Cpu, |(_, p)| p.device());
        if device != comm.device() {
            return Err(TrainError::Unsupported(format!(
                "the model is on {device:?} but the collectives run on {:?}: MPI takes CPU buffers, NCCL those of its GPU",
                comm.device()
            )));
        }
        let units = layout.units.len();
        let mut dp = DataParallel {
            device,
            params: params.iter().map(|(_, p)| p.shallow_clone()).collect(),
            shapes: params.iter().map(|(_, p)| p.size()).collect(),
            full: Vec::with_capacity(units),
            shards: Vec::with_capacity(units),
            flat_grad: Vec::with_capacity(units),
            grad_shard: Vec::with_capacity(units),
            exp_avg: Vec::with_capacity(units),
            exp_avg_sq: Vec::with_capacity(units),
            decay_mask: Vec::with_capacity(units),
            gathered: 0,
            gathered_peak: 0,
            adam_step: 0,
            beta1: optimizer.beta1,
            beta2: optimizer.beta2,
            eps: optimizer.eps,
            weight_decay: optimizer.weight_decay,
            grad_clip: optimizer.grad_clip,
            layout: layout.clone(),
            comm: Collective::single(),
            zero,
        };
        for (u, unit) in layout.units.iter().enumerate() {
            let flat = zeros(unit.padded, device);
            let mut mask = vec![0f32; unit.padded];
            tch::no_grad(|| {
                for (k, &i) in unit.params.iter().enumerate() {
                    let (off, len) = (unit.offsets[k], numels[i]);
                    flat.narrow(0, off as i64, len as i64)
                        .shallow_clone()
                        .copy_(&params[i].1.reshape([-1]));
                    if params[i].1.dim() > 1 {
                        mask[off..off + len].fill(1.0);
                    }
                }
            });
            comm.broadcast(&flat, 0)?;
            let owned = layout.owned(u, rank);
            dp.decay_mask
                .push(Tensor::from_slice(&mask[owned.clone()]).to_device(device));
            dp.exp_avg.push(zeros(owned.len(), device));
            dp.exp_avg_sq.push(zeros(owned.len(), device));
            dp.flat_grad
                .push((zero <= 1).then(|| zeros(unit.padded, device)));
            dp.grad_shard
                .push((zero >= 2).then(|| zeros(unit.shard, device)));
            if zero < 3 {
                dp.full.push(Some(flat));
                dp.shards.push(None);
                dp.point_params_at(u);
            } else {
                dp.shards.push(Some(
                    flat.narrow(0, owned.start as i64, owned.len() as i64)
                        .copy(),
                ));
                dp.full.push(Some(flat));
                dp.free(u);
            }
        }
        dp.comm = comm;
        Ok(dp)
    }

    /// Makes unit `u`'s parameters views into its whole buffer.
    fn point_params_at(&mut self, u: usize) {
        let unit = &self.layout.units[u];
        let flat = self.full[u].as_ref().expect("a gathered unit");
        for (k, &i) in unit.params.iter().enumerate() {
            let len = self.shapes[i].iter().product::<i64>();
            let view = flat
                .narrow(0, unit.offsets[k] as i64, len)
                .view(self.shapes[i].as_slice());
            self.params[i].set_data(&view);
        }
    }

    /// ZeRO 3: frees unit `u`'s whole buffer; its parameters become empty.
    fn free(&mut self, u: usize) {
        if self.zero < 3 || self.full[u].is_none() {
            return;
        }
        for &i in &self.layout.units[u].params {
            self.params[i].set_data(&freed(self.device));
        }
        self.full[u] = None;
    }

    /// ZeRO 3: all-gathers unit `u` from the ranks' shards and points its parameters at it
    /// (nothing when it is already whole). `training` gathers count toward the peak of
    /// [`StateBytes::weights`] and the training traffic; the others (checkpoints,
    /// evaluation) toward [`crate::collective::SentBytes::io`].
    fn gather(&mut self, u: usize, training: bool) -> Result<(), TrainError> {
        if self.full[u].is_some() {
            return Ok(());
        }
        let unit = &self.layout.units[u];
        let flat = zeros(unit.padded, self.device);
        let shard = self.shards[u].as_ref().expect("ZeRO 3 keeps shards");
        if training {
            self.comm.all_gather(shard, &flat)?;
            self.gathered += unit.padded;
            self.gathered_peak = self.gathered_peak.max(self.gathered);
        } else {
            self.comm.all_gather_io(shard, &flat)?;
        }
        self.full[u] = Some(flat);
        self.point_params_at(u);
        Ok(())
    }

    /// ZeRO 3: frees a unit gathered for training.
    fn release(&mut self, u: usize) {
        if self.zero == 3 && self.full[u].is_some() {
            self.gathered -= self.layout.units[u].padded;
            self.free(u);
        }
    }

    /// Makes every parameter whole on every rank (every rank calls it): for a checkpoint,
    /// an evaluation or a restore under ZeRO 3; nothing under ZeRO 0–2, whose parameters
    /// always are.
    pub fn gather_all(&mut self) -> Result<(), TrainError> {
        if self.zero < 3 {
            return Ok(());
        }
        for u in 0..self.layout.units.len() {
            self.gather(u, false)?;
        }
        Ok(())
    }

    /// Undoes [`DataParallel::gather_all`]; with `keep_values`, each unit's owned part of
    /// the whole parameters (restored from a checkpoint) first becomes this rank's shard.
    pub fn release_all(&mut self, keep_values: bool) {
        if self.zero < 3 {
            return;
        }
        let rank = self.comm.rank();
        for u in 0..self.layout.units.len() {
            if keep_values {
                if let (Some(full), Some(shard)) = (&self.full[u], &self.shards[u]) {
                    let owned = self.layout.owned(u, rank);
                    tch::no_grad(|| {
                        shard.shallow_clone().copy_(&full.narrow(
                            0,
                            owned.start as i64,
                            owned.len() as i64,
                        ))
                    });
                }
            }
            self.free(u);
        }
    }

    /// What this rank keeps between steps (see [`StateBytes`]).
    pub fn state_bytes(&self) -> StateBytes {
        let sum = |ts: &[Option<Tensor>]| -> u64 {
            ts.iter().flatten().map(|t| t.numel() as u64 * 4).sum()
        };
        let weights = if self.zero < 3 {
            sum(&self.full)
        } else {
            sum(&self.shards) + self.gathered_peak as u64 * 4
        };
        StateBytes {
            weights,
            gradients: sum(&self.flat_grad) + sum(&self.grad_shard),
            optimizer: self
                .exp_avg
                .iter()
                .chain(&self.exp_avg_sq)
                .map(|t| t.numel() as u64 * 4)
                .sum(),
        }
    }

    /// Takes one micro-batch's gradients of every parameter (the model's order; ZeRO 0–2),
    /// already scaled by 1/(m·n).
    pub fn accumulate(&mut self, grads: &[Tensor]) -> Result<(), TrainError> {
        for u in 0..self.layout.units.len() {
            let unit_grads: Vec<Tensor> = self.layout.units[u]
                .params
                .iter()
                .map(|&i| grads[i].shallow_clone())
                .collect();
            self.accumulate_unit(u, &unit_grads)?;
        }
        Ok(())
    }

    /// Takes unit `u`'s gradients (its parameters' order, undefined where the backward
    /// did not reach): added to its whole gradient (ZeRO 0, 1) or reduce-scattered into
    /// this rank's shard (ZeRO 2, 3).
    fn accumulate_unit(&mut self, u: usize, grads: &[Tensor]) -> Result<(), TrainError> {
        let unit = &self.layout.units[u];
        tch::no_grad(|| -> Result<(), TrainError> {
            let target = match &self.flat_grad[u] {
                Some(flat) => flat.shallow_clone(),
                None => zeros(unit.padded, self.device),
            };
            for (g, &off) in grads.iter().zip(&unit.offsets) {
                if g.defined() {
                    let _ = target
                        .narrow(0, off as i64, g.numel() as i64)
                        .g_add_(&g.reshape([-1]));
                }
            }
            if self.flat_grad[u].is_none() {
                let part = zeros(unit.shard, self.device);
                self.comm.reduce_scatter(&target, &part)?;
                if let Some(s) = &self.grad_shard[u] {
                    let _ = s.shallow_clone().g_add_(&part);
                }
            }
            Ok(())
        })
    }

    /// One micro-batch under ZeRO 3 (see the module doc): its forward unit by unit, its
    /// backward block by block, every unit's gradient reduce-scattered into this rank's
    /// shard. The loss is scaled by `share` (1/(m·n)) before the backward; returns the
    /// micro-batch's mean loss. `seed` seeds the dropout masks of this micro-batch.
    pub fn micro_batch_zero3(
        &mut self,
        model: &Model,
        inputs: &Tensor,
        targets: &Tensor,
        share: f64,
        seed: u64,
    ) -> Result<f64, TrainError> {
        let layers = model.layers();
        if self.zero != 3 || self.layout.units.len() != layers + 1 {
            return Err(TrainError::Plan(format!(
                "ZeRO 3 needs a root unit and one unit per block: {} units for {layers} blocks",
                self.layout.units.len()
            )));
        }
        let reseed = |unit: usize| tch::manual_seed(unit_seed(seed, unit) as i64);
        let unit_params = |dp: &DataParallel, u: usize| -> Vec<Tensor> {
            dp.layout.units[u]
                .params
                .iter()
                .map(|&i| dp.params[i].shallow_clone())
                .collect()
        };
        // Forward without autograd: the root, then each block gathered, run and freed.
        self.gather(0, true)?;
        reseed(0);
        let mut inputs_of_blocks = Vec::with_capacity(layers + 1);
        inputs_of_blocks.push(tch::no_grad(|| model.embed(inputs, true)));
        for i in 0..layers {
            self.gather(i + 1, true)?;
            reseed(i + 1);
            let y = tch::no_grad(|| model.block(i, &inputs_of_blocks[i], true));
            inputs_of_blocks.push(y);
            self.release(i + 1);
        }
        // The head and the loss with autograd, and their backward.
        let x = inputs_of_blocks
            .pop()
            .expect("the last block's output")
            .set_requires_grad(true);
        let loss = model.cross_entropy(&model.head(&x), targets, false);
        let loss_value = loss.f_double_value(&[])?;
        let root = unit_params(self, 0);
        let mut wrt: Vec<&Tensor> = root.iter().collect();
        wrt.push(&x);
        let mut grads = Tensor::f_run_backward(&[loss * share], &wrt, false, false)?;
        let mut grad_out = grads.pop().expect("the gradient of the head's input");
        let mut root_grads = grads;
        // Blocks from the last: the one below gathered first (prefetch), this one's
        // forward recomputed from its input, its output's gradient back-propagated.
        if layers > 0 {
            self.gather(layers, true)?;
        }
        for i in (0..layers).rev() {
            if i > 0 {
                self.gather(i, true)?;
            }
            let x = inputs_of_blocks
                .pop()
                .expect("each block's input")
                .set_requires_grad(true);
            reseed(i + 1);
            let y = model.block(i, &x, true);
            let block = unit_params(self, i + 1);
            let mut wrt: Vec<&Tensor> = block.iter().collect();
            wrt.push(&x);
            let mut grads =
                Tensor::f_run_backward(&[(y * &grad_out).sum(Kind::Float)], &wrt, false, false)?;
            grad_out = grads.pop().expect("the gradient of the block's input");
            self.accumulate_unit(i + 1, &grads)?;
            self.release(i + 1);
        }
        // The embeddings' backward, added to the head's gradients of the root unit (a tied
        // embedding gets both).
        reseed(0);
        let x = model.embed(inputs, true);
        let wrt: Vec<&Tensor> = root.iter().collect();
        let grads =
            Tensor::f_run_backward(&[(x * &grad_out).sum(Kind::Float)], &wrt, false, false)?;
        root_grads = root_grads
            .into_iter()
            .zip(grads)
            .map(|(a, b)| add_defined(a, b))
            .collect();
        self.accumulate_unit(0, &root_grads)?;
        self.release(0);
        Ok(loss_value)
    }

    /// Reduces the accumulated gradients, multiplies them by `unscale` (1 / the fp16 loss
    /// scale; 1 otherwise), clips them by their global norm, runs AdamW at `lr` and brings
    /// the parameters up to date (every rank's under ZeRO 0–2; this rank's shards under
    /// ZeRO 3). Returns the gradient norm before clipping, or `None` (and no update) when it
    /// is not finite — the same on every rank, as the norm is global.
    pub fn update(&mut self, lr: f64, unscale: f64) -> Result<Option<f64>, TrainError> {
        tch::no_grad(|| self.update_inner(lr, unscale))
    }

    fn update_inner(&mut self, lr: f64, unscale: f64) -> Result<Option<f64>, TrainError> {
        let rank = self.comm.rank();
        // The gradient of the part of each unit this rank updates.
        let mut grads = Vec::with_capacity(self.layout.units.len());
        for u in 0..self.layout.units.len() {
            let grad = match (self.zero, &self.flat_grad[u], &self.grad_shard[u]) {
                (0, Some(flat), _) => {
                    self.comm.all_reduce(flat)?;
                    flat.shallow_clone()
                }
                (1, Some(flat), _) => {
                    // The reduced shard is transient: the whole gradient is what ZeRO 1 keeps.
                    let shard = zeros(self.layout.units[u].shard, self.device);
                    self.comm.reduce_scatter(flat, &shard)?;
                    shard
                }
                (_, _, Some(shard)) => shard.shallow_clone(),
                _ => unreachable!("each stage keeps its gradients"),
            };
            if unscale != 1.0 {
                let _ = grad.shallow_clone().g_mul_scalar_(unscale);
            }
            grads.push(grad);
        }
        let local_sq: f64 = grads
            .iter()
            .map(|g| g.square().sum(Kind::Double).double_value(&[]))
            .sum();
        let norm = if self.zero == 0 {
            local_sq.sqrt()
        } else {
            self.comm.all_reduce_scalar(local_sq).sqrt()
        };
        if !norm.is_finite() {
            self.zero_grads();
            return Ok(None);
        }
        let coefficient = if self.grad_clip > 0.0 {
            (self.grad_clip / (norm + CLIP_EPS)).min(1.0)
        } else {
            1.0
        };
        // AdamW, element by element as optim::AdamW::update.
        self.adam_step += 1;
        let t = self.adam_step as i32;
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2_sqrt = (1.0 - self.beta2.powi(t)).sqrt();
        let step_size = lr / bias1;
        for (u, grad) in grads.iter().enumerate() {
            if coefficient < 1.0 {
                let _ = grad.shallow_clone().g_mul_scalar_(coefficient);
            }
            let owned = self.layout.owned(u, rank);
            let p = match &self.shards[u] {
                Some(shard) => shard.shallow_clone(),
                None => self.full[u]
                    .as_ref()
                    .expect("ZeRO 0–2 keep the whole parameters")
                    .narrow(0, owned.start as i64, owned.len() as i64),
            };
            if self.weight_decay > 0.0 {
                // p·(1 − lr·wd) where the mask is 1, p where it is 0.
                let factor = (&self.decay_mask[u] * (-lr * self.weight_decay)) + 1.0;
                let _ = p.shallow_clone().g_mul_(&factor);
            }
            let m = &mut self.exp_avg[u];
            let _ = m.g_mul_scalar_(self.beta1);
            let _ = m.g_add_(&(grad * (1.0 - self.beta1)));
            let v = &mut self.exp_avg_sq[u];
            let _ = v.g_mul_scalar_(self.beta2);
            let _ = v.g_add_(&(grad * grad * (1.0 - self.beta2)));
            let denom = (v.sqrt() / bias2_sqrt) + self.eps;
            let _ = p
                .shallow_clone()
                .g_sub_(&(&self.exp_avg[u] / denom * step_size));
            if self.zero == 1 || self.zero == 2 {
                let full = self.full[u].as_ref().expect("ZeRO 1 and 2 keep it whole");
                self.comm.all_gather(&p.copy(), full)?;
            }
        }
        self.zero_grads();
        Ok(Some(norm))
    }

    fn zero_grads(&mut self) {
        for t in self
            .flat_grad
            .iter_mut()
            .chain(&mut self.grad_shard)
            .flatten()
        {
            let _ = t.zero_();
        }
    }

    /// The gradient accumulated since the last update over the elements this rank owns
    /// (its part of every unit, in unit order; [`ShardLayout::whole`] puts one process's
    /// back in parameter order). Before the update's reduction under ZeRO 0 and 1.
    pub fn accumulated_gradient(&self) -> Tensor {
        let rank = self.comm.rank();
        let parts: Vec<Tensor> = (0..self.layout.units.len())
            .map(|u| match (&self.flat_grad[u], &self.grad_shard[u]) {
                (Some(flat), _) => {
                    let owned = self.layout.owned(u, rank);
                    flat.narrow(0, owned.start as i64, owned.len() as i64)
                }
                (_, Some(shard)) => shard.shallow_clone(),
                _ => unreachable!("each stage keeps its gradients"),
            })
            .collect();
        Tensor::cat(&parts, 0)
    }

    /// This rank's optimizer states (its part of every unit, in unit order), for its
    /// checkpoint file.
    pub fn optimizer_state(&self) -> Vec<(String, Tensor)> {
        vec![
            (
                "exp_avg".into(),
                Tensor::cat(&self.exp_avg, 0).to_device(Device::Cpu),
            ),
            (
                "exp_avg_sq".into(),
                Tensor::cat(&self.exp_avg_sq, 0).to_device(Device::Cpu),
            ),
        ]
    }

    /// Copies `part` (this rank's part of every unit, in unit order) into `dest`.
    fn load_part(dest: &mut [Tensor], part: &Tensor) -> Result<(), TrainError> {
        let mut at = 0i64;
        for d in dest.iter_mut() {
            let n = d.numel() as i64;
            tch::no_grad(|| d.f_copy_(&part.narrow(0, at, n)))?;
            at += n;
        }
        Ok(())
    }

    /// Restores this rank's part of AdamW's moments from the whole model's (parameter
    /// order, `checkpoint::load_full_optimizer`), whatever world size or stage wrote them.
    pub fn load_full_optimizer_state(
        &mut self,
        exp_avg: &Tensor,
        exp_avg_sq: &Tensor,
        adam_step: u64,
    ) -> Result<(), TrainError> {
        let numel: usize = self.layout.numels.iter().sum();
        let rank = self.comm.rank();
        for (src, dest) in [
            (exp_avg, &mut self.exp_avg),
            (exp_avg_sq, &mut self.exp_avg_sq),
        ] {
            if src.numel() != numel {
                return Err(TrainError::Input(format!(
                    "the optimizer state holds {} elements, the model {numel}",
                    src.numel()
                )));
            }
            Self::load_part(dest, &self.layout.part_of(src, rank))?;
        }
        self.adam_step = adam_step;
        Ok(())
    }

    /// Restores this rank's optimizer states from its own file of a checkpoint with the
    /// same world size and stage, and AdamW's step count.
    pub fn load_optimizer_state(
        &mut self,
        state: &[(String, Tensor)],
        adam_step: u64,
    ) -> Result<(), TrainError> {
        let expected = self.layout.part_len(self.comm.rank()) as i64;
        for (name, dest) in [
            ("exp_avg", &mut self.exp_avg),
            ("exp_avg_sq", &mut self.exp_avg_sq),
        ] {
            let src = state
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| TrainError::Input(format!("the optimizer shard has no `{name}`")))?;
            if src.size() != [expected] {
                return Err(TrainError::Input(format!(
                    "the optimizer shard's `{name}` has {:?} elements, this rank's part [{expected}]: resume with the world size and ZeRO stage that wrote it",
                    src.size(),
                )));
            }
            Self::load_part(dest, src)?;
        }
        self.adam_step = adam_step;
        Ok(())
    }
}
