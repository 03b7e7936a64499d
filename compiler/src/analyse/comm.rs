//! Communication per optimizer step per GPU, per parallel dimension, and the link it crosses.

use super::setup::{Recompute, Setup};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// No traffic (the dimension has size 1).
    None,
    /// Inside a node (NVLink / NVSwitch, Infinity Fabric).
    Nvlink,
    /// Across nodes (InfiniBand, RoCE).
    Network,
}

/// Bytes one GPU sends in a dimension per optimizer step, and how long they take on its link.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Traffic {
    pub bytes: f64,
    pub link: Link,
    /// Collective (or point-to-point) operations per step, each paying the link's latency.
    pub operations: f64,
    /// operations × latency + bytes / bandwidth (Hockney's α–β model).
    pub seconds: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Communication {
    pub data: Traffic,
    pub tensor: Traffic,
    pub pipeline: Traffic,
    /// Context parallelism's ring attention: each rank's K and V blocks passed around the
    /// ring, overlapped with the attention of the block in hand (time.rs).
    pub context: Traffic,
}

/// The share of a link's bandwidth NCCL collectives reach: an all-reduce inside an A100 node
/// measures 235 GB/s of bus bandwidth on 300 GB/s NVLink (stas00/ml-engineering
/// network/README.md; published.yaml hw.measured_efficiency). Applied to every link, for
/// want of a measurement of the others.
pub const COLLECTIVE_EFFICIENCY: f64 = 235.0 / 300.0;

/// The start-up latency α of one collective over `n` ranks: NCCL's small-message all-reduce
/// takes about 10 µs inside an 8-GPU NVLink node and tens of µs across nodes, growing with
/// the logarithm of the ranks for its tree algorithm (nccl-tests all_reduce_perf at 8 B,
/// NVIDIA's published DGX figures; Sanders et al. 2009 for the log n of trees). An
/// assumption of that order: α = ALPHA_PER_LEVEL · log2(n) per link kind.
pub const NVLINK_ALPHA_PER_LEVEL_S: f64 = 3e-6;
pub const NETWORK_ALPHA_PER_LEVEL_S: f64 = 8e-6;

/// Gradient buckets: PyTorch DDP's default `bucket_cap_mb` = 25 (torch/nn/parallel/
/// distributed.py); every bucket is one collective.
pub const GRADIENT_BUCKET_BYTES: f64 = 25.0 * 1024.0 * 1024.0;

/// A ring all-reduce sends 2(n−1)/n of the buffer from every member (Patarasuk & Yuan 2009);
/// a reduce-scatter or an all-gather sends (n−1)/n.
fn ring(n: f64) -> f64 {
    if n > 1.0 {
        (n - 1.0) / n
    } else {
        0.0
    }
}

pub fn analyse(setup: &Setup) -> Communication {
    let par = &setup.parallel;
    let m = &setup.shape;
    let hw = &setup.hardware;
    let e = setup.activation_bytes();
    let (t, p, c, d) = (par.tensor, par.pipeline, par.context, par.data);
    // Megatron-LM orders ranks tensor fastest, then context, then data, then pipeline
    // (parallel_state.py), so a data-parallel group spans t·c·d consecutive ranks and
    // pipeline neighbours are t·c·d ranks apart.
    let link = |span: f64, size: f64| match size {
        s if s <= 1.0 => Link::None,
        _ if span <= hw.gpus_per_node => Link::Nvlink,
        _ => Link::Network,
    };
    // A collective across nodes moves its data over the NICs of every member in the node:
    // in NCCL's rings and trees only the hops between nodes use the network, so a group
    // with g members per node reaches g NICs' bandwidth (nccl-tests' multi-node all-reduce
    // bus bandwidth is about the node's aggregate NIC bandwidth, not one NIC's), capped by
    // NVLink. `stride` is the rank distance between neighbours of the group.
    let bandwidth = |l: Link, size: f64, stride: f64| {
        COLLECTIVE_EFFICIENCY
            * match l {
                Link::Nvlink => hw.nvlink_bytes_per_s,
                _ => {
                    let per_node = (hw.gpus_per_node / stride).floor().clamp(1.0, size);
                    (per_node * hw.network_bytes_per_s).min(hw.nvlink_bytes_per_s)
                }
            }
    };
    let traffic = |bytes: f64, l: Link, operations: f64, ranks: f64, stride: f64| Traffic {
        bytes,
        link: l,
        operations,
        seconds: match l {
            Link::None => 0.0,
            Link::Nvlink => {
                operations * NVLINK_ALPHA_PER_LEVEL_S * ranks.log2()
                    + bytes / bandwidth(l, ranks, stride)
            }
            Link::Network => {
                operations * NETWORK_ALPHA_PER_LEVEL_S * ranks.log2()
                    + bytes / bandwidth(l, ranks, stride)
            }
        },
    };

    // Data: gradients of the GPU's shard of the model, per optimizer step of m micro-batches.
    // ZeRO 0 all-reduces them once, 2(n−1)/n·Φ; ZeRO-1 reduce-scatters gradients and
    // all-gathers parameters, the same volume (Rajbhandari et al. 2020, Sec. 7.2). ZeRO-2
    // keeps only its shard of the gradients, so each micro-batch's gradients are
    // reduce-scattered when its backward ends (DeepSpeed's stage 2 reduces in every
    // backward; kiln-train too): (m + 1)(n−1)/n·Φ. ZeRO-3 all-gathers each block's
    // parameters for every micro-batch's forward and again for its backward and
    // reduce-scatters their gradients, 3m(n−1)/n·Φ_blocks; the parameters outside the blocks
    // (embeddings, final norm, output projection) are gathered once for the forward and kept
    // through the backward, 2m(n−1)/n·Φ_root, as PyTorch FSDP treats its root unit (Zhao et
    // al. 2023, "PyTorch FSDP", Sec. 3.2) and kiln-train does. With m = 1 and no root these
    // are the paper's 2Φ and 3Φ. The most loaded stage counts.
    let shards = d * c;
    let m_batches = setup.micro_batches();
    let r = setup.gradient_reduce_bytes();
    let per_layer = setup.layer_params();
    let local_max = setup.stage_params().into_iter().fold(0.0, f64::max) / t;
    let layers_max = setup.stage_layers().into_iter().fold(0.0, f64::max);
    // Collectives: one per gradient bucket (ZeRO-1 also gathers the parameters back, ZeRO-2
    // reduces every micro-batch); ZeRO-3 three per block per micro-batch and two for the root.
    let buckets = (local_max * e / GRADIENT_BUCKET_BYTES).ceil().max(1.0);
    let zero = setup.communication_zero();
    let data_operations = match zero {
        0 => buckets,
        1 => 2.0 * buckets,
        2 => (m_batches + 1.0) * buckets,
        _ => m_batches * (3.0 * layers_max + 2.0),
    };
    let data_bytes = setup
        .stage_params()
        .into_iter()
        .zip(setup.stage_layers())
        .map(|(params, layers)| {
            let local = params / t;
            let blocks = layers * per_layer / t;
            let root = local - blocks;
            // Gradients travel in the engine's reduce precision `r`, parameters in `e`.
            let sent = match zero {
                0 => 2.0 * local * r,
                1 => local * (r + e),
                2 => local * (m_batches * r + e),
                _ => m_batches * (blocks * (2.0 * e + r) + root * (e + r)),
            };
            sent * ring(shards)
        })
        .fold(0.0, f64::max);

    // Tensor: Megatron-LM all-reduces the activations twice per layer in the forward (after
    // attention and after the MLP) and twice in the backward (Shoeybi et al. 2019, Sec. 3,
    // Fig. 4); with sequence parallelism each all-reduce becomes an all-gather plus a
    // reduce-scatter, the same volume (Korthikanti et al. 2022, Sec. 4.2.2). Full recompute
    // runs the forward's two again. The parallel block adds the two row-parallel outputs
    // before reducing them, one all-reduce in the forward (PaLM, Chowdhery et al. 2022,
    // Sec. 2 "Parallel Layers"; GPT-NeoX's megatron/model/transformer.py,
    // ParallelTransformerLayer with gpt_j_residual: the attention and MLP output layers
    // built with parallel_output, one reduce_from_model_parallel_region of their sum), while
    // its backward still all-reduces the input gradients of the two column-parallel layers
    // (each copy_to_model_parallel_region): three, and one more under full recompute.
    let sb = m.seq_len / c * par.micro_batch;
    let activation = sb * m.hidden * e;
    let forward = if m.block.is_parallel() { 1.0 } else { 2.0 };
    let per_layer = forward
        + 2.0
        + if par.recompute == Recompute::Full {
            forward
        } else {
            0.0
        };
    let layers = setup.stage_layers().into_iter().fold(0.0, f64::max);
    let tensor_bytes = layers * per_layer * 2.0 * ring(t) * activation * setup.micro_batches();
    // An all-reduce, or with sequence parallelism an all-gather and a reduce-scatter.
    let tensor_operations =
        layers * per_layer * setup.micro_batches() * if par.sequence_parallel { 2.0 } else { 1.0 };

    // Pipeline: each micro-batch sends its activations forward and their gradients backward
    // across every stage boundary, once per model chunk with interleaving; with the
    // scatter/gather optimisation each tensor rank sends 1/t of it (Narayanan et al. 2021,
    // Sec. 4.1).
    let pipeline_bytes = if p > 1.0 {
        2.0 * setup.micro_batches() * par.virtual_stages * activation / t
    } else {
        0.0
    };

    // Context: ring attention (Liu et al. 2023, "Ring Attention"; Megatron-LM's context
    // parallelism) passes each rank's K and V blocks to its neighbour c − 1 times in the
    // forward; the backward passes them again with their gradients (twice the forward's
    // bytes), and full recompute repeats the forward's.
    let kv_block = 2.0 * sb * m.kv_heads * m.head_dim / t * e;
    let passes = 3.0
        + if par.recompute == Recompute::Full {
            1.0
        } else {
            0.0
        };
    let context_steps = (c - 1.0).max(0.0) * layers * setup.micro_batches();
    let context_bytes = passes * context_steps * kv_block;

    // Pipeline: a send and a receive per micro-batch and model chunk each way.
    let pipeline_operations = 2.0 * setup.micro_batches() * par.virtual_stages;
    Communication {
        data: traffic(
            data_bytes,
            link(t * c * d, shards),
            data_operations,
            shards,
            t,
        ),
        tensor: traffic(tensor_bytes, link(t, t), tensor_operations, t, 1.0),
        pipeline: traffic(
            pipeline_bytes,
            link(t * c * d + 1.0, p),
            pipeline_operations,
            2.0,
            t * c * d,
        ),
        context: traffic(
            context_bytes,
            link(t * c, c),
            passes * context_steps,
            2.0,
            t,
        ),
    }
}
