//! Engine profiles: what each training engine fuses, which attention kernel it runs and what
//! it overlaps — the facts about its code that the step-time model (time.rs) reads.

/// A training engine (`engine =` in an experiment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Engine {
    /// This project's runtime (`kiln run`: kiln-train on libtorch, eager).
    Kiln,
    Megatron,
    /// NVIDIA NeMo: Megatron-Core underneath, with its performance recipes' overlaps on.
    Nemo,
    Torchtitan,
    Deepspeed,
    /// MosaicML Composer with FSDP (llm-foundry).
    Composer,
    /// Hugging Face nanotron (the Ultra-Scale Playbook's sweep).
    Nanotron,
}

impl Engine {
    pub fn from_name(name: &str) -> Option<Engine> {
        Some(match name {
            "kiln" => Engine::Kiln,
            "megatron" => Engine::Megatron,
            "nemo" => Engine::Nemo,
            "torchtitan" => Engine::Torchtitan,
            "deepspeed" => Engine::Deepspeed,
            "composer" => Engine::Composer,
            "nanotron" => Engine::Nanotron,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Engine::Kiln => "kiln",
            Engine::Megatron => "megatron",
            Engine::Nemo => "nemo",
            Engine::Torchtitan => "torchtitan",
            Engine::Deepspeed => "deepspeed",
            Engine::Composer => "composer",
            Engine::Nanotron => "nanotron",
        }
    }

    /// The engine's profile; every entry cites the code or docs it is read from.
    pub fn profile(self) -> Profile {
        match self {
            // Megatron-LM (megatron/core/transformer, with Transformer Engine): layer norm
            // fused into the following linear (TE LayerNormLinear), fused RoPE
            // (--apply-rope-fusion), bias-SwiGLU/GeLU fusion (--bias-swiglu-fusion),
            // bias-dropout-add fusion, vocab-parallel cross-entropy fused
            // (--cross-entropy-loss-fusion); attention through TE's cuDNN fused attention;
            // gradients accumulated in the weight-gradient GEMM
            // (--gradient-accumulation-fusion); bucketed gradient reduce overlapped with
            // the backward (--overlap-grad-reduce, used by the README's runs).
            Engine::Megatron => Profile {
                fused_elementwise: true,
                attention: AttentionKernel::FusedHopper,
                grad_reduce_overlap: true,
                param_prefetch: true,
                tp_comm_overlap: false,
                fused_cross_entropy: true,
                grad_accumulation_fusion: true,
                // megatron/training/arguments.py: bf16 runs accumulate and all-reduce
                // gradients in fp32 unless --grad-reduce-in-bf16.
                gradient_reduce: GradientReduce::Fp32ForBf16,
                // Megatron-LM shards gradients only through its distributed optimizer, which
                // reduce-scatters once, in the last micro-batch's backward (its DDP wraps the
                // others in no_sync); kiln emits `zero = 2` as that (emit/engines.rs).
                reduce_once_per_step: true,
            },
            // NeMo 24.07's performance recipes (nemo/collections/llm/recipes, the
            // `performance` mode): Megatron-Core as above plus tensor-parallel communication
            // overlap with Transformer Engine's userbuffers (tp_comm_overlap = True).
            Engine::Nemo => Profile {
                tp_comm_overlap: true,
                ..Engine::Megatron.profile()
            },
            // torchtitan (torchtitan/models/llama3): eager PyTorch ops unless
            // `--compile`, attention through F.scaled_dot_product_attention (the flash
            // backend, FlashAttention-2), FSDP2 with forward/backward prefetch and
            // reduce-scatter overlapped with the backward, in fp32
            // (`--training.mixed_precision_reduce float32`, its default).
            Engine::Torchtitan => Profile::EAGER,
            // DeepSpeed with a Hugging Face model: eager ops, FlashAttention-2 through the
            // model's attn_implementation, overlap_comm for ZeRO's reductions and ZeRO-3's
            // prefetch (deepspeed/runtime/zero/stage3.py); gradients reduced in the model's
            // precision (`communication_data_type` unset).
            Engine::Deepspeed => Profile {
                gradient_reduce: GradientReduce::ParamDtype,
                ..Profile::EAGER
            },
            // llm-foundry's MPT (llmfoundry/models/mpt): eager PyTorch, low-precision
            // LayerNorm, Composer's FSDP with backward prefetch (BACKWARD_PRE) and forward
            // prefetch; attention through the triton FlashAttention kernel, the default
            // `--attn_impl` of scripts/train/benchmarking/submit_benchmarks.py when its
            // published tables were measured (measured.yaml, extras of every llm-foundry run);
            // `mixed_precision: DEFAULT` reduces gradients in fp32
            // (composer/distributed/mosaic_fsdp_utils.py, get_mixed_precision).
            // The loss: MPT's default `loss_fn: fused_crossentropy`, flash-attn's triton
            // cross-entropy (llmfoundry/models/mpt/modeling_mpt.py, ComposerMPTCausalLM),
            // one kernel forward and one backward writing the gradient in place.
            Engine::Composer => Profile {
                attention: AttentionKernel::Triton,
                fused_cross_entropy: true,
                ..Profile::EAGER
            },
            // nanotron (src/nanotron/models/llama.py): a triton RMSNorm (one kernel, as the
            // eager count already assumes), flash-attn 2, eager rotary and SwiGLU; gradients
            // accumulated and all-reduced in fp32 (accumulate_grad_in_fp32 in its example
            // configs), in buckets during the backward.
            Engine::Nanotron => Profile::EAGER,
            // kiln-train (runtime/train): eager libtorch ops, SDPA attention, and fp32
            // collectives issued after the backward, not overlapped with it (collective.rs).
            Engine::Kiln => Profile {
                grad_reduce_overlap: false,
                param_prefetch: false,
                ..Profile::EAGER
            },
        }
    }
}

/// The attention kernel an engine runs, whose throughput `ops::attention_efficiency` gives
/// per architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKernel {
    /// FlashAttention-2 (flash-attn 2, PyTorch SDPA's flash backend).
    FlashAttention2,
    /// The triton FlashAttention kernel of 2022–23 (flash-attn's flash_attn_triton.py).
    Triton,
    /// A Hopper-specific fused kernel where the arch has one: cuDNN fused attention through
    /// Transformer Engine, or FlashAttention-3; FlashAttention-2's rates elsewhere.
    FusedHopper,
}

/// What an engine does, as the time model needs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Profile {
    /// Norms, rotary embeddings, activation functions, bias-dropout-residual adds fused into
    /// single kernels (or into the GEMMs); otherwise each is its own eager op reading and
    /// writing whole tensors.
    pub fused_elementwise: bool,
    pub attention: AttentionKernel,
    /// Bucketed gradient reduction overlapped with the backward.
    pub grad_reduce_overlap: bool,
    /// ZeRO-3 / FSDP parameter all-gathers issued ahead of the layer that needs them.
    pub param_prefetch: bool,
    /// Tensor-parallel all-reduces / all-gathers overlapped with the GEMMs beside them.
    pub tp_comm_overlap: bool,
    /// The loss computed from the logits in one fused kernel (no fp32 log-probabilities).
    pub fused_cross_entropy: bool,
    /// Weight gradients accumulated inside the GEMM, no separate pass per micro-batch.
    pub grad_accumulation_fusion: bool,
    /// The precision gradients are reduced in across data-parallel ranks.
    pub gradient_reduce: GradientReduce,
    /// Gradients accumulated locally over the micro-batches and reduced once per step even
    /// when they are sharded (`zero = 2`), instead of reduce-scattered after every
    /// micro-batch's backward.
    pub reduce_once_per_step: bool,
}

/// The precision of the data-parallel gradient reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradientReduce {
    /// fp32 whatever the training precision.
    Fp32,
    /// fp32 for bf16 training, the parameters' precision otherwise.
    Fp32ForBf16,
    /// The parameters' (16-bit) precision.
    ParamDtype,
}

impl Profile {
    /// Eager PyTorch with FlashAttention-2 and overlapped data-parallel communication.
    pub const EAGER: Profile = Profile {
        fused_elementwise: false,
        attention: AttentionKernel::FlashAttention2,
        grad_reduce_overlap: true,
        param_prefetch: true,
        tp_comm_overlap: false,
        fused_cross_entropy: false,
        grad_accumulation_fusion: false,
        gradient_reduce: GradientReduce::Fp32,
        reduce_once_per_step: false,
    };
}
