//! The resolved experiment as the plan carries it: typed specs for the runtime (model,
//! optimizer, precision, parallel layout, tokenizer, sources, dedup, quality) and every value
//! of the experiment with its provenance.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// `as_str` (the plan's spelling) and `Display` for the plan's enums.
macro_rules! names {
    ($($ty:ident { $($variant:ident => $name:literal),* $(,)? })*) => {$(
        impl $ty {
            /// The name as the plan and the language spell it.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),* }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

names! {
    Activation { Swiglu => "swiglu", Gelu => "gelu", Relu => "relu" }
    Norm { Rmsnorm => "rmsnorm", Layernorm => "layernorm" }
    Position { Rope => "rope", Learned => "learned", Relative => "relative", Alibi => "alibi" }
    Precision { Fp32 => "fp32", Bf16Mixed => "bf16_mixed", Fp16Mixed => "fp16_mixed", Fp8Mixed => "fp8_mixed" }
    OptimizerKind { Adamw => "adamw" }
    Recompute { None => "none", Selective => "selective", SelectiveOp => "selective_op", Full => "full" }
    TokenizerKind { Bpe => "bpe", Unigram => "unigram" }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExperimentSpec {
    pub name: String,
    pub seed: u64,
    pub model: ModelSpec,
    pub optimizer: OptimizerSpec,
    pub precision: Precision,
    pub parallel: ParallelSpec,
    pub tokenizer: Option<TokenizerSpec>,
    pub sources: Vec<SourceSpec>,
    pub dedup: DedupSpec,
    pub quality: QualitySpec,
    /// The GPU preset the run was planned for.
    pub gpu: String,
    /// Every value of the experiment: its path, value, unit and where it came from.
    pub values: Vec<PlanValue>,
}

/// The decoder's shape (the compiler's `model` record, derived).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ModelSpec {
    pub layers: u64,
    pub hidden: u64,
    pub ffn_hidden: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub vocab: u64,
    pub seq_len: u64,
    pub tied_embeddings: bool,
    pub activation: Activation,
    pub norm: Norm,
    pub position: Position,
    pub bias: bool,
    pub dropout: f64,
    /// RoPE's base wavelength θ (θ_i = rope_base^(−2i/d), Su et al. 2021, Eq. 15): 10,000 in
    /// Llama 1/2, 500,000 in Llama 3. Read only when `position` is `rope`.
    pub rope_base: f64,
    /// The share of each head's dimensions that rotary embeddings rotate, from the first
    /// (GPT-NeoX's `rotary_pct`): rotary_fraction × head_dim is a whole even number. 1 rotates
    /// every dimension. Read only when `position` is `rope`.
    pub rotary_fraction: f64,
    /// How attention and the MLP meet the residual stream in each layer.
    pub block: Block,
    /// A norm on the token embeddings before the first layer (BLOOM's
    /// `word_embeddings_layernorm`), of the model's `norm` kind.
    pub embedding_norm: bool,
    /// The ε inside the normalisation (RMSNorm's mean square, LayerNorm's variance).
    pub norm_eps: f64,
    /// The standard deviation of the normal initialisation of the weights (GPT-2's 0.02).
    pub init_std: f64,
    /// The compiler's parameter count, which the runtime's built model must equal.
    pub params: u64,
}

/// A layer's layout (the language's `model.block`), `{"kind": "sequential"}` or
/// `{"kind": "parallel", "shared_norm": true}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Block {
    /// h = x + attn(norm1(x)); y = h + mlp(norm2(h)) (GPT-2, Llama).
    Sequential,
    /// y = x + attn(norm1(x)) + mlp(norm2(x)): GPT-NeoX's parallel residual; with
    /// `shared_norm` one norm feeds both (GPT-J; PaLM, Chowdhery et al. 2022, Sec. 2).
    Parallel { shared_norm: bool },
}

impl Block {
    /// Norms per layer.
    pub fn norms(self) -> u64 {
        match self {
            Block::Parallel { shared_norm: true } => 1,
            _ => 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Swiglu,
    Gelu,
    Relu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    Rmsnorm,
    Layernorm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Position {
    Rope,
    Learned,
    Relative,
    Alibi,
}

/// Numerical precision of training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    Fp32,
    Bf16Mixed,
    Fp16Mixed,
    Fp8Mixed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam with decoupled weight decay (Loshchilov & Hutter 2019).
    Adamw,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct OptimizerSpec {
    pub kind: OptimizerKind,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip; 0 turns clipping off.
    pub grad_clip: f64,
}

/// Activation recomputation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Recompute {
    None,
    /// Korthikanti et al.'s: the attention scores only.
    Selective,
    /// torchtitan's op-level policy.
    SelectiveOp,
    /// Every layer from its input.
    Full,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ParallelSpec {
    /// ZeRO stage, 0 to 3 (required: a plan without it is refused, not run as ZeRO 0).
    pub zero: u8,
    pub recompute: Recompute,
    /// Layers of each (virtual) pipeline stage that full recompute covers; absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recompute_layers: Option<u64>,
    /// Layers whose saved activations are offloaded to host memory; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload_layers: Option<u64>,
    pub sequence_parallel: bool,
    pub flash_attention: bool,
    pub micro_batch: u64,
    pub accumulation: u64,
    pub first_stage_layers: Option<u64>,
    pub last_stage_layers: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TokenizerKind {
    Bpe,
    Unigram,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenizerSpec {
    pub kind: TokenizerKind,
    pub vocab: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SourceSpec {
    pub name: String,
    pub path: String,
    pub text_field: String,
    /// Unique tokens the experiment declares for the source, if it does.
    pub unique_tokens: Option<f64>,
    /// How many times the source may be repeated before kiln warns.
    pub max_epochs: f64,
    /// The longest document the data steps keep (bytes of text); absent: the runtime's
    /// default. Saturates at `u64::MAX` (no limit) for larger values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_document_bytes: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DedupSpec {
    pub exact: Option<ExactDedupSpec>,
    pub near: Option<NearDedupSpec>,
}

/// Exact deduplication (a Bloom filter over normalised documents).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExactDedupSpec {
    pub false_positive: f64,
    pub expected_docs: Option<u64>,
}

/// Near deduplication (MinHash LSH over character n-grams).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NearDedupSpec {
    pub ngram: u64,
    pub bands: u64,
    pub rows: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct QualitySpec {
    pub heuristics: Vec<String>,
    /// Declared thresholds by family (`gopher_quality`, `gopher_repetition`, `c4`,
    /// `fineweb`), with the runtime's field names; a family listed here is on.
    pub thresholds: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// The model-based filter: a classifier trained on a scorer's scores of a sample
    /// (the plan's `train_classifier` step); `null` when off.
    pub classifier: Option<ClassifierSpec>,
    /// The KL-divergence rule against a reference source's word distribution (the plan's
    /// `kl_reference` step); `null` when off.
    pub kl: Option<KlSpec>,
}

impl QualitySpec {
    /// Whether any filter is on (the plan then has a quality step per source).
    pub fn is_on(&self) -> bool {
        !self.heuristics.is_empty()
            || !self.thresholds.is_empty()
            || self.classifier.is_some()
            || self.kl.is_some()
    }
}

/// How the quality classifier is taught and applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClassifierSpec {
    /// The scorer entry whose scores teach it.
    pub scorer: String,
    pub labels: ClassifierLabels,
    pub keep: KeepRule,
    /// Documents sampled per source and scored.
    pub sample_docs: u64,
}

/// What the classifier learns from the scorer's scores.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClassifierLabels {
    /// The score itself (standardised), by least squares.
    Regression,
    /// Good = among the top `fraction` of the sample by score (logistic).
    Top { fraction: f64 },
}

/// Which documents a score keeps.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeepRule {
    /// Documents whose classifier score is at least `min_score`.
    Threshold { min_score: f64 },
    /// The top `fraction` of documents: the threshold is the classifier's score quantile
    /// on the scored sample (resolved by `train_classifier`).
    Fraction { fraction: f64 },
}

/// The KL rule: a document is removed when `KL(p_doc ‖ p_ref)` exceeds `max`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct KlSpec {
    /// The source whose documents make the reference distribution.
    pub reference: String,
    pub max: KlMax,
    /// Additive smoothing α of the reference distribution.
    pub smoothing: f64,
}

/// The KL threshold: in nats, or as a quantile of the held-out reference documents' own KL.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KlMax {
    Nats { nats: f64 },
    Quantile { quantile: f64 },
}

/// A language model that scores documents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScorerModel {
    /// Trained by the plan's step of this name (a `train` step among the score step's
    /// inputs); its tokenizer is the one its mix step's sources were encoded with.
    Trained { step: String },
    /// A Hugging Face Llama-family directory (`config.json`, `*.safetensors`,
    /// `tokenizer.json`), relative to the project.
    HuggingFace { path: String },
    /// A kiln training step's output directory (a checkpoint and the plan beside it),
    /// relative to the project.
    Checkpoint { path: String },
}

/// How a scorer turns a document into a number (higher is better).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScoreMethod {
    /// Minus the document's mean loss (nats per token) under the scorer (CCNet).
    Perplexity,
    /// The general model's mean loss minus the scorer's (Moore & Lewis 2010; DSIR).
    LikelihoodRatio { general: ScorerModel },
    /// An instruct model grades the document: `prompt` with `{document}` replaced, greedy
    /// decoding of at most `max_new_tokens`, the first integer in 0..=`scale` of the reply
    /// (FineWeb-Edu).
    Rating {
        prompt: String,
        scale: u32,
        max_new_tokens: u32,
    },
}

/// One value of the experiment, as `kiln check --values` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PlanValue {
    pub path: String,
    pub value: serde_json::Value,
    /// The unit of a number; absent for counts and non-numbers.
    pub unit: Option<Unit>,
    pub provenance: Provenance,
}

/// The unit of a quantity in the plan (the compiler's dimensions other than a count).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Tokens,
    Steps,
    Flops,
    FlopsPerSecond,
    Bytes,
    BytesPerSecond,
    Seconds,
    Usd,
    /// USD per hour of one GPU (`gpu_hour_price`).
    UsdPerHour,
}

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "from", content = "detail", rename_all = "snake_case")]
pub enum Provenance {
    /// Written in the experiment (or in the declaration being checked).
    Declared,
    /// Taken from the named preset.
    Preset(String),
    /// Computed by kiln; the text says how.
    Derived(String),
    /// The field's default.
    Default,
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provenance::Declared => f.write_str("declared"),
            Provenance::Preset(p) => write!(f, "preset {p}"),
            Provenance::Derived(how) => write!(f, "derived: {how}"),
            Provenance::Default => f.write_str("default"),
        }
    }
}
