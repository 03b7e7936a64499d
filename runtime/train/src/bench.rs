//! Times optimizer steps of a plan's train step on random token ids, without files: what
//! `cargo bench -p kiln-train --bench step` and `kiln-worker bench` (scripts/gpu-check)
//! measure.

use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::error::TrainError;
use crate::model::Model;
use crate::spec::TrainParams;
use crate::trainer::Trainer;

/// Seconds of each of `steps` optimizer steps of `p`'s model, batch and optimizer on
/// `device`, after `warmup` untimed steps. Token ids are uniform random; the device is
/// synchronised after each step.
pub fn time_steps(
    p: &TrainParams,
    device: Device,
    warmup: usize,
    steps: usize,
) -> Result<Vec<f64>, TrainError> {
    let model = Model::new(&p.model, p.precision, p.seed, device)?;
    let mut trainer = Trainer::new(model, &p.optimizer, p.precision, p.seed, device)?;
    let (micro, seq, vocab) = (
        p.parallel.micro_batch as i64,
        p.model.seq_len as i64,
        p.model.vocab as i64,
    );
    let accumulation = p.parallel.accumulation.max(1) as usize;
    let mut times = Vec::with_capacity(steps);
    for step in 0..(warmup + steps) as u64 {
        let start = Instant::now();
        trainer.step(step, accumulation, 1e-4, |_| {
            let ids = Tensor::f_randint(vocab, [micro, seq + 1], (Kind::Int64, device))?;
            Ok((ids.narrow(1, 0, seq), ids.narrow(1, 1, seq)))
        })?;
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        if step as usize >= warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(times)
}

/// The median of `values` (the upper one of an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
