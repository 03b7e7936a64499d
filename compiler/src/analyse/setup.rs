//! The typed inputs of the analyses, read once from a derived experiment record.

use super::engine::{Engine, Profile};
use crate::ir::Record;
use crate::model::{ModelShape, ParamCount};

/// More pipeline stages than any run has used by orders of magnitude; above it kiln does
/// not analyse (the per-stage lists would be absurd).
pub const MAX_PIPELINE_STAGES: f64 = 100_000.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    Bf16Mixed,
    Fp16Mixed,
    Fp8Mixed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Recompute {
    None,
    /// Korthikanti et al. 2022: recompute the attention scores' block only.
    Selective,
    /// torchtitan's op-level selective checkpointing: keep every other matmul's output and
    /// attention's output, recompute the rest of the layer.
    SelectiveOp,
    Full,
}

/// A scaling law's form and constants.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Law {
    /// L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, Eq. 2).
    Hoffmann {
        e: f64,
        a: f64,
        b: f64,
        alpha: f64,
        beta: f64,
    },
    /// L(N, D) = ((N_c/N)^(α_N/α_D) + D_c/D)^α_D (Kaplan et al. 2020, Eq. 1.5).
    Kaplan {
        n_c: f64,
        d_c: f64,
        alpha_n: f64,
        alpha_d: f64,
    },
}

impl Law {
    /// A `law` record's form and constants (`None` where one is missing or invalid).
    pub fn from_record(law: &Record) -> Option<Law> {
        Some(match law.sym("form")? {
            "hoffmann" => Law::Hoffmann {
                e: law.num("E")?,
                a: law.num("A")?,
                b: law.num("B")?,
                alpha: law.num("alpha")?,
                beta: law.num("beta")?,
            },
            _ => Law::Kaplan {
                n_c: law.num("n_c")?,
                d_c: law.num("d_c")?,
                alpha_n: law.num("alpha_n")?,
                alpha_d: law.num("alpha_d")?,
            },
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    Chinchilla,
    Fixed,
    InferenceAware { serve_tokens: f64 },
}

/// One GPU model and the node and cluster around it.
#[derive(Clone, Debug, PartialEq)]
pub struct Hardware {
    pub gpu: String,
    pub arch: String,
    pub memory_bytes: f64,
    pub hbm_bytes_per_s: f64,
    pub peak_fp32: Option<f64>,
    pub peak_bf16: Option<f64>,
    pub peak_fp16: Option<f64>,
    pub peak_fp8: Option<f64>,
    /// Hockney's n½ of the matmuls, measured by `kiln calibrate` (calibrate.rs): the width
    /// at which they reach half the peak; `None` for a datasheet GPU.
    pub matmul_half_dim: Option<f64>,
    /// Streaming multiprocessors, for wave quantisation (ops.rs); `None`: not modelled.
    pub sms: Option<f64>,
    /// The best bf16 GEMM rate measured by `kiln calibrate --device cuda` (FLOP/s); `None`:
    /// the arch's published ceiling ([`super::ops::gemm_ceiling`]).
    pub matmul_rate: Option<f64>,
    /// FlashAttention-2's forward + backward rate at 8K tokens measured by `kiln calibrate
    /// --device cuda` (FLOP/s); `None`: the published table
    /// ([`super::ops::attention_efficiency`]).
    pub attention_rate: Option<f64>,
    /// The runtime's own resident memory (measured by `kiln calibrate`); `None`:
    /// [`super::memory::RUNTIME_RESERVE_BYTES`].
    pub runtime_bytes: Option<f64>,
    /// The GPU's link to host memory, one direction (`host_bandwidth`).
    pub host_bytes_per_s: Option<f64>,
    pub gpus_per_node: f64,
    pub nvlink_bytes_per_s: f64,
    pub network_bytes_per_s: f64,
    pub nodes: f64,
    pub gpu_hour_price: Option<f64>,
}

/// The parallel layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Parallel {
    pub tensor: f64,
    pub pipeline: f64,
    pub virtual_stages: f64,
    pub context: f64,
    pub data: f64,
    pub zero: u8,
    pub recompute: Recompute,
    pub sequence_parallel: bool,
    pub flash_attention: bool,
    pub micro_batch: f64,
    pub accumulation: f64,
    pub first_stage_layers: Option<f64>,
    pub last_stage_layers: Option<f64>,
    /// Layers per (virtual) pipeline stage that full recompute covers; `None`: all of them.
    pub recompute_layers: Option<f64>,
    /// Layers whose saved activations live in host memory (`offload_layers`).
    pub offload_layers: Option<f64>,
    /// Every stage's layers where declared (`stage_layers`).
    pub stage_layers: Option<Vec<f64>>,
}

/// A data source and how many tokens the phases draw from it.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub name: String,
    pub unique_tokens: Option<f64>,
    pub max_epochs: f64,
    pub drawn_tokens: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Setup {
    pub shape: ModelShape,
    pub params: ParamCount,
    pub dropout: f64,
    pub tokens: f64,
    /// Each phase's tokens, in order: the steps round up per phase, as the plan's schedule
    /// counts them (empty: the run as one phase).
    pub phase_tokens: Vec<f64>,
    /// The full batch (a ramp's `to`).
    pub batch_tokens: f64,
    /// The batch ramp's stages from the run's first sample (ramp.rs); empty without one.
    pub batch_ramp: Vec<kiln_plan::BatchStage>,
    pub precision: Precision,
    pub engine: Engine,
    /// The engine's profile with the experiment's own choices (`compile`,
    /// `parallel.tp_comm_overlap`) applied.
    pub profile: Profile,
    pub parallel: Parallel,
    pub hardware: Hardware,
    pub law: Law,
    pub law_name: String,
    pub objective: Objective,
    pub sources: Vec<Source>,
}

/// The engine's profile with the experiment's own choices applied: `compile` fuses the
/// element-wise ops, `parallel.tp_comm_overlap` sets the tensor-parallel overlap.
fn profile_of(engine: Engine, exp: &Record) -> Profile {
    let mut profile = engine.profile();
    if let Some(compile) = exp.bool("compile") {
        profile.fused_elementwise |= compile;
    }
    if let Some(overlap) = exp
        .record("parallel")
        .and_then(|p| p.bool("tp_comm_overlap"))
    {
        profile.tp_comm_overlap = overlap;
    }
    profile
}

impl Setup {
    /// The same experiment predicted for another engine (`kiln emit --target megatron`
    /// predicts for Megatron-LM whatever `engine =` says).
    pub fn for_engine(mut self, engine: Engine, exp: &Record) -> Setup {
        self.engine = engine;
        self.profile = profile_of(engine, exp);
        self
    }

    /// Reads everything the analyses need; `None` when something is missing or invalid
    /// (already reported by an earlier stage).
    pub fn from_record(exp: &Record) -> Option<Setup> {
        let model = exp.record("model")?;
        let shape = ModelShape::from_record(model)?;
        let par = exp.record("parallel")?;
        // Stages are listed one by one: refuse sizes no cluster has (their other checks
        // already report what is wrong with them).
        if par.num("pipeline")? > MAX_PIPELINE_STAGES || par.num("pipeline")? > shape.layers {
            return None;
        }
        let cluster = exp.record("cluster")?;
        let node = cluster.record("node")?;
        let gpu = node.record("gpu")?;
        let law = exp.record("law")?;
        let engine = Engine::from_name(exp.sym("engine")?)?;
        let profile = profile_of(engine, exp);
        let objective = exp.record("objective")?;
        let sources = exp
            .entries("source")
            .map(|(name, r, _)| Source {
                name: name.clone(),
                unique_tokens: r.num("unique_tokens"),
                max_epochs: r.num("max_epochs").unwrap_or(4.0),
                drawn_tokens: exp
                    .entries("phase")
                    .filter_map(|(_, p, _)| {
                        Some(p.num("tokens")? * p.record("mix")?.num(name).unwrap_or(0.0))
                    })
                    .sum(),
            })
            .collect();
        Some(Setup {
            params: shape.params(),
            shape,
            dropout: model.num("dropout")?,
            tokens: exp.num("tokens")?,
            phase_tokens: exp
                .entries("phase")
                .map(|(_, p, _)| p.num("tokens"))
                .collect::<Option<Vec<f64>>>()
                .unwrap_or_default(),
            batch_tokens: exp.num("batch")?,
            batch_ramp: match exp.record("batch") {
                Some(ramp) => crate::ramp::stages(ramp, model.num("seq_len")?)?,
                None => Vec::new(),
            },
            precision: match exp.sym("precision")? {
                "fp32" => Precision::Fp32,
                "bf16_mixed" => Precision::Bf16Mixed,
                "fp16_mixed" => Precision::Fp16Mixed,
                _ => Precision::Fp8Mixed,
            },
            engine,
            profile,
            parallel: Parallel {
                tensor: par.num("tensor")?,
                pipeline: par.num("pipeline")?,
                virtual_stages: par.num("virtual_stages")?,
                context: par.num("context")?,
                data: par.num("data")?,
                zero: par.num("zero")? as u8,
                recompute: match par.sym("recompute")? {
                    "none" => Recompute::None,
                    "selective" => Recompute::Selective,
                    "selective_op" => Recompute::SelectiveOp,
                    _ => Recompute::Full,
                },
                sequence_parallel: par.bool("sequence_parallel")?,
                flash_attention: par.bool("flash_attention")?,
                micro_batch: par.num("micro_batch")?,
                accumulation: par.num("accumulation")?,
                first_stage_layers: par.num("first_stage_layers"),
                recompute_layers: par.num("recompute_layers"),
                offload_layers: par.num("offload_layers"),
                stage_layers: par.nums("stage_layers"),
                last_stage_layers: par.num("last_stage_layers"),
            },
            hardware: Hardware {
                gpu: gpu.preset.clone().unwrap_or_else(|| "gpu".into()),
                arch: gpu.sym("arch")?.to_string(),
                memory_bytes: gpu.num("memory")?,
                hbm_bytes_per_s: gpu.num("hbm_bandwidth")?,
                peak_fp32: gpu.num("peak_fp32"),
                peak_bf16: gpu.num("peak_bf16"),
                peak_fp16: gpu.num("peak_fp16"),
                peak_fp8: gpu.num("peak_fp8"),
                matmul_half_dim: gpu.num("matmul_half_dim"),
                sms: gpu.num("sms"),
                matmul_rate: gpu.num("matmul_rate"),
                attention_rate: gpu.num("attention_rate"),
                runtime_bytes: gpu.num("runtime_memory"),
                host_bytes_per_s: gpu.num("host_bandwidth"),
                gpus_per_node: node.num("gpus_per_node")?,
                nvlink_bytes_per_s: node.num("nvlink_bandwidth")?,
                network_bytes_per_s: node.num("network_bandwidth")?,
                nodes: cluster.num("nodes")?,
                gpu_hour_price: cluster.num("gpu_hour_price"),
            },
            law: Law::from_record(law)?,
            law_name: law.preset.clone().unwrap_or_else(|| "law".into()),
            objective: match objective.kind.as_str() {
                "chinchilla" => Objective::Chinchilla,
                "fixed" => Objective::Fixed,
                _ => Objective::InferenceAware {
                    serve_tokens: objective.num("serve_tokens")?,
                },
            },
            sources,
        })
    }

    pub fn world(&self) -> f64 {
        self.hardware.nodes * self.hardware.gpus_per_node
    }

    /// Sequences per micro-batch × micro-batches per data-parallel rank = the global batch.
    pub fn seq_len(&self) -> f64 {
        self.shape.seq_len
    }

    /// Micro-batches each data-parallel rank runs per optimizer step.
    pub fn micro_batches(&self) -> f64 {
        self.parallel.accumulation
    }

    /// Optimizer steps over the run's tokens, whole steps per phase (the plan's count):
    /// under a ramp, its smaller batches take more.
    pub fn steps(&self) -> f64 {
        match self.ramp_steps() {
            Some(by) => by.iter().map(|&(_, n)| n as f64).sum(),
            None => self
                .phases()
                .iter()
                .map(|t| (t / self.batch_tokens).ceil())
                .sum(),
        }
    }

    /// The phases' tokens, or the run's as one phase where they are not known.
    fn phases(&self) -> Vec<f64> {
        if self.phase_tokens.is_empty() {
            vec![self.tokens]
        } else {
            self.phase_tokens.clone()
        }
    }

    /// Under a ramp, (global batch in sequences, optimizer steps at it) over the run's
    /// phases, in the order they run (ramp.rs); `None` without one.
    pub fn ramp_steps(&self) -> Option<Vec<(u64, u64)>> {
        if self.batch_ramp.is_empty() {
            return None;
        }
        crate::ramp::steps_by_batch(
            &self.batch_ramp,
            (self.batch_tokens / self.seq_len()) as u64,
            self.seq_len() as u64,
            &self.phases(),
            crate::resolve::MAX_COUNT as u64,
        )
    }

    /// Dense peak FLOP/s of the GPU for the precision's matrix multiplies.
    pub fn peak_flops(&self) -> Option<f64> {
        let h = &self.hardware;
        match self.precision {
            Precision::Fp32 => h.peak_fp32,
            Precision::Bf16Mixed => h.peak_bf16,
            Precision::Fp16Mixed => h.peak_fp16,
            Precision::Fp8Mixed => h.peak_fp8,
        }
    }

    /// Bytes of one activation or gradient element: fp32 runs keep them in fp32, mixed
    /// precision in 16 bits (fp8 runs cast only GEMM inputs to fp8; what is stored stays bf16).
    pub fn activation_bytes(&self) -> f64 {
        if self.precision == Precision::Fp32 {
            4.0
        } else {
            2.0
        }
    }

    /// The ZeRO stage whose communication the engine does: 1 for `zero = 2` where the
    /// engine reduces gradients once per step (Megatron-LM's distributed optimizer).
    /// Of `layers` layers on one stage, how many full recompute covers: Megatron-LM's block
    /// method recomputes the first `recompute_layers` of each virtual stage (its
    /// --recompute-num-layers), every layer where that is not declared; 0 without full
    /// recompute.
    pub fn recomputed_layers(&self, layers: f64) -> f64 {
        if self.parallel.recompute != Recompute::Full {
            return 0.0;
        }
        match self.parallel.recompute_layers {
            Some(k) => (k * self.parallel.virtual_stages).min(layers),
            None => layers,
        }
    }

    /// The layers of a stage of `layers` whose saved activations are offloaded to host
    /// memory (`offload_layers`, at most the stage's layers); 0 where none are.
    pub fn offloaded_layers(&self, layers: f64) -> f64 {
        self.parallel.offload_layers.unwrap_or(0.0).min(layers)
    }

    /// The share of the transformer layers that full recompute runs again (1 for every
    /// layer, 0 without full recompute), over the stages as laid out.
    pub fn full_recompute_share(&self) -> f64 {
        let stages = self.stage_layers();
        let layers: f64 = stages.iter().sum();
        if layers <= 0.0 {
            return 0.0;
        }
        stages
            .iter()
            .map(|&l| self.recomputed_layers(l))
            .sum::<f64>()
            / layers
    }

    pub fn communication_zero(&self) -> u8 {
        match self.parallel.zero {
            2 if self.profile.reduce_once_per_step => 1,
            z => z,
        }
    }

    /// Bytes of one gradient element as the engine reduces it across data-parallel ranks.
    pub fn gradient_reduce_bytes(&self) -> f64 {
        use super::engine::GradientReduce;
        match self.profile.gradient_reduce {
            GradientReduce::Fp32 => 4.0,
            GradientReduce::Fp32ForBf16 if self.precision != Precision::Fp16Mixed => 4.0,
            _ => self.activation_bytes(),
        }
    }

    /// Layers on each pipeline stage, first to last.
    pub fn stage_layers(&self) -> Vec<f64> {
        let p = self.parallel.pipeline as usize;
        if let Some(declared) = self.parallel.stage_layers.as_ref().filter(|l| l.len() == p) {
            return declared.clone();
        }
        let (first, last) = (
            self.parallel.first_stage_layers,
            self.parallel.last_stage_layers,
        );
        let fixed = first.unwrap_or(0.0) + last.unwrap_or(0.0);
        let middle = p.saturating_sub(first.is_some() as usize + last.is_some() as usize);
        let each = if middle > 0 {
            (self.shape.layers - fixed) / middle as f64
        } else {
            0.0
        };
        (0..p)
            .map(|i| match (i, first, last) {
                (0, Some(f), _) => f,
                (i, _, Some(l)) if i == p - 1 => l,
                _ => each,
            })
            .collect()
    }

    /// Parameters on each pipeline stage, first to last: its layers, the embedding (and
    /// learned positions, and the embedding norm) on the first, the final norm and the output
    /// projection on the last — its own matrix when untied, and a copy of the embedding on the
    /// last stage when tied across stages (Megatron-LM's shared embedding).
    pub fn stage_params(&self) -> Vec<f64> {
        let m = &self.shape;
        let norm = m.norm_params();
        let per_layer = m.layer_params();
        let embedding = m.vocab * m.hidden;
        let positions = if m.learned_positions {
            m.seq_len * m.hidden
        } else {
            0.0
        };
        let embedding_norm = if m.embedding_norm { norm } else { 0.0 };
        let stages = self.stage_layers();
        let p = stages.len();
        stages
            .iter()
            .enumerate()
            .map(|(i, layers)| {
                let (first, last) = (i == 0, i == p - 1);
                let mut params = layers * per_layer;
                if first {
                    params += embedding + positions + embedding_norm;
                }
                if last {
                    params += norm;
                    if !m.tied_embeddings || !first {
                        params += embedding;
                    }
                }
                params
            })
            .collect()
    }

    /// One layer's parameters (attention, feed-forward, norms).
    pub fn layer_params(&self) -> f64 {
        self.shape.layer_params()
    }
}
