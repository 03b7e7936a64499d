//! The model built from a plan's spec has exactly the compiler's parameter count, for every
//! fixture (`fixtures/models/*.kiln`: the tiny and GPT-3 125M presets and small Llama-, GPT-
//! and ALiBi-shaped models declared inline), and the architecture's other promises: causal
//! attention, the documented initialisation, Hugging Face's names, clear errors for what is
//! not built.

mod common;

use common::*;
use kiln_train::model::{alibi_slopes, Model};
use kiln_train::spec::{ModelSpec, Precision};
use kiln_train::TrainError;
use tch::{Device, Kind, Tensor};

fn spec(v: &serde_json::Value) -> ModelSpec {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn every_fixture_has_the_compilers_count() {
    let _serial = serial();
    let models = fixture_models();
    assert!(models.len() >= 6);
    for (name, m) in &models {
        let s = spec(m);
        let model = Model::new(&s, Precision::Fp32, 0, Device::Cpu)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.param_count(), s.params, "{name}");
        assert!(model.param_count() > 0);
    }
}

#[test]
fn a_count_that_differs_is_an_error() {
    let _serial = serial();
    let mut m = fixture_model("llama_mini");
    m["params"] = serde_json::json!(m["params"].as_u64().unwrap() + 1);
    let err = Model::new(&spec(&m), Precision::Fp32, 0, Device::Cpu)
        .err()
        .unwrap();
    assert!(err.to_string().contains("disagree"), "{err}");
}

#[test]
fn unsupported_specs_say_so() {
    let _serial = serial();
    let mut m = fixture_model("llama_mini");
    m["position"] = serde_json::json!("relative");
    let err = Model::new(&spec(&m), Precision::Fp32, 0, Device::Cpu)
        .err()
        .unwrap();
    assert!(matches!(err, TrainError::Unsupported(_)), "{err}");
    let m = fixture_model("llama_mini");
    let err = Model::new(&spec(&m), Precision::Fp8Mixed, 0, Device::Cpu)
        .err()
        .unwrap();
    assert!(matches!(err, TrainError::Unsupported(_)), "{err}");
    let mut m = fixture_model("llama_mini");
    m["kv_heads"] = serde_json::json!(3);
    let err = Model::new(&spec(&m), Precision::Fp32, 0, Device::Cpu)
        .err()
        .unwrap();
    assert!(err.to_string().contains("multiple of kv_heads"), "{err}");
}

/// Changing the tokens after position t leaves the logits up to t unchanged, for every
/// position scheme and precision.
#[test]
fn attention_is_causal() {
    let _serial = serial();
    for name in [
        "llama_mini",
        "gpt_mini",
        "relu_alibi",
        "swiglu_bias_layernorm",
    ] {
        for precision in [Precision::Fp32, Precision::Bf16Mixed] {
            let s = spec(&fixture_model(name));
            let model = Model::new(&s, precision, 1, Device::Cpu).unwrap();
            let t = s.seq_len as i64;
            let a = Tensor::randint(s.vocab as i64 - 1, [2, t], (Kind::Int64, Device::Cpu));
            let b = a.copy();
            let cut = t / 2;
            let _ = b.narrow(1, cut, t - cut).fill_(0);
            let la = tch::no_grad(|| model.logits(&a, false)).to_kind(Kind::Float);
            let lb = tch::no_grad(|| model.logits(&b, false)).to_kind(Kind::Float);
            assert_eq!(la.size(), vec![2, t, s.vocab as i64]);
            let before = (la.narrow(1, 0, cut) - lb.narrow(1, 0, cut))
                .abs()
                .max()
                .double_value(&[]);
            let after = (la.narrow(1, cut, t - cut) - lb.narrow(1, cut, t - cut))
                .abs()
                .max()
                .double_value(&[]);
            assert_eq!(before, 0.0, "{name} {precision:?}: the past saw the future");
            assert!(
                after > 0.0,
                "{name} {precision:?}: the changed tokens had no effect"
            );
        }
    }
}

#[test]
fn initialisation_follows_gpt2() {
    let _serial = serial();
    let mut s = spec(&fixture_model("tiny"));
    assert_eq!(s.init_std, 0.02, "the compiler's default is GPT-2's");
    // The plan's init_std, not a constant, sets the draws.
    s.init_std = 0.013;
    let init_std = s.init_std;
    let model = Model::new(&s, Precision::Fp32, 0, Device::Cpu).unwrap();
    let get = |n: &str| {
        model
            .named_parameters()
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, t)| t.shallow_clone())
            .unwrap_or_else(|| panic!("no {n}"))
    };
    let std = |t: &Tensor| t.std(true).double_value(&[]);
    let within = |a: f64, b: f64| (a / b - 1.0).abs() < 0.03;
    assert!(within(std(&get("model.embed_tokens.weight")), init_std));
    assert!(within(
        std(&get("model.layers.0.self_attn.q_proj.weight")),
        init_std
    ));
    assert!(within(
        std(&get("model.layers.3.mlp.up_proj.weight")),
        init_std
    ));
    let scaled = init_std / (2.0 * s.layers as f64).sqrt();
    assert!(within(
        std(&get("model.layers.0.self_attn.o_proj.weight")),
        scaled
    ));
    assert!(within(
        std(&get("model.layers.2.mlp.down_proj.weight")),
        scaled
    ));
    let gain = get("model.norm.weight");
    assert_eq!(gain.min().double_value(&[]), 1.0);
    assert_eq!(gain.max().double_value(&[]), 1.0);
    // The same seed gives the same weights; another seed others.
    let again = Model::new(&s, Precision::Fp32, 0, Device::Cpu).unwrap();
    let other = Model::new(&s, Precision::Fp32, 1, Device::Cpu).unwrap();
    let w = |m: &Model| m.named_parameters()[0].1.shallow_clone();
    assert!(w(&model).equal(&w(&again)));
    assert!(!w(&model).equal(&w(&other)));
    // Tied embeddings: no separate output matrix; untied: Hugging Face's `lm_head.weight`.
    assert!(model
        .named_parameters()
        .iter()
        .all(|(n, _)| n != "lm_head.weight"));
    let untied = Model::new(
        &spec(&fixture_model("llama_mini")),
        Precision::Fp32,
        0,
        Device::Cpu,
    )
    .unwrap();
    assert!(untied
        .named_parameters()
        .iter()
        .any(|(n, _)| n == "lm_head.weight"));
}

#[test]
fn alibi_slopes_match_the_reference() {
    // Press et al.'s `get_slopes(8)`: 1/2, 1/4, …, 1/256; and `get_slopes(6)`: the four of
    // get_slopes(4) then every other of get_slopes(8) — 2^-1, 2^-3.
    let eight = alibi_slopes(8);
    for (i, s) in eight.iter().enumerate() {
        assert_eq!(*s, 2f64.powi(-(i as i32 + 1)));
    }
    let six = alibi_slopes(6);
    let expected = [0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125];
    for (a, b) in six.iter().zip(expected) {
        assert!((a - b).abs() < 1e-15, "{six:?}");
    }
}
