//! fp16 loss scaling under data parallelism (`Trainer::data_parallel`, one process): the
//! same losses, gradient norms and loss scales as the one-process trainer for ZeRO 0 and 3,
//! and a step whose scaled gradients overflow is skipped on every rank with the scale
//! halved, not reported as divergence.

mod common;

use common::*;
use kiln_train::collective::Collective;
use kiln_train::model::Model;
use kiln_train::parallel::DataParallel;
use kiln_train::spec::{ModelSpec, Precision};
use kiln_train::trainer::Trainer;
use tch::{Device, Kind, Tensor};

fn batch(spec: &ModelSpec, step: u64, micro: usize) -> (Tensor, Tensor) {
    tch::manual_seed(500 + step as i64 * 10 + micro as i64);
    let t = 16;
    let ids = Tensor::randint(spec.vocab as i64, [2, t + 1], (Kind::Int64, Device::Cpu));
    (ids.narrow(1, 0, t), ids.narrow(1, 1, t))
}

#[test]
fn fp16_scales_and_skips_the_same_across_data_parallel_ranks() {
    let _serial = serial();
    tch::set_num_threads(1);
    let spec: ModelSpec = serde_json::from_value(fixture_model("llama_mini")).unwrap();
    let opt = optimizer();
    for zero in [0u64, 3] {
        let model = Model::new(&spec, Precision::Fp16Mixed, 3, Device::Cpu).unwrap();
        let mut one = Trainer::new(model, &opt, Precision::Fp16Mixed, 3, Device::Cpu).unwrap();
        let model = Model::new(&spec, Precision::Fp16Mixed, 3, Device::Cpu).unwrap();
        let dp =
            DataParallel::new(model.named_parameters(), zero, &opt, Collective::single()).unwrap();
        let mut dp =
            Trainer::data_parallel(model, &opt, Precision::Fp16Mixed, 3, Device::Cpu, dp).unwrap();
        for step in 0..3 {
            let a = one
                .step(step, 2, 1e-3, |i| Ok(batch(&spec, step, i)))
                .unwrap();
            let b = dp
                .step(step, 2, 1e-3, |i| Ok(batch(&spec, step, i)))
                .unwrap();
            assert!(!a.skipped && !b.skipped, "ZeRO {zero} step {step}");
            assert_eq!(a.loss_scale, b.loss_scale, "ZeRO {zero} step {step}");
            assert!(
                (a.loss - b.loss).abs() / a.loss < 1e-5,
                "ZeRO {zero} step {step}"
            );
            let (na, nb) = (a.grad_norm.unwrap(), b.grad_norm.unwrap());
            assert!(
                (na - nb).abs() / na < 1e-4,
                "ZeRO {zero} step {step}: {na} vs {nb}"
            );
        }
        // A scale that overflows fp32 gradients: the step is skipped and the scale halved.
        let huge = 1e38;
        dp.scaler.as_mut().unwrap().scale = huge;
        let r = dp.step(3, 2, 1e-3, |i| Ok(batch(&spec, 3, i))).unwrap();
        assert!(r.skipped && r.grad_norm.is_none(), "ZeRO {zero}: {r:?}");
        assert_eq!(r.loss_scale, Some(huge));
        assert_eq!(dp.scaler.as_ref().unwrap().scale, huge / 2.0);
        // And the next step, at a sane scale, trains.
        dp.scaler.as_mut().unwrap().scale = 1024.0;
        let r = dp.step(4, 2, 1e-3, |i| Ok(batch(&spec, 4, i))).unwrap();
        assert!(
            !r.skipped && r.grad_norm.is_some_and(f64::is_finite),
            "ZeRO {zero}: {r:?}"
        );
    }
}
