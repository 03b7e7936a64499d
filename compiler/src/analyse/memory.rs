//! Memory per GPU on every pipeline stage: model states as each engine keeps them, the
//! ZeRO-3 working set, activations (Korthikanti et al. 2022) with the full-recompute
//! transient, logits and loss, and a runtime reserve; the most loaded stage decides "fits".

use super::setup::{Precision, Recompute, Setup};
use crate::model::BlockLayout;
use serde::Serialize;

/// What the runtime holds besides tensors on a device with no better figure: the CUDA
/// context, NCCL's buffers and the allocator's slack, for a device `kiln calibrate` did not
/// measure and whose arch has no model below (`arch = cpu` presets declare
/// `runtime_memory`). A named judgement: 3 GiB.
pub const RUNTIME_RESERVE_BYTES: f64 = 3.0 * 1024.0 * 1024.0 * 1024.0;

/// The CUDA context of a PyTorch process with lazy module loading (the default since CUDA
/// 11.7 and PyTorch 1.13): the driver's state and the kernels of the modules it loads,
/// outside the caching allocator. *Assumption*: 0.5 GiB, as nvidia-smi reports for such a
/// process on H100-class GPUs; not measured by kiln (scripts/gpu-check prints the device's
/// memory in use when a GPU is lent).
pub const CUDA_CONTEXT_BYTES: f64 = 0.5 * 1024.0 * 1024.0 * 1024.0;

/// NCCL's buffers for one communicator, outside the caching allocator: NCCL_BUFFSIZE
/// (4 MiB, NCCL's documented default) for each of the two ring neighbours on each of up to
/// 32 channels (NCCL's channel limit on NVLink-connected H100s): 256 MiB, the upper side.
pub const NCCL_BYTES_PER_COMMUNICATOR: f64 = 4.0 * 1024.0 * 1024.0 * 2.0 * 32.0;

/// cuBLAS's workspace, taken from the caching allocator once per stream: PyTorch's default
/// on Hopper, CUBLAS_WORKSPACE_CONFIG=:4096:8 (8 chunks of 4 MiB; c10/cuda
/// CUDABlasHandlePool, getChosenWorkspaceSize), and as much on the communication stream.
pub const CUBLAS_WORKSPACE_BYTES: f64 = 2.0 * 32.0 * 1024.0 * 1024.0;

/// What glibc's allocator keeps resident beyond the live tensors of kiln-train on a CPU
/// (`arch = cpu`), as a fraction of the activations: libtorch's CPU allocator takes each
/// tensor from malloc, and blocks freed in the backward stay in the heap (glibc raises its
/// mmap threshold to the largest freed block, so later tensors come from the heap instead of
/// fresh pages). *Calibrated*: with `MALLOC_MMAP_THRESHOLD_=131072` (no retention) the tiny
/// demo's peak is the live bytes kiln predicts (446 vs 424 MB), with glibc's default 570 MB,
/// 0.5 of its activations more; checked on `runtime/train/benches/cpu_wide.kiln`.
pub const CPU_HEAP_RETENTION: f64 = 0.5;

/// Bytes per parameter of weights, gradients and optimizer states in the ZeRO paper's
/// convention (Rajbhandari et al. 2020, Sec. 3.1): mixed precision (bf16, fp16, fp8) keeps 2
/// bytes of 16-bit weights, 2 of 16-bit gradients and K = 12 of Adam state (fp32 master
/// weights, momentum, variance): 16Φ; fp8 is a GEMM input format and keeps the same states.
/// fp32: 4 + 4 + 8 (momentum, variance). What kiln-train allocates; the engines' own
/// accounting is [`model_states`].
pub fn bytes_per_param(precision: Precision) -> (f64, f64, f64) {
    match precision {
        Precision::Fp32 => (4.0, 4.0, 8.0),
        _ => (2.0, 2.0, 12.0),
    }
}

/// One GPU's model-state bytes per parameter it holds before sharding, as its engine keeps
/// them: weights, gradients and optimizer states, each already divided by the ZeRO shards
/// where the engine shards it (`shards` = data × context ranks).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct StateBytes {
    pub weights: f64,
    pub gradients: f64,
    pub optimizer: f64,
    /// Which accounting: the engine's, with its source.
    pub convention: &'static str,
}

/// The model states of `setup`'s engine per parameter held (see [`StateBytes`]).
/// - kiln (kiln-train): [`bytes_per_param`] sharded by stage as ZeRO describes.
/// - Megatron-LM and NeMo: 16-bit weights, fp32 main gradients (the DDP grad buffer,
///   `accumulate_allreduce_grads_in_fp32`, full size) and 12 bytes of fp32 master weights
///   and Adam state, sharded by the distributed optimizer (`zero >= 1`): 6 + 12/d bytes
///   (Megatron-LM docs/source/api-guide/dist_optimizer.md, the bf16-parameter, fp32-gradient
///   row); `zero = 2` shards the main gradients as well (Megatron-FSDP's `optim_grads`).
/// - DeepSpeed: its own estimators (deepspeed/runtime/zero/stage_1_and_2.py
///   `estimate_zero2_model_states_mem_needs`: 2Ψ + 18Ψ/N = 16-bit weights, then 16-bit and
///   fp32 gradients, fp32 weights and Adam state partitioned; stage3.py
///   `estimate_zero3_model_states_mem_needs`: 18Ψ/N plus 4 bytes per parameter of the largest
///   layer, counted in [`analyse`]); ZeRO-1 keeps the 16-bit gradients whole.
/// - torchtitan and Composer (FSDP with a bf16 compute dtype): the sharded parameters stay
///   fp32 (FSDP2 `MixedPrecisionPolicy(param_dtype=bf16)`, FSDP1 `MixedPrecision`), as do
///   their gradients after the reduce-scatter (reduce_dtype fp32) and Adam's two states:
///   4 + 4 + 8, all sharded under ZeRO-3 (FULL_SHARD); ZeRO-2 (SHARD_GRAD_OP) keeps the bf16
///   compute weights unsharded from the forward to the backward; without sharding (DDP)
///   autocast keeps fp32 weights and gradients whole.
/// - nanotron (`accumulate_grad_in_fp32`, as the Ultra-Scale Playbook's sweep ran it):
///   16-bit weights, a full-size fp32 gradient buffer (FP32GradientAccumulator's
///   `fp32_grad_buffers` over every parameter) beside the bf16 gradients of the backward,
///   and fp32 master weights and Adam state for the rank's ZeRO-1 shard
///   (src/nanotron/helpers.py, init_optimizer_and_grad_accumulator; zero.py).
pub fn model_states(setup: &Setup) -> StateBytes {
    use super::engine::Engine;
    let par = &setup.parallel;
    let n = par.data * par.context;
    let by = |stage: u8| if par.zero >= stage { n } else { 1.0 };
    if setup.precision == Precision::Fp32 {
        return StateBytes {
            weights: 4.0 / by(3),
            gradients: 4.0 / by(2),
            optimizer: 8.0 / by(1),
            convention: "fp32 weights, gradients and Adam state (ZeRO stages shard them)",
        };
    }
    match setup.engine {
        // ZeRO-2 is Megatron-FSDP's `optim_grads` sharding strategy
        // (--data-parallel-sharding-strategy): the fp32 main gradients sharded too.
        Engine::Megatron | Engine::Nemo if par.zero < 3 => StateBytes {
            weights: 2.0,
            gradients: 4.0 / by(2),
            optimizer: 12.0 / by(1),
            convention:
                "Megatron-LM: bf16 weights, fp32 main gradients, distributed optimizer 12/d",
        },
        Engine::Deepspeed => StateBytes {
            weights: 2.0 / by(3),
            // ZeRO-3's 18 = 2 (16-bit weights) + 4 (fp32 gradients) + 12; ZeRO-2's 18 adds
            // the partitioned 16-bit gradients.
            gradients: match par.zero {
                3 => 4.0 / n,
                2 => 6.0 / n,
                _ => 2.0 + 4.0 / by(1),
            },
            optimizer: 12.0 / by(1),
            convention:
                "DeepSpeed's estimator: 2Ψ + 18Ψ/N (ZeRO-2), 18Ψ/N + 4·largest layer (ZeRO-3)",
        },
        // Megatron-LM's ZeRO-3 is its FSDP (`--use-torch-fsdp2`): the same accounting.
        Engine::Torchtitan | Engine::Composer | Engine::Megatron | Engine::Nemo => StateBytes {
            weights: if par.zero == 2 {
                2.0 + 4.0 / n
            } else {
                4.0 / by(3)
            },
            gradients: 4.0 / by(2),
            optimizer: 8.0 / by(1),
            convention: "FSDP: fp32 sharded weights, gradients and Adam state (4 + 4 + 8)",
        },
        Engine::Nanotron => StateBytes {
            weights: 2.0,
            // The fp32 buffer, the bf16 `.grad`s the whole backward leaves before
            // FP32GradientAccumulator folds them in (optim/gradient_accumulator.py, backward
            // then _accumulate_grad), and under ZeRO-0 with data parallelism DDP's bf16
            // buckets (trainer.py _init_model: DDP only then).
            gradients: 4.0
                + 2.0
                + if par.zero == 0 && par.data > 1.0 {
                    2.0
                } else {
                    0.0
                },
            optimizer: 12.0 / by(1),
            convention: "nanotron: bf16 weights, a full fp32 gradient buffer, ZeRO-1 fp32 state",
        },
        Engine::Kiln => {
            let (w, g, o) = bytes_per_param(setup.precision);
            StateBytes {
                weights: w / by(3),
                gradients: g / by(2),
                optimizer: o / by(1),
                convention: "ZeRO's 2 + 2 + 12 (kiln-train)",
            }
        }
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
    // Under fp8 with Transformer Engine (Megatron-LM, NeMo, llm-foundry's `fc_type: te`)
    // each linear layer saves its input as the fp8 cast it multiplied (te.Linear and
    // LayerNormLinear keep the quantised tensor for the weight gradient): 1 byte.
    use super::engine::Engine;
    let te_fp8 = setup.precision == Precision::Fp8Mixed
        && matches!(
            setup.engine,
            Engine::Megatron | Engine::Nemo | Engine::Composer
        );
    let linear_in = if te_fp8 { 1.0 } else { e };
    // Two norm inputs, the QKV input and the first MLP input (Eqs. 1, 2: 4sbh + 2sbh + 2sbh),
    // and the two dropout masks after attention and after the MLP (sbh each). The parallel
    // block's norms read the same tensor, the layer's input, kept once; with a shared norm
    // its one output is both the QKV and the first MLP input (GPT-J; PaLM Sec. 2), with two
    // norms there are two outputs (GPT-NeoX).
    let (norm_inputs, linear_inputs) = match m.block {
        BlockLayout::Sequential => (2.0, 2.0),
        BlockLayout::Parallel { shared_norm: true } => (1.0, 1.0),
        BlockLayout::Parallel { shared_norm: false } => (1.0, 2.0),
    };
    let outside_tp = sb * h * (norm_inputs * e + linear_inputs * linear_in + 2.0 * mask);
    // Q, K, V and the output projection's input (Eq. 1: 4sbh + 2sbh + 2sbh for MHA); the MLP
    // keeps each activation input: GeLU's input and the second linear's input (Eq. 2: 16sbh
    // for f = 4h), SwiGLU's gate and up, their product, and SiLU's output where unfused.
    // Gated: a fused SwiGLU (Megatron-LM's bias_swiglu_impl, or compiled) keeps the two
    // projections' output and recomputes the rest; eager autograd also keeps SiLU's output
    // for the product's backward: silu(gate) · up saves gate, silu(gate) and up.
    let ffn_tensors = match (m.gated_ffn, setup.profile.fused_elementwise) {
        (true, true) => 3.0,
        (true, false) => 4.0,
        (false, _) => 2.0,
    };
    // nanotron's multi-head attention (no GQA) permutes Q, K and V into one contiguous
    // tensor, then copies K and V into a second one for the rotary kernel; flash-attention
    // saves Q (a view that keeps the whole first tensor alive) and K, V from the second:
    // K and V are held twice (models/llama.py, CausalSelfAttention.forward, training branch).
    let kv_copies = if setup.engine == Engine::Nanotron && m.kv_heads == m.heads {
        2.0
    } else {
        1.0
    };
    // The output projection's and the second MLP linear's inputs are linear inputs too.
    let inside_tp = sb
        * (e * (q_width + 2.0 * kv_copies * kv_width + (ffn_tensors - 1.0) * f)
            + linear_in * (q_width + f));
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
    /// The rank's weights, with the gathered working set under ZeRO-3.
    pub weights: f64,
    pub gradients: f64,
    pub optimizer: f64,
    /// Layer activations of every micro-batch in flight, the recompute transient, plus logits
    /// and loss on the last stage.
    pub activations: f64,
    /// Tensors the caching allocator hands out at the peak: the above and cuBLAS's
    /// workspace (what `torch.cuda.max_memory_allocated` measures).
    pub allocated: f64,
    /// What the allocator holds on top, free but cut up (`max_memory_reserved` −
    /// `max_memory_allocated`); on a CPU, the heap glibc keeps.
    pub fragmentation: f64,
    /// Outside the allocator: the CUDA context and NCCL's buffers (a calibrated device: its
    /// measured runtime memory).
    pub runtime: f64,
    /// Everything beside the model's tensors: workspace, fragmentation and runtime.
    pub reserve: f64,
    pub total: f64,
}

/// One pipeline stage's GPU: its layers and what it holds at its peak.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Stage {
    /// Transformer blocks on the stage.
    pub layers: f64,
    /// Parameters on one GPU of the stage before ZeRO sharding (after the tensor split):
    /// the first holds the embedding, the last the output layer.
    pub params_per_gpu: f64,
    /// Micro-batches whose activations the stage holds at its peak (1F1B: p − i, more when
    /// interleaved).
    pub micro_batches_in_flight: f64,
    /// Logits and loss (the last stage only).
    pub logits: f64,
    /// The ZeRO-3 working set: gathered weights beside the shards.
    pub gathered: f64,
    /// Saved activations held in host memory instead (`offload_layers`), every micro-batch
    /// in flight; not counted in `per_gpu`.
    pub offloaded: f64,
    pub per_gpu: PerGpu,
    pub fits: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Memory {
    /// The most loaded GPU (largest total): which pipeline stage it is on.
    pub stage: usize,
    pub per_gpu: PerGpu,
    /// Every pipeline stage, first to last (`per_gpu` is the most loaded of them).
    pub per_stage: Vec<Stage>,
    pub capacity_bytes: f64,
    pub fits: bool,
    /// Parameters held per GPU on that stage before ZeRO sharding.
    pub params_per_gpu: f64,
    pub layer_activations: LayerActivations,
    /// What one layer holds transiently while full recompute rebuilds it for its backward:
    /// its activations without recompute, for one micro-batch (0 without full recompute).
    pub recompute_transient: f64,
    /// Micro-batches whose activations the stage holds at its peak.
    pub micro_batches_in_flight: f64,
    pub logits: f64,
    /// Bytes per parameter held, after sharding, as the engine keeps them.
    pub states: StateBytes,
}

/// [`analyse_with`] the fragmentation kiln ships (`stdlib/fitted.json`).
pub fn analyse(setup: &Setup) -> Memory {
    analyse_with(setup, super::time::fitted().memory.fragmentation)
}

/// The memory of every pipeline stage, with the caching allocator's reserved bytes beyond
/// the allocated ones taken as `fragmentation` × one micro-batch's activations on the stage:
/// the tensors that come and go within a micro-batch's forward and backward leave free
/// blocks the allocator cannot reuse for a larger request (PyTorch "CUDA semantics", memory
/// management), while model states and the stash of micro-batches in flight are allocated
/// in a regular pattern. Fitted by `kiln validate` on measured peaks.
pub fn analyse_with(setup: &Setup, fragmentation: f64) -> Memory {
    use super::engine::Engine;
    let m = &setup.shape;
    let par = &setup.parallel;
    let stages = setup.stage_layers();
    let stage_params = setup.stage_params();
    let per_layer_params = setup.layer_params();
    let p = stages.len();
    let states = model_states(setup);
    let layer = layer_activations(setup);
    let e = setup.activation_bytes();
    let sb = m.seq_len / par.context * par.micro_batch;
    // The loss at its peak, in the backward of the cross-entropy, split by tensor over the
    // vocabulary: unfused, the 16-bit logits, their fp32 copy, fp32 log-probabilities and
    // their fp32 gradient (PyTorch's cross_entropy on upcast logits, as torchtitan computes
    // it); fused (Megatron-LM's --cross-entropy-loss-fusion, Korthikanti et al. Sec. 4.3),
    // the 16-bit logits and one fp32 softmax, 4sbv/t.
    // nanotron's sharded cross-entropy peaks at two fp32 copies, the upcast logits and
    // logits − max (parallel/tensor_parallel/functional.py, _ShardedCrossEntropy).
    // flash-attn's cross-entropy (Composer's MPT) keeps the 16-bit logits and writes their
    // gradient in place (losses/cross_entropy.py, inplace_backward).
    let loss_bytes = if setup.engine == Engine::Composer {
        e
    } else if setup.profile.fused_cross_entropy {
        e + 4.0
    } else if setup.engine == Engine::Nanotron {
        8.0
    } else {
        e + 12.0
    };
    let logits = sb * m.vocab * loss_bytes / par.tensor;
    // Full recompute rebuilds one layer's activations at a time for its backward: that layer,
    // for one micro-batch, as if nothing were recomputed (Korthikanti et al. Sec. 5 count
    // only the stored inputs; the rebuilt layer is live beside them).
    let recompute_transient = if par.recompute == Recompute::Full {
        let mut whole = setup.clone();
        whole.parallel.recompute = Recompute::None;
        layer_activations(&whole).stored
    } else {
        0.0
    };
    // DeepSpeed's "largest layer": the largest single module's own parameters (the
    // embedding, an MLP projection or a query projection, as Hugging Face models hold them).
    let largest_module = (m.vocab * m.hidden)
        .max(m.hidden * m.ffn_hidden)
        .max(m.hidden * m.heads * m.head_dim)
        / par.tensor;
    // Buffers an engine keeps beside the model's tensors. nanotron: with tensor
    // parallelism, two persistent all-gather buffers of the whole sequence's hidden states
    // (parallel/utils.py MemoryBuffer, "allgather" and "allgather2"), and with a pipeline
    // the stage output waiting to be sent (pipeline_parallel/state.py).
    let engine_buffers = if setup.engine == Engine::Nanotron {
        let hidden = m.seq_len * par.micro_batch * m.hidden * e;
        let gather = if par.tensor > 1.0 { 2.0 * hidden } else { 0.0 };
        let send = if p > 1 {
            hidden
                / if par.sequence_parallel {
                    par.tensor
                } else {
                    1.0
                }
        } else {
            0.0
        };
        gather + send
    } else {
        0.0
    };
    // The gathered weights are in the compute precision: 16-bit, or fp32 for fp32 runs.
    let gathered_bytes = if setup.precision == Precision::Fp32 {
        4.0
    } else {
        2.0
    };
    let m_batches = setup.micro_batches();
    // The embedding norm (BLOOM) keeps its input, the embedding output, for its backward on
    // the first stage: sbh in the activation type per micro-batch, as a layer's norm inputs
    // count in Korthikanti et al. 2022, Eq. 1.
    let embedding_norm = if m.embedding_norm {
        m.seq_len / par.context * par.micro_batch * m.hidden * e
    } else {
        0.0
    };
    let mut per_stage = Vec::with_capacity(p);
    for (i, &layers) in stages.iter().enumerate() {
        let last = i == p - 1;
        // Tensor parallelism splits every matrix, the embedding by vocabulary rows.
        let local = stage_params[i] / par.tensor;
        let weights = local * states.weights;
        let gradients = local * states.gradients;
        let optimizer = local * states.optimizer;
        let block = per_layer_params / par.tensor;
        // ZeRO-3 gathers each block's whole 16-bit weights for its forward and backward:
        // FSDP and kiln-train hold two blocks (the next prefetched) and the parameters outside
        // the blocks (embeddings, final norm, output projection), which the root unit keeps
        // whole from the forward to the end of the backward; DeepSpeed's estimator counts 4
        // bytes per parameter of the largest layer.
        let gathered = match (par.zero >= 3, setup.engine) {
            (false, _) => 0.0,
            (true, Engine::Deepspeed) => 4.0 * largest_module,
            (true, _) => (local - layers * block + 2.0 * block) * gathered_bytes,
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
        // Full recompute stores only the inputs of the layers it covers; the others keep
        // what they keep without it (`recompute_layers`).
        let recomputed = setup.recomputed_layers(layers);
        let kept = if recomputed > 0.0 {
            recompute_transient
        } else {
            layer.stored
        };
        let stored = recomputed * layer.stored + (layers - recomputed) * kept;
        // Offloaded layers keep their saved tensors in host memory; one layer's stash is on
        // the GPU at a time, in transit (Transformer Engine's CPU offload, behind Megatron-LM's
        // --cpu-offloading-num-layers, double-buffers: the copy of one layer overlaps the
        // compute of the next). K-C018 keeps offloading to stages without recompute.
        let offloaded_layers = setup.offloaded_layers(layers);
        let per_layer = if layers > 0.0 { stored / layers } else { 0.0 };
        let offloaded = offloaded_layers * per_layer * in_flight * interleave;
        let stored = stored - offloaded_layers * per_layer
            + if offloaded_layers > 0.0 {
                per_layer
            } else {
                0.0
            };
        let activations = stored * in_flight * interleave
            + if recomputed > 0.0 {
                recompute_transient
            } else {
                0.0
            }
            + if last { logits } else { 0.0 }
            + if i == 0 {
                embedding_norm * in_flight * interleave
            } else {
                0.0
            };
        let cpu = setup.hardware.arch == "cpu";
        let workspace = if cpu { 0.0 } else { CUBLAS_WORKSPACE_BYTES } + engine_buffers;
        let allocated = weights + gradients + optimizer + gathered + activations + workspace;
        let slack = if cpu {
            CPU_HEAP_RETENTION * activations
        } else {
            fragmentation * activations / (in_flight * interleave)
        };
        // One NCCL communicator per parallel dimension that spans more than one GPU.
        let communicators = [par.data, par.tensor, par.pipeline, par.context]
            .iter()
            .filter(|&&n| n > 1.0)
            .count() as f64;
        let runtime = match setup.hardware.runtime_bytes {
            Some(measured) => measured,
            None if cpu => RUNTIME_RESERVE_BYTES,
            None => CUDA_CONTEXT_BYTES + communicators * NCCL_BYTES_PER_COMMUNICATOR,
        };
        let reserve = workspace + slack + runtime;
        let total = allocated + slack + runtime;
        per_stage.push(Stage {
            layers,
            params_per_gpu: local,
            micro_batches_in_flight: in_flight * interleave,
            logits: if last { logits } else { 0.0 },
            gathered,
            offloaded,
            per_gpu: PerGpu {
                weights: weights + gathered,
                gradients,
                optimizer,
                activations,
                allocated,
                fragmentation: slack,
                runtime,
                reserve,
                total,
            },
            fits: total <= setup.hardware.memory_bytes,
        });
    }
    let stage = (0..p)
        .max_by(|&a, &b| {
            per_stage[a]
                .per_gpu
                .total
                .total_cmp(&per_stage[b].per_gpu.total)
                // The first of equals: the earliest stage.
                .then(b.cmp(&a))
        })
        .expect("a pipeline has at least one stage");
    let top = &per_stage[stage];
    Memory {
        stage,
        per_gpu: top.per_gpu.clone(),
        capacity_bytes: setup.hardware.memory_bytes,
        fits: top.fits,
        params_per_gpu: top.params_per_gpu,
        layer_activations: layer,
        recompute_transient,
        micro_batches_in_flight: top.micro_batches_in_flight,
        logits: top.logits,
        states,
        per_stage,
    }
}
