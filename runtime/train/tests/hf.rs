//! Loading a Hugging Face Llama directory: a tiny random `LlamaForCausalLM` built and saved
//! by `transformers` gives the same logits in kiln-train within 1e-4; malformed directories
//! are errors naming the file and the tensor.
//!
//! One test builds the model now with the test environment's transformers (scripts/setup
//! installs transformers 5.24.0 into .venv); the others use the committed fixture
//! (tests/fixtures/hf_llama: config.json, model.safetensors, and the logits transformers
//! computed, logits.json), which needs no Python; it was
//! made by tests/hf/make_llama.py with transformers 5.24.0 and torch 2.11.0
//! (`.venv/bin/pip install transformers==5.24.0`, then
//! `python3 tests/hf/make_llama.py OUT` and copy OUT/model/{config.json,model.safetensors}
//! and OUT/logits.json).

use kiln_train::hf;
use kiln_train::spec::Precision;
use kiln_train::TrainError;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_llama")
}

/// A copy of the fixture's model in `dir`, to break.
fn copy_of_fixture(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture().join(f), model.join(f)).unwrap();
    }
    model
}

/// The largest difference between kiln-train's logits for `model_dir` and the ones
/// transformers wrote in `logits`, against the largest logit.
fn logit_difference(model_dir: &Path, logits: &Path) -> (f64, f64) {
    let model = hf::load(model_dir, Precision::Fp32, Device::Cpu).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(logits).unwrap()).unwrap();
    let ids: Vec<Vec<i64>> = serde_json::from_value(want["ids"].clone()).unwrap();
    let logits: Vec<Vec<Vec<f32>>> = serde_json::from_value(want["logits"].clone()).unwrap();
    let flat_ids: Vec<i64> = ids.concat();
    let ids = Tensor::from_slice(&flat_ids).view([ids.len() as i64, ids[0].len() as i64]);
    let flat: Vec<f32> = logits.concat().concat();
    let want = Tensor::from_slice(&flat).view([2, 24, 96]);
    let got = tch::no_grad(|| model.logits(&ids, false)).to_kind(Kind::Float);
    let diff = (got - &want).abs().max().double_value(&[]);
    (diff, want.abs().max().double_value(&[]))
}

#[test]
fn a_transformers_llama_gives_the_same_logits() {
    let model_dir = fixture();
    let spec = hf::spec_from_config(&model_dir).unwrap();
    assert_eq!(
        (spec.kv_heads, spec.rope_base, spec.norm_eps),
        (2, 500000.0, 1e-5)
    );
    let (diff, scale) = logit_difference(&model_dir, &fixture().join("logits.json"));
    println!("largest logit difference {diff:.3e} (largest logit {scale:.3})");
    assert!(diff < 1e-4, "logits differ by {diff}");
}

/// The same, with the model built now by the test environment's transformers (scripts/setup
/// installs the pinned version into .venv) rather than the committed fixture.
#[test]
fn a_llama_built_now_by_transformers_gives_the_same_logits() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hf/make_llama.py"))
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup)", python.display()));
    assert!(
        out.status.success(),
        "make_llama.py (needs transformers in .venv: scripts/setup): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (diff, scale) =
        logit_difference(&dir.path().join("model"), &dir.path().join("logits.json"));
    println!("built now: largest logit difference {diff:.3e} (largest logit {scale:.3})");
    assert!(diff < 1e-4, "logits differ by {diff}");
}

#[test]
fn malformed_directories_are_errors_naming_the_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = copy_of_fixture(dir.path());
    let config_path = model_dir.join("config.json");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let with = |from: &str, to: &str| {
        assert!(config.contains(from), "{from}");
        std::fs::write(&config_path, config.replace(from, to)).unwrap();
        hf::load(&model_dir, Precision::Fp32, Device::Cpu)
            .err()
            .unwrap()
    };
    // A layer the weights do not have: the missing tensor is named.
    let e = with("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3").to_string();
    assert!(e.contains("no tensor `model.layers.2."), "{e}");
    // A wrong shape: the file and the tensor.
    let e = with("\"intermediate_size\": 160", "\"intermediate_size\": 128").to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("mlp.") && e.contains("shape"),
        "{e}"
    );
    // An architecture kiln does not load.
    let e = with("\"LlamaForCausalLM\"", "\"GPT2LMHeadModel\"");
    assert!(matches!(e, TrainError::Unsupported(_)), "{e}");
    assert!(e.to_string().contains("GPT2LMHeadModel"), "{e}");
    // Fewer layers than the weights: the unused tensor is an error, not dropped.
    let e = with("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1").to_string();
    assert!(
        e.contains("model.layers.1.") && e.contains("not part of the model"),
        "{e}"
    );
    // RoPE scaling is not applied by kiln-train: refused.
    let e = with("\"rope_type\": \"default\"", "\"rope_type\": \"llama\"");
    assert!(e.to_string().contains("RoPE scaling `llama`"), "{e}");
    std::fs::write(&config_path, &config).unwrap();
    std::fs::remove_file(model_dir.join("model.safetensors")).unwrap();
    let e = hf::load(&model_dir, Precision::Fp32, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no *.safetensors"), "{e}");
}
