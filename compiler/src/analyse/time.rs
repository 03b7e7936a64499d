//! Step time, throughput, MFU, wall clock and cost.

use super::comm::Communication;
use super::flops::TrainingFlops;
use super::memory::LayerActivations;
use super::setup::{Recompute, Setup};
use serde::Serialize;

/// The fraction of the dense peak a GPU family's matrix multiplies reach in training, the
/// "achievable efficiency" of the time model.
///
/// - Hopper 0.803, Blackwell 0.776, CDNA3 0.514: the maximum achievable matmul FLOP/s that
///   Bekman's mamf-finder measured over many shapes (stas00/ml-engineering,
///   compute/accelerator/README.md; published.yaml hw.measured_efficiency). Independent of
///   every run kiln is compared with.
/// - Ampere 0.65: mamf-finder measures 0.869 on the A100 with today's cuBLAS, but Megatron-LM's
///   2021 A100 runs reach about three quarters of what that ceiling predicts for them. This
///   constant is *calibrated* on Narayanan et al. 2021, Table 1, so kiln's agreement with
///   those rows tests only the model's shape across sizes (−5 % … +5 %), not its level.
/// - Volta: no measurement; Ampere's value, an assumption.
/// - CPU: 1.0, because its declared peak is the matmul rate `kiln calibrate` measured.
pub fn matmul_efficiency(arch: &str) -> f64 {
    match arch {
        "ampere" | "volta" => 0.65,
        // A CPU's peak is what `kiln calibrate` measured with the same matmuls.
        "cpu" => 1.0,
        "hopper" => 0.803,
        "blackwell" => 0.776,
        _ => 0.514,
    }
}

/// The share of a layer's time that goes to matrix multiplies; the rest (norms, activation
/// functions, softmax, rotary embeddings, residual adds, dropout, optimizer kernels) is
/// memory-bound. Each element the layer stores as an activation is written once and read
/// once in the forward, and its gradient written and read once in the backward
/// (Korthikanti et al. 2022's inventory of stored tensors): 4 passes over the stored bytes
/// at the GPU's HBM bandwidth.
pub const MEMORY_PASSES_PER_ACTIVATION: f64 = 4.0;

/// The fraction of its asymptotic rate a matmul of width `dim` reaches when the device
/// declares Hockney's half-performance width n½ (`matmul_half_dim`, measured by `kiln
/// calibrate`): dim / (dim + n½) (Hockney & Jesshope 1988, Sec. 1.3.3, r = r∞ · n / (n +
/// n½)). 1 for a datasheet GPU, whose per-family efficiency already stands for its shapes.
pub fn size_efficiency(dim: f64, half_dim: Option<f64>) -> f64 {
    match half_dim {
        Some(h) if dim > 0.0 => dim / (dim + h),
        _ => 1.0,
    }
}

/// How many times more element-wise memory traffic kiln-train's eager libtorch makes on a
/// CPU (`arch = cpu`) than the fused GPU kernels the passes above count: every op (the
/// composite RMSNorm, rotary embeddings' slices and concatenation, SiLU, the gating
/// product, residual adds, the softmax of the loss) reads whole tensors and writes a fresh
/// one, forward and backward. *Calibrated*, not derived: fitted to kiln-train's measured
/// step of `experiments/tiny.kiln` on this 2-core machine (`kiln-worker bench`: 0.549 s
/// measured, 0.557 s predicted) and checked on a second shape,
/// `runtime/train/benches/cpu_wide.kiln` (0.987 s measured, 0.976 s predicted).
pub const EAGER_CPU_ELEMENTWISE_FACTOR: f64 = 4.5;

/// Passes over the fp32 logits of a micro-batch on the last stage, each at the HBM
/// bandwidth: the output matmul writes them (1), log-softmax reads them and writes the
/// log-probabilities (2, 3); in the backward, log-softmax's gradient reads its output and
/// the incoming gradient and writes the logits' gradient (4, 5, 6). The loss itself reads
/// one entry per row.
pub const LOGITS_PASSES: f64 = 6.0;

/// Bytes an FP8 cast moves per element: it reads the bf16 value (2) and writes the fp8 one
/// (1). Transformer Engine casts every FP8 GEMM's inputs before the GEMM — the activations
/// (and, in the backward, the output gradients) each time, the weights once per
/// micro-batch for the forward and once, transposed, for the weight gradient
/// (NVIDIA Transformer Engine, "Using FP8 with Transformer Engine": `te.Linear` keeps bf16
/// master weights and quantises inputs per call). Attention, norms and the output layer stay
/// bf16 (Megatron-LM's `--fp8-format` applies to the transformer layers' linears only).
pub const FP8_CAST_BYTES_PER_ELEMENT: f64 = 3.0;

#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Throughput {
    pub step_time_s: f64,
    /// Matrix-multiply time of the slowest pipeline stage, at peak × matmul efficiency.
    pub compute_s: f64,
    /// Memory-bound element-wise time of that stage.
    pub memory_bound_s: f64,
    /// Pipeline bubble: (p − 1)/m of the compute, (p − 1)/(v·m) interleaved.
    pub bubble_fraction: f64,
    pub bubble_s: f64,
    /// Communication on the critical path (tensor and pipeline all of it; data what the
    /// backward of the last micro-batch does not hide).
    pub exposed_communication_s: f64,
    pub tokens_per_s: f64,
    /// Model FLOPs / (step time × GPUs × peak), against the dense bf16 peak for fp8 runs (as
    /// MFU is compared across runs; `mfu_fp8_peak` beside it).
    pub mfu: f64,
    /// For fp8 runs: the same FLOPs against the dense fp8 peak, as some benchmarks print it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfu_fp8_peak: Option<f64>,
    /// Model FLOP/s per GPU, in TFLOP/s.
    pub tflops_per_gpu: f64,
    /// Hardware FLOP/s per GPU (recomputation included), in TFLOP/s.
    pub hardware_tflops_per_gpu: f64,
    pub peak_flops: f64,
    pub matmul_efficiency: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Cost {
    pub steps: f64,
    pub wall_clock_s: f64,
    pub gpu_hours: f64,
    /// When the cluster declares `gpu_hour_price`.
    pub usd: Option<f64>,
}

pub fn analyse(
    setup: &Setup,
    flops: &TrainingFlops,
    comm: &Communication,
    layer: &LayerActivations,
) -> Option<(Throughput, Cost)> {
    // The linear layers run at the precision's peak; under fp8_mixed the attention core, the
    // output layer and the MFU denominator use the bf16 peak (FP8_CAST_BYTES_PER_ELEMENT).
    let linear_peak = setup.peak_flops()?;
    let fp8 = setup.precision == super::setup::Precision::Fp8Mixed;
    let peak = if fp8 {
        setup.hardware.peak_bf16.unwrap_or(linear_peak)
    } else {
        linear_peak
    };
    let par = &setup.parallel;
    // The narrowest side of a layer's matmuls on one GPU: the hidden width, split by tensor
    // parallelism for the sharded ones.
    let dim = setup.shape.hidden / par.tensor;
    let efficiency = matmul_efficiency(&setup.hardware.arch)
        * size_efficiency(dim, setup.hardware.matmul_half_dim);
    let f = &flops.forward;
    // Per token of one layer: forward + backward, plus what recomputation runs again.
    // Forward + backward (3 passes) and what recomputation runs again, as linear-layer and
    // attention-core FLOPs (they may run at different peaks).
    let (recompute_linear, recompute_attention) = match par.recompute {
        Recompute::Full => (f.layer_matmul, f.layer_attention),
        Recompute::Selective if !par.flash_attention => (0.0, f.layer_attention),
        Recompute::SelectiveOp => (super::flops::selective_op_recomputed(setup), 0.0),
        _ => (0.0, 0.0),
    };
    let layer_linear = 3.0 * f.layer_matmul + recompute_linear;
    let layer_attention = 3.0 * f.layer_attention + recompute_attention;
    // Tokens each GPU processes per step: its data-parallel share, split by tensor and context.
    let tokens_per_gpu = setup.batch_tokens / par.data;
    let sequences_per_gpu = tokens_per_gpu / setup.seq_len();
    let split = par.tensor * par.context;
    let stages = setup.stage_layers();
    let p = stages.len();
    // What one layer writes for one micro-batch on one GPU, whatever recomputation keeps.
    let outside = if par.sequence_parallel {
        layer.outside_tp / par.tensor
    } else {
        layer.outside_tp
    };
    let scores = if par.flash_attention {
        0.0
    } else {
        layer.scores
    };
    let written = outside + (layer.inside_tp + scores) / par.tensor;
    let stage_time = |i: usize, layers: f64| {
        let logits = if i == p - 1 { 3.0 * f.logits } else { 0.0 };
        let matmul = (layers * layer_linear / linear_peak
            + (layers * layer_attention + logits) / peak)
            * tokens_per_gpu
            / split
            / efficiency;
        // Element-wise passes over the stored activations, once more in a recomputed forward.
        let passes = MEMORY_PASSES_PER_ACTIVATION
            + if par.recompute == Recompute::Full {
                2.0
            } else {
                0.0
            };
        let logits_bytes = if i == p - 1 {
            LOGITS_PASSES * 4.0 * tokens_per_gpu * setup.shape.vocab / par.tensor
        } else {
            0.0
        };
        let eager = if setup.hardware.arch == "cpu" {
            EAGER_CPU_ELEMENTWISE_FACTOR
        } else {
            1.0
        };
        let casts = if fp8 {
            layers * fp8_cast_bytes(setup, tokens_per_gpu / split)
        } else {
            0.0
        };
        let memory = eager
            * (layers * passes * written * sequences_per_gpu / par.micro_batch
                + logits_bytes
                + casts)
            / setup.hardware.hbm_bytes_per_s;
        (matmul, memory)
    };
    let (compute_s, memory_bound_s) = stages
        .iter()
        .enumerate()
        .map(|(i, l)| stage_time(i, *l))
        .fold((0.0f64, 0.0f64), |acc, x| {
            if x.0 + x.1 > acc.0 + acc.1 {
                x
            } else {
                acc
            }
        });
    let busy = compute_s + memory_bound_s;
    let bubble_fraction = (par.pipeline - 1.0) / (par.virtual_stages * setup.micro_batches());
    let bubble_s = busy * bubble_fraction;
    // Gradient reduction overlaps the backward of the last micro-batch (bucketed all-reduce
    // or reduce-scatter as layers finish, as DDP, FSDP and Megatron-LM's --overlap-grad-reduce
    // do): two thirds of one micro-batch's compute can hide it. ZeRO-2 and ZeRO-3
    // communicate during every micro-batch (analyse/comm.rs), so two thirds of every
    // micro-batch's compute can.
    let hiding = if par.zero >= 2 {
        busy
    } else {
        busy / setup.micro_batches()
    };
    let hide = hiding * 2.0 / 3.0;
    let exposed = comm.tensor.seconds + comm.pipeline.seconds + (comm.data.seconds - hide).max(0.0);
    let step = busy + bubble_s + exposed;
    let world = setup.world();
    let model_flops = flops.model_per_token * setup.batch_tokens;
    let hardware_flops = flops.hardware_per_token * setup.batch_tokens;
    let throughput = Throughput {
        step_time_s: step,
        compute_s,
        memory_bound_s,
        bubble_fraction,
        bubble_s,
        exposed_communication_s: exposed,
        tokens_per_s: setup.batch_tokens / step,
        mfu: model_flops / (step * world * peak),
        mfu_fp8_peak: fp8.then(|| model_flops / (step * world * linear_peak)),
        tflops_per_gpu: model_flops / (step * world) / 1e12,
        hardware_tflops_per_gpu: hardware_flops / (step * world) / 1e12,
        peak_flops: peak,
        matmul_efficiency: efficiency,
    };
    let steps = setup.steps();
    let wall = steps * step;
    let gpu_hours = wall * world / 3600.0;
    let cost = Cost {
        steps,
        wall_clock_s: wall,
        gpu_hours,
        usd: setup.hardware.gpu_hour_price.map(|p| p * gpu_hours),
    };
    Some((throughput, cost))
}

/// Bytes one GPU's FP8 casts move in one layer for `tokens` tokens of one optimizer step
/// (after the tensor and context split): the inputs of the four GEMM groups (QKV, attention
/// output, MLP in, MLP out) in the forward, their output gradients in the backward, and the
/// layer's weights twice per micro-batch (FP8_CAST_BYTES_PER_ELEMENT).
fn fp8_cast_bytes(setup: &Setup, tokens: f64) -> f64 {
    let m = &setup.shape;
    let par = &setup.parallel;
    let q = m.heads * m.head_dim;
    let kv = m.kv_heads * m.head_dim;
    let mlp_in = if m.gated_ffn {
        2.0 * m.ffn_hidden
    } else {
        m.ffn_hidden
    };
    let forward = m.hidden + q + m.hidden + m.ffn_hidden;
    let backward = (q + 2.0 * kv) + m.hidden + mlp_in + m.hidden;
    let weights =
        (m.hidden * (q + 2.0 * kv) + q * m.hidden + m.hidden * mlp_in + m.ffn_hidden * m.hidden)
            / par.tensor;
    let micro_batches = setup.micro_batches();
    FP8_CAST_BYTES_PER_ELEMENT * ((forward + backward) * tokens + 2.0 * weights * micro_batches)
}
