//! ZeRO 3's forward and backward unit by unit (`parallel::DataParallel::micro_batch_zero3`)
//! on one process: the same losses as the whole model's autograd over several steps, for
//! tied and untied embeddings and each kind of positions; and, with dropout, the same
//! gradient as the whole model's autograd under the same dropout masks (the recomputed
//! blocks redraw them exactly).

mod common;

use common::*;
use kiln_train::collective::Collective;
use kiln_train::model::Model;
use kiln_train::parallel::{unit_seed, DataParallel};
use kiln_train::spec::{ModelSpec, Precision};
use kiln_train::trainer::Trainer;
use tch::{Device, Kind, Tensor};

fn spec(name: &str, dropout: f64) -> ModelSpec {
    let mut v = fixture_model(name);
    v["dropout"] = serde_json::json!(dropout);
    serde_json::from_value(v).unwrap()
}

fn ids(spec: &ModelSpec, step: u64, micro: usize) -> (Tensor, Tensor) {
    tch::manual_seed(1000 + step as i64 * 10 + micro as i64);
    let t = spec.seq_len.min(24) as i64;
    let ids = Tensor::randint(spec.vocab as i64, [3, t + 1], (Kind::Int64, Device::Cpu));
    (ids.narrow(1, 0, t), ids.narrow(1, 1, t))
}

#[test]
fn zero3_follows_the_whole_models_losses() {
    let _serial = serial();
    tch::set_num_threads(1);
    for name in [
        "llama_mini",
        "gpt_mini",
        "relu_alibi",
        "swiglu_bias_layernorm",
    ] {
        let spec = spec(name, 0.0);
        let opt = optimizer();
        let whole = Model::new(&spec, Precision::Fp32, 5, Device::Cpu).unwrap();
        let mut reference = Trainer::new(whole, &opt, Precision::Fp32, 5, Device::Cpu).unwrap();
        let sharded = Model::new(&spec, Precision::Fp32, 5, Device::Cpu).unwrap();
        let dp =
            DataParallel::new(sharded.named_parameters(), 3, &opt, Collective::single()).unwrap();
        // Between steps ZeRO 3 holds no whole parameter.
        assert!(sharded
            .named_parameters()
            .iter()
            .all(|(_, p)| p.numel() == 0));
        let mut zero3 =
            Trainer::data_parallel(sharded, &opt, Precision::Fp32, 5, Device::Cpu, dp).unwrap();
        for step in 0..4 {
            let a = reference
                .step(step, 2, 3e-3, |i| Ok(ids(&spec, step, i)))
                .unwrap();
            let b = zero3
                .step(step, 2, 3e-3, |i| Ok(ids(&spec, step, i)))
                .unwrap();
            let rel = (a.loss - b.loss).abs() / a.loss;
            assert!(
                rel < 1e-6,
                "{name} step {step}: {} vs {} (ZeRO 3)",
                a.loss,
                b.loss
            );
            let (ga, gb) = (a.grad_norm.unwrap(), b.grad_norm.unwrap());
            assert!(
                (ga - gb).abs() / ga < 1e-5,
                "{name} step {step}: norm {ga} vs {gb}"
            );
        }
    }
}

#[test]
fn zero3_recomputes_the_same_dropout_masks() {
    let _serial = serial();
    tch::set_num_threads(1);
    for name in ["gpt_mini", "llama_mini"] {
        let spec = spec(name, 0.2);
        let seed = 99;
        let (inputs, targets) = ids(&spec, 0, 0);
        // The whole model's autograd under the masks ZeRO 3 draws (its generator reseeded
        // before each unit's forward).
        let whole = Model::new(&spec, Precision::Fp32, 5, Device::Cpu).unwrap();
        tch::manual_seed(unit_seed(seed, 0) as i64);
        let mut x = whole.embed(&inputs, true);
        for i in 0..whole.layers() {
            tch::manual_seed(unit_seed(seed, i + 1) as i64);
            x = whole.block(i, &x, true);
        }
        let loss = whole.cross_entropy(&whole.head(&x), &targets, false);
        let params: Vec<&Tensor> = whole.named_parameters().iter().map(|(_, p)| p).collect();
        let grads = Tensor::run_backward(&[&loss], &params, false, false);
        let expected = Tensor::cat(
            &grads.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(),
            0,
        );

        let sharded = Model::new(&spec, Precision::Fp32, 5, Device::Cpu).unwrap();
        let mut dp = DataParallel::new(
            sharded.named_parameters(),
            3,
            &optimizer(),
            Collective::single(),
        )
        .unwrap();
        let got_loss = dp
            .micro_batch_zero3(&sharded, &inputs, &targets, 1.0, seed)
            .unwrap();
        assert_eq!(got_loss, loss.double_value(&[]), "{name}");
        let got = dp.layout.whole(&[dp.accumulated_gradient()]).unwrap();
        let diff = (&got - &expected).abs().max().double_value(&[]);
        let scale = expected.abs().max().double_value(&[]);
        assert!(
            diff <= 1e-5 * scale,
            "{name}: gradients differ by {diff} (largest {scale})"
        );
    }
}
