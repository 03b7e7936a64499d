//! Times optimizer steps of a plan's train step on random token ids, without files: what
//! `cargo bench -p kiln-train --bench step` and `kiln-worker bench` (scripts/gpu-check)
//! measure.

use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::collective::Collective;
use crate::error::TrainError;
use crate::model::Model;
use crate::parallel::DataParallel;
use crate::spec::TrainParams;
use crate::trainer::Trainer;

/// What [`time_steps`] measured.
pub struct Timing {
    /// Seconds of each timed optimizer step.
    pub step_s: Vec<f64>,
    /// Seconds the timed steps spent in gradient and parameter collectives.
    pub collective_s: f64,
}

/// Times `steps` optimizer steps of `p`'s model, global batch and optimizer on `device`,
/// after `warmup` untimed steps: on one rank, or as one rank of `comm`'s world with ZeRO
/// stage `zero` (each rank running global batch / (micro_batch · ranks) micro-batches).
/// Token ids are uniform random; the device is synchronised after each step.
pub fn time_steps(
    p: &TrainParams,
    device: Device,
    warmup: usize,
    steps: usize,
    comm: Collective,
    zero: u64,
) -> Result<Timing, TrainError> {
    let model = Model::new(&p.model, p.precision, p.seed, device)?;
    let ranks = comm.size() as u64;
    // NCCL is data-parallel even on one rank, so that its collectives run.
    let mut trainer = if ranks > 1 || comm.backend_name() == "nccl" {
        let dp = DataParallel::new(model.named_parameters(), zero, &p.optimizer, comm)?;
        Trainer::data_parallel(model, &p.optimizer, p.precision, p.seed, device, dp)?
    } else {
        Trainer::new(model, &p.optimizer, p.precision, p.seed, device)?
    };
    let (micro, seq, vocab) = (
        p.parallel.micro_batch as i64,
        p.model.seq_len as i64,
        p.model.vocab as i64,
    );
    let sequences = (p.batch_tokens / p.model.seq_len as f64) as u64;
    let per_rank = sequences / ranks;
    if per_rank == 0 || !per_rank.is_multiple_of(p.parallel.micro_batch.max(1)) {
        return Err(TrainError::Plan(format!(
            "the global batch of {sequences} sequences does not split into {ranks} ranks × micro-batches of {micro}"
        )));
    }
    let accumulation = (per_rank / p.parallel.micro_batch.max(1)) as usize;
    let mut times = Vec::with_capacity(steps);
    let mut collective_before = 0.0;
    for step in 0..(warmup + steps) as u64 {
        let start = Instant::now();
        trainer.step(step, accumulation, 1e-4, |_| {
            let ids = Tensor::f_randint(vocab, [micro, seq + 1], (Kind::Int64, device))?;
            Ok((ids.narrow(1, 0, seq), ids.narrow(1, 1, seq)))
        })?;
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        if step as usize + 1 == warmup {
            collective_before = trainer.dp.as_ref().map_or(0.0, |dp| dp.comm.seconds);
        }
        if step as usize >= warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let collective_s = trainer
        .dp
        .as_ref()
        .map_or(0.0, |dp| dp.comm.seconds - collective_before);
    Ok(Timing {
        step_s: times,
        collective_s,
    })
}

/// The median of `values` (the upper one of an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
