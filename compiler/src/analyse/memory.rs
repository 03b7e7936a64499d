//! Memory per GPU on the most loaded rank: model states by ZeRO stage, activations by
//! Korthikanti et al. 2022, logits, and a runtime reserve.

use super::setup::{Precision, Recompute, Setup};
use serde::Serialize;

/// What the runtime holds besides tensors the model accounts for: the CUDA context
/// (≈0.5–1 GiB with lazy module loading), NCCL communicator buffers (≈1 GiB at default
/// NCCL_BUFFSIZE over several channels and peers), and caching-allocator fragmentation.
/// A named judgement, not a measurement of this run: 3 GiB. A device that `kiln calibrate`
/// measured declares its own (`runtime_memory`, libtorch's resident memory there).
pub const RUNTIME_RESERVE_BYTES: f64 = 3.0 * 1024.0 * 1024.0 * 1024.0;

/// What glibc's allocator keeps resident beyond the live tensors of kiln-train on a CPU
/// (`arch = cpu`), as a fraction of the activations: libtorch's CPU allocator takes each
/// tensor from malloc, and blocks freed in the backward stay in the heap (glibc raises its
/// mmap threshold to the largest freed block, so later tensors come from the heap instead of
/// fresh pages). *Calibrated*: with `MALLOC_MMAP_THRESHOLD_=131072` (no retention) the tiny
/// demo's peak is the live bytes kiln predicts (446 vs 424 MB), with glibc's default 570 MB,
/// 0.5 of its activations more; checked on `runtime/train/benches/cpu_wide.kiln`.
pub const CPU_HEAP_RETENTION: f64 = 0.5;

/// Bytes per parameter of weights, gradients and optimizer states.
///
/// Mixed precision (bf16, fp16, fp8) follows the ZeRO paper's convention (Rajbhandari et al.
/// 2020, Sec. 3.1): 2 bytes of 16-bit weights, 2 of 16-bit gradients, and K = 12 of Adam
/// state (fp32 master weights, momentum, variance): 16Φ. fp8 training keeps the same
/// states (fp8 is a GEMM input format). fp32: 4 + 4 + 8 (momentum, variance) = 16Φ.
/// Engines that accumulate gradients in fp32 (Megatron-LM's main_grad) hold 2 more bytes
/// per parameter; this convention does not count them.
pub fn bytes_per_param(precision: Precision) -> (f64, f64, f64) {
    match precision {
        Precision::Fp32 => (4.0, 4.0, 8.0),
        _ => (2.0, 2.0, 12.0),
    }
}

/// Activation bytes of one transformer layer for one micro-batch, generalising Korthikanti
/// et al. 2022 (Sec. 4.1, Eqs. 1–6, Table 2) from GPT (MHA, 4h GeLU MLP, dropout, 16-bit)
/// to GQA, SwiGLU, any activation width, dropout or not, and FlashAttention.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct LayerActivations {
    /// Tensors outside the tensor-parallel regions (norm inputs, the inputs of the QKV and
    /// first MLP projections, dropout masks): replicated across tensor ranks unless
    /// sequence parallelism shards them.
    pub outside_tp: f64,
    /// Q, K, V, the attention output and the MLP's hidden activations: split by tensor.
    pub inside_tp: f64,
    /// The s × s scores per head (softmax output, and with dropout its mask and output):
    /// split by tensor; absent with FlashAttention or selective recompute.
    pub scores: f64,
    /// What one layer keeps for one micro-batch under the run's recompute and parallelism.
    pub stored: f64,
}

pub fn layer_activations(setup: &Setup) -> LayerActivations {
    let m = &setup.shape;
    let par = &setup.parallel;
    let e = setup.activation_bytes();
    // Context parallelism splits the sequence (Megatron-LM --context-parallel-size).
    let sb = m.seq_len / par.context * par.micro_batch;
    let (h, f) = (m.hidden, m.ffn_hidden);
    let q_width = m.heads * m.head_dim;
    let kv_width = m.kv_heads * m.head_dim;
    let mask = if setup.dropout > 0.0 { 1.0 } else { 0.0 };
    // Two norm inputs, the QKV input and the first MLP input (Eqs. 1, 2: 4sbh + 2sbh + 2sbh),
    // and the two dropout masks after attention and after the MLP (sbh each).
    let outside_tp = sb * h * (4.0 * e + 2.0 * mask);
    // Q, K, V and the output projection's input (Eq. 1: 4sbh + 2sbh + 2sbh for MHA); the MLP
    // keeps each activation input: GeLU's input and the second linear's input (Eq. 2: 16sbh
    // for f = 4h), SwiGLU's gate, up and their product.
    let ffn_tensors = if m.gated_ffn { 3.0 } else { 2.0 };
    let inside_tp = sb * e * (2.0 * q_width + 2.0 * kv_width + ffn_tensors * f);
    // Softmax output (2as²b), and with dropout its mask (as²b) and output (2as²b): Eq. 1's 5as²b.
    let s = m.seq_len / par.context;
    let scores = m.heads * s * sb * (e + mask * (1.0 + e));
    let t = par.tensor;
    let outside = if par.sequence_parallel {
        outside_tp / t
    } else {
        outside_tp
    };
    let stored = match par.recompute {
        // Only the layer's input is kept (Korthikanti Sec. 5, Table 2: 2sbh); with sequence
        // parallelism it is sharded.
        Recompute::Full => sb * h * e / if par.sequence_parallel { t } else { 1.0 },
        Recompute::Selective => outside + inside_tp / t,
        Recompute::SelectiveOp => {
            // torchtitan's policy (torchtitan/models/llama3/parallelize.py, _save_list): the
            // layer's input, attention's output, and every other matmul's output in the order
            // wq, wk, wv, wo, w1, (w3,) w2 — wq, wv, w1 and (gated) w2 or (not gated) w1's
            // neighbour: the column-parallel ones split by tensor.
            let saved_sharded = q_width + q_width + kv_width + f;
            let saved_full = if m.gated_ffn { h } else { 0.0 };
            let replicated = h + saved_full;
            sb * e
                * (saved_sharded / t
                    + if par.sequence_parallel {
                        replicated / t
                    } else {
                        replicated
                    })
        }
        Recompute::None if par.flash_attention => outside + inside_tp / t,
        Recompute::None => outside + (inside_tp + scores) / t,
    };
    LayerActivations {
        outside_tp,
        inside_tp,
        scores,
        stored,
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PerGpu {
    pub weights: f64,
    pub gradients: f64,
    pub optimizer: f64,
    /// Layer activations of every micro-batch in flight, plus logits and loss on the last stage.
    pub activations: f64,
    pub reserve: f64,
    pub total: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Memory {
    /// The most loaded GPU (largest total): which pipeline stage it is on.
    pub stage: usize,
    pub per_gpu: PerGpu,
    pub capacity_bytes: f64,
    pub fits: bool,
    /// Parameters held per GPU on that stage before ZeRO sharding.
    pub params_per_gpu: f64,
    pub layer_activations: LayerActivations,
    /// Micro-batches whose activations the stage holds at its peak.
    pub micro_batches_in_flight: f64,
    pub logits: f64,
    pub bytes_per_param: (f64, f64, f64),
}

pub fn analyse(setup: &Setup) -> Memory {
    let m = &setup.shape;
    let par = &setup.parallel;
    let stages = setup.stage_layers();
    let stage_params = setup.stage_params();
    let per_layer_params = setup.layer_params();
    let p = stages.len();
    let (w_bytes, g_bytes, o_bytes) = bytes_per_param(setup.precision);
    // ZeRO shards over the data-parallel group; Megatron-LM's distributed optimizer shards
    // over data × context ranks, which hold the same weights.
    let shards = par.data * par.context;
    let layer = layer_activations(setup);
    let e = setup.activation_bytes();
    let sb = m.seq_len / par.context * par.micro_batch;
    // The loss at its peak, in the backward of the cross-entropy: the 16-bit logits, their
    // fp32 copy, fp32 log-probabilities and their fp32 gradient (PyTorch's cross_entropy on
    // upcast logits, as torchtitan computes it; Korthikanti et al. Sec. 4.3 count only the
    // fp32 softmax, 4sbv/t, for Megatron-LM's fused kernel), split by tensor over the
    // vocabulary.
    let logits = sb * m.vocab * (e + 12.0) / par.tensor;
    let m_batches = setup.micro_batches();
    let mut best: Option<Memory> = None;
    for (i, &layers) in stages.iter().enumerate() {
        let last = i == p - 1;
        // Tensor parallelism splits every matrix, the embedding by vocabulary rows.
        let local = stage_params[i] / par.tensor;
        let weights = local * w_bytes / if par.zero >= 3 { shards } else { 1.0 };
        let gradients = local * g_bytes / if par.zero >= 2 { shards } else { 1.0 };
        let optimizer = local * o_bytes / if par.zero >= 1 { shards } else { 1.0 };
        // ZeRO-3 gathers each block's whole weights for its forward and backward, the next
        // block prefetched: two blocks beside the shards, and the parameters outside the
        // blocks (embeddings, final norm, output projection), which FSDP's root unit and
        // kiln-train keep whole from the forward to the end of the backward.
        let gathered = if par.zero >= 3 {
            let blocks = layers * per_layer_params / par.tensor;
            (local - blocks + 2.0 * per_layer_params / par.tensor) * w_bytes
        } else {
            0.0
        };
        // Under 1F1B the stage i of p holds p − i micro-batches at its peak (Narayanan et al.
        // 2021, Sec. 2.2.1), never more than the step has; interleaving adds
        // (p − 1)/(p·v) on the first stage (Korthikanti et al. Sec. 4.2.3).
        let in_flight = ((p - i) as f64).min(m_batches).max(1.0);
        let interleave = if par.virtual_stages > 1.0 && p > 1 {
            1.0 + (p as f64 - 1.0) / (p as f64 * par.virtual_stages)
        } else {
            1.0
        };
        let activations =
            layers * layer.stored * in_flight * interleave + if last { logits } else { 0.0 };
        let retention = if setup.hardware.arch == "cpu" {
            CPU_HEAP_RETENTION * activations
        } else {
            0.0
        };
        let reserve = setup
            .hardware
            .runtime_bytes
            .unwrap_or(RUNTIME_RESERVE_BYTES)
            + retention;
        let total = weights + gradients + optimizer + gathered + activations + reserve;
        let candidate = Memory {
            stage: i,
            per_gpu: PerGpu {
                weights: weights + gathered,
                gradients,
                optimizer,
                activations,
                reserve,
                total,
            },
            capacity_bytes: setup.hardware.memory_bytes,
            fits: total <= setup.hardware.memory_bytes,
            params_per_gpu: local,
            layer_activations: layer,
            micro_batches_in_flight: in_flight * interleave,
            logits: if last { logits } else { 0.0 },
            bytes_per_param: (w_bytes, g_bytes, o_bytes),
        };
        if best
            .as_ref()
            .is_none_or(|b| candidate.per_gpu.total > b.per_gpu.total)
        {
            best = Some(candidate);
        }
    }
    best.expect("a pipeline has at least one stage")
}
