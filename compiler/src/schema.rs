//! The kinds of the language and their fields: names, types, units and defaults.
//!
//! One table drives resolution (unknown fields, units, defaults), the docs and the
//! suggestions in diagnostics. docs/language.md describes the same table for people.

use crate::units::Dim;

/// What numbers a numeric field accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NumKind {
    /// Any finite number.
    Real,
    /// A number above zero.
    Positive,
    /// Zero or above (a final learning rate).
    NonNegative,
    /// A whole number ≥ 0.
    Whole,
    /// A whole number ≥ 1 (layers, GPUs, parallel sizes).
    Count,
    /// Between 0 and 1 inclusive (percentages).
    Fraction,
    /// A ZeRO stage, 0 to 3.
    ZeroStage,
}

#[derive(Clone, Copy, Debug)]
pub enum Ty {
    Num(Dim, NumKind),
    Str,
    Bool,
    /// One of a fixed set of options, written as a bare name (`bf16_mixed`).
    Enum(&'static [&'static str]),
    /// A preset of a kind (`llama3_8b`, `llama3_8b { seq_len = 8192 }`) or an inline block of it.
    Preset(&'static KindSpec),
    /// One of several named constructors with their own fields (`cosine { peak = 3e-4 }`).
    Variant(&'static [VariantSpec]),
    /// A quantity, or one of several named constructors that stand for one (`batch = 4Mi
    /// tokens` or `batch = ramp { … }`): consumers read the constructor's full value
    /// (`Record::num`, a ramp's `to`).
    NumOr(Dim, NumKind, &'static [VariantSpec]),
    /// A block with its own fields (`parallel { … }`).
    Block(&'static [FieldSpec]),
    List(&'static Ty),
    /// The name of an entry the experiment declares, written bare (`sotu` for a `source
    /// sotu { … }`); the checks look it up (K-C022).
    Name(&'static str),
}

impl Ty {
    /// How the type is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Ty::Num(Dim::Count, NumKind::Fraction) => "a percentage".into(),
            Ty::Num(Dim::Count, _) => "a number".into(),
            Ty::Num(d, _) => format!("a quantity in {d}"),
            Ty::Str => "a string".into(),
            Ty::Bool => "`true` or `false`".into(),
            Ty::Enum(opts) => format!(
                "one of {}",
                opts.iter()
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Ty::Preset(k) => format!("a {} (a preset name or a block)", k.name),
            Ty::Variant(vs) => format!(
                "one of {}",
                vs.iter()
                    .map(|v| format!("`{}`", v.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Ty::NumOr(d, k, vs) => format!(
                "{} or {}",
                Ty::Num(*d, *k).describe(),
                vs.iter()
                    .map(|v| format!("`{} {{ … }}`", v.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Ty::Block(_) => "a block `{ … }`".into(),
            Ty::List(t) => format!("a list of {}", t.describe()),
            Ty::Name(kind) => format!("the name of a declared {kind}"),
        }
    }
}

/// The value a field takes when it is not written.
#[derive(Clone, Copy, Debug)]
pub enum Fill {
    /// Must be written.
    Required,
    /// Must be written, and may be written `auto` (see derive.rs).
    RequiredOrAuto,
    /// May be left out; then it has no value.
    Optional,
    /// Left out, it takes this value.
    Value(Const),
    /// Left out or written `auto`, kiln derives it (see derive.rs).
    Auto,
    /// Left out, it takes this value; written `auto`, the layout search chooses it
    /// (`tune::fill_autos`: the best layout by predicted step time).
    Searched(Const),
    /// Always derived; writing it is an error.
    Derived,
}

#[derive(Clone, Copy, Debug)]
pub enum Const {
    Num(f64),
    Bool(bool),
    Str(&'static str),
    /// An option of an `Enum`, or a variant with all its defaults.
    Sym(&'static str),
    /// An empty list, or a block with all its defaults.
    Empty,
}

#[derive(Debug)]
pub struct FieldSpec {
    pub name: &'static str,
    pub ty: Ty,
    pub default: Fill,
}

#[derive(Debug)]
pub struct VariantSpec {
    pub name: &'static str,
    pub fields: &'static [FieldSpec],
}

/// A declaration kind (`model`, `gpu`, …) or the kind of a named entry (`source`, `phase`).
#[derive(Debug)]
pub struct KindSpec {
    pub name: &'static str,
    pub fields: &'static [FieldSpec],
    /// Named entries it may hold (`source web { … }` in an experiment).
    pub named: &'static [&'static KindSpec],
    /// Kinds whose fields are free names of one type (a mix: source name → percentage).
    pub free_keys: Option<Ty>,
}

impl KindSpec {
    pub fn field(&self, name: &str) -> Option<&'static FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }
}

const fn f(name: &'static str, ty: Ty, default: Fill) -> FieldSpec {
    FieldSpec { name, ty, default }
}

use self::Fill::*;
use NumKind::*;

const COUNT: Ty = Ty::Num(Dim::Count, Count);
const REAL: Ty = Ty::Num(Dim::Count, Real);
const POSITIVE: Ty = Ty::Num(Dim::Count, Positive);
const FRACTION: Ty = Ty::Num(Dim::Count, Fraction);
const TOKENS: Ty = Ty::Num(Dim::Tokens, Positive);
const STEPS: Ty = Ty::Num(Dim::Steps, Whole);
const BYTES: Ty = Ty::Num(Dim::Bytes, Positive);
const BYTES_PER_S: Ty = Ty::Num(Dim::BytesPerSecond, Positive);
const FLOPS_PER_S: Ty = Ty::Num(Dim::FlopsPerSecond, Positive);
const SOURCE: FieldSpec = f("source", Ty::Str, Optional);

pub const MODEL: KindSpec = KindSpec {
    name: "model",
    fields: &[
        f("layers", COUNT, Required),
        f("hidden", COUNT, Required),
        f("ffn_hidden", COUNT, Required),
        f("heads", COUNT, Required),
        f("kv_heads", COUNT, Auto),
        f("head_dim", COUNT, Auto),
        f("vocab", COUNT, Required),
        f("seq_len", Ty::Num(Dim::Tokens, Count), Required),
        f("tied_embeddings", Ty::Bool, Value(Const::Bool(false))),
        f(
            "activation",
            Ty::Enum(&["swiglu", "gelu", "relu"]),
            Value(Const::Sym("swiglu")),
        ),
        f(
            "norm",
            Ty::Enum(&["rmsnorm", "layernorm"]),
            Value(Const::Sym("rmsnorm")),
        ),
        f(
            "position",
            Ty::Enum(&["rope", "learned", "relative", "alibi"]),
            Value(Const::Sym("rope")),
        ),
        f("bias", Ty::Bool, Value(Const::Bool(false))),
        // Dropout probability; above 0 its masks are activations (Korthikanti et al. 2022).
        f("dropout", FRACTION, Value(Const::Num(0.0))),
        // RoPE's base wavelength θ (Su et al. 2021, Eq. 15: θ_i = rope_base^(−2i/d)):
        // 10,000 in the paper and Llama 1/2, 500,000 in Llama 3 (Dubey et al. 2024, Table 3).
        // Used only with `position = rope` (K-C020 otherwise).
        f("rope_base", POSITIVE, Value(Const::Num(10_000.0))),
        // The share of each head's dimensions that rotary embeddings rotate; the rest pass
        // through unchanged: GPT-NeoX-20B's `rotary_pct = 0.25` (Black et al. 2022, Sec. 2.1.1),
        // GPT-J-6B's `rotary_dim = 64` of 256 (Wang & Komatsuzaki 2021). The rotated
        // dimensions, rotary_fraction × head_dim, must be a whole even number (K-R011). Used
        // only with `position = rope` (K-R009 otherwise).
        f("rotary_fraction", FRACTION, Value(Const::Num(1.0))),
        // How attention and the MLP meet the residual stream in each layer: `sequential`
        // (GPT-2, Llama: x + attn(ln1(x)), then + mlp(ln2(·))) or `parallel`, both reading the
        // same input, y = x + attn(ln(x)) + mlp(ln(x)) (Wang & Komatsuzaki 2021, GPT-J;
        // Chowdhery et al. 2022, PaLM Sec. 2 "Parallel Layers"), with one shared norm
        // (`shared_norm = true`: GPT-J, PaLM) or one per branch (`false`: GPT-NeoX's
        // `use_parallel_residual`, y = x + attn(ln1(x)) + mlp(ln2(x)), Black et al. 2022).
        f("block", Ty::Variant(BLOCK), Value(Const::Sym("sequential"))),
        // A norm on the token embeddings before the first layer (BLOOM's
        // `word_embeddings_layernorm`, BigScience 2022, Sec. 3.2.3 "Embedding LayerNorm").
        f("embedding_norm", Ty::Bool, Value(Const::Bool(false))),
        // The ε inside the normalisation: 1e-5, PyTorch's LayerNorm default and the released
        // GPT-2 and Llama 2/3 configs' `layer_norm_epsilon` / `rms_norm_eps`.
        f("norm_eps", POSITIVE, Value(Const::Num(1e-5))),
        // The standard deviation of the weights' normal initialisation (GPT-2, Radford et
        // al. 2019; Megatron-LM's `init_method_std` default).
        f("init_std", POSITIVE, Value(Const::Num(0.02))),
        f("published_params", POSITIVE, Optional),
        SOURCE,
        f("params", COUNT, Derived),
    ],
    named: &[],
    free_keys: None,
};

/// The layouts of a transformer layer's two sub-layers (`model.block`).
pub const BLOCK: &[VariantSpec] = &[
    VariantSpec {
        name: "sequential",
        fields: &[],
    },
    // PaLM and GPT-J share the norm (one per layer); GPT-NeoX has one per branch.
    VariantSpec {
        name: "parallel",
        fields: &[f("shared_norm", Ty::Bool, Value(Const::Bool(true)))],
    },
];

pub const GPU: KindSpec = KindSpec {
    name: "gpu",
    fields: &[
        f(
            "arch",
            Ty::Enum(&["volta", "ampere", "hopper", "blackwell", "cdna3", "cpu"]),
            Required,
        ),
        f("memory", BYTES, Required),
        f("hbm_bandwidth", BYTES_PER_S, Required),
        f("peak_fp32", FLOPS_PER_S, Optional),
        f("peak_tf32", FLOPS_PER_S, Optional),
        f("peak_bf16", FLOPS_PER_S, Optional),
        f("peak_fp16", FLOPS_PER_S, Optional),
        f("peak_fp8", FLOPS_PER_S, Optional),
        f("matmul_half_dim", POSITIVE, Optional),
        // Streaming multiprocessors (compute units on CDNA): the tiles of a matrix multiply
        // run in waves of this many (analyse/ops.rs, wave quantisation).
        f("sms", Ty::Num(Dim::Count, Whole), Optional),
        // Measured by `kiln calibrate --device cuda` (analyse/ops.rs): the best bf16 GEMM
        // rate over its training-shaped grid, and causal attention (FlashAttention-2 through
        // libtorch's SDPA) forward + backward at 8K tokens.
        f("matmul_rate", FLOPS_PER_S, Optional),
        f("attention_rate", FLOPS_PER_S, Optional),
        f("runtime_memory", BYTES, Optional),
        // The link to host memory, one direction (PCIe x16 of the GPU's generation): what
        // activations offloaded to the CPU (`offload_layers`) cross twice a micro-batch.
        f("host_bandwidth", BYTES_PER_S, Optional),
        SOURCE,
    ],
    named: &[],
    free_keys: None,
};

pub const NODE: KindSpec = KindSpec {
    name: "node",
    fields: &[
        f("gpu", Ty::Preset(&GPU), Required),
        f("gpus_per_node", COUNT, Required),
        f("nvlink_bandwidth", BYTES_PER_S, Required),
        f("network_bandwidth", BYTES_PER_S, Required),
        SOURCE,
    ],
    named: &[],
    free_keys: None,
};

pub const CLUSTER: KindSpec = KindSpec {
    name: "cluster",
    fields: &[
        f("node", Ty::Preset(&NODE), Required),
        f("nodes", COUNT, Required),
        f("gpu_hour_price", Ty::Num(Dim::UsdPerHr, Positive), Optional),
        // The scheduler's limits (`kiln emit --target slurm|megatron|torchtitan`): the
        // partition's longest job (a long training step runs as several jobs, each resuming
        // from the last checkpoint) and the `#SBATCH --account/--partition/--qos` a site needs.
        f("max_job_time", Ty::Num(Dim::Seconds, Positive), Optional),
        f("account", Ty::Str, Optional),
        f("partition", Ty::Str, Optional),
        f("qos", Ty::Str, Optional),
        SOURCE,
    ],
    named: &[],
    free_keys: None,
};

pub const MIX: KindSpec = KindSpec {
    name: "mix",
    fields: &[SOURCE],
    named: &[],
    free_keys: Some(FRACTION),
};

pub const LAW: KindSpec = KindSpec {
    name: "law",
    fields: &[
        f("form", Ty::Enum(&["hoffmann", "kaplan"]), Required),
        f("E", POSITIVE, Optional),
        f("A", POSITIVE, Optional),
        f("B", POSITIVE, Optional),
        f("alpha", POSITIVE, Optional),
        f("beta", POSITIVE, Optional),
        f("n_c", POSITIVE, Optional),
        f("d_c", POSITIVE, Optional),
        f("alpha_n", POSITIVE, Optional),
        f("alpha_d", POSITIVE, Optional),
        SOURCE,
    ],
    named: &[],
    free_keys: None,
};

/// The fields a law of each form needs.
pub const LAW_FORMS: &[(&str, &[&str])] = &[
    ("hoffmann", &["E", "A", "B", "alpha", "beta"]),
    ("kaplan", &["n_c", "d_c", "alpha_n", "alpha_d"]),
];

pub const SOURCE_ENTRY: KindSpec = KindSpec {
    name: "source",
    fields: &[
        f("path", Ty::Str, Required),
        f("text_field", Ty::Str, Value(Const::Str("text"))),
        f("unique_tokens", TOKENS, Optional),
        f("max_epochs", POSITIVE, Value(Const::Num(4.0))),
        // Documents longer than this are skipped and counted by the data steps; unset, the
        // runtime's default (8 MiB of text) applies.
        f("max_document_bytes", BYTES, Optional),
    ],
    named: &[],
    free_keys: None,
};

/// A language model that scores documents: trained by the plan (`model` on `source` for
/// `tokens` at `lr`), a Hugging Face directory (`hf`) or a kiln training output
/// (`checkpoint`).
pub const SCORER_ENTRY: KindSpec = KindSpec {
    name: "scorer",
    fields: &[
        f("model", Ty::Preset(&MODEL), Optional),
        f("source", Ty::Name("source"), Optional),
        f("tokens", TOKENS, Optional),
        f("lr", Ty::Variant(LR), Optional),
        f("hf", Ty::Str, Optional),
        f("checkpoint", Ty::Str, Optional),
    ],
    named: &[],
    free_keys: None,
};

const WARMUP: FieldSpec = f("warmup", STEPS, Value(Const::Num(0.0)));

/// Learning-rate schedules of a phase.
pub const LR: &[VariantSpec] = &[
    VariantSpec {
        name: "constant",
        fields: &[f("value", POSITIVE, Required), WARMUP],
    },
    VariantSpec {
        name: "cosine",
        fields: &[
            f("peak", POSITIVE, Required),
            WARMUP,
            f(
                "final",
                Ty::Num(Dim::Count, NonNegative),
                Value(Const::Num(0.0)),
            ),
        ],
    },
    VariantSpec {
        name: "wsd",
        fields: &[
            f("peak", POSITIVE, Required),
            WARMUP,
            f("decay", FRACTION, Value(Const::Num(0.2))),
        ],
    },
    VariantSpec {
        name: "linear",
        fields: &[
            f("from", POSITIVE, Auto),
            f("to", Ty::Num(Dim::Count, NonNegative), Required),
        ],
    },
];

/// One stage of a staged batch ramp: `batch` per step while fewer than `until` tokens have
/// been trained (Llama 3 405B, Dubey et al. 2024 Sec. 3.4.1).
pub const RAMP_STAGE: &[FieldSpec] = &[f("batch", TOKENS, Required), f("until", TOKENS, Required)];

/// A batch that grows during training (`batch = ramp { … }`; check/ramp.rs, plan/schedule.rs):
/// linear from `from` to `to` over `over` tokens in steps of `increment` (GPT-3, Brown et al.
/// 2020 Sec. 2.3 and Appendix B; Megatron-LM's `--rampup-batch-size`), or staged (`stages`,
/// then `to`).
pub const BATCH_RAMP: &[VariantSpec] = &[VariantSpec {
    name: "ramp",
    fields: &[
        f("from", TOKENS, Optional),
        f("to", TOKENS, Required),
        f("over", TOKENS, Optional),
        f("increment", TOKENS, Optional),
        f("stages", Ty::List(&Ty::Block(RAMP_STAGE)), Optional),
    ],
}];

pub const PHASE_ENTRY: KindSpec = KindSpec {
    name: "phase",
    fields: &[
        f("tokens", TOKENS, Auto),
        f("mix", Ty::Preset(&MIX), Required),
        f("lr", Ty::Variant(LR), Required),
        f("anneal", Ty::Bool, Auto),
    ],
    named: &[],
    free_keys: None,
};

pub const PARALLEL: &[FieldSpec] = &[
    f("tensor", COUNT, Searched(Const::Num(1.0))),
    f("pipeline", COUNT, Searched(Const::Num(1.0))),
    f("virtual_stages", COUNT, Value(Const::Num(1.0))),
    f("context", COUNT, Value(Const::Num(1.0))),
    f("data", COUNT, Auto),
    f(
        "zero",
        Ty::Num(Dim::Count, ZeroStage),
        Searched(Const::Num(0.0)),
    ),
    f(
        "recompute",
        Ty::Enum(&["none", "selective", "selective_op", "full"]),
        Searched(Const::Sym("none")),
    ),
    // Under `recompute = full`, how many layers of each pipeline stage (virtual stage when
    // interleaved) recompute; the rest keep their activations (Megatron-LM
    // --recompute-method block --recompute-num-layers N). Absent: every layer.
    f("recompute_layers", Ty::Num(Dim::Count, Whole), Optional),
    // Layers whose saved activations go to host memory during the forward and come back for
    // the backward (Megatron-LM --cpu-offloading-num-layers, through Transformer Engine's
    // CPU offload; K-C018 says where it runs). Absent: none.
    f("offload_layers", Ty::Num(Dim::Count, Whole), Optional),
    f("sequence_parallel", Ty::Bool, Value(Const::Bool(false))),
    // Tensor-parallel communication overlapped with the GEMMs (Megatron-LM
    // --tp-comm-overlap, Transformer Engine's userbuffers); absent: the engine's default.
    f("tp_comm_overlap", Ty::Bool, Optional),
    // FlashAttention (Dao et al. 2022) never stores the s × s attention scores; without it
    // they are activations (Korthikanti et al. 2022, Eq. 1: the 5as/h term).
    f("flash_attention", Ty::Bool, Value(Const::Bool(true))),
    f("micro_batch", COUNT, Searched(Const::Num(1.0))),
    // Uneven pipelines (Llama 3 405B, Dubey et al. 2024 Sec. 3.3.2, and Megatron-LM's
    // --decoder-first/last-pipeline-num-layers): fewer layers on the first and last stages,
    // which also hold the embedding and the output layer.
    f("first_stage_layers", Ty::Num(Dim::Count, Whole), Optional),
    f("last_stage_layers", Ty::Num(Dim::Count, Whole), Optional),
    // Every stage's layers, first to last, where an engine balances stages by cost
    // (nanotron's pipeline split, torchtitan's and DeepSpeed's partitioners): one count
    // per pipeline stage, summing to the model's layers.
    f(
        "stage_layers",
        Ty::List(&Ty::Num(Dim::Count, Whole)),
        Optional,
    ),
    f("accumulation", COUNT, Auto),
];

pub const DEDUP: &[FieldSpec] = &[
    f(
        "exact",
        Ty::Variant(&[VariantSpec {
            name: "bloom",
            fields: &[
                f("false_positive", FRACTION, Value(Const::Num(1e-6))),
                f("expected_docs", COUNT, Optional),
            ],
        }]),
        Optional,
    ),
    f(
        "near",
        Ty::Variant(&[VariantSpec {
            name: "minhash",
            fields: &[
                f("ngram", COUNT, Value(Const::Num(5.0))),
                f("bands", COUNT, Value(Const::Num(14.0))),
                f("rows", COUNT, Value(Const::Num(8.0))),
            ],
        }]),
        Optional,
    ),
];

/// Threshold overrides of the quality rules; a family's block turns it on. Names and
/// defaults are the runtime's (runtime/data/src/filters: Gopher, Rae et al. 2021 App. A;
/// C4, Raffel et al. 2020 Sec. 2.2; FineWeb, Penedo et al. 2024).
pub const GOPHER_QUALITY: &[FieldSpec] = &[
    f("min_doc_words", Ty::Num(Dim::Count, Whole), Optional),
    f("max_doc_words", Ty::Num(Dim::Count, Whole), Optional),
    f("min_mean_word_chars", POSITIVE, Optional),
    f("max_mean_word_chars", POSITIVE, Optional),
    f(
        "max_symbol_word_ratio",
        Ty::Num(Dim::Count, NonNegative),
        Optional,
    ),
    f("max_bullet_lines_ratio", FRACTION, Optional),
    f("max_ellipsis_lines_ratio", FRACTION, Optional),
    f("min_alpha_words_ratio", FRACTION, Optional),
    f("min_stop_words", Ty::Num(Dim::Count, Whole), Optional),
];

pub const GOPHER_REPETITION: &[FieldSpec] = &[
    f("max_duplicate_line_fraction", FRACTION, Optional),
    f("max_duplicate_paragraph_fraction", FRACTION, Optional),
    f("max_duplicate_line_char_fraction", FRACTION, Optional),
    f("max_duplicate_paragraph_char_fraction", FRACTION, Optional),
];

pub const C4: &[FieldSpec] = &[
    f("min_sentences", Ty::Num(Dim::Count, Whole), Optional),
    f("min_words_per_line", Ty::Num(Dim::Count, Whole), Optional),
    f("max_word_chars", COUNT, Optional),
];

pub const FINEWEB: &[FieldSpec] = &[
    f("min_line_punct_ratio", FRACTION, Optional),
    f("max_short_line_ratio", FRACTION, Optional),
    f("short_line_max_chars", Ty::Num(Dim::Count, Whole), Optional),
    f("max_char_duplicates_ratio", FRACTION, Optional),
    f(
        "max_newline_word_ratio",
        Ty::Num(Dim::Count, NonNegative),
        Optional,
    ),
];

/// The families whose thresholds the language sets, by block name.
pub const QUALITY_FAMILIES: &[(&str, &[FieldSpec])] = &[
    ("gopher_quality", GOPHER_QUALITY),
    ("gopher_repetition", GOPHER_REPETITION),
    ("c4", C4),
    ("fineweb", FINEWEB),
];

pub const QUALITY: &[FieldSpec] = &[
    f(
        "heuristic",
        Ty::List(&Ty::Enum(&[
            "gopher",
            "gopher_quality",
            "gopher_repetition",
            "c4",
            "fineweb",
        ])),
        Value(Const::Empty),
    ),
    f("gopher_quality", Ty::Block(GOPHER_QUALITY), Optional),
    f("gopher_repetition", Ty::Block(GOPHER_REPETITION), Optional),
    f("c4", Ty::Block(C4), Optional),
    f("fineweb", Ty::Block(FINEWEB), Optional),
    f("classifier", Ty::Block(CLASSIFIER), Optional),
    f("kl", Ty::Block(KL), Optional),
];

/// How a scorer turns a document into a number (higher is better).
pub const SCORE_METHOD: &[VariantSpec] = &[
    // Minus the document's mean loss under the scorer (Wenzek et al. 2020, CCNet).
    VariantSpec {
        name: "perplexity",
        fields: &[],
    },
    // A general model's loss minus the scorer's (Moore & Lewis 2010; Xie et al. 2023).
    VariantSpec {
        name: "likelihood_ratio",
        fields: &[f("general", Ty::Name("scorer"), Required)],
    },
    // An instruct model grades the document (FineWeb-Edu: Penedo et al. 2024, 0–5).
    VariantSpec {
        name: "rating",
        fields: &[
            f("prompt", Ty::Str, Required),
            f("scale", COUNT, Value(Const::Num(5.0))),
            f("max_new_tokens", COUNT, Value(Const::Num(8.0))),
        ],
    },
];

/// What the classifier learns from the scores.
pub const CLASSIFIER_LABELS: &[VariantSpec] = &[
    VariantSpec {
        name: "regression",
        fields: &[],
    },
    // The top fraction of the sample by score is "good" (DCLM's fastText labels, Li et
    // al. 2024); half by default (assumption).
    VariantSpec {
        name: "top",
        fields: &[f("fraction", FRACTION, Value(Const::Num(0.5)))],
    },
];

/// The model-based filter: a scorer rates a sample, a classifier learns the ratings and
/// filters every document.
pub const CLASSIFIER: &[FieldSpec] = &[
    f("scorer", Ty::Name("scorer"), Optional),
    f(
        "method",
        Ty::Variant(SCORE_METHOD),
        Value(Const::Sym("perplexity")),
    ),
    // Documents sampled and scored per source (assumption: enough for the classifier's
    // held-out metrics to mean something at demo scale).
    f("sample", COUNT, Value(Const::Num(2000.0))),
    f(
        "labels",
        Ty::Variant(CLASSIFIER_LABELS),
        Value(Const::Sym("top")),
    ),
    // Keep this fraction of documents (the threshold is the classifier score's quantile on
    // the sample), or every document scoring at least `threshold`.
    f("keep", FRACTION, Optional),
    f("threshold", REAL, Optional),
    // Tokens of each document the scorer reads; absent: its model's sequence length.
    f("max_tokens", COUNT, Optional),
    f("batch_docs", COUNT, Value(Const::Num(16.0))),
];

/// The KL threshold as a quantile of the reference documents' own divergence.
pub const KL_QUANTILES: &[&str] = &["p50", "p90", "p95", "p99", "p999"];

/// The KL-divergence rule against a reference source's word distribution.
pub const KL: &[FieldSpec] = &[
    f("reference", Ty::Name("source"), Required),
    // A quantile of the held-out reference documents' KL (`p99`), or `max_nats`.
    f("max", Ty::Enum(KL_QUANTILES), Optional),
    f("max_nats", Ty::Num(Dim::Count, NonNegative), Optional),
    f("smoothing", POSITIVE, Value(Const::Num(1.0))),
];

/// How often the runtime saves a checkpoint, and how many it keeps.
pub const CHECKPOINT: &[FieldSpec] = &[
    f(
        "every",
        Ty::Num(Dim::Steps, Count),
        Value(Const::Num(1000.0)),
    ),
    f("keep", COUNT, Value(Const::Num(3.0))),
];

/// How often the runtime measures held-out loss, and on how many tokens.
pub const EVAL: &[FieldSpec] = &[
    f(
        "every",
        Ty::Num(Dim::Steps, Count),
        Value(Const::Num(1000.0)),
    ),
    f("tokens", TOKENS, Value(Const::Num(1e6))),
];

pub const OBJECTIVE: &[VariantSpec] = &[
    VariantSpec {
        name: "chinchilla",
        fields: &[],
    },
    VariantSpec {
        name: "fixed",
        fields: &[],
    },
    VariantSpec {
        name: "inference_aware",
        fields: &[f("serve_tokens", TOKENS, Required)],
    },
];

pub const TOKENIZER: &[VariantSpec] = &[
    VariantSpec {
        name: "bpe",
        fields: &[f("vocab", COUNT, Required)],
    },
    VariantSpec {
        name: "unigram",
        fields: &[f("vocab", COUNT, Required)],
    },
];

pub const OPTIMIZER: &[VariantSpec] = &[VariantSpec {
    name: "adamw",
    fields: &[
        f("beta1", FRACTION, Value(Const::Num(0.9))),
        f("beta2", FRACTION, Value(Const::Num(0.95))),
        f("eps", POSITIVE, Value(Const::Num(1e-8))),
        f(
            "weight_decay",
            Ty::Num(Dim::Count, Fraction),
            Value(Const::Num(0.1)),
        ),
        f("grad_clip", POSITIVE, Value(Const::Num(1.0))),
    ],
}];

pub const EXPERIMENT: KindSpec = KindSpec {
    name: "experiment",
    fields: &[
        f("model", Ty::Preset(&MODEL), Required),
        f("tokens", TOKENS, RequiredOrAuto),
        // The training compute budget, C = 6·N·D: with `tokens = auto` the tokens that spend
        // it, with `model = auto { family }` the law's optimal size for it (derive.rs).
        f("compute", Ty::Num(Dim::Flops, Positive), Optional),
        // A wall-clock budget on the declared cluster, or a dollar budget at its
        // `gpu_hour_price`: the compute it buys at kiln's predicted step time (budget.rs).
        f("budget", Ty::Num(Dim::Seconds, Positive), Optional),
        f("budget_usd", Ty::Num(Dim::Usd, Positive), Optional),
        // Tokens per optimizer step, or a ramp to that batch (`ramp { … }`, BATCH_RAMP);
        // every consumer of `batch` reads the full batch.
        f(
            "batch",
            Ty::NumOr(Dim::Tokens, Positive, BATCH_RAMP),
            Required,
        ),
        f("cluster", Ty::Preset(&CLUSTER), Required),
        f(
            "objective",
            Ty::Variant(OBJECTIVE),
            Value(Const::Sym("chinchilla")),
        ),
        // Hoffmann et al. 2022's approach 3 with the printed constants (std/laws.kiln).
        f("law", Ty::Preset(&LAW), Value(Const::Sym("epoch"))),
        f(
            "precision",
            Ty::Enum(&["fp32", "bf16_mixed", "fp16_mixed", "fp8_mixed"]),
            Value(Const::Sym("bf16_mixed")),
        ),
        // The training engine the run executes on: its fused kernels, attention kernel and
        // overlaps set the predicted step time (analyse/engine.rs); `kiln` is this project's
        // runtime (`kiln run`).
        f(
            "engine",
            Ty::Enum(&[
                "kiln",
                "megatron",
                "nemo",
                "torchtitan",
                "deepspeed",
                "composer",
                "nanotron",
            ]),
            Value(Const::Sym("kiln")),
        ),
        // torch.compile over the model (torchtitan --compile): element-wise ops fused;
        // absent: the engine's default.
        f("compile", Ty::Bool, Optional),
        f("tokenizer", Ty::Variant(TOKENIZER), Optional),
        f(
            "optimizer",
            Ty::Variant(OPTIMIZER),
            Value(Const::Sym("adamw")),
        ),
        f("parallel", Ty::Block(PARALLEL), Value(Const::Empty)),
        f("dedup", Ty::Block(DEDUP), Optional),
        f("quality", Ty::Block(QUALITY), Optional),
        f("seed", Ty::Num(Dim::Count, Whole), Value(Const::Num(0.0))),
        f("checkpoint", Ty::Block(CHECKPOINT), Value(Const::Empty)),
        f("eval", Ty::Block(EVAL), Value(Const::Empty)),
        f("allow", Ty::List(&Ty::Str), Value(Const::Empty)),
        f("world", COUNT, Derived),
    ],
    named: &[&SOURCE_ENTRY, &PHASE_ENTRY, &SCORER_ENTRY],
    free_keys: None,
};

/// What a record may hold: a kind's fields, a block's fields or a variant's fields.
#[derive(Clone, Copy)]
pub struct Shape {
    pub kind: &'static str,
    pub fields: &'static [FieldSpec],
    pub named: &'static [&'static KindSpec],
    pub free_keys: Option<Ty>,
}

impl Shape {
    pub fn of(k: &'static KindSpec) -> Shape {
        Shape {
            kind: k.name,
            fields: k.fields,
            named: k.named,
            free_keys: k.free_keys,
        }
    }
    pub fn fields(kind: &'static str, fields: &'static [FieldSpec]) -> Shape {
        Shape {
            kind,
            fields,
            named: &[],
            free_keys: None,
        }
    }
    pub fn field(&self, name: &str) -> Option<&'static FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Every top-level declaration kind.
pub const KINDS: &[&KindSpec] = &[&EXPERIMENT, &MODEL, &GPU, &NODE, &CLUSTER, &MIX, &LAW];

pub fn kind(name: &str) -> Option<&'static KindSpec> {
    KINDS.iter().copied().find(|k| k.name == name)
}

/// Whether some kind, block or variant of the schema has a field called `name` (or a named
/// entry kind of that name). Debug builds check every `Record` lookup against it, so a
/// misspelt field name in the compiler fails loudly instead of reading as absent.
pub fn is_field_name(name: &str) -> bool {
    use std::collections::BTreeSet;
    use std::sync::OnceLock;
    static NAMES: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    fn ty(t: &Ty, out: &mut BTreeSet<&'static str>, seen: &mut Vec<&'static str>) {
        match t {
            Ty::Block(fields) => fields.iter().for_each(|f| field(f, out, seen)),
            Ty::Variant(vs) | Ty::NumOr(_, _, vs) => vs.iter().for_each(|v| {
                out.insert(v.name);
                v.fields.iter().for_each(|f| field(f, out, seen))
            }),
            Ty::Preset(k) => kind(k, out, seen),
            Ty::List(t) => ty(t, out, seen),
            _ => {}
        }
    }
    fn field(f: &FieldSpec, out: &mut BTreeSet<&'static str>, seen: &mut Vec<&'static str>) {
        out.insert(f.name);
        ty(&f.ty, out, seen);
    }
    fn kind(k: &'static KindSpec, out: &mut BTreeSet<&'static str>, seen: &mut Vec<&'static str>) {
        if seen.contains(&k.name) {
            return;
        }
        seen.push(k.name);
        out.insert(k.name);
        k.fields.iter().for_each(|f| field(f, out, seen));
        k.named.iter().for_each(|n| kind(n, out, seen));
    }
    NAMES
        .get_or_init(|| {
            let mut out = BTreeSet::new();
            let mut seen = Vec::new();
            KINDS.iter().for_each(|k| kind(k, &mut out, &mut seen));
            out
        })
        .contains(name)
}

/// Whether records of `kind` take free keys (a mix: source name → weight), whose lookups
/// cannot be checked against field names.
pub fn has_free_keys(kind: &str) -> bool {
    KINDS
        .iter()
        .any(|k| k.name == kind && k.free_keys.is_some())
}
