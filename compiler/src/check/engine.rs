//! K-E002 engine-refuses and K-E003 engine-overrides: what the experiment's engine (or
//! `kiln check --target`) enforces at start-up, checked before anything is emitted.
//!
//! Each rule mirrors one check in the engine's own code, cited by file and function; the
//! general checks already cover what every engine refuses alike (heads and layers that do
//! not split: K-C005–K-C007, batch arithmetic: K-C008, activation offload: K-C018).
//! `kiln tune --engine X` searches only layouts that pass [`refusal`].

use crate::analyse::engine::Engine;
use crate::analyse::setup::Setup;
use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::ir::Record;
use crate::span::Span;

/// One start-up rule of one engine. The layout facts it reads are plain numbers so that
/// the layout search can ask it per candidate without building diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// DeepSpeed: pipeline parallelism with ZeRO-2 or ZeRO-3.
    DeepspeedPipelineZero,
    /// Megatron-LM / NeMo: the interleaved schedule needs the micro-batches to be a
    /// multiple of the pipeline size.
    MegatronInterleavedMicroBatches,
    /// Megatron-LM, NeMo, torchtitan: context parallelism splits each sequence into
    /// 2 × context chunks (load balancing of causal attention).
    ContextSequenceChunks,
    /// Megatron-LM / NeMo: tensor-parallel communication overlap needs sequence parallelism
    /// (and so tensor > 1).
    MegatronTpOverlapNeedsSequenceParallel,
    /// Megatron-LM / NeMo turn sequence parallelism off at tensor = 1 (a warning).
    MegatronSequenceParallelWithoutTensor,
}

/// The layout facts the rules read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    pub tensor: u64,
    pub pipeline: u64,
    pub virtual_stages: u64,
    pub context: u64,
    pub zero: u8,
    /// Micro-batches per optimizer step on each data-parallel rank.
    pub accumulation: u64,
    pub seq_len: u64,
    pub sequence_parallel: bool,
    pub tp_comm_overlap: bool,
}

impl Layout {
    /// The setup's layout; `tp_comm_overlap` is the declared `parallel.tp_comm_overlap`
    /// (an engine's default overlap, as NeMo's, is its own to turn off).
    pub fn of(setup: &Setup, tp_comm_overlap: bool) -> Layout {
        let p = &setup.parallel;
        Layout {
            tensor: p.tensor as u64,
            pipeline: p.pipeline as u64,
            virtual_stages: p.virtual_stages.max(1.0) as u64,
            context: p.context as u64,
            zero: p.zero,
            accumulation: p.accumulation as u64,
            seq_len: setup.shape.seq_len as u64,
            sequence_parallel: p.sequence_parallel,
            tp_comm_overlap,
        }
    }
}

const MEGATRON: &[Engine] = &[Engine::Megatron, Engine::Nemo];

impl Rule {
    pub const ALL: [Rule; 5] = [
        Rule::DeepspeedPipelineZero,
        Rule::MegatronInterleavedMicroBatches,
        Rule::ContextSequenceChunks,
        Rule::MegatronTpOverlapNeedsSequenceParallel,
        Rule::MegatronSequenceParallelWithoutTensor,
    ];

    /// The engines that enforce it.
    pub fn engines(self) -> &'static [Engine] {
        match self {
            Rule::DeepspeedPipelineZero => &[Engine::Deepspeed],
            Rule::ContextSequenceChunks => &[Engine::Megatron, Engine::Nemo, Engine::Torchtitan],
            Rule::MegatronInterleavedMicroBatches
            | Rule::MegatronTpOverlapNeedsSequenceParallel
            | Rule::MegatronSequenceParallelWithoutTensor => MEGATRON,
        }
    }

    /// The engine code the rule mirrors.
    pub fn source(self) -> &'static str {
        match self {
            Rule::DeepspeedPipelineZero => {
                "deepspeed/runtime/pipe/engine.py, PipelineEngine.__init__: \"ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism\""
            }
            Rule::MegatronInterleavedMicroBatches => {
                "megatron/core/pipeline_parallel/schedules.py, forward_backward_pipelining_with_interleaving (micro-batch groups of microbatch_group_size_per_vp_stage, which model_parallel_config.py defaults to the pipeline size)"
            }
            Rule::ContextSequenceChunks => {
                "megatron/training/arguments.py, validate_args (\"seq-length should be a multiple of 2 * context-parallel-size\"); torch/distributed/tensor/experimental/_context_parallel/_load_balancer.py, _HeadTailLoadBalancer (torchtitan)"
            }
            Rule::MegatronTpOverlapNeedsSequenceParallel => {
                "megatron/training/arguments.py, validate_args: \"Tensor parallel communication/GEMM overlap can happen only when sequence parallelism is enabled\""
            }
            Rule::MegatronSequenceParallelWithoutTensor => {
                "megatron/training/arguments.py, validate_args: \"Disabling sequence parallelism because tensor model parallelism is disabled\""
            }
        }
    }

    /// Whether the engine stops at start-up (an error) rather than changing the value.
    pub fn refuses(self) -> bool {
        self != Rule::MegatronSequenceParallelWithoutTensor
    }

    /// Whether `layout` breaks the rule (for any engine; see [`Rule::engines`]).
    pub fn broken_by(self, l: &Layout) -> bool {
        match self {
            Rule::DeepspeedPipelineZero => l.pipeline > 1 && l.zero >= 2,
            // Fewer micro-batches than stages is K-C008 already.
            Rule::MegatronInterleavedMicroBatches => {
                l.virtual_stages > 1
                    && l.pipeline > 1
                    && l.accumulation >= l.pipeline
                    && !l.accumulation.is_multiple_of(l.pipeline)
            }
            Rule::ContextSequenceChunks => {
                l.context > 1 && !l.seq_len.is_multiple_of(2 * l.context)
            }
            Rule::MegatronTpOverlapNeedsSequenceParallel => {
                l.tp_comm_overlap && (!l.sequence_parallel || l.tensor == 1)
            }
            Rule::MegatronSequenceParallelWithoutTensor => {
                l.sequence_parallel && l.tensor == 1 && !l.tp_comm_overlap
            }
        }
    }

    /// The field to point at.
    fn field(self) -> &'static str {
        match self {
            Rule::DeepspeedPipelineZero => "zero",
            Rule::MegatronInterleavedMicroBatches => "virtual_stages",
            Rule::ContextSequenceChunks => "context",
            Rule::MegatronTpOverlapNeedsSequenceParallel => "tp_comm_overlap",
            Rule::MegatronSequenceParallelWithoutTensor => "sequence_parallel",
        }
    }

    /// The message and the fix, for `engine`.
    fn explain(self, engine: Engine, l: &Layout) -> (String, String) {
        let name = engine_title(engine);
        match self {
            Rule::DeepspeedPipelineZero => (
                format!("{name} refuses pipeline = {} with ZeRO stage {}", l.pipeline, l.zero),
                "use `zero = 1` with the pipeline (DeepSpeed shards only optimizer states across a pipeline), or `pipeline = 1` with ZeRO 2 or 3".into(),
            ),
            Rule::MegatronInterleavedMicroBatches => {
                let up = l.accumulation.div_ceil(l.pipeline) * l.pipeline;
                let down = l.accumulation / l.pipeline * l.pipeline;
                (
                    format!(
                        "{name}'s interleaved schedule refuses {} micro-batches per step over pipeline = {}: they run in groups of {}, and the last group of {} would stall the pipeline",
                        l.accumulation, l.pipeline, l.pipeline, l.accumulation % l.pipeline
                    ),
                    format!(
                        "make the micro-batches per data-parallel rank a multiple of {} ({down} or {up}: change `batch` or `micro_batch`), or use `virtual_stages = 1`",
                        l.pipeline
                    ),
                )
            }
            Rule::ContextSequenceChunks => (
                format!(
                    "seq_len = {} does not split into the 2 × context = {} equal chunks {name}'s context parallelism needs",
                    l.seq_len,
                    2 * l.context
                ),
                format!(
                    "use a context size c with seq_len divisible by 2c ({}), or a seq_len that is a multiple of {}",
                    context_sizes(l.seq_len, l.context),
                    2 * l.context
                ),
            ),
            Rule::MegatronTpOverlapNeedsSequenceParallel => (
                format!(
                    "{name} overlaps tensor-parallel communication only with sequence parallelism{}",
                    if l.tensor == 1 { ", which it turns off at tensor = 1" } else { "" }
                ),
                if l.tensor == 1 {
                    "remove `tp_comm_overlap` (there is no tensor-parallel communication at tensor = 1)".into()
                } else {
                    "add `sequence_parallel = true`, or remove `tp_comm_overlap`".into()
                },
            ),
            Rule::MegatronSequenceParallelWithoutTensor => (
                format!("{name} turns sequence parallelism off at tensor = 1"),
                "remove `sequence_parallel` (it splits only what tensor parallelism splits)".into(),
            ),
        }
    }
}

fn engine_title(engine: Engine) -> &'static str {
    match engine {
        Engine::Megatron => "Megatron-LM",
        Engine::Nemo => "NeMo (Megatron-Core)",
        Engine::Torchtitan => "torchtitan",
        Engine::Deepspeed => "DeepSpeed",
        Engine::Composer => "Composer",
        Engine::Nanotron => "nanotron",
        Engine::Kiln => "kiln's runtime",
    }
}

/// Context sizes up to 8 × `declared` that split `seq_len` into 2c chunks.
fn context_sizes(seq_len: u64, declared: u64) -> String {
    let fits: Vec<String> = (1..=declared.saturating_mul(8).min(seq_len))
        .filter(|c| *c == 1 || seq_len.is_multiple_of(2 * c))
        .filter(|c| c.is_power_of_two() || *c == declared)
        .map(|c| c.to_string())
        .collect();
    fits.join(", ")
}

/// The first rule `engine` stops at for `layout` (warnings do not count): what the layout
/// search skips.
pub fn refusal(engine: Engine, layout: &Layout) -> Option<Rule> {
    Rule::ALL
        .into_iter()
        .find(|r| r.refuses() && r.engines().contains(&engine) && r.broken_by(layout))
}

/// Every rule of the setup's engine that its layout breaks, as diagnostics.
pub fn check(exp: &Record, setup: &Setup, out: &mut Vec<Diagnostic>) {
    let par = exp.record("parallel");
    let overlap = par.and_then(|p| p.bool("tp_comm_overlap")) == Some(true);
    let layout = Layout::of(setup, overlap);
    for rule in Rule::ALL {
        if !rule.engines().contains(&setup.engine) || !rule.broken_by(&layout) {
            continue;
        }
        let at = par
            .and_then(|p| p.span_of(rule.field()).or(p.span))
            .or_else(|| exp.span_of("engine"))
            .or(exp.span)
            .unwrap_or(Span::new(0, 0, 0));
        let (message, help) = rule.explain(setup.engine, &layout);
        let code = if rule.refuses() {
            codes::ENGINE_REFUSES
        } else {
            codes::ENGINE_OVERRIDES
        };
        out.push(
            Diagnostic::new(code, message)
                .at(at, format!("for engine {}", setup.engine.name()))
                .help(help)
                .note(format!("mirrors {}", rule.source())),
        );
    }
}
