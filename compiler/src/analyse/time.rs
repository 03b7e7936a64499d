//! Step time, throughput, MFU, wall clock and cost.

use super::comm::Communication;
use super::flops::TrainingFlops;
use super::memory::LayerActivations;
use super::ops::{self, Calibration, Gemm};
use super::setup::{Recompute, Setup};
use serde::Serialize;

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
/// n½)). 1 for a datasheet GPU, whose GEMMs are timed by shape (ops.rs).
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
    /// The engine the prediction assumes (`engine =`).
    pub engine: String,
    /// GEMM and attention-kernel time of the slowest pipeline stage (ops.rs).
    pub compute_s: f64,
    /// Of which the attention core (FlashAttention-style kernels, causal).
    pub attention_s: f64,
    /// Memory-bound element-wise time of that stage.
    pub memory_bound_s: f64,
    /// Pipeline bubble: (p − 1)/m of the compute, (p − 1)/(v·m) interleaved.
    pub bubble_fraction: f64,
    pub bubble_s: f64,
    /// Communication on the critical path (tensor and pipeline all of it; data what the
    /// backward of the last micro-batch does not hide).
    pub exposed_communication_s: f64,
    /// The same per dimension (data, tensor, pipeline, context); `kiln report` draws it. Not
    /// serialised: the plan's analysis and `kiln explain --format json` keep their fields.
    #[serde(skip)]
    pub exposed_per_dimension: ExposedCommunication,
    /// Host-link transfers of offloaded activations (`offload_layers`) the compute does not
    /// hide.
    pub offload_exposed_s: f64,
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
    /// The share of the peak the layers' GEMMs reach on average (FLOPs over time).
    pub matmul_efficiency: f64,
    /// How far predictions for this engine and arch were from measured runs, each predicted
    /// with constants fitted without its source; absent where none was validated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub band: Option<Band>,
}

/// Communication on the critical path per parallel dimension, seconds per step; the four
/// sum to `exposed_communication_s`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExposedCommunication {
    pub data_s: f64,
    pub tensor_s: f64,
    pub pipeline_s: f64,
    pub context_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Cost {
    pub steps: f64,
    pub wall_clock_s: f64,
    pub gpu_hours: f64,
    /// When the cluster declares `gpu_hour_price`.
    pub usd: Option<f64>,
    /// Under a batch ramp, its steps below the full batch (included in the totals above).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramp: Option<RampCost>,
}

/// The part of a run below its full batch (`batch = ramp { … }`): more, shorter steps, each
/// with fewer micro-batches per rank, so a larger pipeline bubble (p − 1)/(v·m).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RampCost {
    pub steps: f64,
    pub tokens: f64,
    pub wall_clock_s: f64,
    /// The step time at the ramp's first batch.
    pub first_step_time_s: f64,
    /// Each batch the run trains at, the full one included, in the order they run.
    pub batches: Vec<BatchTime>,
}

/// Optimizer steps at one global batch of a ramp, and the predicted time of each.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct BatchTime {
    /// Sequences per optimizer step.
    pub global_batch: u64,
    pub steps: u64,
    pub step_time_s: f64,
}

/// The run's cost under a batch ramp: Σ over its batches of steps × that batch's step time,
/// each timed by `step_time_s(global batch in sequences)` (the whole step model re-run with
/// that batch's micro-batches per rank; the micro-batch, so the memory peak, is the full
/// batch's). `cost` unchanged without a ramp.
pub fn ramped(setup: &Setup, cost: Cost, step_time_s: impl Fn(u64) -> Option<f64>) -> Cost {
    let Some(by_batch) = setup.ramp_steps() else {
        return cost;
    };
    let full = (setup.batch_tokens / setup.seq_len()) as u64;
    let (mut steps, mut wall) = (0.0, 0.0);
    let mut ramp = RampCost {
        steps: 0.0,
        tokens: 0.0,
        wall_clock_s: 0.0,
        first_step_time_s: 0.0,
        batches: Vec::new(),
    };
    for (batch, n) in by_batch {
        let Some(t) = step_time_s(batch) else {
            return cost;
        };
        ramp.batches.push(BatchTime {
            global_batch: batch,
            steps: n,
            step_time_s: t,
        });
        let (n, seconds) = (n as f64, n as f64 * t);
        steps += n;
        wall += seconds;
        if batch != full {
            if ramp.steps == 0.0 {
                ramp.first_step_time_s = t;
            }
            ramp.steps += n;
            ramp.tokens += n * batch as f64 * setup.seq_len();
            ramp.wall_clock_s += seconds;
        }
    }
    let world = setup.world();
    let gpu_hours = wall * world / 3600.0;
    Cost {
        steps,
        wall_clock_s: wall,
        gpu_hours,
        usd: setup.hardware.gpu_hour_price.map(|p| p * gpu_hours),
        ramp: Some(ramp),
    }
}

/// Passes over the fp32 logits of a micro-batch with a fused cross-entropy (Megatron-LM's
/// `--cross-entropy-loss-fusion`): the output matmul writes them and the fused kernel reads
/// them once, writing their gradient in place.
pub const LOGITS_PASSES_FUSED: f64 = 2.0;

/// The constants fitted on the measured runs, with what they were fitted on and the error
/// bands the validation measured (`stdlib/fitted.json`, written by tests/validation.rs).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Fitted {
    pub calibration: Calibration,
    pub fitted_on: String,
    pub bands: Vec<Band>,
    /// The memory model's fitted constant and its validated band.
    #[serde(default)]
    pub memory: MemoryFit,
}

/// What `kiln validate` fitted and measured for the memory model (memory.rs).
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize, Serialize, schemars::JsonSchema)]
pub struct MemoryFit {
    /// The caching allocator's reserved bytes beyond the allocated ones, as a share of one
    /// micro-batch's activations ([`super::memory::analyse_with`]).
    pub fragmentation: f64,
    pub fitted_on: String,
    /// The 80th percentile of |predicted / measured − 1| over the measured peaks, each
    /// predicted with the fragmentation fitted without its source; `runs` of them.
    pub relative: f64,
    pub runs: usize,
}

/// How far kiln's throughput predictions were from measured runs of one engine on one arch,
/// each predicted with constants fitted without its source (leave-one-source-out).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, Serialize, schemars::JsonSchema)]
pub struct Band {
    pub engine: String,
    pub arch: String,
    /// The 80th percentile of |predicted / measured − 1| over those runs.
    pub relative: f64,
    pub runs: usize,
}

/// The constants kiln ships with.
pub fn fitted() -> &'static Fitted {
    static FITTED: std::sync::OnceLock<Fitted> = std::sync::OnceLock::new();
    FITTED.get_or_init(|| {
        serde_json::from_str(include_str!("../../../stdlib/fitted.json"))
            .expect("fitted.json is valid")
    })
}

pub fn analyse(
    setup: &Setup,
    flops: &TrainingFlops,
    comm: &Communication,
    layer: &LayerActivations,
) -> Option<(Throughput, Cost)> {
    analyse_with(setup, flops, comm, layer, &fitted().calibration)
}

/// Step time with the given constants (the validation fits them).
pub fn analyse_with(
    setup: &Setup,
    flops: &TrainingFlops,
    comm: &Communication,
    layer: &LayerActivations,
    cal: &Calibration,
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
    let hw = &setup.hardware;
    let cpu = hw.arch == "cpu";
    let profile = setup.profile;
    let micro_batches = setup.micro_batches();
    // Tokens one GPU's layer processes per micro-batch: the context split shortens the
    // sequence; tensor parallelism splits the weights, not the tokens.
    let tokens = par.micro_batch * setup.seq_len() / par.context;
    let f = &flops.forward;

    // One layer, one micro-batch: GEMMs forward, backward and what recompute runs again.
    let full_share = setup.full_recompute_share();
    let recomputed_share = match par.recompute {
        Recompute::Full => full_share,
        Recompute::SelectiveOp => super::flops::selective_op_recomputed(setup) / f.layer_matmul,
        _ => 0.0,
    };
    let gemm = |g: &Gemm, peak: f64| -> f64 {
        if cpu {
            // A CPU's peak is `kiln calibrate`'s measured matmul rate; its shapes enter
            // through Hockney's n½ of the hidden width.
            let dim = setup.shape.hidden / par.tensor;
            g.flops() / (peak * size_efficiency(dim, hw.matmul_half_dim))
        } else {
            ops::gemm_seconds(g, setup, peak, cal)
        }
    };
    let layer_gemms = ops::layer_gemms(setup, tokens);
    let layer_gemm_flops: f64 =
        (3.0 + recomputed_share) * layer_gemms.iter().map(Gemm::flops).sum::<f64>();
    let layer_gemm_s: f64 = layer_gemms
        .iter()
        .map(|g| {
            let [dgrad, wgrad] = g.backward();
            gemm(g, linear_peak) * (1.0 + recomputed_share)
                + gemm(&dgrad, linear_peak)
                + gemm(&wgrad, linear_peak)
        })
        .sum();
    // The attention core. FlashAttention skips the masked half (causal) and runs the
    // backward at 2.5 forwards (it recomputes the scores); recompute adds a forward. Without
    // it (or on a CPU, whose kernels compute the whole masked square) the scores are two
    // batched matmuls over the full s × s, three times.
    let attention_recompute = match par.recompute {
        Recompute::Full => full_share,
        Recompute::Selective if !par.flash_attention => 1.0,
        _ => 0.0,
    };
    let attention_forward = ops::attention_forward_flops(setup);
    let layer_attention_s = if par.flash_attention && !cpu {
        let rate = peak
            * ops::attention_efficiency(
                profile.attention,
                &hw.arch,
                setup.seq_len(),
                setup.shape.head_dim,
                ops::measured_flash2(hw),
            );
        (3.5 + attention_recompute) * attention_forward / rate
    } else {
        let full = 2.0 * attention_forward;
        let rate = if cpu {
            peak * size_efficiency(setup.shape.hidden / par.tensor, hw.matmul_half_dim)
        } else {
            peak * ops::matmul_ceiling(hw) * cal.gemm_fraction
        };
        (3.0 + attention_recompute) * full / rate
    };
    let bandwidth = hw.hbm_bytes_per_s * if cpu { 1.0 } else { cal.hbm_fraction };
    // Element-wise kernels of one layer and one micro-batch, each at least the kernel floor.
    let layer_kernels_s: f64 = if cpu {
        0.0
    } else {
        let e = setup.activation_bytes();
        ops::layer_elementwise_kernels(setup, &profile)
            .iter()
            .map(|elements| (elements * tokens * e / bandwidth).max(cal.kernel_floor_s))
            .sum::<f64>()
            * ops::elementwise_passes(setup)
    };
    // The rest of one layer's element-wise bytes for one micro-batch.
    let layer_memory_bytes = if cpu {
        cpu_layer_bytes(setup, layer)
    } else {
        let scores = if par.flash_attention {
            0.0
        } else {
            MEMORY_PASSES_PER_ACTIVATION * layer.scores / par.tensor
        };
        let casts = if fp8 {
            fp8_cast_bytes(setup, tokens / par.tensor) / micro_batches
        } else {
            0.0
        };
        scores + casts
    };
    let logits_gemm = Gemm {
        m: tokens,
        k: setup.shape.hidden,
        n: setup.shape.vocab / par.tensor,
    };
    let [logits_dgrad, logits_wgrad] = logits_gemm.backward();
    let logits_s = gemm(&logits_gemm, peak) + gemm(&logits_dgrad, peak) + gemm(&logits_wgrad, peak);
    let logits_passes = if profile.fused_cross_entropy && !cpu {
        LOGITS_PASSES_FUSED
    } else {
        LOGITS_PASSES
    };
    let logits_bytes = logits_passes * 4.0 * tokens * setup.shape.vocab / par.tensor
        * if cpu {
            EAGER_CPU_ELEMENTWISE_FACTOR
        } else {
            1.0
        };

    // The embedding norm (BLOOM) on the first stage: one norm kernel over the embedding
    // output per micro-batch, in the forward and the two of its backward (ops.rs's count).
    let embedding_norm_s = if setup.shape.embedding_norm && !cpu {
        let elements = 2.0 * setup.shape.hidden * tokens;
        3.0 * (elements * setup.activation_bytes() / bandwidth).max(cal.kernel_floor_s)
    } else {
        0.0
    };

    let stages = setup.stage_layers();
    let params = setup.stage_params();
    let p = stages.len();
    let optimizer_shards = if par.zero >= 1 {
        par.data * par.context
    } else {
        1.0
    };
    // (compute, memory-bound) seconds of one stage for the whole step.
    let stage_time = |i: usize| -> (f64, f64) {
        let (layers, local_params) = (stages[i], params[i] / par.tensor);
        let last = i == p - 1;
        let compute = micro_batches
            * (layers * (layer_gemm_s + layer_attention_s) + if last { logits_s } else { 0.0 });
        let accumulation = if profile.grad_accumulation_fusion || cpu {
            0.0
        } else {
            (micro_batches - 1.0) * ops::GRAD_ACCUMULATION_BYTES_PER_PARAM * local_params
        };
        let optimizer = if cpu {
            0.0
        } else {
            ops::OPTIMIZER_BYTES_PER_PARAM * local_params / optimizer_shards
        };
        let bytes = micro_batches
            * (layers * layer_memory_bytes + if last { logits_bytes } else { 0.0 })
            + accumulation
            + optimizer;
        let embedding_norm = if i == 0 { embedding_norm_s } else { 0.0 };
        (
            compute,
            bytes / bandwidth + micro_batches * (layers * layer_kernels_s + embedding_norm),
        )
    };
    let (slowest, (compute_s, memory_bound_s)) =
        (0..p)
            .map(|i| (i, stage_time(i)))
            .fold((0, (0.0f64, 0.0f64)), |acc, x| {
                if x.1 .0 + x.1 .1 > acc.1 .0 + acc.1 .1 {
                    x
                } else {
                    acc
                }
            });
    let attention_s = micro_batches * stages[slowest] * layer_attention_s;
    let busy = compute_s + memory_bound_s;
    let bubble_fraction = (par.pipeline - 1.0) / (par.virtual_stages * micro_batches);
    let bubble_s = busy * bubble_fraction;
    // Gradient reduction overlaps the backward of the last micro-batch where the engine
    // buckets it (DDP, FSDP, Megatron-LM's --overlap-grad-reduce, DeepSpeed's overlap_comm):
    // two thirds of one micro-batch's compute can hide it. ZeRO-2 and ZeRO-3 communicate
    // during every micro-batch (analyse/comm.rs), so two thirds of every micro-batch's
    // compute can, if the engine prefetches ZeRO-3's gathers. kiln-train reduces after the
    // backward: nothing hidden.
    // With ZeRO-1 and parameter prefetch (Megatron's distributed optimizer with
    // --overlap-param-gather) the parameter all-gather, half the traffic, also overlaps the
    // first micro-batch's forward: the whole of one micro-batch can hide it.
    let hide = match (
        setup.communication_zero(),
        profile.grad_reduce_overlap,
        profile.param_prefetch,
    ) {
        (_, false, _) => 0.0,
        (3.., _, false) => 0.0,
        (2.., _, _) => busy * 2.0 / 3.0,
        (1, _, true) => busy / micro_batches,
        _ => busy / micro_batches * 2.0 / 3.0,
    };
    // Tensor-parallel collectives overlapped with the GEMMs beside them (Transformer Engine's
    // userbuffers) are exposed only where they outlast them.
    let tensor_exposed = if profile.tp_comm_overlap {
        (comm.tensor.seconds - compute_s).max(0.0)
    } else {
        comm.tensor.seconds
    };
    // Ring attention overlaps each K/V exchange with the attention of the block in hand.
    let context_exposed = (comm.context.seconds - attention_s).max(0.0);
    // ZeRO-3 / FSDP with prefetch: each block's all-gather runs during the previous block's
    // forward, and its gather and gradient reduce-scatter during its own backward; what a
    // block's compute does not cover is exposed, block by block (Zhao et al. 2023, "PyTorch
    // FSDP", Sec. 3.3, backward and forward prefetch). The root's gathers (embedding, output
    // layer) start each micro-batch with nothing to hide behind.
    let data_exposed = if par.zero >= 3 && profile.param_prefetch && comm.data.bytes > 0.0 {
        let seconds_per_byte = comm.data.seconds / comm.data.bytes;
        let shards = par.data * par.context;
        let ring = (shards - 1.0) / shards;
        let block_gather_s =
            setup.layer_params() / par.tensor * setup.activation_bytes() * ring * seconds_per_byte;
        let layer_s =
            layer_gemm_s + layer_attention_s + layer_memory_bytes / bandwidth + layer_kernels_s;
        let per_block = (block_gather_s - layer_s / 3.0).max(0.0)
            + (2.0 * block_gather_s - layer_s * 2.0 / 3.0).max(0.0);
        let layers = stages.iter().copied().fold(0.0, f64::max);
        let blocks_s = micro_batches * layers * 3.0 * block_gather_s;
        let root_s = (comm.data.seconds - blocks_s).max(0.0);
        micro_batches * layers * per_block + root_s
    } else {
        (comm.data.seconds - hide).max(0.0)
    };
    // Offloaded activations cross the host link twice a micro-batch: each layer's stash to
    // host memory during the next layer's forward, and back during the backward of the layer
    // after it (Transformer Engine's CPU offload copies on a side stream); what a layer's
    // forward (a third of its time) or backward (two thirds)
    // does not cover is exposed.
    let offload_exposed_s = match setup.hardware.host_bytes_per_s {
        Some(host) if setup.offloaded_layers(stages[slowest]) > 0.0 => {
            let transfer_s = super::memory::layer_activations(setup).stored / host;
            let layer_s =
                layer_gemm_s + layer_attention_s + layer_memory_bytes / bandwidth + layer_kernels_s;
            micro_batches
                * setup.offloaded_layers(stages[slowest])
                * ((transfer_s - layer_s / 3.0).max(0.0)
                    + (transfer_s - layer_s * 2.0 / 3.0).max(0.0))
        }
        _ => 0.0,
    };
    let exposed = tensor_exposed + context_exposed + comm.pipeline.seconds + data_exposed;
    let step = busy + bubble_s + exposed + offload_exposed_s;
    let world = setup.world();
    let model_flops = flops.model_per_token * setup.batch_tokens;
    let hardware_flops = flops.hardware_per_token * setup.batch_tokens;
    let throughput = Throughput {
        engine: setup.engine.name().to_string(),
        step_time_s: step,
        attention_s,
        compute_s,
        memory_bound_s,
        bubble_fraction,
        bubble_s,
        exposed_communication_s: exposed,
        exposed_per_dimension: ExposedCommunication {
            data_s: data_exposed,
            tensor_s: tensor_exposed,
            pipeline_s: comm.pipeline.seconds,
            context_s: context_exposed,
        },
        offload_exposed_s,
        tokens_per_s: setup.batch_tokens / step,
        mfu: model_flops / (step * world * peak),
        mfu_fp8_peak: fp8.then(|| model_flops / (step * world * linear_peak)),
        tflops_per_gpu: model_flops / (step * world) / 1e12,
        hardware_tflops_per_gpu: hardware_flops / (step * world) / 1e12,
        peak_flops: peak,
        matmul_efficiency: layer_gemm_flops / (layer_gemm_s * linear_peak),
        band: band(setup),
    };
    let steps = setup.steps();
    let wall = steps * step;
    let gpu_hours = wall * world / 3600.0;
    let cost = Cost {
        steps,
        wall_clock_s: wall,
        gpu_hours,
        usd: setup.hardware.gpu_hour_price.map(|p| p * gpu_hours),
        ramp: None,
    };
    Some((throughput, cost))
}

/// The validated band for the setup's engine and arch.
fn band(setup: &Setup) -> Option<Band> {
    let engine = setup.engine.name();
    fitted()
        .bands
        .iter()
        .find(|b| b.engine == engine && b.arch == setup.hardware.arch)
        .cloned()
}

/// Element-wise bytes of one layer and one micro-batch on a CPU: every stored activation
/// written and read in the forward and its gradient in the backward
/// (MEMORY_PASSES_PER_ACTIVATION, two more passes in a recomputed forward), times
/// EAGER_CPU_ELEMENTWISE_FACTOR for libtorch's unfused CPU ops.
fn cpu_layer_bytes(setup: &Setup, layer: &LayerActivations) -> f64 {
    let par = &setup.parallel;
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
    let passes = MEMORY_PASSES_PER_ACTIVATION + 2.0 * setup.full_recompute_share();
    EAGER_CPU_ELEMENTWISE_FACTOR * passes * written
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
