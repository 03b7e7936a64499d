//! One transformer layer on one GPU, op by op: every GEMM with its (m, n, k), the attention
//! core as a FlashAttention kernel, the element-wise work as bytes moved — and the rate each
//! reaches on a given architecture.

use super::engine::{AttentionKernel, Profile};
use super::setup::{Hardware, Setup};
use serde::{Deserialize, Serialize};

/// The constants fitted on measured runs (tests/validation.rs fits them leave-one-source-out
/// and writes `stdlib/fitted.json` with what they were fitted on).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Calibration {
    /// The share of the arch's maximum achievable matmul rate ([`gemm_ceiling`]) that the
    /// GEMMs of a training step reach once wave quantisation is accounted for: the kernel
    /// choice, clocks under sustained load and interference from concurrent communication
    /// kernels that a single-GEMM benchmark does not see.
    pub gemm_fraction: f64,
    /// The share of the datasheet HBM bandwidth that element-wise kernels reach.
    pub hbm_fraction: f64,
    /// The shortest a GPU kernel takes in a training step, in seconds: launch latency and
    /// the host's per-op work in eager PyTorch, which small kernels cannot hide.
    pub kernel_floor_s: f64,
}

/// A matrix multiply C[m × n] = A[m × k] · B[k × n].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    pub m: f64,
    pub n: f64,
    pub k: f64,
}

impl Gemm {
    pub fn flops(&self) -> f64 {
        2.0 * self.m * self.n * self.k
    }
    /// The two GEMMs of its backward: the input gradient dA = dC · Bᵀ (m × k, reducing over
    /// n) and the weight gradient dB = Aᵀ · dC (k × n, reducing over m).
    pub fn backward(&self) -> [Gemm; 2] {
        [
            Gemm {
                m: self.m,
                n: self.k,
                k: self.n,
            },
            Gemm {
                m: self.k,
                n: self.n,
                k: self.m,
            },
        ]
    }
}

/// The maximum achievable dense matmul rate as a share of the datasheet peak, measured by
/// Bekman's mamf-finder over many shapes with today's cuBLAS / hipBLASLt
/// (stas00/ml-engineering compute/accelerator/README.md; published.yaml
/// hw.measured_efficiency): A100 0.869, H100 0.803, B200 0.776, MI300X 0.514. Volta has no
/// measurement: Ampere's value, an assumption. A CPU's peak is what `kiln calibrate`
/// measured with the same matmuls: 1.
pub fn gemm_ceiling(arch: &str) -> f64 {
    match arch {
        "ampere" | "volta" => 0.869,
        "hopper" => 0.803,
        "blackwell" => 0.776,
        "cpu" => 1.0,
        _ => 0.514,
    }
}

/// The GPU's matmul ceiling as a share of its bf16 peak: measured on it by `kiln calibrate
/// --device cuda` where its preset says (`matmul_rate`), else the arch's published one
/// ([`gemm_ceiling`]). The share applies to the fp16 and fp8 peaks as well.
pub fn matmul_ceiling(hw: &Hardware) -> f64 {
    match (hw.matmul_rate, hw.peak_bf16) {
        (Some(rate), Some(peak)) if peak > 0.0 => (rate / peak).min(1.0),
        _ => gemm_ceiling(&hw.arch),
    }
}

/// FlashAttention-2's measured share of the bf16 peak at [`CALIBRATED_ATTENTION_SEQ`]
/// (`attention_rate` from `kiln calibrate --device cuda`), for [`attention_efficiency`].
pub fn measured_flash2(hw: &Hardware) -> Option<f64> {
    match (hw.attention_rate, hw.peak_bf16) {
        (Some(rate), Some(peak)) if peak > 0.0 => Some((rate / peak).min(1.0)),
        _ => None,
    }
}

/// The sequence length at which `kiln calibrate --device cuda` measures attention (the
/// longest of kiln-train's `GPU_ATTENTION_SHAPES`, head dimension 128): a measured
/// `attention_rate` is the rate there, so the long-sequence share is it over the
/// roll-off at this length.
pub const CALIBRATED_ATTENTION_SEQ: f64 = 8192.0;

/// The output tile (rows × columns) of the arch's large bf16 GEMM kernels: 128 × 256 for
/// cuBLAS/CUTLASS on Ampere, Hopper and Blackwell (CUTLASS's default bf16 tile shapes for
/// sm80 and sm90 warp-specialised kernels), 128 × 128 on Volta (its largest tensor-core tile)
/// and 256 × 256 on CDNA3 (hipBLASLt's macro tile for large bf16 GEMMs). An assumption where
/// libraries pick per shape; it sets only the granularity of wave quantisation.
fn tile(arch: &str) -> (f64, f64) {
    match arch {
        "volta" => (128.0, 128.0),
        "cdna3" => (256.0, 256.0),
        _ => (128.0, 256.0),
    }
}

/// The share of the machine a GEMM's tiles keep busy: the output is cut into tiles, the tiles
/// run in waves of one per SM, and the last wave and the ragged tiles at the edges do partial
/// work (NVIDIA, "Matrix Multiplication Background User's Guide", Sec. "Wave Quantization"
/// and "Tile Quantization"). 1 where the SM count is unknown.
pub fn wave_efficiency(g: &Gemm, arch: &str, sms: Option<f64>) -> f64 {
    let Some(sms) = sms else { return 1.0 };
    let (tm, tn) = tile(arch);
    let (rows, cols) = ((g.m / tm).ceil(), (g.n / tn).ceil());
    let tiles = rows * cols;
    if tiles <= 0.0 {
        return 1.0;
    }
    let waves = (tiles / sms).ceil();
    (g.m * g.n) / (waves * sms * tm * tn)
}

/// Seconds for one GEMM: its FLOPs at the calibrated share of the arch's ceiling times its
/// wave efficiency, or the time to move its operands and result through HBM if longer (the
/// roofline, Williams et al. 2009), and never less than the kernel floor.
pub fn gemm_seconds(g: &Gemm, setup: &Setup, peak: f64, cal: &Calibration) -> f64 {
    let hw = &setup.hardware;
    if g.m <= 0.0 || g.n <= 0.0 || g.k <= 0.0 {
        return 0.0;
    }
    let rate = peak * matmul_ceiling(hw) * cal.gemm_fraction * wave_efficiency(g, &hw.arch, hw.sms);
    let bytes = setup.activation_bytes() * (g.m * g.k + g.k * g.n + g.m * g.n);
    (g.flops() / rate)
        .max(bytes / (hw.hbm_bytes_per_s * cal.hbm_fraction))
        .max(cal.kernel_floor_s)
}

/// The forward + backward rate of a causal attention kernel with head dimension 128 on long
/// sequences, as a share of the dense bf16 peak, and the sequence length at which it reaches
/// half of that (its short-sequence roll-off, r = r∞ · s / (s + s½), Hockney's form).
/// FLOPs counted as the kernels' benchmarks count them: the causal half of 4·s²·d forward and
/// 2.5 times that backward (flash-attn's benchmarks/benchmark_flash_attention.py).
/// - FlashAttention-2 on A100: about 190 of 312 TFLOP/s at 16k, 130 at 512 (Dao 2023,
///   "FlashAttention-2", Fig. 4, causal, head dim 128, forward + backward): 0.62, s½ = 250.
/// - FlashAttention-2 on H100: about 335 TFLOP/s at long sequences (Dao 2023, Fig. 7; Shah
///   et al. 2024, "FlashAttention-3", Sec. 1: "only 35 % utilization on H100"): 0.34.
/// - FlashAttention-3 / cuDNN fused attention on H100: forward about 640 TFLOP/s and backward
///   about 1.6 times FlashAttention-2's (Shah et al. 2024, Figs. 5 and 6, causal, head dim
///   128, 16k), together 0.54.
/// - Blackwell and CDNA3: no published table kiln has read; Hopper's shares, an assumption.
/// - The triton kernel: TRITON_SHARE_OF_FLASH2 of FlashAttention-2's rate.
/// - Measured (`measured_flash2`, the GPU's `attention_rate` from `kiln calibrate
///   --device cuda` over its bf16 peak): FlashAttention-2's share on that GPU at [`CALIBRATED_ATTENTION_SEQ`];
///   the other kernels keep their published ratio to it on the arch.
pub fn attention_efficiency(
    kernel: AttentionKernel,
    arch: &str,
    seq: f64,
    head_dim: f64,
    measured_flash2: Option<f64>,
) -> f64 {
    let hopper_class = matches!(arch, "hopper" | "blackwell" | "cdna3");
    let half_seq = 250.0;
    let flash2 = if hopper_class { 0.34 } else { 0.62 };
    let published = match kernel {
        AttentionKernel::FusedHopper if arch != "cdna3" && hopper_class => 0.54,
        // Ampere, and Volta for want of a table.
        _ => flash2,
    };
    let long = match measured_flash2 {
        Some(m) => {
            m / (CALIBRATED_ATTENTION_SEQ / (CALIBRATED_ATTENTION_SEQ + half_seq)) * published
                / flash2
        }
        None => published,
    };
    let long = if kernel == AttentionKernel::Triton {
        long * TRITON_SHARE_OF_FLASH2
    } else {
        long
    };
    // Smaller heads do less work per byte of K and V loaded: head dimension 64 runs at about
    // 0.9 of 128's rate in the same figures; d / (d + 16), normalised at 128, has that shape.
    let head = (head_dim / (head_dim + 16.0)) / (128.0 / 144.0);
    long * seq / (seq + half_seq) * head
}

/// The triton FlashAttention kernel's forward + backward rate as a share of
/// FlashAttention-2's: about 100 against 180 TFLOP/s on A100, causal, head dimension 128
/// (Dao 2023, "FlashAttention-2", Fig. 4, the "Triton" and "FlashAttention-2" curves).
pub const TRITON_SHARE_OF_FLASH2: f64 = 0.55;

/// One layer's forward GEMMs on one GPU for `tokens` tokens (its micro-batch after the
/// context split): QKV, the attention output, the MLP's input (gate and up together when
/// gated) and output, and Transformer-XL's position projection; tensor parallelism splits
/// the columns of the first and the rows of the second of each pair (Shoeybi et al. 2019,
/// Sec. 3).
pub fn layer_gemms(setup: &Setup, tokens: f64) -> Vec<Gemm> {
    let m = &setup.shape;
    let t = setup.parallel.tensor;
    let q = m.heads * m.head_dim;
    let kv = m.kv_heads * m.head_dim;
    let mlp_in = if m.gated_ffn {
        2.0 * m.ffn_hidden
    } else {
        m.ffn_hidden
    };
    let mut gemms = vec![
        Gemm {
            m: tokens,
            k: m.hidden,
            n: (q + 2.0 * kv) / t,
        },
        Gemm {
            m: tokens,
            k: q / t,
            n: m.hidden,
        },
        Gemm {
            m: tokens,
            k: m.hidden,
            n: mlp_in / t,
        },
        Gemm {
            m: tokens,
            k: m.ffn_hidden / t,
            n: m.hidden,
        },
    ];
    if m.relative_positions {
        gemms.push(Gemm {
            m: tokens,
            k: m.hidden,
            n: q / t,
        });
    }
    gemms
}

/// Forward FLOPs of the causal attention core for one micro-batch on one GPU: the causal half
/// of QKᵀ and of the product with V, 2 · 2 · s² · d / 2 per sequence, split by tensor (heads)
/// and context (queries).
pub fn attention_forward_flops(setup: &Setup) -> f64 {
    let m = &setup.shape;
    let par = &setup.parallel;
    2.0 * m.seq_len * m.seq_len * m.heads * m.head_dim * par.micro_batch
        / (par.tensor * par.context)
}

/// The element-wise kernels of one layer's forward on one GPU, each as the elements it
/// moves per token (a read or a write of every element of a tensor counts once):
/// - each norm reads its input and writes its output (one kernel in every engine kiln
///   models): 2h, two per layer, one for the parallel block's shared norm (GPT-J, PaLM);
/// - rotary embeddings on Q and K: fused, one kernel reading and writing them (2(q + kv));
///   eager, the cosine product, rotate-half (slices and a concatenation) and the sine
///   product with their sum: three kernels of 2(q + kv). Partial rotary (`rotary_fraction`
///   r < 1) rotates r of each head: eager, the three kernels on 2r(q + kv) and a
///   concatenation of the rotated and passed-through parts (2(q + kv); Hugging Face's
///   GPT-NeoX and kiln-train); fused, the one kernel still writes the whole of Q and K
///   (Transformer Engine's fused_apply_rotary_pos_emb copies the passed-through part);
/// - each residual add reads two tensors and writes one (3h), with dropout before it a
///   kernel of its own (2h) unless fused (Megatron's bias-dropout-add);
/// - the MLP's activation: GeLU reads and writes f (2f); SwiGLU fused reads 2f and writes f
///   (3f), eager runs SiLU (2f) and then the product (3f).
///
/// The backward of an element-wise op reads the incoming gradient and the saved input and
/// writes the outgoing gradient, and norms reduce their parameter gradients as well: kiln
/// counts it as two kernels of the forward's traffic each (an assumption in the spirit of
/// Korthikanti et al. 2022's count of what each op keeps for its backward).
pub fn layer_elementwise_kernels(setup: &Setup, profile: &Profile) -> Vec<f64> {
    let m = &setup.shape;
    let par = &setup.parallel;
    let t = par.tensor;
    // Sequence parallelism shards the norms, dropouts and residual adds (Korthikanti et al.
    // 2022, Sec. 4.2.2); otherwise every tensor rank repeats them.
    let h = if par.sequence_parallel {
        m.hidden / t
    } else {
        m.hidden
    };
    let (q, kv, f) = (
        m.heads * m.head_dim / t,
        m.kv_heads * m.head_dim / t,
        m.ffn_hidden / t,
    );
    let fused = profile.fused_elementwise;
    let mut kernels = vec![2.0 * h; m.block.norms() as usize];
    kernels.extend([3.0 * h, 3.0 * h]);
    if m.rotary {
        let r = m.rotary_fraction;
        if fused {
            kernels.push(2.0 * (q + kv));
        } else {
            kernels.extend(std::iter::repeat_n(2.0 * r * (q + kv), 3));
            if r < 1.0 {
                kernels.push(2.0 * (q + kv));
            }
        }
    }
    if setup.dropout > 0.0 && !fused {
        kernels.extend([2.0 * h, 2.0 * h]);
    }
    match (m.gated_ffn, fused) {
        (true, true) => kernels.push(3.0 * f),
        (true, false) => kernels.extend([2.0 * f, 3.0 * f]),
        (false, _) => kernels.push(2.0 * f),
    }
    kernels
}

/// Forward-equivalent passes of each element-wise kernel in one training step of a layer:
/// the forward, the two of its backward, and the forward again for the layers full
/// recompute covers.
pub fn elementwise_passes(setup: &Setup) -> f64 {
    3.0 + setup.full_recompute_share()
}

/// Bytes of AdamW's step per parameter it updates: it reads the fp32 parameter, gradient and
/// two moments (16) and writes the parameter and moments (12) and the 16-bit copy the
/// forward uses (2); gradient clipping reads the gradient once more (4) (Loshchilov & Hutter
/// 2019, Algorithm 2; PyTorch's fused AdamW touches each once).
pub const OPTIMIZER_BYTES_PER_PARAM: f64 = 34.0;

/// Bytes per parameter of accumulating one more micro-batch's gradient into the fp32
/// gradient buffer where the engine does not fuse it into the weight-gradient GEMM: read
/// both, write the sum (3 × 4).
pub const GRAD_ACCUMULATION_BYTES_PER_PARAM: f64 = 12.0;

#[cfg(test)]
mod tests {
    use super::*;

    /// A measured FlashAttention-2 rate at the calibrated length is what the model gives back
    /// there, and the fused Hopper kernel keeps its published ratio to it.
    #[test]
    fn a_measured_attention_rate_replaces_the_published_one() {
        let at = |kernel, measured| {
            attention_efficiency(kernel, "hopper", CALIBRATED_ATTENTION_SEQ, 128.0, measured)
        };
        let measured = at(AttentionKernel::FlashAttention2, Some(0.30));
        assert!((measured - 0.30).abs() < 1e-12, "{measured}");
        let fused = at(AttentionKernel::FusedHopper, Some(0.30));
        assert!((fused / measured - 0.54 / 0.34).abs() < 1e-12);
        let published = at(AttentionKernel::FlashAttention2, None);
        assert!((published - 0.34 * 8192.0 / 8442.0).abs() < 1e-12);
    }
}
