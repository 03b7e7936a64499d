//! Loading a Hugging Face Llama-family directory (`config.json`, `*.safetensors`) into
//! kiln-train's model, for scoring documents with an existing LM (issue 17).
//!
//! kiln-train names its parameters as Hugging Face's `LlamaForCausalLM` does
//! (`model.layers.{i}.self_attn.q_proj.weight`, …) and applies RoPE in the same "rotate half"
//! layout, so loading is: the shape from `config.json` (transformers'
//! `LlamaConfig`: `hidden_size`, `intermediate_size`, `num_hidden_layers`,
//! `num_attention_heads`, `num_key_value_heads`, `head_dim`, `vocab_size`,
//! `max_position_embeddings`, `rms_norm_eps`, `rope_theta`, `tie_word_embeddings`), then every
//! tensor by name with its shape checked. What kiln-train does not build (biases, RoPE
//! scaling, another activation or architecture) is an error naming the field, never
//! silently approximated.

use crate::error::TrainError;
use crate::model::Model;
use crate::spec::{Activation, Block, ModelSpec, Norm, Position, Precision};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Tensor};

/// The architectures whose checkpoints load (transformers' class names).
pub const ARCHITECTURES: &[&str] = &["LlamaForCausalLM", "MistralForCausalLM"];

/// The model shape of a Hugging Face `config.json`.
pub fn spec_from_config(dir: &Path) -> Result<ModelSpec, TrainError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|source| TrainError::Io {
        path: path.clone(),
        source,
    })?;
    let c: Value = serde_json::from_str(&text)
        .map_err(|e| TrainError::Input(format!("{}: not JSON: {e}", path.display())))?;
    let bad = |what: String| TrainError::Input(format!("{}: {what}", path.display()));
    let unsupported = |what: String| TrainError::Unsupported(format!("{}: {what}", path.display()));
    let arch = c["architectures"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no `architectures`".into()))?;
    if !ARCHITECTURES.contains(&arch) {
        return Err(unsupported(format!(
            "architecture `{arch}` is not loaded; kiln loads {}",
            ARCHITECTURES.join(", ")
        )));
    }
    let count = |key: &str| -> Result<u64, TrainError> {
        c[key]
            .as_u64()
            .filter(|v| *v > 0)
            .ok_or_else(|| bad(format!("`{key}` is missing or not a positive integer")))
    };
    let real = |key: &str, default: f64| -> Result<f64, TrainError> {
        match &c[key] {
            Value::Null => Ok(default),
            v => v
                .as_f64()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| bad(format!("`{key}` is not a positive number"))),
        }
    };
    let flag = |key: &str| c[key].as_bool().unwrap_or(false);
    for key in ["attention_bias", "mlp_bias"] {
        if flag(key) {
            return Err(unsupported(format!(
                "`{key} = true`: kiln-train's Llama has no biases"
            )));
        }
    }
    // RoPE: transformers 5 writes `rope_parameters { rope_theta, rope_type }`, earlier
    // versions `rope_theta` and `rope_scaling`; only unscaled ("default") RoPE is built.
    let rope = match &c["rope_parameters"] {
        Value::Null => &c["rope_scaling"],
        p => p,
    };
    let rope_type = rope["rope_type"].as_str().or(rope["type"].as_str());
    if !rope.is_null() && rope_type.is_some_and(|t| t != "default") {
        return Err(unsupported(format!(
            "RoPE scaling `{}`: kiln-train applies unscaled RoPE",
            rope_type.unwrap_or_default()
        )));
    }
    let rope_theta = match rope["rope_theta"].as_f64() {
        Some(theta) if theta.is_finite() && theta > 0.0 => theta,
        Some(_) => return Err(bad("`rope_theta` is not a positive number".into())),
        None => real("rope_theta", 10_000.0)?,
    };
    match c["hidden_act"].as_str().unwrap_or("silu") {
        "silu" => {}
        other => {
            return Err(unsupported(format!(
                "`hidden_act = {other}`: kiln-train's gated MLP is SwiGLU (silu)"
            )))
        }
    }
    let (layers, hidden, ffn_hidden, heads, vocab) = (
        count("num_hidden_layers")?,
        count("hidden_size")?,
        count("intermediate_size")?,
        count("num_attention_heads")?,
        count("vocab_size")?,
    );
    let kv_heads = match c["num_key_value_heads"] {
        Value::Null => heads,
        _ => count("num_key_value_heads")?,
    };
    let head_dim = match c["head_dim"] {
        Value::Null => hidden / heads,
        _ => count("head_dim")?,
    };
    // transformers' LlamaConfig defaults tie_word_embeddings to false.
    let tied_embeddings = flag("tie_word_embeddings");
    let (q, kv) = (heads * head_dim, kv_heads * head_dim);
    let per_layer =
        hidden * q + 2 * hidden * kv + q * hidden + 3 * hidden * ffn_hidden + 2 * hidden;
    let params = vocab * hidden * if tied_embeddings { 1 } else { 2 } + layers * per_layer + hidden;
    Ok(ModelSpec {
        layers,
        hidden,
        ffn_hidden,
        heads,
        kv_heads,
        head_dim,
        vocab,
        seq_len: count("max_position_embeddings")?,
        tied_embeddings,
        activation: Activation::Swiglu,
        norm: Norm::Rmsnorm,
        position: Position::Rope,
        bias: false,
        dropout: 0.0,
        rope_base: rope_theta,
        // Llama rotates every dimension of each head, attention then MLP, no embedding norm.
        rotary_fraction: 1.0,
        block: Block::Sequential,
        embedding_norm: false,
        norm_eps: real("rms_norm_eps", 1e-6)?,
        init_std: real("initializer_range", 0.02)?,
        params,
    })
}

/// The model of a Hugging Face Llama-family directory, with its weights.
pub fn load(dir: &Path, precision: Precision, device: Device) -> Result<Model, TrainError> {
    let spec = spec_from_config(dir)?;
    let model = Model::new(&spec, precision, 0, device)?;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|source| TrainError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(TrainError::Input(format!(
            "{}: no *.safetensors file",
            dir.display()
        )));
    }
    let mut tensors: HashMap<String, (Tensor, String)> = HashMap::new();
    for file in &files {
        let read = Tensor::read_safetensors(file)
            .map_err(|e| TrainError::Input(format!("{}: {e}", file.display())))?;
        for (name, t) in read {
            tensors.insert(name, (t, file.display().to_string()));
        }
    }
    for (name, param) in model.named_parameters() {
        let Some((src, file)) = tensors.remove(name) else {
            return Err(TrainError::Input(format!(
                "{}: no tensor `{name}` in {}",
                dir.display(),
                files
                    .iter()
                    .map(|f| f
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if src.size() != param.size() {
            return Err(TrainError::Input(format!(
                "{file}: tensor `{name}` has shape {:?}; config.json's shape needs {:?}",
                src.size(),
                param.size()
            )));
        }
        let mut param = param.shallow_clone();
        tch::no_grad(|| param.copy_(&src.to_kind(param.kind()).to_device(device)));
    }
    // Tied checkpoints may still carry lm_head.weight (the same values); RoPE buffers are
    // not parameters. Anything else would be silently dropped: refuse it.
    tensors.retain(|name, _| {
        let tied_head = spec.tied_embeddings && name == "lm_head.weight";
        !(tied_head || name.ends_with("rotary_emb.inv_freq"))
    });
    if let Some(name) = tensors.keys().min() {
        return Err(TrainError::Input(format!(
            "{}: tensor `{name}` is not part of the model config.json describes ({} unused)",
            dir.display(),
            tensors.len()
        )));
    }
    Ok(model)
}
