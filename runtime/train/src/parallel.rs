//! Data parallelism with ZeRO stages 0, 1 and 2 over the collective layer.
//!
//! Every parameter becomes a view into one flat fp32 buffer of Φ elements, padded to a
//! multiple of the world size n; rank r owns the contiguous part [r·Φ'/n, (r+1)·Φ'/n) of
//! it (its shard). Per stage (Rajbhandari et al. 2020, "ZeRO", Sec. 5 and 7):
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
//!
//! Each rank's micro-batch loss is scaled by 1/(m·n), so the sum over ranks and micro-batches
//! is the gradient of the mean loss over the global batch, as on one rank. The update is
//! AdamW element by element over flat buffers, with a mask for weight decay (none on 1-D
//! parameters), the same arithmetic as [`crate::optim::AdamW`], so n ranks follow one
//! rank's loss curve up to the order of floating-point sums.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::collective::Collective;
use crate::error::TrainError;
use crate::optim::CLIP_EPS;
use crate::spec::OptimizerSpec;

/// Bytes per rank of what the stage keeps between steps (fp32): the numbers kiln's memory
/// analysis predicts as `weights`, `gradients` and `optimizer`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateBytes {
    pub weights: u64,
    pub gradients: u64,
    pub optimizer: u64,
}

/// The data-parallel state of one rank (see the module doc).
pub struct DataParallel {
    pub comm: Collective,
    pub zero: u64,
    /// Elements of the model, Φ.
    pub numel: usize,
    /// Φ padded to a multiple of the world size.
    pub padded: usize,
    /// Elements per shard, `padded / n`.
    pub shard: usize,
    flat_params: Tensor,
    /// ZeRO 0 and 1: the full accumulated gradient.
    flat_grad: Option<Tensor>,
    /// ZeRO 2: this rank's shard of the accumulated, reduced gradient.
    grad_shard: Option<Tensor>,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// 1 where weight decay applies, over the part this rank updates.
    decay_mask: Tensor,
    /// (offset, elements) of each parameter in the flat buffer.
    pub offsets: Vec<(usize, usize)>,
    pub adam_step: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    grad_clip: f64,
}

impl DataParallel {
    /// Makes every parameter a view into one flat buffer and broadcasts rank 0's values.
    pub fn new(
        params: &[(String, Tensor)],
        zero: u64,
        optimizer: &OptimizerSpec,
        mut comm: Collective,
    ) -> Result<DataParallel, TrainError> {
        if zero > 2 {
            return Err(TrainError::Unsupported(format!(
                "ZeRO stage {zero}: this runtime shards optimizer states (1) and gradients (2) across processes; stage 3 (sharded parameters) is not built yet — use zero = 2"
            )));
        }
        if optimizer.kind != "adamw" {
            return Err(TrainError::Unsupported(format!(
                "optimizer `{}`: this runtime builds adamw",
                optimizer.kind
            )));
        }
        let n = comm.size();
        let numel: usize = params.iter().map(|(_, p)| p.numel()).sum();
        let padded = numel.div_ceil(n) * n;
        let shard = padded / n;
        let flat_params = Tensor::zeros([padded as i64], (Kind::Float, tch::Device::Cpu));
        let mut offsets = Vec::with_capacity(params.len());
        let mut mask = vec![0f32; padded];
        let mut off = 0;
        tch::no_grad(|| {
            for (_, p) in params {
                let len = p.numel();
                let view = flat_params.narrow(0, off as i64, len as i64);
                view.shallow_clone().copy_(&p.reshape([-1]));
                let mut p = p.shallow_clone();
                p.set_data(&view.view(p.size().as_slice()));
                if p.dim() > 1 {
                    mask[off..off + len].fill(1.0);
                }
                offsets.push((off, len));
                off += len;
            }
        });
        comm.broadcast(&flat_params, 0)?;
        // ZeRO 0 updates everything; 1 and 2 their shard.
        let part = if zero == 0 { padded } else { shard };
        let start = if zero == 0 { 0 } else { comm.rank() * shard };
        let decay_mask = Tensor::from_slice(&mask[start..start + part]);
        let zeros = || Tensor::zeros([part as i64], (Kind::Float, tch::Device::Cpu));
        Ok(DataParallel {
            flat_grad: (zero <= 1)
                .then(|| Tensor::zeros([padded as i64], (Kind::Float, tch::Device::Cpu))),
            grad_shard: (zero == 2).then(zeros),
            exp_avg: zeros(),
            exp_avg_sq: zeros(),
            decay_mask,
            comm,
            zero,
            numel,
            padded,
            shard,
            flat_params,
            offsets,
            adam_step: 0,
            beta1: optimizer.beta1,
            beta2: optimizer.beta2,
            eps: optimizer.eps,
            weight_decay: optimizer.weight_decay,
            grad_clip: optimizer.grad_clip,
        })
    }

    /// What this rank keeps between steps (see [`StateBytes`]).
    pub fn state_bytes(&self) -> StateBytes {
        let bytes = |t: &Option<Tensor>| t.as_ref().map_or(0, |t| t.numel() as u64 * 4);
        StateBytes {
            weights: self.flat_params.numel() as u64 * 4,
            gradients: bytes(&self.flat_grad) + bytes(&self.grad_shard),
            optimizer: (self.exp_avg.numel() + self.exp_avg_sq.numel()) as u64 * 4,
        }
    }

    /// Takes one micro-batch's gradients (the parameters' order), already scaled by
    /// 1/(m·n): added to the full gradient (ZeRO 0, 1) or reduce-scattered into the shard
    /// (ZeRO 2).
    pub fn accumulate(&mut self, grads: &[Tensor]) -> Result<(), TrainError> {
        tch::no_grad(|| -> Result<(), TrainError> {
            match &self.flat_grad {
                Some(flat) => {
                    for (g, &(off, len)) in grads.iter().zip(&self.offsets) {
                        if g.defined() {
                            let _ = flat
                                .narrow(0, off as i64, len as i64)
                                .g_add_(&g.reshape([-1]));
                        }
                    }
                }
                None => {
                    let full = Tensor::zeros([self.padded as i64], (Kind::Float, tch::Device::Cpu));
                    for (g, &(off, len)) in grads.iter().zip(&self.offsets) {
                        if g.defined() {
                            full.narrow(0, off as i64, len as i64)
                                .shallow_clone()
                                .copy_(&g.reshape([-1]));
                        }
                    }
                    let part = Tensor::zeros([self.shard as i64], (Kind::Float, tch::Device::Cpu));
                    self.comm.reduce_scatter(&full, &part)?;
                    if let Some(s) = &self.grad_shard {
                        let _ = s.shallow_clone().g_add_(&part);
                    }
                }
            }
            Ok(())
        })
    }

    /// Reduces the accumulated gradients, clips them by their global norm, runs AdamW at
    /// `lr` and brings every rank's parameters up to date. Returns the gradient norm before
    /// clipping, or `None` (and no update) when it is not finite.
    pub fn update(&mut self, lr: f64) -> Result<Option<f64>, TrainError> {
        tch::no_grad(|| self.update_inner(lr))
    }

    fn update_inner(&mut self, lr: f64) -> Result<Option<f64>, TrainError> {
        // The gradient of the part this rank updates.
        let grad = match self.zero {
            0 => {
                let flat = self
                    .flat_grad
                    .as_ref()
                    .expect("ZeRO 0 keeps the full gradient");
                self.comm.all_reduce(flat)?;
                flat.shallow_clone()
            }
            1 => {
                // The reduced shard is transient: the full gradient is what ZeRO 1 keeps.
                let flat = self
                    .flat_grad
                    .as_ref()
                    .expect("ZeRO 1 keeps the full gradient");
                let shard = Tensor::zeros([self.shard as i64], (Kind::Float, tch::Device::Cpu));
                self.comm.reduce_scatter(flat, &shard)?;
                shard
            }
            _ => self
                .grad_shard
                .as_ref()
                .expect("ZeRO 2 keeps a shard")
                .shallow_clone(),
        };
        let local_sq = grad.square().sum(Kind::Double).double_value(&[]);
        let norm = if self.zero == 0 {
            local_sq.sqrt()
        } else {
            self.comm.all_reduce_scalar(local_sq).sqrt()
        };
        if !norm.is_finite() {
            self.zero_grads();
            return Ok(None);
        }
        if self.grad_clip > 0.0 {
            let coefficient = self.grad_clip / (norm + CLIP_EPS);
            if coefficient < 1.0 {
                let _ = grad.shallow_clone().g_mul_scalar_(coefficient);
            }
        }
        // AdamW, element by element as optim::AdamW::update.
        self.adam_step += 1;
        let t = self.adam_step as i32;
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2_sqrt = (1.0 - self.beta2.powi(t)).sqrt();
        let step_size = lr / bias1;
        let start = if self.zero == 0 {
            0
        } else {
            self.comm.rank() * self.shard
        };
        let part = grad.numel();
        let p = self.flat_params.narrow(0, start as i64, part as i64);
        if self.weight_decay > 0.0 {
            // p·(1 − lr·wd) where the mask is 1, p where it is 0.
            let factor = (&self.decay_mask * (-lr * self.weight_decay)) + 1.0;
            let _ = p.shallow_clone().g_mul_(&factor);
        }
        let m = &mut self.exp_avg;
        let _ = m.g_mul_scalar_(self.beta1);
        let _ = m.g_add_(&(&grad * (1.0 - self.beta1)));
        let v = &mut self.exp_avg_sq;
        let _ = v.g_mul_scalar_(self.beta2);
        let _ = v.g_add_(&(&grad * &grad * (1.0 - self.beta2)));
        let denom = (v.sqrt() / bias2_sqrt) + self.eps;
        let _ = p.shallow_clone().g_sub_(&(&*m / denom * step_size));
        if self.zero >= 1 {
            let mine = self.flat_params.narrow(0, start as i64, part as i64).copy();
            self.comm.all_gather(&mine, &self.flat_params)?;
        }
        self.zero_grads();
        Ok(Some(norm))
    }

    fn zero_grads(&mut self) {
        for t in [&mut self.flat_grad, &mut self.grad_shard]
            .into_iter()
            .flatten()
        {
            let _ = t.zero_();
        }
    }

    /// This rank's optimizer states, for its checkpoint file.
    pub fn optimizer_state(&self) -> Vec<(String, Tensor)> {
        vec![
            ("exp_avg".into(), self.exp_avg.shallow_clone()),
            ("exp_avg_sq".into(), self.exp_avg_sq.shallow_clone()),
        ]
    }

    /// Restores this rank's part of AdamW's moments from the whole model's (`numel`
    /// elements each, `checkpoint::load_full_optimizer`), whatever world size wrote them.
    pub fn load_full_optimizer_state(
        &mut self,
        exp_avg: &Tensor,
        exp_avg_sq: &Tensor,
        adam_step: u64,
    ) -> Result<(), TrainError> {
        let start = if self.zero == 0 {
            0
        } else {
            self.comm.rank() * self.shard
        };
        for (src, dest) in [
            (exp_avg, &mut self.exp_avg),
            (exp_avg_sq, &mut self.exp_avg_sq),
        ] {
            if src.numel() != self.numel {
                return Err(TrainError::Input(format!(
                    "the optimizer state holds {} elements, the model {}",
                    src.numel(),
                    self.numel
                )));
            }
            let padded = Tensor::zeros([self.padded as i64], (Kind::Float, tch::Device::Cpu));
            tch::no_grad(|| -> Result<(), TrainError> {
                padded.narrow(0, 0, self.numel as i64).f_copy_(src)?;
                dest.f_copy_(&padded.narrow(0, start as i64, dest.numel() as i64))?;
                Ok(())
            })?;
        }
        self.adam_step = adam_step;
        Ok(())
    }

    /// Restores this rank's optimizer states and AdamW's step count.
    pub fn load_optimizer_state(
        &mut self,
        state: &[(String, Tensor)],
        adam_step: u64,
    ) -> Result<(), TrainError> {
        for (name, dest) in [
            ("exp_avg", &mut self.exp_avg),
            ("exp_avg_sq", &mut self.exp_avg_sq),
        ] {
            let src = state
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| TrainError::Input(format!("the optimizer shard has no `{name}`")))?;
            if src.size() != dest.size() {
                return Err(TrainError::Input(format!(
                    "the optimizer shard's `{name}` has {:?} elements, this rank's part {:?}: resume with the world size and ZeRO stage that wrote it",
                    src.size(),
                    dest.size()
                )));
            }
            tch::no_grad(|| dest.f_copy_(src))?;
        }
        self.adam_step = adam_step;
        Ok(())
    }
}
