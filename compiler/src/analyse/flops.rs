//! FLOPs per token: model FLOPs (what the papers count for MFU) and hardware FLOPs (what the
//! GPU executes, recomputation included).

use super::setup::{Recompute, Setup};
use serde::Serialize;

/// Forward-pass FLOPs per token, split the way recomputation treats them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ForwardFlops {
    /// Weight matrix multiplies of one layer: 2 FLOPs per weight per token.
    pub layer_matmul: f64,
    /// The attention scores of one layer, QKᵀ and the product with V: 2 · 2 · s · (heads ·
    /// head_dim), counted over the full s × s matrix as Megatron-LM and Korthikanti et al.
    /// count it (no causal halving).
    pub layer_attention: f64,
    /// The output projection to the vocabulary: 2 · V · h (tied or not, it is a matmul).
    pub logits: f64,
}

/// Training FLOPs per token of the whole model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TrainingFlops {
    pub forward: ForwardFlops,
    /// Forward + backward (backward = 2 × forward, Kaplan et al. 2020 Sec. 2.1):
    /// 3 · (L · (matmul + attention) + logits). For a GPT shape this is Korthikanti et al.
    /// 2022 Eq. 7, 72·l·h²·(1 + s/6h + V/12lh) per token, and 6N plus attention.
    pub model_per_token: f64,
    /// Model FLOPs plus what recomputation executes again: full recompute re-runs every
    /// layer's forward (Narayanan et al. 2021 Eq. 3, 96·l·h²·(1 + s/6h + V/16lh)); selective
    /// recompute re-runs the attention scores' forward only.
    pub hardware_per_token: f64,
}

pub fn forward(setup: &Setup) -> ForwardFlops {
    let m = &setup.shape;
    let q_width = m.heads * m.head_dim;
    let kv_width = m.kv_heads * m.head_dim;
    let ffn_matrices = if m.gated_ffn { 3.0 } else { 2.0 };
    // Transformer-XL's W_R projects the relative encodings once per layer per position.
    let relative = if m.relative_positions {
        m.hidden * q_width
    } else {
        0.0
    };
    let weights = 2.0 * m.hidden * q_width
        + 2.0 * m.hidden * kv_width
        + ffn_matrices * m.hidden * m.ffn_hidden
        + relative;
    ForwardFlops {
        layer_matmul: 2.0 * weights,
        layer_attention: 2.0 * 2.0 * m.seq_len * q_width,
        logits: 2.0 * m.vocab * m.hidden,
    }
}

pub fn training(setup: &Setup) -> TrainingFlops {
    let f = forward(setup);
    let layers = setup.shape.layers;
    let layer = f.layer_matmul + f.layer_attention;
    let model_per_token = 3.0 * (layers * layer + f.logits);
    let recomputed = match setup.parallel.recompute {
        Recompute::None => 0.0,
        Recompute::Selective if setup.parallel.flash_attention => 0.0,
        // FlashAttention's backward recomputes the scores anyway (Dao et al. 2022, Sec. 3.1),
        // so selective recompute adds nothing on top of it; without it, the scores' forward.
        Recompute::Selective => layers * f.layer_attention,
        Recompute::SelectiveOp => layers * selective_op_recomputed(setup),
        // Megatron-LM's block method: `recompute_layers` of each stage (all by default).
        Recompute::Full => layers * layer * setup.full_recompute_share(),
    };
    TrainingFlops {
        forward: f,
        model_per_token,
        hardware_per_token: model_per_token + recomputed,
    }
}

/// Forward FLOPs per token that torchtitan's op-level policy recomputes: the matmuls whose
/// outputs it does not keep (wk, wo, and w3 for gated MLPs or w2 otherwise).
pub fn selective_op_recomputed(setup: &Setup) -> f64 {
    let m = &setup.shape;
    let q_width = m.heads * m.head_dim;
    let kv_width = m.kv_heads * m.head_dim;
    2.0 * (m.hidden * kv_width + q_width * m.hidden + m.hidden * m.ffn_hidden)
}
