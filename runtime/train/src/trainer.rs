//! One optimizer step and one held-out evaluation of a model, independent of files.
//!
//! A step is the loss over a global batch's micro-batches, gradient accumulation, loss
//! scaling, clipping and the AdamW update.
//!
//! # Gradient accumulation
//! A global batch of B sequences runs as B / micro_batch micro-batches; each micro-batch's
//! mean loss is multiplied by 1/(number of micro-batches) (and by the loss scale under fp16)
//! before its backward pass, so the accumulated gradient is that of the mean loss over the
//! whole batch, as Megatron-LM and PyTorch's recipes accumulate.
//!
//! # Determinism
//! libtorch's generator is reseeded before every step from (seed, global step) (see
//! [`step_seed`]), so dropout masks depend on nothing else; with the data order of `data`,
//! fp32 on CPU with a fixed thread count gives the same losses, bit for bit, whatever
//! steps a process resumed from.

use tch::{Device, Kind, Tensor};

use crate::data::{derive_key, Samples, TokenStream};
use crate::error::TrainError;
use crate::model::Model;
use crate::optim::{clip_grads, grad_norm, scale_grads, zero_grads, AdamW, LossScaler};
use crate::parallel::DataParallel;
use crate::spec::{OptimizerSpec, Precision};

/// The generator's seed for global step `step`.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    derive_key(seed, &[b"step-rng", &step.to_le_bytes()])
}

/// The generator's seed for global step `step` on data-parallel rank `rank` of a world
/// larger than one: each rank draws its own dropout masks.
pub fn rank_step_seed(seed: u64, step: u64, rank: usize) -> u64 {
    derive_key(
        seed,
        &[
            b"step-rng",
            &step.to_le_bytes(),
            &(rank as u64).to_le_bytes(),
        ],
    )
}

/// What one optimizer step did.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// Mean loss over the global batch (nats).
    pub loss: f64,
    /// Gradient norm before clipping (unscaled); `None` when it was not finite.
    pub grad_norm: Option<f64>,
    /// The step found an overflow under loss scaling and did not update.
    pub skipped: bool,
    /// The loss scale the step ran with (fp16).
    pub loss_scale: Option<f64>,
}

/// Held-out loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalResult {
    /// Mean cross-entropy per target token (nats).
    pub loss: f64,
    pub tokens: u64,
}

/// A model with its optimizer and loss scaler.
pub struct Trainer {
    pub model: Model,
    pub optimizer: AdamW,
    /// Present under fp16 mixed precision.
    pub scaler: Option<LossScaler>,
    pub seed: u64,
    pub grad_clip: f64,
    pub device: Device,
    /// Data parallelism across processes (`parallel`); `None` on one rank.
    pub dp: Option<DataParallel>,
}

impl Trainer {
    pub fn new(
        model: Model,
        optimizer: &OptimizerSpec,
        precision: Precision,
        seed: u64,
        device: Device,
    ) -> Result<Trainer, TrainError> {
        let optimizer_state = AdamW::new(optimizer, model.named_parameters())?;
        Ok(Trainer {
            model,
            optimizer: optimizer_state,
            scaler: (precision == Precision::Fp16Mixed).then(LossScaler::default),
            seed,
            grad_clip: optimizer.grad_clip,
            device,
            dp: None,
        })
    }

    /// A trainer whose optimizer runs data-parallel over `dp` (see `parallel`): the AdamW
    /// states live in `dp`, sharded by its ZeRO stage.
    pub fn data_parallel(
        model: Model,
        optimizer: &OptimizerSpec,
        precision: Precision,
        seed: u64,
        device: Device,
        dp: DataParallel,
    ) -> Result<Trainer, TrainError> {
        Ok(Trainer {
            optimizer: AdamW::new(optimizer, &[])?,
            model,
            scaler: (precision == Precision::Fp16Mixed).then(LossScaler::default),
            seed,
            grad_clip: optimizer.grad_clip,
            device,
            dp: Some(dp),
        })
    }

    /// One optimizer step at `global_step` over `micro_batches` micro-batches, the `i`-th
    /// given by `batch(i)` as (inputs, targets), each `[micro_batch, seq_len]` of ids.
    pub fn step(
        &mut self,
        global_step: u64,
        micro_batches: usize,
        lr: f64,
        mut batch: impl FnMut(usize) -> Result<(Tensor, Tensor), TrainError>,
    ) -> Result<StepReport, TrainError> {
        if micro_batches == 0 {
            return Err(TrainError::Plan(
                "a step needs at least one micro-batch".into(),
            ));
        }
        if self.dp.is_some() {
            return self.step_data_parallel(global_step, micro_batches, lr, batch);
        }
        tch::manual_seed(step_seed(self.seed, global_step) as i64);
        let params = self.model.named_parameters();
        zero_grads(params);
        let scale = self.scaler.as_ref().map_or(1.0, |s| s.scale);
        let mut loss_sum = 0.0;
        for i in 0..micro_batches {
            let (inputs, targets) = batch(i)?;
            let loss = self.model.loss(&inputs, &targets, true, false);
            loss_sum += loss.f_double_value(&[])?;
            (loss * (scale / micro_batches as f64)).f_backward()?;
        }
        let loss = loss_sum / micro_batches as f64;
        if self.scaler.is_some() {
            scale_grads(params, 1.0 / scale);
        }
        let norm = grad_norm(params).filter(|n| n.is_finite());
        let Some(norm) = norm else {
            zero_grads(params);
            return match &mut self.scaler {
                Some(scaler) => {
                    scaler.update(true);
                    Ok(StepReport {
                        loss,
                        grad_norm: None,
                        skipped: true,
                        loss_scale: Some(scale),
                    })
                }
                None => Err(TrainError::Diverged {
                    step: global_step,
                    why: format!(
                        "the gradients are not finite (loss {loss}); lower the learning rate or use bf16_mixed/fp32"
                    ),
                }),
            };
        };
        clip_grads(params, norm, self.grad_clip);
        self.optimizer.update(params, lr);
        zero_grads(params);
        if let Some(scaler) = &mut self.scaler {
            scaler.update(false);
        }
        Ok(StepReport {
            loss,
            grad_norm: Some(norm),
            skipped: false,
            loss_scale: self.scaler.as_ref().map(|_| scale),
        })
    }

    /// [`Trainer::step`] across data-parallel ranks: this rank's `micro_batches`
    /// micro-batches, its gradients reduced by its ZeRO stage (`parallel`).
    fn step_data_parallel(
        &mut self,
        global_step: u64,
        micro_batches: usize,
        lr: f64,
        mut batch: impl FnMut(usize) -> Result<(Tensor, Tensor), TrainError>,
    ) -> Result<StepReport, TrainError> {
        let dp = self.dp.as_mut().expect("a data-parallel trainer");
        let (rank, ranks) = (dp.comm.rank(), dp.comm.size());
        let seed = if ranks > 1 {
            rank_step_seed(self.seed, global_step, rank)
        } else {
            step_seed(self.seed, global_step)
        };
        tch::manual_seed(seed as i64);
        let params: Vec<&Tensor> = self
            .model
            .named_parameters()
            .iter()
            .map(|(_, p)| p)
            .collect();
        let share = 1.0 / (micro_batches * ranks) as f64;
        // fp16: every rank scales its loss by the same scale; the update unscales the
        // reduced gradients, and a non-finite global norm (the same on every rank) skips
        // the step on all of them and lowers the scale.
        let scale = self.scaler.as_ref().map_or(1.0, |s| s.scale);
        let mut loss_sum = 0.0;
        for i in 0..micro_batches {
            let (inputs, targets) = batch(i)?;
            if dp.zero == 3 {
                let micro_seed = derive_key(seed, &[b"micro-batch", &(i as u64).to_le_bytes()]);
                loss_sum += dp.micro_batch_zero3(
                    &self.model,
                    &inputs,
                    &targets,
                    share * scale,
                    micro_seed,
                )?;
                continue;
            }
            let loss = self.model.loss(&inputs, &targets, true, false);
            loss_sum += loss.f_double_value(&[])?;
            let grads = Tensor::f_run_backward(&[loss * (share * scale)], &params, false, false)?;
            dp.accumulate(&grads)?;
        }
        let loss = dp.comm.all_reduce_scalar(loss_sum) * share;
        let norm = dp.update(lr, 1.0 / scale)?;
        if let Some(scaler) = &mut self.scaler {
            scaler.update(norm.is_none());
        }
        match norm {
            Some(norm) => Ok(StepReport {
                loss,
                grad_norm: Some(norm),
                skipped: false,
                loss_scale: self.scaler.as_ref().map(|_| scale),
            }),
            None if self.scaler.is_some() => Ok(StepReport {
                loss,
                grad_norm: None,
                skipped: true,
                loss_scale: Some(scale),
            }),
            None => Err(TrainError::Diverged {
                step: global_step,
                why: format!(
                    "the gradients are not finite (loss {loss}); lower the learning rate or use fp32"
                ),
            }),
        }
    }

    /// The held-out loss (see [`evaluate`]).
    pub fn evaluate(
        &self,
        samples: &Samples,
        max_tokens: u64,
        micro_batch: u64,
    ) -> Result<Option<EvalResult>, TrainError> {
        evaluate(&self.model, samples, max_tokens, micro_batch, self.device)
    }
}

/// Builds one `[rows, seq_len + 1]` batch of token ids into (inputs, targets) on `device`.
pub fn to_batch(
    ids: &[i64],
    rows: i64,
    seq_len: i64,
    device: Device,
) -> Result<(Tensor, Tensor), TrainError> {
    let all = Tensor::f_from_slice(ids)?
        .f_view([rows, seq_len + 1])?
        .f_to_device(device)?;
    Ok((all.narrow(1, 0, seq_len), all.narrow(1, 1, seq_len)))
}

/// Mean loss over the first held-out windows covering up to `max_tokens` target tokens (at
/// least one window), in batches of `micro_batch`, without dropout; `None` when the
/// held-out stream is shorter than one window.
pub fn evaluate(
    model: &Model,
    samples: &Samples,
    max_tokens: u64,
    micro_batch: u64,
    device: Device,
) -> Result<Option<EvalResult>, TrainError> {
    let seq_len = model.spec().seq_len;
    let windows = samples.count().min((max_tokens / seq_len).max(1));
    if windows == 0 {
        return Ok(None);
    }
    let mut total = 0.0;
    let mut ids = Vec::new();
    let mut start = 0;
    tch::no_grad(|| -> Result<(), TrainError> {
        while start < windows {
            let rows = micro_batch.max(1).min(windows - start);
            ids.clear();
            for i in start..start + rows {
                samples.read(i, &mut ids)?;
            }
            let (x, y) = to_batch(&ids, rows as i64, seq_len as i64, device)?;
            let loss = model.loss(&x, &y, false, true);
            total += loss.to_kind(Kind::Double).f_double_value(&[])?;
            start += rows;
        }
        Ok(())
    })?;
    let tokens = windows * seq_len;
    Ok(Some(EvalResult {
        loss: total / tokens as f64,
        tokens,
    }))
}

/// The held-out loss of the unigram model: token frequencies counted over the whole
/// training stream `train` with add-one (Laplace) smoothing, p(t) = (c_t + 1) / (N + V),
/// scored on the target tokens of the same held-out windows as [`evaluate`]. The loss a
/// model reaches by learning token frequencies alone: the baseline a trained model's
/// held-out loss is read against (nats per token; `None` without a held-out window).
pub fn unigram_loss(
    train: &TokenStream,
    held_out: &Samples,
    max_tokens: u64,
    vocab: u64,
) -> Result<Option<f64>, TrainError> {
    let windows = held_out
        .count()
        .min((max_tokens / held_out.seq_len().max(1)).max(1));
    if windows == 0 {
        return Ok(None);
    }
    let mut counts = vec![0u64; vocab as usize];
    let mut ids = Vec::new();
    const CHUNK: u64 = 1 << 20;
    let mut start = 0;
    while start < train.tokens() {
        ids.clear();
        train.read(start, CHUNK, &mut ids);
        for &t in &ids {
            if let Some(c) = counts.get_mut(t as usize) {
                *c += 1;
            }
        }
        start += CHUNK;
    }
    let denominator = (train.tokens() + vocab) as f64;
    let (mut total, mut n) = (0.0, 0u64);
    for i in 0..windows {
        ids.clear();
        held_out.read(i, &mut ids)?;
        for &t in ids.iter().skip(1) {
            let c = counts.get(t as usize).copied().unwrap_or(0);
            total -= ((c + 1) as f64 / denominator).ln();
            n += 1;
        }
    }
    Ok((n > 0).then(|| total / n as f64))
}
